"""A sans-I/O SIP stack (RFC 3261) with one thin asyncio adapter.

The protocol core in this package imports no asyncio, socket, time or random module: bytes and
an explicit ``now`` go in, events and bytes come out, and timers are data (``get_timer()`` /
``handle_timer(now)``). Only :mod:`sip.aio` touches sockets and the event loop.
"""

from __future__ import annotations

__all__: list[str] = []
