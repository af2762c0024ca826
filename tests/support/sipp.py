"""Helpers for tests that run SIPp (tests/dialer/test_sipp.py, tests/sip/test_interop_sipp.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from dialer.sipp import SippPeer, SippProcess, SippResult

#: Interop-only scenarios (the packaged ones live in dialer/scenarios/).
TEST_SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"

#: For every test that runs SIPp (with ``@pytest.mark.sipp``): skips, naming the package to
#: install, when the binary is missing.
needs_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None,
    reason="sipp not installed (Debian package sip-tester; scripts/install-system-deps.sh)",
)


def test_scenario(name: str) -> Path:
    """Path of an interop scenario in tests/scenarios by name (without .xml)."""
    path = TEST_SCENARIOS / f"{name}.xml"
    assert path.is_file(), f"no scenario {path}"
    return path


test_scenario.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def run_pair(
    server: SippPeer, client: SippPeer, *, timeout: float = 20.0
) -> tuple[SippResult, SippResult]:
    """Run a SIPp answering ``server`` and a SIPp ``client`` calling it; both results.

    The client's ``remote`` is set to the server's address. Both processes are stopped (and
    reaped) whatever happens.
    """
    async with SippProcess(server) as uas:
        caller = dataclasses.replace(client, remote=uas.address, transport=server.transport)
        async with SippProcess(caller) as uac:
            client_result = await uac.wait(timeout)
        server_result = await uas.wait(timeout)
    return server_result, client_result
