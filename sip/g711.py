"""G.711 (ITU-T G.711) µ-law and A-law companding, pure Python and table driven.

Linear audio is 16-bit signed little-endian PCM (what ``sox -e signed -b 16 -L`` writes);
companded audio is one byte per sample. Every conversion is a lookup in a table computed once
at import from the ITU reference algorithm (the Sun Microsystems ``g711.c`` that CPython's
``audioop`` also uses, so the outputs are identical): decoding and µ-law/A-law transcoding are
``bytes.translate`` calls (C speed), encoding maps each 16-bit sample through a 64 KiB table.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import math
import sys
from array import array
from collections.abc import Callable

__all__ = [
    "CLOCK_RATE",
    "Codec",
    "alaw_decode",
    "alaw_encode",
    "alaw_to_ulaw",
    "decode",
    "encode",
    "rms",
    "rms_dbov",
    "transcode",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_to_alaw",
]

#: Sampling rate of G.711 and of its RTP clock (RFC 3551 §4.5.14).
CLOCK_RATE = 8000


class Codec(enum.Enum):
    """The two G.711 laws, valued by their static RTP payload type (RFC 3551 Table 4)."""

    #: µ-law (North America, Japan): payload type 0, ``PCMU/8000``.
    PCMU = 0
    #: A-law (Europe and most of the world): payload type 8, ``PCMA/8000``.
    PCMA = 8

    @property
    def payload_type(self) -> int:
        """The static RTP payload type."""
        return self.value

    @property
    def encoding_name(self) -> str:
        """The name in an SDP ``a=rtpmap`` line (``PCMU`` / ``PCMA``)."""
        return self.name

    @property
    def silence(self) -> int:
        """The byte that decodes to (the closest value to) zero: 0xFF for µ-law, 0xD5 for A-law."""
        return 0xFF if self is Codec.PCMU else 0xD5

    @classmethod
    def from_encoding_name(cls, name: str) -> Codec | None:
        """``PCMU``/``PCMA`` (any case) to the codec; None for anything else."""
        return _BY_NAME.get(name.upper())


_BY_NAME = {"PCMU": Codec.PCMU, "PCMA": Codec.PCMA}

# -- the reference algorithms (run once, to build the tables) ------------------------------

_ULAW_BIAS = 0x84  # 132: added so that every segment's mantissa starts at an exact power of 2
_ULAW_CLIP = 8159  # largest 14-bit magnitude µ-law represents (after the >> 2 below)
_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _ulaw_from_linear(sample: int) -> int:
    # G.711 µ-law works on 14-bit magnitudes; the arithmetic shift matches the reference.
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _alaw_from_linear(sample: int) -> int:
    # G.711 A-law works on 13-bit values.
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = _segment(value, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= (value >> 1) & 0x0F if segment < 2 else (value >> segment) & 0x0F
    return code ^ mask


def _linear_from_ulaw(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _linear_from_alaw(code: int) -> int:
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def _encode_table(compand: Callable[[int], int], dropped_bits: int) -> bytes:
    """The code of every 16-bit sample, indexed by the sample read as unsigned.

    The law only sees the top ``16 - dropped_bits`` bits, so it is evaluated once per distinct
    value and each result is repeated ``2 ** dropped_bits`` times (slice assignment, C speed).
    """
    step = 1 << dropped_bits
    distinct = bytes(
        compand(((index << dropped_bits) ^ 0x8000) - 0x8000)
        for index in range(0x10000 >> dropped_bits)
    )
    table = bytearray(0x10000)
    for offset in range(step):
        table[offset::step] = distinct
    return bytes(table)


def _byte_tables(expand: Callable[[int], int]) -> tuple[bytes, bytes]:
    values = [expand(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


_ULAW_ENCODE = _encode_table(_ulaw_from_linear, 2)
_ALAW_ENCODE = _encode_table(_alaw_from_linear, 3)
_ULAW_LOW, _ULAW_HIGH = _byte_tables(_linear_from_ulaw)
_ALAW_LOW, _ALAW_HIGH = _byte_tables(_linear_from_alaw)
_ULAW_TO_ALAW = bytes(_alaw_from_linear(_linear_from_ulaw(code)) for code in range(256))
_ALAW_TO_ULAW = bytes(_ulaw_from_linear(_linear_from_alaw(code)) for code in range(256))
_LITTLE_ENDIAN = sys.byteorder == "little"


# -- public conversions ---------------------------------------------------------------------


def _samples(pcm: bytes) -> memoryview | array[int]:
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM must have an even number of bytes, got {len(pcm)}")
    if _LITTLE_ENDIAN:
        return memoryview(pcm).cast("H")
    swapped = array("H", pcm)
    swapped.byteswap()
    return swapped


def _expand(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian PCM to µ-law, one byte per sample."""
    return bytes(map(_ULAW_ENCODE.__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit signed little-endian PCM to A-law, one byte per sample."""
    return bytes(map(_ALAW_ENCODE.__getitem__, _samples(pcm)))


def ulaw_decode(data: bytes) -> bytes:
    """µ-law to 16-bit signed little-endian PCM."""
    return _expand(data, _ULAW_LOW, _ULAW_HIGH)


def alaw_decode(data: bytes) -> bytes:
    """A-law to 16-bit signed little-endian PCM."""
    return _expand(data, _ALAW_LOW, _ALAW_HIGH)


def ulaw_to_alaw(data: bytes) -> bytes:
    """µ-law to A-law without going through linear PCM in Python (one translate)."""
    return data.translate(_ULAW_TO_ALAW)


def alaw_to_ulaw(data: bytes) -> bytes:
    """A-law to µ-law (one translate)."""
    return data.translate(_ALAW_TO_ULAW)


def encode(pcm: bytes, codec: Codec) -> bytes:
    """16-bit signed little-endian PCM to ``codec``."""
    return ulaw_encode(pcm) if codec is Codec.PCMU else alaw_encode(pcm)


def decode(data: bytes, codec: Codec) -> bytes:
    """``codec`` bytes to 16-bit signed little-endian PCM."""
    return ulaw_decode(data) if codec is Codec.PCMU else alaw_decode(data)


def transcode(data: bytes, source: Codec, target: Codec) -> bytes:
    """G.711 bytes from one law to the other (a no-op when they are the same)."""
    if source is target:
        return data
    return ulaw_to_alaw(data) if source is Codec.PCMU else alaw_to_ulaw(data)


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit signed little-endian PCM (0.0 for no samples)."""
    samples = array("h", pcm[: len(pcm) - len(pcm) % 2])
    if not _LITTLE_ENDIAN:
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(math.fsum(s * s for s in samples) / len(samples))


def rms_dbov(pcm: bytes) -> float:
    """Level of 16-bit PCM in dB relative to a full-scale square wave (-inf for silence)."""
    value = rms(pcm)
    return 20 * math.log10(value / 32768) if value > 0 else -math.inf
