#!/usr/bin/env bash
# Generates the generic spoken prompt of the press-1-to-accept flow as a small G.711 µ-law WAV
# file (mono, 8 kHz) with Debian's espeak-ng and sox. The output is committed; run this (or
# `make prompts`) after changing the text below. With `[media] speak_source = true` the daemon
# also says the lead's source ("New lead from <source>. ...", dialer/calls/prompts.py, same
# voice and speed); this file stays the fallback whenever that prompt is not ready.
#
#   scripts/make_prompts.sh [OUTPUT_DIR]        (default: dialer/prompts)
#   PROMPT_VOICE=en-gb PROMPT_SPEED=150 scripts/make_prompts.sh
#
# sox runs with -D (no dither) so that the same tools give byte-identical files.
set -euo pipefail

out_dir="${1:-dialer/prompts}"
voice="${PROMPT_VOICE:-en-us}"
speed="${PROMPT_SPEED:-160}"

missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
if [ ${#missing[@]} -ne 0 ]; then
    echo "error: missing tools: ${missing[*]}; install them with 'apt-get install ${missing[*]}'" >&2
    exit 1
fi

mkdir -p "$out_dir"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name|text
prompts=(
    "press1|New lead. Press 1 to connect."
)

for entry in "${prompts[@]}"; do
    name="${entry%%|*}"
    text="${entry#*|}"
    espeak-ng -v "$voice" -s "$speed" -w "$work/$name.wav" "$text"
    # Telephone band, peak-normalised to -3 dBFS, 0.2 s of silence before and 0.3 s after,
    # then resampled to 8 kHz mono and companded to µ-law.
    sox -V1 -D "$work/$name.wav" -r 8000 -c 1 -e u-law "$out_dir/$name.wav" \
        highpass 300 lowpass 3400 norm -3 pad 0.2 0.3
    echo "$out_dir/$name.wav: $(soxi -D "$out_dir/$name.wav") s, $(stat -c %s "$out_dir/$name.wav") bytes"
done
