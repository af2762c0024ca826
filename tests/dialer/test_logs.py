"""dialer.logs: JSON lines off a TTY, bound context on every line, stdlib routed through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from dialer.config import LogConfig
from dialer.logs import bound, configure_logging, get_logger


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_when_not_a_tty_with_bound_context() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="info", format="auto"), stream=stream)
    log = get_logger("dialer.test")
    with bound(lead_id="L1", rep="alice"):
        log.info("ringing", call_id="c-9")
        logging.getLogger("some.library").warning("stdlib says %s", "hi")
    log.info("outside")
    log.debug("hidden at info")
    first, second, third = lines(stream)
    assert first["event"] == "ringing" and first["lead_id"] == "L1" and first["rep"] == "alice"
    assert first["call_id"] == "c-9" and first["level"] == "info"
    assert first["logger"] == "dialer.test" and str(first["timestamp"]).endswith("Z")
    assert second["event"] == "stdlib says hi" and second["lead_id"] == "L1"
    assert second["logger"] == "some.library" and second["level"] == "warning"
    assert "lead_id" not in third


def test_exceptions_are_rendered_into_the_json_line() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("dialer.test").exception("failed")
    (line,) = lines(stream)
    assert line["event"] == "failed" and "ValueError: boom" in str(line["exception"])


def test_console_format_on_a_tty() -> None:
    stream = FakeTty()
    configure_logging(LogConfig(format="auto"), stream=stream)
    with bound(lead_id="L2"):
        get_logger("dialer.test").info("hello")
    text = stream.getvalue()
    assert "hello" in text and "lead_id" in text and "L2" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_level_filters_structlog_and_stdlib() -> None:
    stream = io.StringIO()
    configure_logging(LogConfig(level="warning", format="json"), stream=stream)
    get_logger("x").info("dropped")
    logging.getLogger("y").info("dropped too")
    get_logger("x").warning("kept")
    assert [line["event"] for line in lines(stream)] == ["kept"]
