"""The ``dialer`` command line: ``run``, ``demo``, ``migrate``.

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in :func:`build_parser`
(``add_parser`` + ``set_defaults(handler=...)``): adding one is two lines there and one function.

Exit codes: 0 success (including a graceful shutdown), 1 the daemon could not start (port in
use, database unreachable ...), 2 usage or configuration error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import asyncpg

from dialer.config import Config, ConfigError, LogConfig, load_config, parse_hostport
from dialer.logs import configure_logging
from dialer.routing import Router
from dialer.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from dialer.store.migrate import MigrationError, apply_migrations

__all__ = ["build_parser", "main"]

EXIT_OK: Final = 0
EXIT_START_FAILED: Final = 1
EXIT_USAGE: Final = 2

_START_ERRORS: Final = (
    OSError,
    EmbeddedPostgresError,
    MigrationError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class _StartError(Exception):
    """The daemon could not start; the message is the one line shown to the user."""


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# --------------------------------------------------------------------------- run


def _cmd_run(args: argparse.Namespace) -> int:
    from dialer.app import run_async, serve

    config = load_config(args.config)
    # Compile the rules now: a bad rule is a config error (one line, exit 2), not a traceback.
    Router(config)
    if not config.api.tokens and not config.api.allow_anonymous:
        raise ConfigError(
            "api.tokens",
            "no API tokens configured; set [api] tokens (or DIALER_API_TOKENS), "
            "or set [api] allow_anonymous = true to run without authentication",
        )
    configure_logging(config.log)
    run_async(serve(config))
    return EXIT_OK


# --------------------------------------------------------------------------- route explain


def _cmd_route_explain(args: argparse.Namespace) -> int:
    from dialer.routing_cli import explain_command

    return explain_command(args.config, args.lead, as_json=args.json)


# --------------------------------------------------------------------------- migrate


async def _migrate(config: Config) -> list[str]:
    embedded: EmbeddedPostgres | None = None
    dsn = config.database.url
    if not dsn:
        embedded = EmbeddedPostgres(config.database.data_dir)
        dsn = await embedded.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            applied = await apply_migrations(conn)
        finally:
            await conn.close()
    finally:
        if embedded is not None:
            await embedded.stop()
    return [migration.name for migration in applied]


def _cmd_migrate(args: argparse.Namespace) -> int:
    from dialer.app import run_async

    config = load_config(args.config)
    configure_logging(config.log)
    applied = run_async(_migrate(config))
    if applied:
        _out("applied: " + ", ".join(applied))
    else:
        _out("database is up to date")
    return EXIT_OK


# --------------------------------------------------------------------------- demo


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _cmd_demo(args: argparse.Namespace) -> int:
    from dialer.app import run_async

    config = load_config(args.config)
    host, port = parse_hostport(args.listen or config.api.listen)
    if port and not _port_free(host, port):
        _out(f"dialer demo: {host}:{port} is in use, using a free port instead")
        port = 0
    shown = f"[{host}]" if ":" in host else host
    config = dataclasses.replace(
        config,
        api=dataclasses.replace(config.api, listen=f"{shown}:{port}"),
        database=dataclasses.replace(
            config.database, data_dir=args.data_dir or config.database.data_dir
        ),
        log=LogConfig(level=args.log_level, format=config.log.format),
    )
    configure_logging(config.log)
    # --- pipeline (issue 7): the demo runs SIPp phones and the daemon (dialer.demo) ---
    from dialer.demo import DemoOptions, run_demo
    from dialer.sipp import SippError

    options = DemoOptions(
        exit_after_posting=args.exit_after_posting, exit_when_settled=args.exit_when_settled
    )
    try:
        run_async(run_demo(config, options=options))
    except SippError as exc:
        _err(f"dialer demo: {_one_line(exc)}")
        return EXIT_START_FAILED
    # --- end pipeline ---
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets ``handler``."""
    parser = argparse.ArgumentParser(
        prog="dialer", description="Push-model speed-to-lead dialer daemon."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--config", type=Path, default=None, help="TOML config file")
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser(
        "demo", help="run the daemon on embedded defaults and post sample leads to it"
    )
    demo.add_argument("--config", type=Path, default=None, help="optional TOML config file")
    demo.add_argument("--listen", default=None, help="host:port (default 127.0.0.1:8080)")
    demo.add_argument("--data-dir", type=Path, default=None, help="embedded PostgreSQL data")
    demo.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error", "critical"],
        help="daemon log level (default warning, to keep the demo output readable)",
    )
    demo.add_argument(
        "--exit-after-posting",
        action="store_true",
        help="stop after printing the timelines instead of running until Ctrl-C",
    )
    demo.add_argument(  # pipeline (issue 7)
        "--exit-when-settled",
        action="store_true",
        help="follow the live timelines until every sample lead is settled, then stop",
    )
    demo.set_defaults(handler=_cmd_demo)

    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--config", type=Path, default=None, help="TOML config file")
    migrate.set_defaults(handler=_cmd_migrate)

    route = commands.add_parser("route", help="inspect routing decisions without placing calls")
    route_commands = route.add_subparsers(dest="route_command", metavar="COMMAND", required=True)
    explain = route_commands.add_parser(
        "explain", help="show which rule, reps, ring plan, SLA and compliance verdict a lead gets"
    )
    explain.add_argument("--config", type=Path, default=None, help="TOML config file")
    explain.add_argument("lead", type=Path, help="JSON file with the lead, as POSTed")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.set_defaults(handler=_cmd_route_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dialer`` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except _START_ERRORS as exc:
        _err(f"dialer: error: {_one_line(exc)}")
        return EXIT_START_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
