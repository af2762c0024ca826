"""Prompt files (WAV G.711 and raw), typed errors for missing/wrong files, generated tones,
the prompts shipped in dialer/prompts/, and synthesizer output (16-bit PCM WAV) made G.711."""

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
    SPEECH_PEAK_DBFS,
    Prompt,
    PromptError,
    PromptFormatError,
    PromptNotFoundError,
    RingbackRegion,
    ToneSpec,
    load_prompt,
    parse_prompt,
    prompt_from_pcm_wav,
    resample_pcm,
    ringback,
    silence,
    tone,
)
from tests.support.press1_rep import power_at

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


@pytest.mark.parametrize("name", ["press1.wav"])
def test_the_shipped_prompts_are_short_audible_ulaw(name: str) -> None:
    prompt = load_prompt(SHIPPED / name)
    assert prompt.codec is Codec.PCMU
    assert 1.0 <= prompt.duration <= 6.0
    assert -35 < rms_dbov(prompt.pcm()) < -6
    # They start and end with silence (sox pad), so back-to-back plays do not click.
    assert rms_dbov(prompt.pcm()[:1600]) < -50


# -- synthesized speech: 16-bit PCM WAV at any rate -> 8 kHz G.711 ------------------------------


def sine_pcm(frequency: float, rate: int, seconds: float, amplitude: int = 10000) -> bytes:
    count = round(rate * seconds)
    return struct.pack(
        f"<{count}h",
        *(round(amplitude * math.sin(2 * math.pi * frequency * n / rate)) for n in range(count)),
    )


def pcm_wav(pcm: bytes, *, rate: int, channels: int = 1, streamed: bool = False) -> bytes:
    """A 16-bit PCM WAV; ``streamed`` writes the sizes espeak-ng writes to a pipe."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    data_size = 0x7FFFF000 if streamed else len(pcm)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", data_size) + pcm
    return b"RIFF" + struct.pack("<I", 0x7FFFF024 if streamed else len(body)) + body


@pytest.mark.parametrize("rate", [16000, 22050, 44100])
def test_resampling_keeps_the_voice_band_and_filters_what_would_fold_back(rate: int) -> None:
    kept = resample_pcm(sine_pcm(1000, rate, 0.5), rate)
    assert len(kept) == 2 * 4000
    assert power_at(kept, 1000) > 1000 * power_at(kept, 1500)
    assert rms_dbov(kept) == pytest.approx(rms_dbov(sine_pcm(1000, rate, 0.5)), abs=1.0)
    # 6 kHz cannot exist at 8 kHz: without a low-pass it would alias to 2 kHz at full level.
    folded = resample_pcm(sine_pcm(6000, rate, 0.5), rate)
    assert rms_dbov(folded) < rms_dbov(kept) - 15


def test_resampling_edge_cases() -> None:
    assert resample_pcm(b"", 22050) == b""
    assert resample_pcm(b"\x01\x00\x02\x00", 8000) == b"\x01\x00\x02\x00"
    assert len(resample_pcm(sine_pcm(500, 4000, 0.1), 4000)) == 2 * 800  # upsampling
    with pytest.raises(ValueError, match="positive"):
        resample_pcm(b"\x00\x00", 0)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_synthesizer_wav_becomes_a_padded_normalised_ulaw_prompt(streamed: bool) -> None:
    speech = sine_pcm(700, 22050, 1.0, amplitude=3000)
    prompt = prompt_from_pcm_wav(pcm_wav(speech, rate=22050, streamed=streamed), name="spoken")
    assert prompt.codec is Codec.PCMU and prompt.name == "spoken"
    # 0.2 s of silence, the second of speech, 0.3 s of silence (as sox pads the shipped ones).
    assert prompt.duration == pytest.approx(1.5, abs=0.001)
    pcm = prompt.pcm()
    assert rms_dbov(pcm[: 2 * 1600]) < -70 and rms_dbov(pcm[-2 * 2400 :]) < -70
    voice = pcm[2 * 1600 : -2 * 2400]
    assert power_at(voice, 700) > 1000 * power_at(voice, 1200)
    # Peak-normalised to -3 dBFS: a sine's RMS is 3 dB under its peak.
    assert rms_dbov(voice) == pytest.approx(SPEECH_PEAK_DBFS - 3.01, abs=0.5)
    alaw = prompt_from_pcm_wav(pcm_wav(speech, rate=22050), name="a", codec=Codec.PCMA)
    assert alaw.codec is Codec.PCMA and len(alaw.audio) == len(prompt.audio)


def test_a_stereo_synthesizer_wav_keeps_its_first_channel() -> None:
    left = sine_pcm(700, 16000, 0.5)
    right = sine_pcm(1500, 16000, 0.5)
    frames = b"".join(left[i : i + 2] + right[i : i + 2] for i in range(0, len(left), 2))
    prompt = prompt_from_pcm_wav(pcm_wav(frames, rate=16000, channels=2), name="stereo")
    voice = prompt.pcm()[2 * 1600 : -2 * 2400]
    assert power_at(voice, 700) > 1000 * power_at(voice, 1500)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not a wav", "RIFF"),
        (pcm_wav(b"", rate=22050)[:36], "without fmt or data"),
        (wav(b"\xff" * 100), "16-bit linear PCM"),  # G.711 is not what a synthesizer writes
        (pcm_wav(b"\x00\x00" * 2000, rate=22050), "silent"),
        (pcm_wav(sine_pcm(400, 8000, MAX_PROMPT_SECONDS + 1), rate=8000), "longer than"),
    ],
)
def test_bad_synthesizer_output_raises_a_format_error(data: bytes, reason: str) -> None:
    with pytest.raises(PromptFormatError, match=reason):
        prompt_from_pcm_wav(data, name="spoken")
