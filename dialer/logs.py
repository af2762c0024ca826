"""Structured logging: structlog in front, the stdlib ``logging`` tree behind it.

- JSON lines when the stream is not a TTY (or ``format = "json"``), a readable console
  rendering on a TTY (or ``format = "console"``).
- Context bound with :func:`bound` (``lead_id``, ``call_id``, ``rep`` ...) lives in
  ``contextvars``, so it appears on every line logged inside that context, including lines
  from the stdlib loggers of libraries (aiohttp, asyncpg).
- Everything logged through stdlib ``logging`` is rendered by the same pipeline.

Call :func:`configure_logging` once, at start-up, from the composition root or the CLI.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final, TextIO, cast

import structlog
from structlog.contextvars import bound_contextvars, clear_contextvars
from structlog.typing import FilteringBoundLogger, Processor

from dialer.config import LogConfig

__all__ = ["bound", "clear_context", "configure_logging", "get_logger"]

#: Re-exported so callers need not import structlog: ``with bound(lead_id=...):``.
bound = bound_contextvars
clear_context = clear_contextvars

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: Chatty libraries kept at WARNING: their INFO lines describe their internals, not ours.
_QUIET_LOGGERS: Final = ("pgserver", "asyncio", "aiohttp.access")


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """A structlog logger; ``name`` becomes the ``logger`` key of each line."""
    return cast(FilteringBoundLogger, structlog.get_logger(name))


def configure_logging(config: LogConfig | None = None, *, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to ``stream`` (default stderr) in one format."""
    config = config or LogConfig()
    stream = stream if stream is not None else sys.stderr
    level = _LEVELS[config.level]
    use_json = config.format == "json" or (config.format == "auto" and not _isatty(stream))

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(stream))

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Filtering here is cheaper than building an event dict that stdlib then drops.
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def _isatty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # closed stream
        return False
