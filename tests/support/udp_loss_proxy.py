"""A lossy UDP relay for fault tests: put it between the daemon and a SIPp peer.

The daemon sends to the proxy's port (a rep's ``sip_uri`` or the trunk's ``proxy`` point at
it); the proxy relays each datagram to the peer from one upstream socket per client address,
so the peer's answers and its own requests (BYE) come back through the proxy too. A seeded RNG
drops ``loss`` of the datagrams in each direction.

SIP names addresses inside messages: the peer's ``Contact`` (where the daemon sends ACK, BYE
and re-INVITEs) and ``Via`` carry the peer's real port. The proxy rewrites
``<host>:<peer port>`` to ``<host>:<proxy port>`` in the header part of the peer's datagrams,
so in-dialog requests cross the lossy path as well. Header rewriting never changes the body,
so ``Content-Length`` stays right.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Final

__all__ = ["LossStats", "UdpLossProxy"]

_HEADER_END: Final = b"\r\n\r\n"

Address = tuple[str, int]


@dataclass(slots=True)
class LossStats:
    """Datagrams seen and dropped, per direction."""

    to_peer: int = 0
    to_peer_dropped: int = 0
    from_peer: int = 0
    from_peer_dropped: int = 0

    @property
    def dropped(self) -> int:
        """Datagrams dropped in both directions."""
        return self.to_peer_dropped + self.from_peer_dropped


class _Downstream(asyncio.DatagramProtocol):
    """The proxy's public socket: datagrams from the daemon."""

    def __init__(self, proxy: UdpLossProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy._from_client(data, (addr[0], addr[1]))


class _Upstream(asyncio.DatagramProtocol):
    """One socket per client towards the peer: datagrams from the peer for that client."""

    def __init__(self, proxy: UdpLossProxy, client: Address) -> None:
        self.proxy = proxy
        self.client = client

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.proxy._from_peer(data, self.client)


class UdpLossProxy:
    """Relays UDP between clients and ``peer``, dropping ``loss`` of datagrams each way.

    Use as ``async with UdpLossProxy(peer, loss=0.2, seed=1) as proxy:``; ``proxy.port`` is
    where clients send.
    """

    def __init__(self, peer: Address, *, loss: float, seed: int, host: str = "127.0.0.1") -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1); got {loss!r}")
        self.peer = peer
        self.loss = loss
        self.host = host
        self.stats = LossStats()
        self._rng = random.Random(seed)
        self._downstream: asyncio.DatagramTransport | None = None
        self._upstreams: dict[Address, asyncio.DatagramTransport] = {}
        self._pending: dict[Address, list[bytes]] = {}
        self._peer_address = f"{peer[0]}:{peer[1]}".encode()
        self._proxy_address = b""

    @property
    def port(self) -> int:
        """The port clients send to."""
        if self._downstream is None:
            raise RuntimeError("proxy not started")
        return int(self._downstream.get_extra_info("sockname")[1])

    async def start(self) -> None:
        """Bind the public socket on a free port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Downstream(self), local_addr=(self.host, 0)
        )
        self._downstream = transport
        self._proxy_address = f"{self.host}:{self.port}".encode()

    async def close(self) -> None:
        """Close every socket."""
        for transport in self._upstreams.values():
            transport.close()
        self._upstreams.clear()
        if self._downstream is not None:
            self._downstream.close()
            self._downstream = None

    async def __aenter__(self) -> UdpLossProxy:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _drop(self) -> bool:
        return self._rng.random() < self.loss

    def _from_client(self, data: bytes, client: Address) -> None:
        self.stats.to_peer += 1
        if self._drop():
            self.stats.to_peer_dropped += 1
            return
        upstream = self._upstreams.get(client)
        if upstream is not None:
            upstream.sendto(data, self.peer)
            return
        pending = self._pending.get(client)
        if pending is not None:  # the upstream socket is being opened
            pending.append(data)
            return
        self._pending[client] = [data]
        asyncio.get_running_loop().create_task(self._open_upstream(client))

    async def _open_upstream(self, client: Address) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), local_addr=(self.host, 0)
        )
        self._upstreams[client] = transport
        for data in self._pending.pop(client, []):
            transport.sendto(data, self.peer)

    def _from_peer(self, data: bytes, client: Address) -> None:
        self.stats.from_peer += 1
        if self._drop():
            self.stats.from_peer_dropped += 1
            return
        if self._downstream is not None:
            self._downstream.sendto(self._rewrite(data), client)

    def _rewrite(self, data: bytes) -> bytes:
        head, sep, body = data.partition(_HEADER_END)
        return head.replace(self._peer_address, self._proxy_address) + sep + body
