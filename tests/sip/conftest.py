"""Fixtures for the SIP engine tests (helpers live in ``tests/sip/helpers.py``)."""

from __future__ import annotations

import pytest

from tests.sip.helpers import Wire


@pytest.fixture
def wire() -> Wire:
    """An empty in-memory network at time 0."""
    return Wire()
