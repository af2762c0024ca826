"""Prompt files (WAV G.711 and raw), typed errors for missing/wrong files, generated tones,
and the prompts shipped in dialer/prompts/."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from sip.g711 import Codec, rms_dbov
from sip.prompt import (
    MAX_PROMPT_SECONDS,
    RINGBACK_EU,
    RINGBACK_US,
    Prompt,
    PromptError,
    PromptFormatError,
    PromptNotFoundError,
    RingbackRegion,
    ToneSpec,
    load_prompt,
    parse_prompt,
    ringback,
    silence,
    tone,
)

SHIPPED = Path(__file__).resolve().parents[2] / "dialer" / "prompts"


def wav(
    audio: bytes,
    *,
    tag: int = 7,
    channels: int = 1,
    rate: int = 8000,
    bits: int = 8,
    extra_chunks: bytes = b"",
) -> bytes:
    """A WAV file as sox writes G.711: an 18-octet fmt chunk, a fact chunk, the data."""
    fmt = struct.pack("<HHIIHHH", tag, channels, rate, rate * channels, channels, bits, 0)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<II", 4, len(audio))
        + extra_chunks
        + b"data"
        + struct.pack("<I", len(audio))
        + audio
        + (b"\x00" if len(audio) % 2 else b"")
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def power_at(pcm: bytes, frequency: float, rate: int = 8000) -> float:
    """Goertzel: the signal's power at ``frequency``, normalised by length."""
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    return (previous**2 + before**2 - coefficient * previous * before) / len(samples) ** 2


def test_a_ulaw_wav_file_parses() -> None:
    audio = bytes(range(256)) * 40
    prompt = parse_prompt(wav(audio), name="p.wav")
    assert prompt == Prompt(name="p.wav", codec=Codec.PCMU, audio=audio)
    assert prompt.duration == pytest.approx(1.28)


def test_an_alaw_wav_with_odd_length_and_a_list_chunk() -> None:
    audio = b"\xd5" * 8001
    listing = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"  # odd-sized chunk, padded
    prompt = parse_prompt(wav(audio, tag=6, extra_chunks=listing), name="a.wav")
    assert prompt.codec is Codec.PCMA
    assert prompt.audio == audio


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a wav file", "RIFF"),
        (wav(b"\x00" * 100, tag=1, bits=16), "format tag 1"),
        (wav(b"\x00" * 100, channels=2), "2 channel"),
        (wav(b"\x00" * 100, rate=16000), "16000 Hz"),
        (wav(b""), "empty"),
        (wav(b"\x00" * 100)[:-50], "truncated"),
        (wav(b"\xff" * 8000 * (MAX_PROMPT_SECONDS + 1)), "longer than"),
        (b"RIFF\x04\x00\x00\x00WAVE", "without fmt or data"),
    ],
)
def test_bad_files_raise_a_format_error(data: bytes, reason: str) -> None:
    with pytest.raises(PromptFormatError, match=reason):
        parse_prompt(data, name="bad.wav")


def test_a_missing_prompt_is_a_typed_start_up_error(tmp_path: Path) -> None:
    missing = tmp_path / "press1.wav"
    with pytest.raises(PromptNotFoundError, match="make prompts") as caught:
        load_prompt(missing)
    assert caught.value.path == str(missing)
    assert isinstance(caught.value, PromptError)


def test_a_directory_is_not_a_prompt(tmp_path: Path) -> None:
    with pytest.raises(PromptNotFoundError, match="unreadable"):
        load_prompt(tmp_path)


def test_load_by_suffix(tmp_path: Path) -> None:
    (tmp_path / "p.wav").write_bytes(wav(b"\xff" * 800))
    (tmp_path / "p.alaw").write_bytes(b"\xd5" * 1600)
    (tmp_path / "p.ulaw").write_bytes(b"\x7f" * 400)
    (tmp_path / "bad.wav").write_bytes(b"\x00" * 100)
    assert load_prompt(tmp_path / "p.wav").duration == pytest.approx(0.1)
    assert load_prompt(tmp_path / "p.alaw").codec is Codec.PCMA
    assert load_prompt(str(tmp_path / "p.ulaw")).codec is Codec.PCMU
    with pytest.raises(PromptFormatError) as caught:
        load_prompt(tmp_path / "bad.wav")
    assert caught.value.path == str(tmp_path / "bad.wav")


def test_frames_are_padded_with_the_laws_silence() -> None:
    prompt = Prompt(name="p", codec=Codec.PCMU, audio=b"\x01" * 170)
    ulaw = prompt.frames()
    assert [len(f) for f in ulaw] == [160, 160]
    assert ulaw[1] == b"\x01" * 10 + b"\xff" * 150
    alaw = prompt.frames(Codec.PCMA)
    assert alaw[1][10:] == b"\xd5" * 150
    assert prompt.frames(samples_per_frame=80)[2] == b"\x01" * 10 + b"\xff" * 70


def test_ringback_eu_is_425_hz_one_second_in_five() -> None:
    cycle = ringback(Codec.PCMA, RingbackRegion.EU)
    assert cycle.codec is Codec.PCMA
    assert cycle.duration == pytest.approx(RINGBACK_EU.period) == pytest.approx(5.0)
    pcm = cycle.pcm()
    on, off = pcm[: 2 * 8000], pcm[2 * 8000 :]
    assert power_at(on, 425) > 1000 * power_at(on, 600)
    assert rms_dbov(off) < -70
    # -13 dBm0 for a sine is about -16.2 dB below a full-scale sine, -19.2 dBov here.
    assert rms_dbov(on) == pytest.approx(-13 - 3.17 - 3.01, abs=0.5)


def test_ringback_us_is_440_plus_480_two_seconds_in_six() -> None:
    cycle = ringback(Codec.PCMU, RingbackRegion.US)
    assert cycle.duration == pytest.approx(RINGBACK_US.period) == pytest.approx(6.0)
    on = cycle.pcm()[: 2 * 16000]
    assert power_at(on, 440) > 100 * power_at(on, 600)
    assert power_at(on, 480) > 100 * power_at(on, 600)
    assert power_at(on, 440) == pytest.approx(power_at(on, 480), rel=0.2)


def test_tone_is_cached_and_validated() -> None:
    assert tone(RINGBACK_EU) is tone(RINGBACK_EU)
    with pytest.raises(ValueError, match="cadence"):
        tone(ToneSpec(frequencies=(400.0,), level_dbm0=-10, cadence=()))


def test_silence() -> None:
    quiet = silence(0.5, Codec.PCMA)
    assert quiet.audio == b"\xd5" * 4000
    assert rms_dbov(quiet.pcm()) < -70


@pytest.mark.parametrize("name", ["press1.wav", "connecting.wav"])
def test_the_shipped_prompts_are_short_audible_ulaw(name: str) -> None:
    prompt = load_prompt(SHIPPED / name)
    assert prompt.codec is Codec.PCMU
    assert 1.0 <= prompt.duration <= 6.0
    assert -35 < rms_dbov(prompt.pcm()) < -6
    # They start and end with silence (sox pad), so back-to-back plays do not click.
    assert rms_dbov(prompt.pcm()[:1600]) < -50
