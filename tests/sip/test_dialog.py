"""RFC 3261 §12 dialogs: creation on both sides, route sets, in-dialog requests, CSeq rules."""

from __future__ import annotations

import pytest

from sip.dialog import Dialog, DialogState
from sip.errors import LocalProtocolError, RemoteProtocolError
from sip.message import Request, Response, parse_message

CONTACT = "<sip:dialer@127.0.0.1:5060>"
VIA = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnew"

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=a73kszlfl\r\n'
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@client.atlanta.example.com>\r\n"
    b"Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv\r\n"
    b"Record-Route: <sip:p2.example.com;lr>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b'From: "Alice" <sip:alice@atlanta.example.com>;tag=a73kszlfl\r\n'
    b"To: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@atlanta.example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:bob@192.0.2.4>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def state_of(dialog: Dialog) -> DialogState:
    """Read through a call: mypy would narrow ``dialog.state`` across assertions."""
    return dialog.state


def uac_dialog() -> Dialog:
    return Dialog.from_uac(request(INVITE), response(OK), local_contact=CONTACT)


def test_uac_dialog_from_2xx() -> None:
    dialog = uac_dialog()
    assert dialog.id == ("1j9FpLxk3uxtm8tn@atlanta.example.com", "a73kszlfl", "314159")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.is_uac
    # §12.1.2: the UAC's route set is the Record-Route of the response, reversed.
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:bob@192.0.2.4"
    assert dialog.local_seq == 1
    assert dialog.remote_seq is None


def test_uac_dialog_from_provisional_is_early_and_2xx_confirms_it() -> None:
    ringing = response(OK.replace(b"200 OK", b"180 Ringing"))
    dialog = Dialog.from_uac(request(INVITE), ringing, local_contact=CONTACT)
    assert dialog.state is DialogState.EARLY
    final = response(
        OK.replace(b"Record-Route: <sip:p1.example.com;lr>\r\n", b"").replace(
            b"192.0.2.4", b"192.0.2.9"
        )
    )
    dialog.update_from_response(final, "INVITE")
    assert state_of(dialog) is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:p2.example.com;lr>"]  # recomputed from the 2xx
    assert str(dialog.remote_target) == "sip:bob@192.0.2.9"


def test_response_without_to_tag_cannot_make_a_dialog() -> None:
    untagged = response(OK.replace(b";tag=314159", b""))
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uac(request(INVITE), untagged, local_contact=CONTACT)


def test_bye_uses_route_set_remote_target_and_next_cseq() -> None:
    dialog = uac_dialog()
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:bob@192.0.2.4"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.headers.get("From") == '"Alice" <sip:alice@atlanta.example.com>;tag=a73kszlfl'
    assert bye.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=314159"
    assert str(bye.cseq) == "2 BYE"
    assert bye.headers.get("Contact") is None
    reinvite = dialog.create_request(
        "INVITE", via=VIA, body=b"v=0\r\n", content_type="application/sdp"
    )
    assert str(reinvite.cseq) == "3 INVITE"
    assert reinvite.headers.get("Contact") == CONTACT
    assert reinvite.content_type == "application/sdp"
    assert dialog.next_hop_uri() == bye.route[0].uri
    # The wire form parses back to the same request.
    assert parse_message(bye.serialize()) == bye


def test_ack_for_2xx_keeps_the_invite_cseq_number() -> None:
    dialog = uac_dialog()
    ack = dialog.create_request("ACK", via=VIA, seq=1)
    assert str(ack.cseq) == "1 ACK"
    assert dialog.local_seq == 1


def test_strict_router_becomes_the_request_uri() -> None:
    strict = response(OK.replace(b"<sip:p1.example.com;lr>", b"<sip:p1.example.com>"))
    dialog = Dialog.from_uac(request(INVITE), strict, local_contact=CONTACT)
    assert dialog.route_set[0] == "<sip:p1.example.com>"
    bye = dialog.create_request("BYE", via=VIA)
    # §12.2.1.1: strict routing puts the first route in the Request-URI and the remote target
    # at the end of the Route set.
    assert str(bye.uri) == "sip:p1.example.com"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:bob@192.0.2.4>"]


def test_uas_dialog_from_invite() -> None:
    dialog = Dialog.from_uas(request(INVITE), local_tag="b0b", local_contact=CONTACT)
    assert dialog.id == ("1j9FpLxk3uxtm8tn@atlanta.example.com", "b0b", "a73kszlfl")
    assert dialog.state is DialogState.EARLY
    assert not dialog.is_uac
    # §12.1.1: the UAS's route set is the request's Record-Route, in order.
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert str(dialog.remote_target) == "sip:alice@client.atlanta.example.com"
    assert dialog.remote_seq == 1
    dialog.confirm()
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.from_.tag == "b0b"
    assert bye.to.tag == "a73kszlfl"
    assert str(bye.cseq) == "1 BYE"  # the UAS's own CSeq space starts afresh


def test_uas_dialog_needs_contact_and_from_tag() -> None:
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(
            request(INVITE.replace(b"Contact: <sip:alice@client.atlanta.example.com>\r\n", b"")),
            local_tag="x",
            local_contact=CONTACT,
        )
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(
            request(INVITE.replace(b";tag=a73kszlfl", b"")), local_tag="x", local_contact=CONTACT
        )


def in_dialog(method: str, seq: int, contact: bytes = b"") -> Request:
    return request(
        f"{method} sip:dialer@127.0.0.1:5060 SIP/2.0\r\n".encode()
        + b"Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKx\r\n"
        b"From: Bob <sip:bob@biloxi.example.com>;tag=314159\r\n"
        b'To: "Alice" <sip:alice@atlanta.example.com>;tag=a73kszlfl\r\n'
        b"Call-ID: 1j9FpLxk3uxtm8tn@atlanta.example.com\r\n"
        + f"CSeq: {seq} {method}\r\n".encode()
        + contact
        + b"Content-Length: 0\r\n\r\n"
    )


def test_remote_cseq_must_increase() -> None:
    dialog = uac_dialog()
    dialog.receive_request(in_dialog("INFO", 5))
    assert dialog.remote_seq == 5
    with pytest.raises(RemoteProtocolError) as caught:
        dialog.receive_request(in_dialog("INFO", 5))
    assert caught.value.status_hint == 500
    dialog.receive_request(in_dialog("ACK", 1))  # ACK/CANCEL are not checked


def test_reinvite_refreshes_the_remote_target() -> None:
    dialog = uac_dialog()
    dialog.receive_request(in_dialog("INVITE", 10, b"Contact: <sip:bob@198.51.100.7>\r\n"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7"
    dialog.receive_request(in_dialog("INFO", 11, b"Contact: <sip:bob@203.0.113.1>\r\n"))
    assert str(dialog.remote_target) == "sip:bob@198.51.100.7"  # INFO is no target refresh


def test_terminated_dialog_refuses_new_requests_but_allows_ack() -> None:
    dialog = uac_dialog()
    dialog.terminate()
    assert dialog.state is DialogState.TERMINATED
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE", via=VIA)
    dialog.create_request("ACK", via=VIA, seq=1)
