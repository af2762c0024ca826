"""Spoken press-1 prompts that name the lead's source: "New lead from <source>. Press 1 to connect."

With ``[media] speak_source = true`` the controller asks :class:`SourcePrompts` for the lead's
prompt as soon as the rep legs start ringing; the rep hears it if it is ready when they pick up,
and the shipped generic prompt otherwise (late, failed, no source). Nothing here ever delays a
call: synthesis runs beside the call and its result is only looked at, never awaited.

How one prompt is made:

1. the source is cleaned by :func:`sanitize_source` (letters, digits, spaces and ``.,&'-``;
   at most :data:`MAX_SOURCE_CHARS` characters, cut at a word) and put in the sentence;
2. ``espeak-ng --stdout`` runs as a subprocess (``asyncio.create_subprocess_exec``: an argument
   vector, never a shell), at most ``max_concurrent`` at once, killed with its process group
   after ``timeout_s``; its output (a 16-bit PCM WAV, 22.05 kHz) is read up to a bound;
3. the WAV becomes G.711 with :func:`sip.prompt_from_pcm_wav` (our resampler and companding
   tables) in a worker thread, so the loop keeps pacing the RTP of other calls meanwhile;
4. the prompt is kept in an LRU cache keyed by the cleaned source (a daemon sees a handful of
   sources, so most calls find their prompt already made).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass

from sip import Prompt, PromptError, prompt_from_pcm_wav

__all__ = [
    "DEFAULT_SPEECH_COMMAND",
    "MAX_SOURCE_CHARS",
    "SourcePrompts",
    "SpeechError",
    "SpeechSettings",
    "prompt_text",
    "sanitize_source",
]

_log = logging.getLogger("dialer.calls.prompts")

#: The synthesizer run unless ``[media] speech_command`` says otherwise (Debian ``espeak-ng``).
DEFAULT_SPEECH_COMMAND = "espeak-ng"
#: Longest source spoken (characters): "New lead from" plus a name, not a paragraph.
MAX_SOURCE_CHARS = 40
#: Punctuation kept in a source; the rest (``_``, ``/``, ``:``, tags, quotes...) becomes a space.
_KEPT_PUNCTUATION = frozenset(".,&'-")
#: Largest synthesizer output read (bytes): 60 s of 48 kHz 16-bit mono. A longer output is a
#: broken command, and reading it would only cost memory.
_MAX_OUTPUT_BYTES = 60 * 48_000 * 2
#: Bytes of the synthesizer's stderr kept for the log line of a failure.
_MAX_STDERR_BYTES = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechSettings:
    """How spoken prompts are made; every default is what the daemon uses."""

    #: The synthesizer: an ``espeak-ng`` compatible command (``--stdout``, ``-v``, ``-s``, text).
    command: str = DEFAULT_SPEECH_COMMAND
    #: espeak-ng voice and speed (words per minute), those of ``scripts/make_prompts.sh``.
    voice: str = "en-us"
    speed_wpm: int = 160
    #: Longest one synthesis may run before it is killed (it normally takes ~20 ms).
    timeout_s: float = 2.0
    #: Synthesizers running at once (the machine's cores belong to the calls).
    max_concurrent: int = 2
    #: Syntheses running or queued at once; beyond it a call plays the generic prompt.
    max_pending: int = 64
    #: Prompts kept (least recently used dropped first).
    cache_size: int = 64


class SpeechError(Exception):
    """A synthesis that gave no prompt (timeout, exit status, bad output); says why."""


def sanitize_source(source: str | None, *, max_chars: int = MAX_SOURCE_CHARS) -> str | None:
    """The lead's source as it may be spoken, or None when nothing speakable is left.

    Letters and digits (any script), spaces and ``.,&'-`` are kept; any other character
    separates words; runs of spaces collapse; a source longer than ``max_chars`` is cut at the
    last whole word. ``"google_ads"`` -> ``"google ads"``, ``"<script>"`` -> ``"script"``.
    """
    if not source:
        return None
    characters = [
        ch if ch.isalnum() or ch in _KEPT_PUNCTUATION else " "
        for ch in unicodedata.normalize("NFKC", source)
    ]
    words = "".join(characters).split()
    text = ""
    for word in words:
        candidate = f"{text} {word}" if text else word
        if len(candidate) > max_chars:
            if not text:
                text = word[:max_chars]
            break
        text = candidate
    text = text.strip(".,&'- ")
    return text or None


def prompt_text(source: str) -> str:
    """The sentence spoken for a (sanitized) source."""
    return f"New lead from {source}. Press 1 to connect."


class SourcePrompts:
    """Makes and caches the spoken prompt of each lead source (module docstring).

    Driven by the application only: :meth:`request` when a call starts ringing, :meth:`close`
    on shutdown. Must be used from the event loop.
    """

    def __init__(self, settings: SpeechSettings | None = None) -> None:
        self.settings = settings or SpeechSettings()
        self._cache: OrderedDict[str, Prompt] = OrderedDict()
        self._pending: dict[str, asyncio.Task[Prompt]] = {}
        self._slots = asyncio.Semaphore(self.settings.max_concurrent)
        #: Prompts made, syntheses that failed, requests answered from the cache.
        self.synthesized = 0
        self.failed = 0
        self.cache_hits = 0

    def request(self, source: str | None) -> asyncio.Future[Prompt] | None:
        """The prompt of ``source``: a future that is done at once when cached, or the
        synthesis under way (shared by every call of that source). None when the source has
        nothing to speak or too many syntheses are pending (then play the generic prompt)."""
        key = sanitize_source(source)
        if key is None:
            return None
        loop = asyncio.get_running_loop()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            done: asyncio.Future[Prompt] = loop.create_future()
            done.set_result(cached)
            return done
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        if len(self._pending) >= self.settings.max_pending:
            _log.info(
                "spoken prompt for %r not started: %d syntheses pending", key, len(self._pending)
            )
            return None
        task = loop.create_task(self._synthesize(key), name=f"speak source {key!r}")
        self._pending[key] = task
        task.add_done_callback(lambda done_task: self._finished(key, done_task))
        return task

    def cached(self, source: str | None) -> Prompt | None:
        """The cached prompt of ``source``, if any (does not start a synthesis)."""
        key = sanitize_source(source)
        return self._cache.get(key) if key is not None else None

    async def close(self) -> None:
        """Stop every synthesis under way (their subprocesses are killed)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------------------------

    def _finished(self, key: str, task: asyncio.Task[Prompt]) -> None:
        self._pending.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so asyncio never reports it as lost
        if error is None:
            self.synthesized += 1
            return
        self.failed += 1
        _log.info("spoken prompt for %r failed: %s", key, error)

    async def _synthesize(self, key: str) -> Prompt:
        async with self._slots:
            data = await self._run(prompt_text(key))
        try:
            # CPU work of a few tens of milliseconds: off the loop, which paces RTP.
            prompt = await asyncio.to_thread(
                prompt_from_pcm_wav, data, name=f"spoken prompt ({key})"
            )
        except PromptError as error:
            raise SpeechError(f"unusable synthesizer output: {error}") from None
        self._cache[key] = prompt
        self._cache.move_to_end(key)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        return prompt

    async def _run(self, text: str) -> bytes:
        settings = self.settings
        argv = [settings.command, "--stdout", "-v", settings.voice, "-s", str(settings.speed_wpm)]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                text,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so that a timeout kills a wrapper script's children too.
                start_new_session=True,
            )
        except OSError as error:
            raise SpeechError(f"cannot run {settings.command}: {error.strerror}") from None
        try:
            async with asyncio.timeout(settings.timeout_s):
                assert process.stdout is not None and process.stderr is not None
                output, errors = await asyncio.gather(
                    _read_bounded(process.stdout, _MAX_OUTPUT_BYTES),
                    _read_bounded(process.stderr, _MAX_STDERR_BYTES, drain=True),
                )
                if len(output) > _MAX_OUTPUT_BYTES:
                    raise SpeechError(
                        f"{settings.command} wrote more than {_MAX_OUTPUT_BYTES} bytes"
                    )
                status = await process.wait()
        except TimeoutError:
            raise SpeechError(
                f"{settings.command} took longer than {settings.timeout_s:g} s"
            ) from None
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if status != 0:
            detail = errors.decode("utf-8", "replace").strip().splitlines()
            raise SpeechError(
                f"{settings.command} exited with status {status}"
                + (f": {detail[-1]}" if detail else "")
            )
        return output


async def _read_bounded(stream: asyncio.StreamReader, limit: int, *, drain: bool = False) -> bytes:
    """The stream until EOF, at most ``limit + 1`` bytes of it (more: the caller sees too
    much). With ``drain`` the rest is read and dropped, so a chatty stderr cannot block the
    process; without it reading stops and the caller kills the process."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        if size <= limit:
            kept = chunk[: limit + 1 - size]
            chunks.append(kept)
            size += len(kept)
        if size > limit and not drain:
            break
    return b"".join(chunks)
