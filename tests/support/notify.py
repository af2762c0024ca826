"""Real local receivers for notification tests, and a small JSON Schema checker.

- :class:`WebhookReceiver`: an aiohttp server on 127.0.0.1 that verifies ``Dialer-Signature``,
  keeps an idempotency store keyed by ``Idempotency-Key``, and can fail the first attempts.
- :class:`SmtpReceiver`: an ``aiosmtpd`` SMTP server on the test's own event loop.
- :func:`schema_errors`: the subset of JSON Schema 2020-12 that ``webhook.schema.json`` uses
  (``jsonschema`` is not a dependency of the project).
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from importlib import resources
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from dialer.notify.channels import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify_signature

# --------------------------------------------------------------------------- JSON Schema


def load_webhook_schema() -> dict[str, Any]:
    """The shipped ``dialer/notify/webhook.schema.json``."""
    text = resources.files("dialer.notify").joinpath("webhook.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}

_SUPPORTED = {
    "$schema", "$id", "title", "description", "type", "enum", "const", "required",
    "properties", "additionalProperties", "items", "minLength", "minimum", "pattern", "$ref",
    "oneOf", "format", "$defs",
}  # fmt: skip


def schema_errors(
    instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """Why ``instance`` does not match ``schema`` (empty: it matches)."""
    root = root if root is not None else schema
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise ValueError(f"schema keywords not supported by this checker: {sorted(unknown)}")
    errors: list[str] = []
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        errors += schema_errors(instance, root["$defs"][ref.removeprefix("#/$defs/")], root, path)
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return [*errors, f"{path}: expected {types}, got {type(instance).__name__}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} not in {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {instance!r}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{path}: {instance!r} does not match {schema['pattern']}")
    if _TYPES["number"](instance) and "minimum" in schema and instance < schema["minimum"]:
        errors.append(f"{path}: {instance} < {schema['minimum']}")
    if isinstance(instance, dict):
        for name in schema.get("required", ()):
            if name not in instance:
                errors.append(f"{path}: missing {name!r}")
        properties = schema.get("properties", {})
        for name, value in instance.items():
            if name in properties:
                errors += schema_errors(value, properties[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: unexpected property {name!r}")
    if isinstance(instance, list) and "items" in schema:
        for index, item in enumerate(instance):
            errors += schema_errors(item, schema["items"], root, f"{path}[{index}]")
    if "oneOf" in schema:
        matches = [not schema_errors(instance, sub, root, path) for sub in schema["oneOf"]]
        if sum(matches) != 1:
            errors.append(f"{path}: matches {sum(matches)} of oneOf (expected exactly 1)")
    return errors


# --------------------------------------------------------------------------- webhooks


@dataclass
class WebhookReceiver:
    """A webhook endpoint with an idempotency check, on 127.0.0.1.

    ``fail_first``: the first n attempts of every key answer ``fail_status``; with
    ``lost_ack`` the last of them is processed before failing (the answer "gets lost"), so
    the retry that follows is a duplicate the idempotency check must catch.
    ``fail_always``: every request fails (a dead endpoint). ``delay_s``: time per request.
    """

    secret: str
    fail_first: int = 0
    fail_status: int = 500
    fail_always: bool = False
    lost_ack: bool = False
    delay_s: float = 0.0
    slack: bool = False
    #: key -> payload, what the receiver's business logic processed (once per key).
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ("attempt" | "processed" | "duplicate", key) in arrival order.
    journal: list[tuple[str, str]] = field(default_factory=list)
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    bad_signatures: int = 0
    duplicates: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[Mapping[str, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _process(self, key: str, payload: dict[str, Any]) -> None:
        if key in self.processed:
            self.duplicates += 1
            self.journal.append(("duplicate", key))
            return
        self.processed[key] = payload
        self.journal.append(("processed", key))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            key = request.headers.get(IDEMPOTENCY_HEADER, "")
            self.headers.append(dict(request.headers))
            self.journal.append(("attempt", key))
            self.attempts[key] += 1
            if not self.slack:
                signature = request.headers.get(SIGNATURE_HEADER, "")
                if not verify_signature(self.secret, signature, body, now=time.time()):
                    self.bad_signatures += 1
                    return web.Response(status=400, text="bad signature")
            payload = json.loads(body)
            self.bodies.append(payload)
            if self.fail_always:
                return web.Response(status=self.fail_status, text="permanently broken")
            attempt = self.attempts[key]
            if attempt <= self.fail_first:
                if self.lost_ack and attempt == self.fail_first:
                    self._process(key, payload)
                return web.Response(status=self.fail_status, text=f"failing attempt {attempt}")
            self._process(key, payload)
            return web.Response(text="ok")
        finally:
            self.in_flight -= 1


# --------------------------------------------------------------------------- SMTP


class SmtpReceiver:
    """``aiosmtpd`` on the running loop; the first attempt of each message gets ``451``."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.attempts: collections.Counter[str] = collections.Counter()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="receiver.test"), "127.0.0.1", 0
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw)
        key = str(message.get(IDEMPOTENCY_HEADER, ""))
        self.attempts[key] += 1
        if self.attempts[key] <= self.fail_first:
            return "451 4.3.0 try again later"
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos]))
        return "250 OK"
