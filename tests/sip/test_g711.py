"""G.711 tables: literal values from the standard, the whole domain against CPython's audioop
(the same reference algorithm, implemented in C) where it still exists, and properties."""

from __future__ import annotations

import itertools
import math
import struct
import warnings
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.g711 import (
    Codec,
    alaw_decode,
    alaw_encode,
    alaw_to_ulaw,
    decode,
    encode,
    rms,
    rms_dbov,
    transcode,
    ulaw_decode,
    ulaw_encode,
    ulaw_to_alaw,
)

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))
ALL_CODES = bytes(range(256))


def pcm(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def samples(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: ModuleType = pytest.importorskip("audioop")  # removed in Python 3.13
    return module


@pytest.mark.parametrize(
    ("codec", "code", "linear"),
    [
        # µ-law: 0xFF and 0x7F are the two zeros, 0x80/0x00 the extremes (G.711 Table 2a).
        (Codec.PCMU, 0xFF, 0),
        (Codec.PCMU, 0x7F, 0),
        (Codec.PCMU, 0x80, 32124),
        (Codec.PCMU, 0x00, -32124),
        (Codec.PCMU, 0xFE, 8),
        # A-law: 0xD5/0x55 are the smallest magnitudes, 0xAA/0x2A the extremes (Table 1a).
        (Codec.PCMA, 0xD5, 8),
        (Codec.PCMA, 0x55, -8),
        (Codec.PCMA, 0xAA, 32256),
        (Codec.PCMA, 0x2A, -32256),
    ],
)
def test_decode_literal_values(codec: Codec, code: int, linear: int) -> None:
    assert samples(decode(bytes([code]), codec)) == [linear]


@pytest.mark.parametrize(
    ("codec", "linear", "code"),
    [
        (Codec.PCMU, 0, 0xFF),
        (Codec.PCMU, 32767, 0x80),
        (Codec.PCMU, -32768, 0x00),
        (Codec.PCMA, 0, 0xD5),
        (Codec.PCMA, 32767, 0xAA),
        (Codec.PCMA, -32768, 0x2A),
    ],
)
def test_encode_literal_values(codec: Codec, linear: int, code: int) -> None:
    assert encode(pcm(linear), codec) == bytes([code])


def test_silence_byte_decodes_to_the_smallest_magnitude() -> None:
    assert samples(ulaw_decode(bytes([Codec.PCMU.silence]))) == [0]
    assert samples(alaw_decode(bytes([Codec.PCMA.silence]))) == [8]


def test_every_sample_matches_audioop() -> None:
    reference = audioop()
    assert ulaw_encode(ALL_SAMPLES) == reference.lin2ulaw(ALL_SAMPLES, 2)
    assert alaw_encode(ALL_SAMPLES) == reference.lin2alaw(ALL_SAMPLES, 2)
    assert ulaw_decode(ALL_CODES) == reference.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES) == reference.alaw2lin(ALL_CODES, 2)


def test_encoding_is_monotonic_over_the_whole_domain() -> None:
    # Decode(encode(x)) must never decrease as x grows: a table built wrong breaks this.
    for law_encode, law_decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        values = samples(law_decode(law_encode(ALL_SAMPLES)))
        assert all(a <= b for a, b in itertools.pairwise(values))


def test_every_code_survives_decode_then_encode() -> None:
    # Each code's decoded value lies inside its own quantization interval.
    assert ulaw_encode(ulaw_decode(ALL_CODES)).replace(b"\x7f", b"\xff") == ALL_CODES.replace(
        b"\x7f", b"\xff"
    )  # the two µ-law zeros encode to the positive one
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


@given(st.lists(st.integers(-32768, 32767), max_size=200))
def test_quantization_error_is_bounded(values: list[int]) -> None:
    for codec in Codec:
        decoded = samples(decode(encode(pcm(*values), codec), codec))
        for original, approximated in zip(values, decoded, strict=True):
            # G.711 keeps 4 mantissa bits: the error is below 1/16 of the magnitude plus the
            # step of the first segment (and the clip at the extremes).
            assert abs(original - approximated) <= abs(original) / 16 + 1024


def test_transcoding_tables_agree_with_going_through_linear() -> None:
    assert ulaw_to_alaw(ALL_CODES) == alaw_encode(ulaw_decode(ALL_CODES))
    assert alaw_to_ulaw(ALL_CODES) == ulaw_encode(alaw_decode(ALL_CODES))
    assert transcode(ALL_CODES, Codec.PCMU, Codec.PCMU) == ALL_CODES
    assert transcode(ALL_CODES, Codec.PCMA, Codec.PCMU) == alaw_to_ulaw(ALL_CODES)


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(ValueError, match="even"):
        ulaw_encode(b"\x00\x00\x00")


def test_codec_metadata() -> None:
    assert (Codec.PCMU.payload_type, Codec.PCMA.payload_type) == (0, 8)
    assert Codec.from_encoding_name("pcma") is Codec.PCMA
    assert Codec.from_encoding_name("G729") is None


def test_rms_of_a_full_scale_square_and_a_sine() -> None:
    assert rms(pcm(16384, -16384) * 100) == 16384
    assert rms_dbov(pcm(32767, -32767)) == pytest.approx(0.0, abs=0.01)
    sine = pcm(*(round(10000 * math.sin(2 * math.pi * n / 80)) for n in range(8000)))
    assert rms(sine) == pytest.approx(10000 / math.sqrt(2), rel=1e-3)
    assert rms(b"") == 0.0
    assert rms_dbov(pcm(0, 0)) == -math.inf
