"""The user agent: call flows between two UAs in memory and against scripted byte peers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip.auth import Credentials, verify_authorization
from sip.config import SipConfig
from sip.errors import LocalProtocolError
from sip.events import (
    AckReceived,
    CallAnswered,
    CallProgress,
    CallRejected,
    CallTerminated,
    IncomingCall,
    InfoReceived,
    ReInviteCompleted,
    ReInviteReceived,
    RequestCompleted,
    TerminationCause,
)
from sip.message import Request, Response
from sip.ua import CallState, UserAgent
from tests.sip.helpers import ANSWER, OFFER, PEER, A, B, Packet, Wire, events, only, response_bytes

BOB = "sip:bob@127.0.0.1:5070"
PEER_URI = "sip:peer@127.0.0.1:5080"


def requests(packets: list[Packet], method: str) -> list[Request]:
    out = []
    for packet in packets:
        if packet.is_request(method):
            message = packet.message
            assert isinstance(message, Request)
            out.append(message)
    return out


def responses(packets: list[Packet], status: int | None = None) -> list[Response]:
    out = []
    for packet in packets:
        if packet.data.startswith(b"SIP/2.0 "):
            message = packet.message
            assert isinstance(message, Response)
            if status is None or message.status == status:
                out.append(message)
    return out


def incoming_call(ua: UserAgent) -> IncomingCall:
    """The single pending event of ``ua``, which must be an IncomingCall."""
    (event,) = events(ua)
    assert isinstance(event, IncomingCall)
    return event


def setup_call(wire: Wire, *, offer: bytes = OFFER) -> tuple[UserAgent, UserAgent, str, str]:
    """A (caller) calls B, B answers; returns (a, b, caller leg, callee leg)."""
    a = wire.add(A, prefix="a")
    b = wire.add(B, prefix="b")
    leg = a.invite(BOB, wire.now, from_uri="sip:alice@127.0.0.1", body=offer)
    wire.deliver()
    incoming = events(b)
    assert isinstance(incoming[0], IncomingCall)
    b.accept(incoming[0].leg_id, wire.now, body=ANSWER)
    wire.deliver()
    return a, b, leg, incoming[0].leg_id


def outgoing_to_peer(wire: Wire, **kwargs: object) -> tuple[UserAgent, str, Request]:
    """A UA at A inviting the scripted peer; returns (ua, leg, the INVITE as sent)."""
    a = wire.add(A, prefix="a")
    leg = a.invite(PEER_URI, wire.now, from_uri="sip:alice@127.0.0.1", **kwargs)  # type: ignore[arg-type]
    invite = requests(wire.deliver(), "INVITE")[0]
    return a, leg, invite


# ---------------------------------------------------------------------- basic flows


def test_call_between_two_user_agents_and_clean_shutdown(wire: Wire) -> None:
    a = wire.add(A, prefix="a")
    b = wire.add(B, prefix="b")
    leg = a.invite(BOB, 0.0, from_uri="sip:alice@127.0.0.1", from_display="Lead: Ann", body=OFFER)
    wire.deliver()
    incoming = incoming_call(b)
    assert isinstance(incoming, IncomingCall)
    assert incoming.body == OFFER
    assert incoming.from_display == "Lead: Ann"
    invite = only(requests(wire.log, "INVITE"))
    assert incoming.call_id == invite.call_id
    assert (invite.headers.get("From") or "").startswith('"Lead: Ann" <sip:alice@127.0.0.1>;tag=')
    b.ring(incoming.leg_id, 0.0)
    wire.deliver()
    (progress,) = events(a)
    assert isinstance(progress, CallProgress)
    assert progress.status == 180
    b.accept(incoming.leg_id, 0.1, body=ANSWER)
    wire.deliver()
    (answered,) = events(a)
    assert isinstance(answered, CallAnswered)
    assert answered.body == ANSWER
    assert not answered.needs_ack
    (acked,) = events(b)
    assert isinstance(acked, AckReceived)
    assert a.call_state(leg) is CallState.ESTABLISHED
    assert b.call_state(incoming.leg_id) is CallState.ESTABLISHED
    assert a.bye(leg, 1.0)
    wire.deliver()
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended == CallTerminated(
        leg_id=leg, call_id=ended.call_id, cause=TerminationCause.LOCAL_BYE, status=200
    )
    (remote_end,) = events(b)
    assert isinstance(remote_end, CallTerminated)
    assert remote_end.cause is TerminationCause.REMOTE_BYE
    # Everything winds down by itself: Timer K/J/D/L/M, nothing left behind.
    wire.run_until(100.0)
    for ua in (a, b):
        assert ua.active_transactions == 0
        assert ua.active_legs == 0
        assert ua.get_timer() is None
    wire_counts = [p.first_line.split(" ")[0] for p in wire.log]
    assert wire_counts.count("INVITE") == 1
    assert wire_counts.count("ACK") == 1
    assert wire_counts.count("BYE") == 1


def test_bye_from_the_callee_side(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    caller_dialog = a.dialog(leg)
    assert b.bye(callee_leg, 1.0)
    packets = wire.deliver()
    bye = only(requests(packets, "BYE"))
    # The callee's BYE uses the caller's Contact as Request-URI and its own tag in From.
    assert str(bye.uri) == "sip:dialer@127.0.0.1:5060"
    assert caller_dialog is not None
    assert bye.from_.tag == caller_dialog.remote_tag
    assert bye.to.tag == caller_dialog.local_tag
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.REMOTE_BYE
    (local,) = events(b)
    assert isinstance(local, CallTerminated)
    assert local.cause is TerminationCause.LOCAL_BYE


def test_in_dialog_info_and_options(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    request_id = a.send_info(leg, 1.0, body=b"Signal=1\r\n", content_type="application/dtmf-relay")
    wire.deliver()
    (info,) = events(b)
    assert isinstance(info, InfoReceived)
    assert info == InfoReceived(
        leg_id=callee_leg,
        call_id=info.call_id,
        body=b"Signal=1\r\n",
        content_type="application/dtmf-relay",
    )
    (done,) = events(a)
    assert isinstance(done, RequestCompleted)
    assert (done.request_id, done.status, done.method, done.leg_id) == (
        request_id,
        200,
        "INFO",
        leg,
    )
    probe = b.send_options(callee_leg, 2.0)
    wire.deliver()
    (probed,) = events(b)
    assert isinstance(probed, RequestCompleted)
    assert probed.request_id == probe
    assert probed.status == 200


def test_in_dialog_cseq_going_backwards_gets_500(wire: Wire) -> None:
    a, _b, leg, _ = setup_call(wire)
    a.send_info(leg, 1.0, body=b"x", content_type="text/plain")
    info = only(requests(wire.deliver(), "INFO"))
    replay = (
        info.serialize()
        .replace(b"CSeq: 2 INFO", b"CSeq: 1 INFO")
        .replace(info.top_via.branch.encode() if info.top_via.branch else b"", b"z9hG4bKreplay")
    )
    answers = wire.inject(replay, A, B)
    assert only(responses(answers)).status == 500


def test_delayed_offer_ack_carries_the_answer(wire: Wire) -> None:
    a = wire.add(A, prefix="a")
    b = wire.add(B, prefix="b")
    leg = a.invite(BOB, 0.0, from_uri="sip:alice@127.0.0.1")  # no body: delayed offer
    wire.deliver()
    incoming = incoming_call(b)
    assert isinstance(incoming, IncomingCall)
    assert incoming.body == b""
    b.accept(incoming.leg_id, 0.0, body=OFFER)
    packets = wire.deliver()
    assert not requests(packets, "ACK")
    (answered,) = events(a)
    assert isinstance(answered, CallAnswered)
    assert answered.needs_ack
    assert answered.body == OFFER
    # The callee retransmits its 2xx; no ACK goes out until the application answers.
    packets = wire.run_until(0.6)
    assert responses(packets, 200)
    assert not requests(packets, "ACK")
    a.ack(leg, 0.7, body=ANSWER)
    ack = only(requests(wire.deliver(), "ACK"))
    assert ack.body == ANSWER
    assert ack.content_type == "application/sdp"
    (acked,) = events(b)
    assert isinstance(acked, AckReceived)
    assert acked.body == ANSWER
    with pytest.raises(LocalProtocolError):
        a.ack(leg, 0.8, body=ANSWER)


# ---------------------------------------------------------------------- UAC against a peer


def test_invite_timeout_gives_408_after_timer_b(wire: Wire) -> None:
    a, _leg, _ = outgoing_to_peer(wire, body=OFFER)
    packets = wire.run_until(40.0)
    assert len(requests(packets, "INVITE")) == 6  # + the first one: 7 in all
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)
    assert (rejected.status, rejected.response) == (408, None)
    assert a.active_legs == 0


def test_busy_is_rejected_and_acked_with_the_invite_branch(wire: Wire) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER)
    packets = wire.inject(response_bytes(invite, 486, "Busy Here"), PEER, A)
    ack = only(requests(packets, "ACK"))
    assert ack.top_via.branch == invite.top_via.branch
    assert ack.to.tag == "peer-tag"
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)
    assert rejected.status == 486
    assert rejected.reason == "Busy Here"


def test_2xx_retransmission_is_acked_again(wire: Wire) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER)
    ok = response_bytes(invite, 200, "OK", body=ANSWER)
    first = only(requests(wire.inject(ok, PEER, A), "ACK"))
    second = only(requests(wire.inject(ok, PEER, A), "ACK"))
    assert first == second
    assert first.top_via.branch != invite.top_via.branch  # the 2xx ACK is a new transaction
    assert str(first.uri) == "sip:peer@127.0.0.1:5080"  # the remote target (Contact)
    assert [type(e) for e in events(a)] == [CallAnswered]


def test_a_held_call_lets_its_set_up_go_after_timer_m(wire: Wire) -> None:
    # A bridged call can last an hour: the INVITE transaction (request, responses, wire
    # bytes) and the ACK kept for 2xx retransmissions are needed only for 64*T1 after the
    # 2xx (RFC 6026 §8.4), then let go; the dialog goes on.
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    ok = response_bytes(invite, 200, "OK", body=ANSWER)
    only(requests(wire.inject(ok, PEER, A), "ACK"))
    state = a._legs[leg]  # what the leg keeps is the point
    wire.run_until(wire.now + 64 * 0.5 - 1)
    assert state.invite_txn is not None and state.acks  # still answering retransmissions
    only(requests(wire.inject(ok, PEER, A), "ACK"))
    wire.run_until(wire.now + 2)
    assert state.invite_txn is None and not state.acks
    assert [type(e) for e in events(a)] == [CallAnswered]
    assert a.bye(leg, wire.now)
    bye = only(requests(wire.deliver(), "BYE"))
    assert bye.call_id == invite.call_id and bye.cseq.seq == invite.cseq.seq + 1
    wire.inject(response_bytes(bye, 200, "OK"), PEER, A)
    assert [type(e) for e in events(a)] == [CallTerminated]
    assert a.active_legs == 0


def test_forked_second_2xx_is_acked_and_byed(wire: Wire) -> None:
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    wire.inject(response_bytes(invite, 200, "OK", to_tag="fork1", body=ANSWER), PEER, A)
    packets = wire.inject(response_bytes(invite, 200, "OK", to_tag="fork2", body=ANSWER), PEER, A)
    ack = only(requests(packets, "ACK"))
    bye = only(requests(packets, "BYE"))
    assert ack.to.tag == "fork2"
    assert bye.to.tag == "fork2"
    assert a.stats.forked_2xx == 1
    assert [type(e) for e in events(a)] == [CallAnswered]
    assert a.dialog(leg) is not None
    assert a.dialog(leg).remote_tag == "fork1"  # type: ignore[union-attr]


def test_cancel_waits_for_a_provisional_response_then_487(wire: Wire) -> None:
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    reason = 'SIP;cause=200;text="Call completed elsewhere"'
    assert a.cancel(leg, 0.1, reason=reason)
    assert not requests(wire.deliver(), "CANCEL")  # §9.1: not before a provisional response
    packets = wire.inject(response_bytes(invite, 180, "Ringing"), PEER, A)
    cancel = only(requests(packets, "CANCEL"))
    assert cancel.top_via.branch == invite.top_via.branch
    assert str(cancel.uri) == str(invite.uri)
    assert str(cancel.cseq) == "1 CANCEL"
    assert cancel.to.tag is None
    assert cancel.headers.get("Reason") == reason
    assert events(a) == []  # no progress is reported for a leg being cancelled
    wire.inject(response_bytes(cancel, 200, "OK"), PEER, A)
    packets = wire.inject(response_bytes(invite, 487, "Request Terminated"), PEER, A)
    assert only(requests(packets, "ACK")).top_via.branch == invite.top_via.branch
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)
    assert rejected.status == 487
    assert not a.cancel(leg, 1.0)


def test_cancel_after_provisional_goes_out_at_once(wire: Wire) -> None:
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    wire.inject(response_bytes(invite, 183, "Session Progress", body=ANSWER), PEER, A)
    (progress,) = events(a)
    assert isinstance(progress, CallProgress)
    assert progress.body == ANSWER
    a.cancel(leg, 0.5)
    assert len(requests(wire.deliver(), "CANCEL")) == 1


def test_cancel_answered_by_nothing_gives_up_after_64_t1(wire: Wire) -> None:
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    wire.inject(response_bytes(invite, 180, "Ringing"), PEER, A)
    a.cancel(leg, 1.0)
    wire.run_until(60.0)
    (rejected,) = events(a)[-1:]
    assert isinstance(rejected, CallRejected)
    assert (rejected.status, rejected.response) == (487, None)


def test_200_racing_cancel_is_acked_then_byed(wire: Wire) -> None:
    a, leg, invite = outgoing_to_peer(wire, body=OFFER)
    wire.inject(response_bytes(invite, 180, "Ringing"), PEER, A)
    events(a)
    a.cancel(leg, 1.0, reason='SIP;cause=200;text="Call completed elsewhere"')
    cancel = only(requests(wire.deliver(), "CANCEL"))
    # The callee answered before the CANCEL reached it.
    ok = response_bytes(invite, 200, "OK", body=ANSWER)
    packets = wire.inject(ok, PEER, A)
    ack = only(requests(packets, "ACK"))
    bye = only(requests(packets, "BYE"))
    assert ack.to.tag == bye.to.tag == "peer-tag"
    assert int(bye.cseq.seq) == 2
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.ANSWERED_AFTER_CANCEL
    assert a.active_legs == 0
    # The callee answers the CANCEL with 200 (or 481) and retransmits its 2xx: ACK again only.
    wire.inject(response_bytes(cancel, 481, "Call Does Not Exist"), PEER, A)
    packets = wire.inject(ok, PEER, A)
    assert only(requests(packets, "ACK")) == ack
    assert not requests(packets, "BYE")
    wire.inject(response_bytes(bye, 200, "OK"), PEER, A)
    assert events(a) == []


def test_race_between_two_user_agents_in_memory(wire: Wire) -> None:
    a = wire.add(A, prefix="a")
    b = wire.add(B, prefix="b")
    leg = a.invite(BOB, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)
    wire.deliver()
    incoming = incoming_call(b)
    b.ring(incoming.leg_id, 0.0)
    wire.deliver()
    events(a)
    # Both act at the same instant: A cancels, B answers; the CANCEL is lost on the way.
    wire.drop = lambda p: p.is_request("CANCEL")
    a.cancel(leg, 1.0)
    b.accept(incoming.leg_id, 1.0, body=ANSWER)
    wire.deliver()
    wire.drop = None
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.ANSWERED_AFTER_CANCEL
    b_events = events(b)
    assert [type(e) for e in b_events] == [AckReceived, CallTerminated]
    wire.run_until(100.0)
    assert a.active_transactions == 0 and b.active_transactions == 0


def test_invite_timeout_safety_net_cancels(wire: Wire) -> None:
    config = SipConfig(invite_timeout=30.0)
    a = wire.add(A, config, prefix="a")
    leg = a.invite(PEER_URI, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)
    invite = requests(wire.deliver(), "INVITE")[0]
    wire.inject(response_bytes(invite, 180, "Ringing"), PEER, A)
    packets = wire.run_until(31.0)
    cancels = [p.time for p in packets if p.is_request("CANCEL")]
    assert cancels == [30.0, 30.5]  # sent at the deadline, then Timer E
    assert a.call_state(leg) is CallState.CANCELLING


# ---------------------------------------------------------------------- digest authentication


def challenge(
    invite: Request, status: int, nonce: str, *, stale: bool = False, algorithm: str = "MD5"
) -> bytes:
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    stale_param = ", stale=true" if stale else ""
    value = f'Digest realm="trunk", nonce="{nonce}", qop="auth", algorithm={algorithm}{stale_param}'
    reason = "Unauthorized" if status == 401 else "Proxy Authentication Required"
    return response_bytes(invite, status, reason, extra=f"{header}: {value}")


CREDS = Credentials("dialer", "s3cret")


@pytest.mark.parametrize(
    ("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
def test_digest_challenge_is_answered(wire: Wire, status: int, header: str) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER, auth=CREDS)
    packets = wire.inject(challenge(invite, status, "n1"), PEER, A)
    assert only(requests(packets, "ACK")).top_via.branch == invite.top_via.branch
    retry = only(requests(packets, "INVITE"))
    assert retry.cseq.seq == 2
    assert retry.top_via.branch != invite.top_via.branch
    assert retry.call_id == invite.call_id
    assert retry.from_ == invite.from_
    assert retry.body == OFFER
    value = retry.headers.get(header)
    assert value is not None
    assert verify_authorization(
        value, password="s3cret", method="INVITE", realm="trunk", uri=str(retry.uri), nonce="n1"
    )
    assert events(a) == []
    wire.inject(response_bytes(retry, 200, "OK", body=ANSWER), PEER, A)
    assert [type(e) for e in events(a)] == [CallAnswered]


def test_digest_sha256(wire: Wire) -> None:
    _a, _leg, invite = outgoing_to_peer(wire, body=OFFER, auth=CREDS)
    packets = wire.inject(challenge(invite, 401, "n1", algorithm="SHA-256"), PEER, A)
    retry = only(requests(packets, "INVITE"))
    value = retry.headers.get("Authorization")
    assert value is not None and "algorithm=SHA-256" in value
    assert verify_authorization(value, password="s3cret", method="INVITE", realm="trunk")


def test_stale_nonce_is_retried_and_a_refused_nonce_is_rejected(wire: Wire) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER, auth=CREDS)
    retry1 = only(requests(wire.inject(challenge(invite, 401, "n1"), PEER, A), "INVITE"))
    packets = wire.inject(challenge(retry1, 401, "n2", stale=True), PEER, A)
    retry2 = only(requests(packets, "INVITE"))
    assert retry2.cseq.seq == 3
    assert 'nonce="n2"' in (retry2.headers.get("Authorization") or "")
    # Same nonce again, not stale: the password was refused.
    packets = wire.inject(challenge(retry2, 401, "n2"), PEER, A)
    assert not requests(packets, "INVITE")
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)
    assert rejected.status == 401


def test_without_credentials_a_challenge_is_a_rejection(wire: Wire) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER)
    packets = wire.inject(challenge(invite, 407, "n1"), PEER, A)
    assert not requests(packets, "INVITE")
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)
    assert rejected.status == 407


def test_auth_attempts_are_bounded(wire: Wire) -> None:
    a, _leg, invite = outgoing_to_peer(wire, body=OFFER, auth=CREDS)
    current = invite
    for n in range(5):
        packets = wire.inject(challenge(current, 401, f"fresh{n}"), PEER, A)
        retries = requests(packets, "INVITE")
        if not retries:
            break
        current = retries[0]
    assert n == SipConfig().max_auth_attempts
    (rejected,) = events(a)
    assert isinstance(rejected, CallRejected)


# ---------------------------------------------------------------------- UAS behaviour

PEER_INVITE = (
    "INVITE sip:dialer@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKpeer1\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:peer@127.0.0.1:5080>;tag=p1\r\n"
    "To: <sip:dialer@127.0.0.1:5060>\r\n"
    "Call-ID: peer-call-1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:peer@127.0.0.1:5080>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n"
)


def peer_invite(body: bytes = OFFER) -> bytes:
    return PEER_INVITE.format(length=len(body)).encode() + body


def peer_request(method: str, *, tag: str | None = None, cseq: int = 1, branch: str = "") -> bytes:
    to_tag = f";tag={tag}" if tag else ""
    return (
        f"{method} sip:dialer@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{branch or method.lower()}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:peer@127.0.0.1:5080>;tag=p1\r\n"
        f"To: <sip:dialer@127.0.0.1:5060>{to_tag}\r\n"
        "Call-ID: peer-call-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_out_of_dialog_options_is_answered_with_allow(wire: Wire) -> None:
    wire.add(A)
    answer = only(responses(wire.inject(peer_request("OPTIONS"), PEER, A)))
    assert answer.status == 200
    assert answer.headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
    assert answer.to.tag


@pytest.mark.parametrize(
    ("method", "status"),
    [("BYE", 481), ("INFO", 481), ("SUBSCRIBE", 405), ("REGISTER", 405), ("FROBNICATE", 501)],
)
def test_requests_we_cannot_serve(wire: Wire, method: str, status: int) -> None:
    wire.add(A)
    answer = only(responses(wire.inject(peer_request(method), PEER, A)))
    assert answer.status == status
    if status == 405:
        assert answer.headers.get("Allow")


def test_in_dialog_request_for_unknown_dialog_gets_481(wire: Wire) -> None:
    wire.add(A)
    answer = only(responses(wire.inject(peer_request("BYE", tag="nope", cseq=2), PEER, A)))
    assert answer.status == 481


def test_require_gets_420_with_unsupported(wire: Wire) -> None:
    wire.add(A)
    data = peer_request("OPTIONS").replace(b"Max-Forwards", b"Require: 100rel\r\nMax-Forwards")
    answer = only(responses(wire.inject(data, PEER, A)))
    assert answer.status == 420
    assert answer.headers.get("Unsupported") == "100rel"


def test_malformed_request_gets_400_with_the_parse_error_as_reason(wire: Wire) -> None:
    a = wire.add(A)
    data = peer_request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    packet = only(wire.inject(data, PEER, A))
    assert packet.first_line.startswith("SIP/2.0 400 ")
    reason = packet.first_line.split(" ", 2)[2]
    assert "Max-Forwards" in reason
    assert a.stats.malformed == 1
    message = packet.message
    assert message.call_id == "peer-call-1"
    assert message.to.tag  # a To tag is added


def test_malformed_without_enough_headers_is_dropped(wire: Wire) -> None:
    a = wire.add(A)
    assert wire.inject(b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", PEER, A) == []
    assert wire.inject(b"\x16\x03\x01garbage", PEER, A) == []
    assert wire.inject(b"SIP/2.0 200 OK\r\nbroken\r\n\r\n", PEER, A) == []
    assert a.stats.malformed == 3


def test_response_for_unknown_transaction_is_dropped_and_counted(wire: Wire) -> None:
    a = wire.add(A)
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnothing\r\n"
        b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n"
        b"Call-ID: unknown\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert wire.inject(data, PEER, A) == []
    assert a.stats.unmatched_responses == 1
    assert events(a) == []


def test_incoming_call_retransmission_is_absorbed(wire: Wire) -> None:
    a = wire.add(A)
    first = wire.inject(peer_invite(), PEER, A)
    assert only(responses(first)).status == 100
    again = wire.inject(peer_invite(), PEER, A)
    assert only(responses(again)).status == 100
    assert len(events(a)) == 1


def test_remote_cancel_of_an_incoming_call(wire: Wire) -> None:
    a = wire.add(A)
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    a.ring(incoming.leg_id, 0.0)
    wire.deliver()
    cancel = peer_request("CANCEL", branch="peer1")
    packets = wire.inject(cancel, PEER, A)
    statuses = sorted((r.status, r.cseq.method) for r in responses(packets))
    assert statuses == [(200, "CANCEL"), (487, "INVITE")]
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.REMOTE_CANCEL
    unknown = peer_request("CANCEL", branch="other")
    assert only(responses(wire.inject(unknown, PEER, A))).status == 481


def test_accept_after_the_caller_cancelled_returns_false(wire: Wire) -> None:
    a = wire.add(A)
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    wire.inject(peer_request("CANCEL", branch="peer1"), PEER, A)
    # The application reacts to IncomingCall after the CANCEL was processed.
    assert not a.accept(incoming.leg_id, 0.1, body=ANSWER)
    assert wire.deliver() == []
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)


def test_reject_sends_final_and_absorbs_the_ack(wire: Wire) -> None:
    a = wire.add(A)
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    a.reject(incoming.leg_id, 0.0, 486)
    busy = only(responses(wire.deliver()))
    assert busy.status == 486
    ack = peer_request("ACK", tag=busy.to.tag, branch="peer1")
    assert wire.inject(ack, PEER, A) == []
    assert a.stats.unmatched_acks == 0
    wire.run_until(50.0)
    assert a.active_transactions == 0


def test_missing_ack_retransmits_2xx_then_byes(wire: Wire) -> None:
    a = wire.add(A)
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    a.accept(incoming.leg_id, 0.0, body=ANSWER)
    wire.deliver()
    packets = wire.run_until(40.0)
    retransmissions = [p.time for p in packets if p.data.startswith(b"SIP/2.0 200")]
    # §13.3.1.4: T1, doubling up to T2: 0.5, 1.5, 3.5, 7.5, 11.5, ... until 64*T1.
    assert retransmissions[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(t < 32.0 for t in retransmissions)
    bye = requests(packets, "BYE")[0]  # then retransmitted: the peer is silent
    assert bye.to.tag == "p1"
    (ended,) = events(a)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.ACK_TIMEOUT


def test_hangup_before_ack_waits_for_the_ack(wire: Wire) -> None:
    a = wire.add(A)
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    a.accept(incoming.leg_id, 0.0, body=ANSWER)
    ok = only(responses(wire.deliver()))
    assert a.hangup(incoming.leg_id, 0.1)
    assert not requests(wire.deliver(), "BYE")
    ack = peer_request("ACK", tag=ok.to.tag, branch="ack1")
    packets = wire.inject(ack, PEER, A)
    assert len(requests(packets, "BYE")) == 1


# ---------------------------------------------------------------------- re-INVITE


def test_reinvite_both_ways(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    a.reinvite(leg, 1.0, body=OFFER)
    wire.deliver()
    (received,) = events(b)
    assert isinstance(received, ReInviteReceived)
    assert received.body == OFFER
    b.answer_reinvite(callee_leg, 1.1, body=ANSWER)
    wire.deliver()
    (completed,) = events(a)
    assert isinstance(completed, ReInviteCompleted)
    assert (completed.status, completed.body, completed.needs_ack) == (200, ANSWER, False)
    assert isinstance(only_event(b), AckReceived)
    b.reinvite(callee_leg, 2.0, body=OFFER)
    wire.deliver()
    a.answer_reinvite(leg, 2.0, status=488)
    wire.deliver()
    (refused,) = events(b)
    assert isinstance(refused, ReInviteCompleted)
    assert refused.status == 488
    assert a.call_state(leg) is CallState.ESTABLISHED


def test_a_completed_reinvite_lets_its_ack_go_after_timer_m(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    caller = a._legs[leg]  # what the leg keeps is the point
    a.reinvite(leg, wire.now, body=OFFER)
    wire.deliver()
    assert isinstance(only_event(b), ReInviteReceived)
    b.answer_reinvite(callee_leg, wire.now, body=ANSWER)
    wire.deliver()
    assert isinstance(only_event(a), ReInviteCompleted)
    assert isinstance(only_event(b), AckReceived)
    assert caller.reinvite_txn is None and len(caller.acks) == 2  # INVITE's and re-INVITE's
    wire.run_until(wire.now + 64 * 0.5 + 1)
    assert caller.invite_txn is None and not caller.acks
    assert a.call_state(leg) is CallState.ESTABLISHED
    a.reinvite(leg, wire.now, body=OFFER)  # the dialog still works both ways
    wire.deliver()
    assert isinstance(only_event(b), ReInviteReceived)


def only_event(ua: UserAgent) -> object:
    (event,) = events(ua)
    return event


def test_reinvite_glare_gets_491_and_both_retry_in_turn(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    # Both send a re-INVITE at the same instant; each gets 491.
    a.reinvite(leg, 1.0, body=OFFER)
    b.reinvite(callee_leg, 1.0, body=OFFER)
    packets = wire.deliver()
    assert len(responses(packets, 491)) == 2
    assert events(a) == [] and events(b) == []
    # §14.1: B (not the Call-ID owner) retries after 0-2 s, A (the owner) after 2.1-4 s.
    packets = wire.run_until(2.5)
    assert [p.src for p in packets if p.is_request("INVITE")] == [B]
    (received,) = events(a)
    assert isinstance(received, ReInviteReceived)
    a.answer_reinvite(leg, wire.now, body=ANSWER)
    wire.deliver()
    (done_b,) = events(b)
    assert isinstance(done_b, ReInviteCompleted)
    assert done_b.status == 200
    assert isinstance(only_event(a), AckReceived)
    packets = wire.run_until(5.0)
    assert [p.src for p in packets if p.is_request("INVITE")] == [A]
    (received_b,) = events(b)
    assert isinstance(received_b, ReInviteReceived)
    b.answer_reinvite(callee_leg, wire.now, body=ANSWER)
    wire.deliver()
    (done_a,) = events(a)
    assert isinstance(done_a, ReInviteCompleted)
    assert done_a.status == 200


def test_cancelled_incoming_reinvite_gets_487(wire: Wire) -> None:
    a, b, leg, callee_leg = setup_call(wire)
    events(a), events(b)
    wire.drop = lambda p: p.dst == A and p.data.startswith(b"SIP/2.0 100")
    b.reinvite(callee_leg, 1.0, body=OFFER)
    reinvite = only(requests(wire.deliver(), "INVITE"))
    assert isinstance(only_event(a), ReInviteReceived)
    cancel = (
        reinvite.serialize()
        .replace(b"INVITE sip:", b"CANCEL sip:")
        .replace(b" INVITE\r\n", b" CANCEL\r\n")
        .split(b"\r\n\r\n")[0]
        .replace(b"Content-Length: " + str(len(OFFER)).encode(), b"Content-Length: 0")
        + b"\r\n\r\n"
    )
    packets = wire.inject(cancel, B, A)
    assert sorted(r.status for r in responses(packets)) == [200, 487]
    assert not a.answer_reinvite(leg, 1.5, body=ANSWER)
    (refused,) = events(b)
    assert isinstance(refused, ReInviteCompleted)
    assert refused.status == 487
    assert a.call_state(leg) is CallState.ESTABLISHED


def test_reinvite_refused_while_another_is_pending(wire: Wire) -> None:
    a, _b, leg, _callee_leg = setup_call(wire)
    a.reinvite(leg, 1.0, body=OFFER)
    with pytest.raises(LocalProtocolError):
        a.reinvite(leg, 1.0, body=OFFER)


def test_in_dialog_request_timeout_ends_the_call(wire: Wire) -> None:
    a, b, leg, _callee_leg = setup_call(wire)
    events(a), events(b)
    wire.drop = lambda p: p.src == B  # B can no longer answer
    a.send_info(leg, 1.0, body=b"x", content_type="text/plain")
    wire.run_until(40.0)
    done, ended = events(a)
    assert isinstance(done, RequestCompleted)
    assert (done.status, done.response) == (408, None)
    assert isinstance(ended, CallTerminated)
    assert ended.cause is TerminationCause.DIALOG_LOST


# ---------------------------------------------------------------------- robustness


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    wire = Wire()
    ua = wire.add(A)
    ua.receive_datagram(data, PEER, 0.0)
    ua.datagrams_to_send(0.0)
    assert ua.next_event() is None


@settings(max_examples=100, deadline=None)
@given(
    mutation=st.sampled_from(
        [
            (b"CSeq: 1 INVITE", b"CSeq: x INVITE"),
            (b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKpeer1", b"Via: bogus"),
            (b"From: <sip:peer@127.0.0.1:5080>;tag=p1", b"From: <<>"),
            (b"Contact: <sip:peer@127.0.0.1:5080>", b"Contact: <nope"),
            (b"Content-Length: ", b"Content-Length: 9999"),
            (b"SIP/2.0\r\n", b"SIP/3.0\r\n"),
        ]
    ),
    cut=st.integers(min_value=0, max_value=400),
)
def test_mutated_invites_never_raise(mutation: tuple[bytes, bytes], cut: int) -> None:
    wire = Wire()
    ua = wire.add(A)
    data = peer_invite().replace(*mutation)
    ua.receive_datagram(data[: len(data) - cut] if cut < len(data) else data, PEER, 0.0)
    for out, _ in ua.datagrams_to_send(0.0):
        assert out.startswith(b"SIP/2.0 ")


# ---------------------------------------------------------------------- reliable transport


def test_over_tcp_nothing_is_retransmitted_and_linger_timers_are_zero(wire: Wire) -> None:
    tcp = SipConfig(transport="tcp")
    a = wire.add(A, tcp, prefix="a")
    b = wire.add(B, tcp, prefix="b")
    leg = a.invite(BOB, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)
    invite = only(requests(wire.deliver(), "INVITE"))
    assert invite.top_via.transport == "TCP"
    assert invite.headers.get("Contact") == "<sip:dialer@127.0.0.1:5060;transport=tcp>"
    incoming = incoming_call(b)
    assert requests(wire.run_until(10.0), "INVITE") == []  # no Timer A over TCP
    b.accept(incoming.leg_id, wire.now, body=ANSWER)
    wire.deliver()
    a.bye(leg, wire.now)
    wire.deliver()
    wire.run_until(wire.now)  # Timers D, I, J, K are zero: everything ends now
    # Only the INVITE transactions remain: Accepted waits out Timers M and L (64*T1 on any
    # transport, RFC 6026); the BYE transactions ended at once.
    assert a.active_transactions == 1
    assert b.active_transactions == 1
    wire.run_until(wire.now + 32.0)
    assert a.active_transactions == b.active_transactions == 0


# ---------------------------------------------------------------------- API misuse


def test_api_calls_on_unknown_or_wrong_legs(wire: Wire) -> None:
    a = wire.add(A)
    assert not a.cancel("nope", 0.0)
    assert not a.bye("nope", 0.0)
    assert not a.hangup("nope", 0.0)
    assert not a.ack("nope", 0.0)
    assert not a.accept("nope", 0.0)
    assert not a.answer_reinvite("nope", 0.0)
    leg = a.invite(PEER_URI, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)
    with pytest.raises(LocalProtocolError):
        a.reinvite(leg, 0.0, body=OFFER)  # not established yet
    with pytest.raises(LocalProtocolError):
        a.send_info(leg, 0.0, body=b"", content_type="text/plain")
    assert not a.bye(leg, 0.0)  # not answered: use cancel()/hangup()
    assert a.hangup(leg, 0.0)
    assert a.call_state(leg) is CallState.CANCELLING
    wire.inject(peer_invite(), PEER, A)
    incoming = incoming_call(a)
    with pytest.raises(LocalProtocolError):
        a.accept(leg, 0.0)  # an outgoing leg cannot be accepted
    with pytest.raises(LocalProtocolError):
        a.ring(incoming.leg_id, 0.0, status=200)
    with pytest.raises(LocalProtocolError):
        a.reject(incoming.leg_id, 0.0, 200)
    assert a.hangup(incoming.leg_id, 0.0)  # unanswered incoming call: 480
    assert only(responses(wire.deliver())).status == 480
    assert a.call_state(incoming.leg_id) is CallState.ENDED


def test_overload_answers_503_statelessly(wire: Wire) -> None:
    a = wire.add(A, SipConfig(max_transactions=1), prefix="a")
    a.invite(PEER_URI, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)
    wire.deliver()
    answer = only(responses(wire.inject(peer_request("OPTIONS"), PEER, A)))
    assert answer.status == 503
    assert a.stats.overload_rejections == 1
    with pytest.raises(LocalProtocolError):
        a.invite(PEER_URI, 0.0, from_uri="sip:alice@127.0.0.1", body=OFFER)


def test_rport_response_goes_to_the_source_port_with_received_and_rport(wire: Wire) -> None:
    """RFC 3581 §4: a request whose top Via has a bare ``rport`` is answered to the address and
    port it came from (not the sent-by port), with ``received`` and ``rport`` filled in; without
    ``rport`` the response goes to the sent-by port (RFC 3261 §18.2.2), ``received`` added only
    when the host differs."""
    wire.add(A)
    nat = ("127.0.0.9", 40001)  # the peer's request arrives from another address and port
    with_rport = peer_request("OPTIONS").replace(b";branch=", b";rport;branch=")
    packet = only(wire.inject(with_rport, nat, A))
    assert packet.dst == nat
    via = packet.message.top_via
    assert via.received == "127.0.0.9"
    assert via.rport == 40001
    assert via.sent_by == ("127.0.0.1", 5080)  # sent-by is left as the peer wrote it

    packet = only(wire.inject(peer_request("OPTIONS", branch="plain"), nat, A))
    assert packet.dst == ("127.0.0.9", 5080)
    via = packet.message.top_via
    assert via.received == "127.0.0.9"
    assert via.rport is None
