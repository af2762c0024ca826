"""Spoken press-1 prompts naming the lead's source (``dialer.calls.prompts``, issue 10).

The sanitizer; :class:`SourcePrompts` against the real ``espeak-ng`` and against scripts in
``tmp_path`` that fail, hang or are missing; the ``[media] speak_source`` key; and the
controller with a rep phone inside the test process and a SIPp prospect: the rep hears the
spoken prompt when it is ready, the generic one when the synthesizer is slow or fails, and the
call goes on either way.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dialer.calls.controller import CallController, default_accept_prompt
from dialer.calls.outcome import CallResult
from dialer.calls.prompts import (
    MAX_SOURCE_CHARS,
    SourcePrompts,
    SpeechError,
    SpeechSettings,
    prompt_text,
    sanitize_source,
)
from dialer.config import ConfigError, parse_config
from tests.dialer.test_calls_press1 import (
    CALL_TIMEOUT_S,
    assert_ok,
    make_plan,
    peer,
    press1_controller,
    running,
)
from tests.support.press1_rep import (
    InProcessRep,
    heard_audible_seconds,
    prompt_audible_seconds,
)
from tests.support.sipp import needs_sipp

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng not installed (Debian package espeak-ng; scripts/install-system-deps.sh)",
)


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable shell script in ``tmp_path`` standing in for the synthesizer."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# -- the sanitizer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "spoken"),
    [
        ("web", "web"),
        ("Google Ads", "Google Ads"),
        ("google_ads/search:brand", "google ads search brand"),
        ("  Facebook   Lead-Ads  ", "Facebook Lead-Ads"),
        ("AT&T partners, inc.", "AT&T partners, inc"),
        ("Café Crème", "Café Crème"),
        ("<speak>evil</speak>", "speak evil speak"),
        ('web"; rm -rf / #', "web rm -rf"),
        ("-v xx --stdout", "v xx --stdout"),
        ("a\x00b\nc\td", "a b c d"),
        ("\uff57\uff45\uff42", "web"),  # full-width letters, NFKC
        ("", None),
        (None, None),
        ("<>/_:;", None),
        ("...---", None),
    ],
)
def test_sanitize_source_keeps_words_and_drops_the_rest(source: str | None, spoken: str) -> None:
    assert sanitize_source(source) == spoken


def test_sanitize_source_is_bounded_at_a_word() -> None:
    long = "Partner " + "word " * 30
    text = sanitize_source(long)
    assert text is not None and len(text) <= MAX_SOURCE_CHARS
    assert text.startswith("Partner word") and text.endswith("word")
    assert sanitize_source("x" * 100) == "x" * MAX_SOURCE_CHARS
    assert sanitize_source("abc defgh", max_chars=8) == "abc"


def test_prompt_text_names_the_source() -> None:
    assert prompt_text("web") == "New lead from web. Press 1 to connect."


# -- SourcePrompts --------------------------------------------------------------------------------


@needs_espeak
async def test_espeak_prompt_is_made_once_per_source_and_cached() -> None:
    prompts = SourcePrompts(SpeechSettings(cache_size=2))
    try:
        first = prompts.request("web")
        assert first is not None and not first.done()  # started, not awaited by request()
        assert prompts.request("web") is first  # one synthesis per source in flight
        prompt = await asyncio.wait_for(first, 5)
        generic = default_accept_prompt()
        assert prompt.codec is generic.codec
        assert prompt.duration > 1.0
        assert abs(prompt.duration - generic.duration) > 0.2  # "from web" is said
        again = prompts.request("web")
        assert again is not None and again.done() and again.result() is prompt
        assert prompts.cache_hits == 1 and prompts.synthesized == 1
        # The cache holds ``cache_size`` prompts, the least recently used one goes first.
        for source in ("crm", "partner"):
            made = prompts.request(source)
            assert made is not None
            await asyncio.wait_for(made, 5)
        assert prompts.cached("web") is None
        assert prompts.cached("crm") is not None and prompts.cached("partner") is not None
        assert prompts.request("<>") is None
    finally:
        await prompts.close()


async def test_a_failing_synthesizer_gives_a_speech_error(tmp_path: Path) -> None:
    command = script(tmp_path, "fails", "echo 'voice not found' >&2; exit 1")
    prompts = SourcePrompts(SpeechSettings(command=command))
    task = prompts.request("web")
    assert task is not None
    with pytest.raises(SpeechError, match="status 1: voice not found"):
        await asyncio.wait_for(task, 5)
    await asyncio.sleep(0)  # the done callback
    assert prompts.failed == 1 and prompts.cached("web") is None
    await prompts.close()


async def test_bad_output_and_a_missing_command_give_speech_errors(tmp_path: Path) -> None:
    garbage = SourcePrompts(SpeechSettings(command=script(tmp_path, "garbage", "echo hello")))
    missing = SourcePrompts(SpeechSettings(command=str(tmp_path / "no-such-synthesizer")))
    for prompts, reason in ((garbage, "unusable synthesizer output"), (missing, "cannot run")):
        task = prompts.request("web")
        assert task is not None
        with pytest.raises(SpeechError, match=reason):
            await asyncio.wait_for(task, 5)
        await prompts.close()


def _gone(pid: int) -> bool:
    """The process no longer runs (it may be a zombie waiting for a reaper)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


async def test_a_slow_synthesizer_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    command = script(tmp_path, "slow", f"sleep 30 & echo $! > {pid_file}; wait")
    prompts = SourcePrompts(SpeechSettings(command=command, timeout_s=0.3))
    started = time.monotonic()
    task = prompts.request("web")
    assert task is not None
    with pytest.raises(SpeechError, match=r"longer than 0\.3 s"):
        await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2.0
    child = int(pid_file.read_text())
    for _ in range(50):
        if _gone(child):
            break
        await asyncio.sleep(0.02)
    assert _gone(child)
    await prompts.close()


async def test_pending_syntheses_are_bounded_and_cancelled_on_close(tmp_path: Path) -> None:
    command = script(tmp_path, "slow", "exec sleep 30")
    prompts = SourcePrompts(SpeechSettings(command=command, max_pending=1))
    task = prompts.request("web")
    assert task is not None
    assert prompts.request("crm") is None  # over the bound: the caller plays the generic one
    await asyncio.sleep(0.2)  # the subprocess runs
    started = time.monotonic()
    await prompts.close()
    assert task.cancelled() and time.monotonic() - started < 1.0


# -- [media] speak_source -------------------------------------------------------------------------


def test_speak_source_is_off_by_default() -> None:
    media = parse_config({}, env={}).media
    assert media.speak_source is False and media.speech_command == "espeak-ng"


def test_speak_source_needs_its_synthesizer_at_start_up(tmp_path: Path) -> None:
    missing = str(tmp_path / "espeak-ng")
    with pytest.raises(ConfigError) as caught:
        parse_config({"media": {"speak_source": True, "speech_command": missing}}, env={})
    assert str(caught.value).startswith("config error: media.speech_command: ")
    assert "not found" in str(caught.value) and "\n" not in str(caught.value)
    # Not checked while off; checked and accepted when present.
    parse_config({"media": {"speech_command": missing}}, env={})
    present = script(tmp_path, "synth", "exit 0")
    media = parse_config({"media": {"speak_source": True, "speech_command": present}}, env={}).media
    assert media.speak_source is True and media.speech_command == present
    with pytest.raises(ConfigError, match=r"media\.speak_source: expected true or false"):
        parse_config({"media": {"speak_source": "yes"}}, env={})


# -- the controller: what the rep hears ----------------------------------------------------------


async def press1_call(
    calls: CallController, phone: InProcessRep, pick_up: asyncio.Event, prompt_s: float
) -> tuple[CallResult, float]:
    """Ring the phone (lead source "web"), let it pick up once ``pick_up`` is set, listen to
    ``prompt_s`` of prompt, press 1, take the bridge; (result, audible seconds of the prompt)."""
    plan = make_plan(1, uris=[phone.uri], accept_timeout_s=15.0, ring_timeout_s=10.0)
    call = calls.start_call(plan)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        await phone.answer(when=pick_up)
        await phone.wait_audio(prompt_s + 0.2)
        heard = heard_audible_seconds(phone.heard)
        phone.press("1")
        await phone.accept_bridge()
        outcome = await call.wait_ended()
    return outcome.result, heard


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
@needs_espeak
async def test_the_rep_hears_the_lead_source_when_its_prompt_is_ready() -> None:
    """The synthesis starts with the ringing: the phone only picks up once the prompt is in
    the cache (it never would if synthesis waited for the answer), then hears it whole."""
    reference = SourcePrompts()
    made = reference.request("web")
    assert made is not None
    spoken = await asyncio.wait_for(made, 5)
    await reference.close()
    generic = default_accept_prompt()
    async with running(peer("calls_prospect_answer_hangup", pause_ms=200)) as (prospect,):
        async with (
            press1_controller(prospect, speech=SpeechSettings()) as calls,
            InProcessRep() as phone,
        ):
            pick_up = asyncio.Event()
            task = asyncio.create_task(press1_call(calls, phone, pick_up, spoken.duration))
            await until(lambda: calls.source_prompts is not None)
            prompts = calls.source_prompts
            assert prompts is not None
            await until(lambda: prompts.cached("web") is not None)
            pick_up.set()
            result, heard = await task
            assert prompts.synthesized == 1
        assert_ok(await prospect.wait(CALL_TIMEOUT_S))
    assert result is CallResult.COMPLETED
    assert heard == pytest.approx(prompt_audible_seconds(spoken))
    assert heard > 1.0
    assert abs(heard - prompt_audible_seconds(generic)) > 0.2


@pytest.mark.sipp
@pytest.mark.slow
@needs_sipp
@pytest.mark.parametrize("synthesizer", ["slow", "fails"])
async def test_a_slow_or_failing_synthesizer_falls_back_to_the_generic_prompt(
    tmp_path: Path, synthesizer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The rep hears the shipped prompt (logged at info with the reason) and, pressing 1, is
    bridged as usual: speech never holds a call up."""
    if synthesizer == "slow":
        command = script(tmp_path, "slow", "exec sleep 30")
        reason = "not ready yet"
    else:
        command = script(tmp_path, "fails", "echo 'no voice' >&2; exit 1")
        reason = "synthesis failed"
    generic = default_accept_prompt()
    caplog.set_level(logging.INFO, logger="dialer.calls")
    async with running(peer("calls_prospect_answer_hangup", pause_ms=200)) as (prospect,):
        speech = SpeechSettings(command=command)
        async with press1_controller(prospect, speech=speech) as calls, InProcessRep() as phone:
            pick_up = asyncio.Event()
            task = asyncio.create_task(press1_call(calls, phone, pick_up, generic.duration))
            await until(lambda: calls.source_prompts is not None)
            prompts = calls.source_prompts
            assert prompts is not None
            if synthesizer == "fails":
                await until(lambda: prompts.failed == 1)
            else:
                await asyncio.sleep(0.3)
            pick_up.set()
            result, heard = await task
        assert_ok(await prospect.wait(CALL_TIMEOUT_S))
    assert result is CallResult.COMPLETED
    assert heard == pytest.approx(prompt_audible_seconds(generic))
    fallbacks = [r for r in caplog.records if "generic prompt played" in r.getMessage()]
    assert len(fallbacks) == 1 and reason in fallbacks[0].getMessage()
    assert fallbacks[0].levelno == logging.INFO
