"""The layer rules of DESIGN §2, checked on the source: who may import what."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The parts of ``sip`` the daemon may import: the public API and the asyncio adapter.
PUBLIC_SIP_MODULES = frozenset({"sip", "sip.aio", "sip.aio.rtp"})
#: Modules that must stay pure (no I/O): routing decisions and shared values.
PURE_PACKAGES = ("dialer/routing", "dialer/domain.py")
IO_MODULES = frozenset({"asyncio", "asyncpg", "aiohttp", "socket", "subprocess", "uvloop"})


def _python_files(relative: str) -> list[Path]:
    path = ROOT / relative
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


@pytest.mark.parametrize("path", _python_files("dialer"), ids=lambda p: str(p.relative_to(ROOT)))
def test_dialer_uses_only_the_public_sip_api(path: Path) -> None:
    private = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for line, module in _imported_modules(path)
        if (module == "sip" or module.startswith("sip.")) and module not in PUBLIC_SIP_MODULES
    ]
    assert not private, "import these from `sip` (sip/__init__.py) instead:\n" + "\n".join(private)


@pytest.mark.parametrize("path", _python_files("sip"), ids=lambda p: str(p.relative_to(ROOT)))
def test_sip_knows_nothing_about_the_daemon(path: Path) -> None:
    leaks = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for line, module in _imported_modules(path)
        if module == "dialer" or module.startswith("dialer.")
    ]
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize(
    "path",
    [p for package in PURE_PACKAGES for p in _python_files(package)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_routing_and_domain_are_pure(path: Path) -> None:
    io = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for line, module in _imported_modules(path)
        if module.split(".")[0] in IO_MODULES
        or module.startswith(("dialer.store", "dialer.api", "dialer.pipeline", "dialer.calls"))
    ]
    assert not io, "routing and domain do no I/O (DESIGN §2):\n" + "\n".join(io)
