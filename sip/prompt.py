"""Prompts and tones as G.711 audio, ready to be cut into RTP payloads.

A :class:`Prompt` is companded audio at 8 kHz in one law, with a name for logs. Prompts come
from files (:func:`load_prompt`: a WAV file in µ-law or A-law, as ``sox -e u-law`` writes, or
a raw ``.ulaw``/``.alaw`` file), from a speech synthesizer's 16-bit PCM WAV at any rate
(:func:`prompt_from_pcm_wav`, resampled by :func:`resample_pcm`), or are generated
(:func:`tone`, :func:`ringback`, :func:`silence`). A missing or unreadable prompt file raises a
typed :class:`PromptError` so that the daemon refuses to start instead of placing silent calls.

Pure apart from :func:`load_prompt`, which reads one file (start-up time, not the loop's):
no socket, no clock.
"""

from __future__ import annotations

import enum
import functools
import itertools
import math
import operator
import struct
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sip.errors import SipError
from sip.g711 import CLOCK_RATE, Codec, decode, encode, transcode

__all__ = [
    "MAX_PROMPT_SECONDS",
    "RINGBACK_EU",
    "RINGBACK_US",
    "SPEECH_PEAK_DBFS",
    "Prompt",
    "PromptError",
    "PromptFormatError",
    "PromptNotFoundError",
    "RingbackRegion",
    "ToneSpec",
    "load_prompt",
    "parse_prompt",
    "prompt_from_pcm_wav",
    "resample_pcm",
    "ringback",
    "silence",
    "tone",
]

#: Longest prompt accepted (seconds): a press-1 prompt lasts a few seconds; a larger file is
#: a mistake (a music file, the wrong rate) that would hold a leg for minutes.
MAX_PROMPT_SECONDS = 60
#: Level of a full-scale sine in G.711 (ITU-T G.711: the "digital milliwatt" is 0 dBm0, and a
#: full-scale sine is +3.17 dBm0 in µ-law); used to turn dBm0 levels into amplitudes.
_FULL_SCALE_SINE_DBM0 = 3.17
_FULL_SCALE_AMPLITUDE = 32124  # largest µ-law output magnitude in 16-bit PCM
#: Ramp at each tone burst's edges (seconds): a hard start clicks.
_RAMP_SECONDS = 0.005

# WAVE format tags (RFC 2361 Appendix A): linear PCM and the two G.711 laws.
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_RAW_SUFFIXES = {
    ".ulaw": Codec.PCMU,
    ".ul": Codec.PCMU,
    ".pcmu": Codec.PCMU,
    ".mulaw": Codec.PCMU,
    ".alaw": Codec.PCMA,
    ".al": Codec.PCMA,
    ".pcma": Codec.PCMA,
}


class PromptError(SipError):
    """A prompt that cannot be used; ``path`` names the file when there is one."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PromptNotFoundError(PromptError):
    """The prompt file does not exist (or cannot be read): a start-up error."""


class PromptFormatError(PromptError, ValueError):
    """The file is not 8 kHz mono G.711 (WAV µ-law/A-law, or raw ``.ulaw``/``.alaw``)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """G.711 audio at 8 kHz, one byte per sample."""

    name: str
    codec: Codec
    audio: bytes

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / CLOCK_RATE

    def encoded(self, codec: Codec) -> bytes:
        """The audio in ``codec`` (transcoded by table when the law differs)."""
        return transcode(self.audio, self.codec, codec)

    def pcm(self) -> bytes:
        """The audio as 16-bit signed little-endian PCM."""
        return decode(self.audio, self.codec)

    def frames(self, codec: Codec | None = None, samples_per_frame: int = 160) -> list[bytes]:
        """The audio cut into RTP payloads of ``samples_per_frame`` samples (20 ms by default);
        the last one is padded with silence."""
        target = codec if codec is not None else self.codec
        audio = self.encoded(target)
        remainder = len(audio) % samples_per_frame
        if remainder:
            audio += bytes([target.silence]) * (samples_per_frame - remainder)
        return [audio[i : i + samples_per_frame] for i in range(0, len(audio), samples_per_frame)]


# -- files -----------------------------------------------------------------------------------


def _riff_chunks(
    data: bytes, name: str, *, open_ended_data: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """The ``(id, body)`` of each chunk of a RIFF/WAVE file, in order.

    ``open_ended_data``: a ``data`` chunk may claim more bytes than follow (a WAV written to a
    pipe, whose sizes cannot be fixed afterwards); its body is what there is.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PromptFormatError(f"{name}: not a RIFF/WAVE file", path=name)
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        (size,) = struct.unpack_from("<I", data, position + 4)
        body = data[position + 8 : position + 8 + size]
        if len(body) < size and not (open_ended_data and chunk_id == b"data"):
            raise PromptFormatError(f"{name}: truncated {chunk_id!r} chunk", path=name)
        yield chunk_id, body
        position += 8 + size + (size & 1)  # chunks are padded to an even size


def _fmt_fields(body: bytes, name: str) -> tuple[int, int, int, int]:
    """(format tag, channels, sample rate, bits per sample) of a ``fmt`` chunk."""
    if len(body) < 16:
        raise PromptFormatError(f"{name}: short fmt chunk", path=name)
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    return tag, channels, rate, bits


def _parse_wav(data: bytes, name: str) -> Prompt:
    codec: Codec | None = None
    audio: bytes | None = None
    for chunk_id, body in _riff_chunks(data, name):
        if chunk_id == b"fmt ":
            tag, channels, rate, bits = _fmt_fields(body, name)
            codecs = {_WAVE_FORMAT_MULAW: Codec.PCMU, _WAVE_FORMAT_ALAW: Codec.PCMA}
            if tag not in codecs or channels != 1 or rate != CLOCK_RATE or bits != 8:
                raise PromptFormatError(
                    f"{name}: format tag {tag}, {channels} channel(s), {rate} Hz, {bits} bits; "
                    "expected mono 8000 Hz 8-bit µ-law (7) or A-law (6)",
                    path=name,
                )
            codec = codecs[tag]
        elif chunk_id == b"data":
            audio = bytes(body)
    if codec is None or audio is None:
        raise PromptFormatError(f"{name}: WAV file without fmt or data chunk", path=name)
    return _checked(Prompt(name=name, codec=codec, audio=audio))


def _checked(prompt: Prompt) -> Prompt:
    if not prompt.audio:
        raise PromptFormatError(f"{prompt.name}: empty prompt", path=prompt.name)
    if prompt.duration > MAX_PROMPT_SECONDS:
        raise PromptFormatError(
            f"{prompt.name}: {prompt.duration:.1f} s is longer than {MAX_PROMPT_SECONDS} s",
            path=prompt.name,
        )
    return prompt


def parse_prompt(data: bytes, *, name: str, codec: Codec | None = None) -> Prompt:
    """A prompt from bytes: a WAV file, or raw G.711 when ``codec`` is given."""
    if codec is not None:
        return _checked(Prompt(name=name, codec=codec, audio=bytes(data)))
    return _parse_wav(data, name)


def load_prompt(path: str | Path) -> Prompt:
    """Read a prompt file; raise :class:`PromptNotFoundError` or :class:`PromptFormatError`.

    ``.wav`` files must be mono 8 kHz µ-law or A-law; ``.ulaw``/``.ul``/``.pcmu`` and
    ``.alaw``/``.al``/``.pcma`` files are raw G.711 of that law.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError as error:
        raise PromptNotFoundError(
            f"prompt file not found: {file} (generate it with `make prompts`)", path=str(file)
        ) from error
    except OSError as error:
        raise PromptNotFoundError(
            f"prompt file unreadable: {file}: {error.strerror}", path=str(file)
        ) from error
    raw_codec = _RAW_SUFFIXES.get(file.suffix.lower())
    try:
        return parse_prompt(data, name=str(file), codec=raw_codec)
    except PromptFormatError as error:
        raise PromptFormatError(str(error), path=str(file)) from None


# -- synthesized speech -----------------------------------------------------------------------

#: Peak level of a synthesized prompt (dBFS), as ``sox ... norm -3`` gives the shipped ones.
SPEECH_PEAK_DBFS = -3.0
#: Silence before and after a synthesized prompt (seconds), as ``sox ... pad 0.2 0.3``: the rep
#: hears the start, and back-to-back plays do not click.
_SPEECH_LEAD_IN_S = 0.2
_SPEECH_TAIL_S = 0.3


def _parse_pcm_wav(data: bytes, name: str) -> tuple[int, int, bytes]:
    """(rate, channels, PCM) of a 16-bit linear PCM WAV.

    A WAV written to a pipe cannot be seeked back to fix its sizes (``espeak-ng --stdout``
    writes 0x7ffff000), so a ``data`` chunk longer than the input is cut to the input.
    """
    fmt: tuple[int, int] | None = None
    for chunk_id, body in _riff_chunks(data, name, open_ended_data=True):
        if chunk_id == b"data":
            if fmt is None:
                break
            rate, channels = fmt
            usable = len(body) - len(body) % (2 * channels)
            return rate, channels, bytes(body[:usable])
        if chunk_id == b"fmt ":
            tag, channels, rate, bits = _fmt_fields(body, name)
            if tag != _WAVE_FORMAT_PCM or bits != 16 or channels < 1 or not 1000 <= rate <= 192000:
                raise PromptFormatError(
                    f"{name}: format tag {tag}, {channels} channel(s), {rate} Hz, {bits} bits; "
                    "expected 16-bit linear PCM (1)",
                    path=name,
                )
            fmt = (rate, channels)
    raise PromptFormatError(f"{name}: WAV file without fmt or data chunk", path=name)


def _int16(pcm: bytes) -> array[int]:
    samples = array("h", pcm)
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()


def resample_pcm(pcm: bytes, rate: int, target: int = CLOCK_RATE) -> bytes:
    """16-bit little-endian mono PCM from ``rate`` to ``target`` Hz.

    Each output sample is the triangular-weighted mean of the ``2w - 1`` input samples around
    its time (``w``: the rate ratio, rounded), i.e. two box filters in a row, which low-passes
    before decimating: speech keeps its telephone band and the 4-11 kHz of a 22 kHz
    synthesizer is attenuated instead of folding back (at ``w == 1`` it is the nearest
    sample). With ``Q`` the prefix sums of the prefix sums of the input, that mean is
    ``(Q[j + 2w] - 2 Q[j + w] + Q[j]) / w²`` for the window starting at ``j``, so the work is
    two ``accumulate`` passes and a few ``map`` calls over built-ins: a simple resampler for
    prompt audio (DESIGN §4), not a studio one.
    """
    if rate <= 0 or target <= 0:
        raise ValueError("sampling rates must be positive")
    samples = _int16(pcm[: len(pcm) - len(pcm) % 2])
    if rate == target or not samples:
        return _pcm_bytes(samples)
    ratio = rate / target
    width = max(1, round(ratio))
    if len(samples) < 2 * width:
        width = 1
    count = max(1, int(len(samples) / ratio))
    sums = list(itertools.accumulate(itertools.accumulate(samples, initial=0), initial=0))
    # Window start of output k: its centre round(k * ratio) minus the filter's half-length,
    # kept inside the input (the edges repeat the first and last full window).
    last = len(samples) + 1 - 2 * width
    centres = itertools.accumulate(itertools.repeat(ratio, count - 1), initial=0.0)
    offsets = map(operator.sub, map(round, centres), itertools.repeat(width - 1))
    starts = [*map(min, map(max, offsets, itertools.repeat(0)), itertools.repeat(last))]
    first = map(sums.__getitem__, starts)
    middle = map(sums.__getitem__, map(operator.add, starts, itertools.repeat(width)))
    end = map(sums.__getitem__, map(operator.add, starts, itertools.repeat(2 * width)))
    windows = map(
        operator.sub,
        map(operator.add, first, end),
        map(operator.lshift, middle, itertools.repeat(1)),
    )
    return _pcm_bytes(array("h", map(operator.floordiv, windows, itertools.repeat(width * width))))


def prompt_from_pcm_wav(data: bytes, *, name: str, codec: Codec = Codec.PCMU) -> Prompt:
    """A prompt from a 16-bit PCM WAV at any rate, such as ``espeak-ng --stdout`` writes.

    The first channel is kept, resampled to 8 kHz (:func:`resample_pcm`), peak-normalised to
    :data:`SPEECH_PEAK_DBFS`, padded with silence like the shipped prompts and companded to
    ``codec``. Raises :class:`PromptFormatError` for anything else, for silence and for audio
    longer than :data:`MAX_PROMPT_SECONDS`.
    """
    rate, channels, pcm = _parse_pcm_wav(data, name)
    if channels > 1:
        pcm = _pcm_bytes(_int16(pcm)[::channels])
    samples = _int16(resample_pcm(pcm, rate))
    peak = max(max(samples, default=0), -min(samples, default=0))
    if peak == 0:
        raise PromptFormatError(f"{name}: the audio is silent", path=name)
    wanted = round(32767 * 10 ** (SPEECH_PEAK_DBFS / 20))
    scaled = map(
        operator.floordiv,
        map(operator.mul, samples, itertools.repeat(wanted)),
        itertools.repeat(peak),
    )
    lead_in = [0] * round(_SPEECH_LEAD_IN_S * CLOCK_RATE)
    tail = [0] * round(_SPEECH_TAIL_S * CLOCK_RATE)
    audio = _pcm_bytes(array("h", itertools.chain(lead_in, scaled, tail)))
    return _checked(Prompt(name=name, codec=codec, audio=encode(audio, codec)))


# -- tones -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A call-progress tone: summed sine ``frequencies`` at ``level_dbm0`` each, switched on and
    off by ``cadence`` (seconds: on, off, on, off, ...)."""

    frequencies: tuple[float, ...]
    level_dbm0: float
    cadence: tuple[float, ...]

    @property
    def period(self) -> float:
        """One cadence cycle in seconds."""
        return sum(self.cadence)


#: Ringback of most of Europe (ITU-T E.180 Supplement 2 / ETSI ES 201 970): 425 Hz, 1 s on,
#: 4 s off.
RINGBACK_EU = ToneSpec(frequencies=(425.0,), level_dbm0=-13.0, cadence=(1.0, 4.0))
#: North American ringback (ANSI T1.401 precise tones): 440 + 480 Hz at -19 dBm0 each, 2 s on,
#: 4 s off.
RINGBACK_US = ToneSpec(frequencies=(440.0, 480.0), level_dbm0=-19.0, cadence=(2.0, 4.0))


class RingbackRegion(enum.Enum):
    """Which ringback the rep hears while the prospect is dialled."""

    #: 425 Hz, 1 s on / 4 s off.
    EU = "eu"
    #: 440+480 Hz, 2 s on / 4 s off.
    US = "us"


def _tone_pcm(spec: ToneSpec) -> bytes:
    amplitude = _FULL_SCALE_AMPLITUDE * 10 ** ((spec.level_dbm0 - _FULL_SCALE_SINE_DBM0) / 20)
    ramp = max(1, round(_RAMP_SECONDS * CLOCK_RATE))
    steps = [2 * math.pi * f / CLOCK_RATE for f in spec.frequencies]
    samples: list[int] = []
    for index, seconds in enumerate(spec.cadence):
        count = round(seconds * CLOCK_RATE)
        if index % 2:
            samples.extend([0] * count)
            continue
        for n in range(count):
            envelope = min(1.0, (n + 1) / ramp, (count - n) / ramp)
            value = amplitude * envelope * sum(math.sin(step * n) for step in steps)
            samples.append(max(-32768, min(32767, round(value))))
    return struct.pack(f"<{len(samples)}h", *samples)


@functools.lru_cache(maxsize=16)
def tone(spec: ToneSpec, codec: Codec = Codec.PCMU) -> Prompt:
    """One cadence cycle of ``spec`` in ``codec`` (loop it: ``play(..., repeat=True)``)."""
    if not spec.cadence or any(seconds < 0 for seconds in spec.cadence):
        raise ValueError("a tone needs a non-negative cadence")
    name = "+".join(f"{f:g}" for f in spec.frequencies) + " Hz tone"
    return Prompt(name=name, codec=codec, audio=encode(_tone_pcm(spec), codec))


def ringback(codec: Codec = Codec.PCMU, region: RingbackRegion = RingbackRegion.EU) -> Prompt:
    """One cycle of the ringback tone of ``region`` in ``codec``."""
    return tone(RINGBACK_EU if region is RingbackRegion.EU else RINGBACK_US, codec)


def silence(seconds: float, codec: Codec = Codec.PCMU) -> Prompt:
    """``seconds`` of digital silence."""
    return Prompt(
        name=f"{seconds:g} s silence",
        codec=codec,
        audio=bytes([codec.silence]) * round(seconds * CLOCK_RATE),
    )
