"""RFC 3261 §12 dialogs: the state two user agents share for the life of a call.

A :class:`Dialog` is created from the INVITE / 2xx (or 1xx with a To tag) exchange, keeps the
tags, CSeq counters, route set and remote target, and builds every in-dialog request (ACK for
2xx, BYE, re-INVITE, INFO, OPTIONS). It validates in-dialog requests from the peer (CSeq
order, §12.2.2) and refreshes the remote target from target-refresh requests and responses.
It sends nothing: the :class:`~sip.ua.UserAgent` wraps each dialog, hands it the messages its
transactions deliver and sends what the dialog builds.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from .errors import LocalProtocolError, RemoteProtocolError
from .headers import Headers, NameAddr
from .message import Request, Response
from .uri import URI, SipURI, parse_uri

__all__ = ["Dialog", "DialogId", "DialogState"]

#: (Call-ID, local tag, remote tag): the dialog identifier of RFC 3261 §12.
DialogId = tuple[str, str, str]


class DialogState(enum.Enum):
    """The states of a dialog (RFC 3261 §12)."""

    #: Created by a provisional response with a To tag; can still be replaced or vanish.
    EARLY = "early"
    #: A 2xx was sent or received.
    CONFIRMED = "confirmed"
    #: BYE was sent or received (or the dialog failed with 408/481).
    TERMINATED = "terminated"


class Dialog:
    """One dialog, seen from our side (we are its UAC or its UAS).

    ``local_party`` / ``remote_party`` are the complete From / To header values of the
    requests we send in the dialog (tags included); ``route_set`` is the list of ``Route``
    values in the order they are sent; ``remote_target`` is the peer's Contact URI.
    """

    __slots__ = (
        "call_id",
        "is_uac",
        "local_contact",
        "local_party",
        "local_seq",
        "local_tag",
        "remote_party",
        "remote_seq",
        "remote_tag",
        "remote_target",
        "route_set",
        "state",
    )

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_party: str,
        remote_party: str,
        local_seq: int,
        remote_seq: int | None,
        route_set: list[str],
        remote_target: URI,
        local_contact: str,
        is_uac: bool,
        state: DialogState,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_party = local_party
        self.remote_party = remote_party
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.route_set = route_set
        self.remote_target = remote_target
        self.local_contact = local_contact
        self.is_uac = is_uac
        self.state = state

    def __repr__(self) -> str:
        role = "uac" if self.is_uac else "uas"
        return f"<Dialog {role} {self.id} {self.state.value}>"

    @property
    def id(self) -> DialogId:
        """The dialog identifier (Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def from_uac(cls, request: Request, response: Response, *, local_contact: str) -> Dialog:
        """The dialog a response with a To tag creates for the UAC (RFC 3261 §12.1.2).

        The route set is the response's Record-Route in reverse order; the remote target is
        the response's Contact. Raises :class:`RemoteProtocolError` when the response has no
        To tag (a 2xx without a To tag cannot create a dialog).
        """
        remote_tag = response.to.tag
        if not remote_tag:
            raise RemoteProtocolError("response without a To tag cannot create a dialog")
        local_tag = request.from_.tag
        if not local_tag:
            raise LocalProtocolError("dialog-creating request without a From tag")
        routes = [str(r) for r in response.record_route]
        routes.reverse()
        target = _contact_uri(response.contacts, fallback=request.uri)
        local_party = request.headers.get("From")
        remote_party = response.headers.get("To")
        assert local_party is not None and remote_party is not None
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=local_party,
            remote_party=remote_party,
            local_seq=request.cseq.seq,
            remote_seq=None,
            route_set=routes,
            remote_target=target,
            local_contact=local_contact,
            is_uac=True,
            state=DialogState.CONFIRMED if response.status >= 200 else DialogState.EARLY,
        )

    @classmethod
    def from_uas(cls, request: Request, *, local_tag: str, local_contact: str) -> Dialog:
        """The dialog our response with a To tag creates for the UAS (RFC 3261 §12.1.1).

        The route set is the request's Record-Route in order; the remote target is the
        request's Contact. The dialog starts early; :meth:`confirm` when the 2xx is sent.
        """
        remote_tag = request.from_.tag
        if not remote_tag:
            raise RemoteProtocolError("dialog-creating request without a From tag")
        contacts = request.contacts
        if not contacts:
            raise RemoteProtocolError("dialog-creating request without a Contact")
        routes = [str(r) for r in request.record_route]
        remote_party = request.headers.get("From")
        assert remote_party is not None
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_party=str(request.to.with_tag(local_tag)),
            remote_party=remote_party,
            local_seq=0,
            remote_seq=request.cseq.seq,
            route_set=routes,
            remote_target=contacts[0].uri,
            local_contact=local_contact,
            is_uac=False,
            state=DialogState.EARLY,
        )

    def confirm(self) -> None:
        """Move an early dialog to confirmed (a 2xx was sent or received)."""
        if self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """Mark the dialog terminated (BYE sent or received, or 408/481 on a request)."""
        self.state = DialogState.TERMINATED

    def update_from_response(self, response: Response, method: str) -> None:
        """Apply a response to a request we sent in this dialog (or to the INVITE that made it).

        A 2xx confirms an early dialog and recomputes its route set (§12.1.2); a 2xx to a
        target-refresh request (INVITE) updates the remote target from Contact (§12.2.1.2).
        """
        if response.status >= 300 or response.status < 200:
            return
        if method == "INVITE":
            if self.state is DialogState.EARLY and self.is_uac:
                routes = [str(r) for r in response.record_route]
                routes.reverse()
                self.route_set = routes
            contacts = response.contacts
            if contacts:
                self.remote_target = contacts[0].uri
        self.confirm()

    def receive_request(self, request: Request) -> None:
        """Validate an in-dialog request from the peer and update the dialog (§12.2.2).

        Raises :class:`RemoteProtocolError` with ``status_hint`` 500 when the CSeq number is
        lower than the last one (an out-of-order request). ACK and CANCEL carry the INVITE's
        number and are not checked. A re-INVITE with a Contact refreshes the remote target.
        """
        method = request.method
        if method in {"ACK", "CANCEL"}:
            return
        seq = request.cseq.seq
        if self.remote_seq is not None and seq <= self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} not above {self.remote_seq} in this dialog", status_hint=500
            )
        self.remote_seq = seq
        if method == "INVITE":
            contacts = request.contacts
            if contacts:
                self.remote_target = contacts[0].uri

    def next_seq(self) -> int:
        """Increment and return the local CSeq number for a new request (§12.2.1.1)."""
        self.local_seq += 1
        return self.local_seq

    def _uri_and_routes(self) -> tuple[URI, list[str]]:
        """Request-URI and Route values per §12.2.1.1 (loose and strict routing)."""
        routes = self.route_set
        if not routes:
            return self.remote_target, []
        first = routes[0]
        first_uri = _route_uri(first)
        if isinstance(first_uri, SipURI) and first_uri.has_param("lr"):
            return self.remote_target, list(routes)
        # Strict routing: the first route becomes the Request-URI, the remote target the
        # last Route.
        return first_uri, [*routes[1:], f"<{self.remote_target}>"]

    def next_hop_uri(self) -> URI:
        """Where in-dialog requests go: the first route's URI, else the remote target."""
        if self.route_set:
            return _route_uri(self.route_set[0])
        return self.remote_target

    def create_request(
        self,
        method: str,
        *,
        via: str,
        seq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """A request inside this dialog (§12.2.1.1).

        ``via`` is the complete Via value (the UA owns branches and its sent-by). ``seq``
        defaults to the next local CSeq number; ACK (for a 2xx) and CANCEL must pass the
        INVITE's number.
        """
        if self.state is DialogState.TERMINATED and method != "ACK":
            raise LocalProtocolError(f"cannot send {method} in a terminated dialog")
        if seq is None:
            seq = self.next_seq()
        uri, routes = self._uri_and_routes()
        items: list[tuple[str, str]] = [("Via", via)]
        for route in routes:
            items.append(("Route", route))
        items.append(("From", self.local_party))
        items.append(("To", self.remote_party))
        items.append(("Call-ID", self.call_id))
        items.append(("CSeq", f"{seq} {method}"))
        if method == "INVITE":
            items.append(("Contact", self.local_contact))
        items.extend(extra_headers)
        if body and content_type is not None:
            items.append(("Content-Type", content_type))
        return Request(method, uri, Headers(items), body)


def _route_uri(value: str) -> URI:
    start = value.find("<")
    end = value.find(">", start + 1)
    if start >= 0 and end > start:
        return parse_uri(value[start + 1 : end])
    return parse_uri(value.strip())


def _contact_uri(contacts: Sequence[NameAddr], *, fallback: URI) -> URI:
    return contacts[0].uri if contacts else fallback
