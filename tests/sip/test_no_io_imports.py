"""The sans-I/O rule, checked on the source: only the sip/aio/ package may touch I/O, clocks or
randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIP_DIR = Path(__file__).resolve().parents[2] / "sip"

#: Modules the protocol core must not import (STYLE rule 1; DESIGN §3).
BANNED = frozenset(
    {"asyncio", "socket", "time", "random", "secrets", "select", "selectors", "threading", "ssl"}
)
#: Attribute calls that read a clock even without importing ``time``.
BANNED_CALLS = frozenset({("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today")})
#: The asyncio adapter package (sockets, the loop clock, secrets): everything under sip/aio/.
ADAPTER_DIR = SIP_DIR / "aio"


def core_modules() -> list[Path]:
    """Every Python file of ``sip/`` outside the adapter package, at any depth."""
    return sorted(p for p in SIP_DIR.rglob("*.py") if ADAPTER_DIR not in p.parents)


def violations(source: str) -> list[str]:
    """Banned imports and clock reads in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in BANNED]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and node.module.split(".")[0] in BANNED:
                found.append(node.module)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name | ast.Attribute)
            and (getattr(node.value, "id", None) or getattr(node.value, "attr", None), node.attr)
            in BANNED_CALLS
        ):
            found.append(f"{ast.unparse(node)}")
    return found


def test_the_core_modules_exist() -> None:
    names = {p.name for p in core_modules()}
    assert {"transaction.py", "dialog.py", "ua.py", "events.py", "config.py"} <= names
    assert {"rtp.py", "dtmf.py", "g711.py", "prompt.py"} <= names


def test_the_adapter_is_a_package_and_the_old_module_is_gone() -> None:
    # A stray sip/aio.py beside the package would be shadowed silently and escape the check.
    assert (ADAPTER_DIR / "__init__.py").is_file()
    assert (ADAPTER_DIR / "rtp.py").is_file()
    assert not (SIP_DIR / "aio.py").exists()
    assert all(ADAPTER_DIR not in p.parents for p in core_modules())


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(SIP_DIR)))
def test_core_module_does_no_io(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", ["asyncio"]),
        ("import time as t", ["time"]),
        ("from socket import socket", ["socket"]),
        ("import os.path, selectors", ["selectors"]),
        ("from datetime import datetime\nx = datetime.now()", ["datetime.now"]),
        ("import datetime\nx = datetime.datetime.utcnow()", ["datetime.datetime.utcnow"]),
        ("from . import time_utils\nimport hashlib", []),
    ],
)
def test_the_checker_catches_what_it_should(source: str, expected: list[str]) -> None:
    assert violations(source) == expected
