"""RFC 3261 §17 / RFC 6026 transactions: every timer path, matching, and the tables."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sip.config import SipConfig
from sip.errors import LocalProtocolError
from sip.message import Request, Response, make_response, parse_message
from sip.transaction import (
    NETWORK_INPUTS,
    TRANSITIONS,
    Address,
    ClientTransaction,
    Input,
    Kind,
    ServerTransaction,
    State,
    Timer,
    TransactionStateError,
    client_key,
    next_state,
    server_key,
)

UDP = SipConfig()
TCP = SipConfig(transport="tcp")
DEST: Address = ("127.0.0.1", 5080)

INVITE = (
    b"INVITE sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv1;rport\r\n"
    b"Route: <sip:proxy.example;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:bob@127.0.0.1:5080>\r\n"
    b"Call-ID: call-1@test\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:alice@127.0.0.1:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OPTIONS = (
    b"OPTIONS sip:bob@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKopt1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
    b"To: <sip:bob@127.0.0.1:5080>\r\n"
    b"Call-ID: call-2@test\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def respond(req: Request, status: int, tag: str | None = "b1") -> Response:
    return make_response(req, status, to_tag=tag if status > 100 else None)


def state(txn: ClientTransaction | ServerTransaction) -> State:
    """The state, read through a call (mypy would otherwise narrow it across assertions)."""
    return txn.state


def fire_all(txn: ClientTransaction | ServerTransaction, until: float) -> list[float]:
    """Fire the transaction's timers in order up to ``until``; returns the firing times."""
    times: list[float] = []
    while txn.deadline is not None and txn.deadline <= until:
        at = txn.deadline
        times.append(at)
        txn.on_timer(at)
    return times


# ---------------------------------------------------------------------- INVITE client


def test_invite_client_timer_a_doubles_and_timer_b_times_out() -> None:
    out: list[tuple[bytes, Address]] = []
    txn = ClientTransaction(request(INVITE), DEST, config=UDP, now=0.0, outbox=out)
    assert state(txn) is State.CALLING
    assert txn.timers == {Timer.A: 0.5, Timer.B: 32.0}
    sends: list[float] = []
    timed_out = False
    while txn.deadline is not None:
        at = txn.deadline
        before = len(out)
        timed_out = txn.on_timer(at)
        if len(out) > before:
            sends.append(at)
    # RFC 3261 §17.1.1.2: retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s, then B at 64*T1.
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert len(out) == 7
    assert all(data == out[0][0] for data, _ in out)
    assert timed_out
    assert state(txn) is State.TERMINATED


def test_invite_client_over_tcp_does_not_retransmit() -> None:
    out: list[tuple[bytes, Address]] = []
    txn = ClientTransaction(request(INVITE), DEST, config=TCP, now=0.0, outbox=out)
    assert txn.timers == {Timer.B: 32.0}
    assert txn.on_timer(32.0)
    assert len(out) == 1


def test_invite_client_provisional_stops_retransmissions_then_2xx_accepted_timer_m() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ClientTransaction(req, DEST, config=UDP, now=0.0, outbox=out)
    assert txn.receive_response(respond(req, 180), 0.2)
    assert state(txn) is State.PROCEEDING
    assert txn.timers == {}
    ok = respond(req, 200)
    assert txn.receive_response(ok, 5.0)
    assert state(txn) is State.ACCEPTED
    assert txn.timers == {Timer.M: 5.0 + 32.0}
    # RFC 6026: retransmitted (or forked) 2xx still reach the TU; a late 1xx does not.
    assert txn.receive_response(ok, 6.0)
    assert not txn.receive_response(respond(req, 183), 6.5)
    assert len(out) == 1  # no ACK from the transaction for a 2xx
    assert not txn.on_timer(37.0)
    assert state(txn) is State.TERMINATED


def test_invite_client_non_2xx_acked_inside_transaction_and_timer_d() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ClientTransaction(req, DEST, config=UDP, now=0.0, outbox=out)
    busy = respond(req, 486)
    assert txn.receive_response(busy, 1.0)
    assert state(txn) is State.COMPLETED
    assert txn.timers == {Timer.D: 33.0}
    ack = request(out[-1][0])
    # §17.1.1.3: same Request-URI, branch, From, Call-ID, CSeq number; To from the response.
    assert ack.method == "ACK"
    assert ack.uri == req.uri
    assert [str(v) for v in ack.vias] == [str(req.top_via)]
    assert ack.to.tag == "b1"
    assert ack.from_ == req.from_
    assert str(ack.cseq) == "1 ACK"
    assert ack.headers.get_all("Route") == ["<sip:proxy.example;lr>"]
    # A retransmitted 486 is absorbed but ACKed again.
    assert not txn.receive_response(busy, 2.0)
    assert out[-1][0] == out[-2][0]
    assert len(out) == 3
    fire_all(txn, 33.0)
    assert state(txn) is State.TERMINATED


def test_invite_client_timer_d_is_zero_over_tcp() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ClientTransaction(req, DEST, config=TCP, now=0.0, outbox=out)
    txn.receive_response(respond(req, 603), 1.0)
    assert txn.timers == {Timer.D: 1.0}
    txn.on_timer(1.0)
    assert state(txn) is State.TERMINATED


def test_cancel_timeout_rearms_timer_b_in_proceeding() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ClientTransaction(req, DEST, config=UDP, now=0.0, outbox=out)
    txn.receive_response(respond(req, 180), 1.0)
    txn.arm_cancel_timeout(10.0)
    assert txn.timers == {Timer.B: 42.0}
    assert txn.on_timer(42.0)
    assert state(txn) is State.TERMINATED


def test_transport_error_terminates_and_informs_tu() -> None:
    out: list[tuple[bytes, Address]] = []
    txn = ClientTransaction(request(INVITE), DEST, config=TCP, now=0.0, outbox=out)
    assert txn.transport_error(0.1)
    assert state(txn) is State.TERMINATED


def test_client_refuses_request_without_magic_cookie() -> None:
    bad = INVITE.replace(b"branch=z9hG4bKinv1", b"branch=old1")
    with pytest.raises(LocalProtocolError):
        ClientTransaction(request(bad), DEST, config=UDP, now=0.0, outbox=[])


# ---------------------------------------------------------------------- non-INVITE client


def test_non_invite_client_timer_e_capped_at_t2_and_timer_f() -> None:
    out: list[tuple[bytes, Address]] = []
    txn = ClientTransaction(request(OPTIONS), DEST, config=UDP, now=0.0, outbox=out)
    assert txn.timers == {Timer.E: 0.5, Timer.F: 32.0}
    times = []
    timed_out = False
    while txn.deadline is not None:
        at = txn.deadline
        if Timer.E in txn.timers and txn.timers[Timer.E] == at:
            times.append(at)
        timed_out = txn.on_timer(at)
    # Intervals 0.5, 1, 2, 4, 4, 4 ... (MIN(2*E, T2)), then F at 64*T1.
    intervals = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert intervals[:5] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert all(i == 4.0 for i in intervals[3:])
    assert timed_out
    assert state(txn) is State.TERMINATED
    assert len(out) == 1 + len([t for t in times if t < 32.0])


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(OPTIONS)
    txn = ClientTransaction(req, DEST, config=UDP, now=0.0, outbox=out)
    txn.receive_response(respond(req, 100), 0.1)
    assert state(txn) is State.PROCEEDING
    txn.on_timer(0.5)  # E fires: next in T2
    assert txn.timers[Timer.E] == 4.5
    txn.on_timer(4.5)
    assert txn.timers[Timer.E] == 8.5


def test_non_invite_client_final_then_timer_k() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(OPTIONS)
    txn = ClientTransaction(req, DEST, config=UDP, now=0.0, outbox=out)
    ok = respond(req, 200)
    assert txn.receive_response(ok, 0.3)
    assert state(txn) is State.COMPLETED
    assert txn.timers == {Timer.K: 5.3}
    assert not txn.receive_response(ok, 0.4)  # retransmission absorbed
    txn.on_timer(5.3)
    assert state(txn) is State.TERMINATED
    tcp = ClientTransaction(req, DEST, config=TCP, now=0.0, outbox=out)
    tcp.receive_response(ok, 0.3)
    assert tcp.timers == {Timer.K: 0.3}


# ---------------------------------------------------------------------- INVITE server


def test_invite_server_non_2xx_timer_g_capped_timer_h() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=out)
    assert state(txn) is State.PROCEEDING
    txn.send_response(respond(req, 100), 0.0)
    assert not txn.receive_request(req, 0.1)  # retransmitted INVITE: 100 again
    assert out[-1][0].startswith(b"SIP/2.0 100")
    assert len(out) == 2
    txn.send_response(respond(req, 486), 1.0)
    assert state(txn) is State.COMPLETED
    assert txn.timers == {Timer.G: 1.5, Timer.H: 33.0}
    sends = []
    timed_out = False
    while txn.deadline is not None:
        at = txn.deadline
        before = len(out)
        timed_out = txn.on_timer(at)
        if len(out) > before:
            sends.append(at)
    intervals = [b - a for a, b in zip([1.0, *sends], sends, strict=False)]
    assert intervals[:4] == [0.5, 1.0, 2.0, 4.0]
    assert all(i == 4.0 for i in intervals[3:])
    assert timed_out  # Timer H: the ACK never came
    assert state(txn) is State.TERMINATED


def test_invite_server_ack_confirms_then_timer_i() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=out)
    busy = respond(req, 486)
    txn.send_response(busy, 1.0)
    ack = request(
        INVITE.replace(b"INVITE sip", b"ACK sip")
        .replace(b"1 INVITE", b"1 ACK")
        .replace(b"To: <sip:bob@127.0.0.1:5080>", b"To: <sip:bob@127.0.0.1:5080>;tag=b1")
    )
    assert server_key(ack) == txn.key
    assert not txn.receive_request(ack, 1.2)
    assert state(txn) is State.CONFIRMED
    assert txn.timers == {Timer.I: 6.2}
    assert not txn.receive_request(ack, 1.3)  # absorbed
    assert not txn.receive_request(req, 1.4)  # INVITE retransmission absorbed in Confirmed
    assert len(out) == 1
    txn.on_timer(6.2)
    assert state(txn) is State.TERMINATED


def test_invite_server_2xx_accepted_absorbs_retransmissions_passes_ack_timer_l() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=out)
    ok = respond(req, 200)
    txn.send_response(ok, 2.0)
    assert state(txn) is State.ACCEPTED
    assert txn.timers == {Timer.L: 34.0}
    assert not txn.receive_request(req, 2.5)
    assert len(out) == 1  # RFC 6026: INVITE retransmissions in Accepted are absorbed
    txn.send_response(ok, 2.5)  # the TU retransmits its 2xx through the transaction
    assert len(out) == 2
    ack = request(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
    assert txn.receive_request(ack, 3.0)  # an ACK with the INVITE's branch goes to the TU
    with pytest.raises(TransactionStateError):
        txn.send_response(respond(req, 486), 3.1)
    txn.on_timer(34.0)
    assert state(txn) is State.TERMINATED


def test_invite_server_over_tcp_has_no_timer_g_and_zero_timer_i() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(INVITE)
    txn = ServerTransaction(req, DEST, config=TCP, outbox=out)
    txn.send_response(respond(req, 480), 0.0)
    assert txn.timers == {Timer.H: 32.0}
    ack = request(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
    txn.receive_request(ack, 0.1)
    assert txn.timers == {Timer.I: 0.1}


# ---------------------------------------------------------------------- non-INVITE server


def test_non_invite_server_absorbs_in_trying_resends_final_then_timer_j() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(OPTIONS)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=out)
    assert state(txn) is State.TRYING
    txn.receive_request(req, 0.1)
    assert out == []
    txn.send_response(respond(req, 200), 0.2)
    assert state(txn) is State.COMPLETED
    assert txn.timers == {Timer.J: 32.2}
    txn.receive_request(req, 0.3)
    assert len(out) == 2
    assert out[0] == out[1]
    with pytest.raises(TransactionStateError):
        txn.send_response(respond(req, 500), 0.4)
    txn.on_timer(32.2)
    assert state(txn) is State.TERMINATED
    tcp = ServerTransaction(req, DEST, config=TCP, outbox=out)
    tcp.send_response(respond(req, 200), 1.0)
    assert tcp.timers == {Timer.J: 1.0}


def test_non_invite_server_provisional_then_retransmission_resends_it() -> None:
    out: list[tuple[bytes, Address]] = []
    req = request(OPTIONS)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=out)
    txn.send_response(respond(req, 100), 0.0)
    assert state(txn) is State.PROCEEDING
    txn.receive_request(req, 0.5)
    assert [d[:11] for d, _ in out] == [b"SIP/2.0 100", b"SIP/2.0 100"]


# ---------------------------------------------------------------------- matching


def test_client_key_is_branch_and_cseq_method() -> None:
    req = request(INVITE)
    assert client_key(respond(req, 180)) == ("z9hG4bKinv1", "INVITE")


def test_server_key_maps_ack_to_invite_and_keeps_cancel_apart() -> None:
    req = request(INVITE)
    ack = request(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
    cancel = request(INVITE.replace(b"INVITE sip", b"CANCEL sip").replace(b"1 INVITE", b"1 CANCEL"))
    assert server_key(req) == ("z9hG4bKinv1", "127.0.0.1", 5060, "INVITE")
    assert server_key(ack) == server_key(req)
    assert server_key(cancel) == ("z9hG4bKinv1", "127.0.0.1", 5060, "CANCEL")
    other_host = request(INVITE.replace(b"UDP 127.0.0.1:5060", b"UDP 10.0.0.1:5060"))
    assert server_key(other_host) != server_key(req)


def test_server_key_rfc2543_fallback_uses_call_id_from_tag_cseq() -> None:
    legacy = request(INVITE.replace(b";branch=z9hG4bKinv1", b""))
    key = server_key(legacy)
    assert key[0] == "2543:call-1@test:a1:1"
    assert key[3] == "INVITE"


# ---------------------------------------------------------------------- the tables


def test_every_network_input_is_handled_in_every_live_state() -> None:
    for kind, table in TRANSITIONS.items():
        states = {state for state, _ in table}
        for state in states:
            for event in NETWORK_INPUTS:
                if kind in (Kind.INVITE_CLIENT, Kind.NON_INVITE_CLIENT) and event in (
                    Input.REQUEST,
                    Input.ACK,
                ):
                    continue
                if kind in (Kind.INVITE_SERVER, Kind.NON_INVITE_SERVER) and event.value.startswith(
                    "response"
                ):
                    continue
                assert (state, event) in table, (kind, state, event)


def test_a_missing_transition_is_a_protocol_error() -> None:
    with pytest.raises(TransactionStateError):
        next_state(Kind.NON_INVITE_SERVER, State.COMPLETED, Input.TU_2XX)


@given(
    kind=st.sampled_from(list(Kind)),
    state=st.sampled_from(list(State)),
    event=st.sampled_from(list(Input)),
)
def test_transition_function_is_total_or_a_documented_error(
    kind: Kind, state: State, event: Input
) -> None:
    try:
        new = next_state(kind, state, event)
    except TransactionStateError:
        assert event not in NETWORK_INPUTS or (
            state is not State.TERMINATED and (state, event) not in TRANSITIONS[kind]
        )
        return
    assert isinstance(new, State)
    if state is State.TERMINATED:
        assert new is State.TERMINATED


@given(
    statuses=st.lists(
        st.sampled_from([100, 180, 183, 200, 202, 302, 401, 486, 503, 603]), max_size=8
    ),
    ticks=st.lists(st.floats(min_value=0.0, max_value=40.0), max_size=6),
    invite=st.booleans(),
    reliable=st.booleans(),
)
def test_client_transaction_survives_any_response_and_timer_sequence(
    statuses: list[int], ticks: list[float], invite: bool, reliable: bool
) -> None:
    req = request(INVITE if invite else OPTIONS)
    config = TCP if reliable else UDP
    txn = ClientTransaction(req, DEST, config=config, now=0.0, outbox=[])
    now = 0.0
    for status, tick in zip(statuses, [*ticks, *([0.0] * len(statuses))], strict=False):
        now += tick
        txn.on_timer(now)
        txn.receive_response(respond(req, status), now)
        assert txn.deadline is None or txn.deadline >= now
    fire_all(txn, now + 100.0)
    # An INVITE in Proceeding waits for the TU (it CANCELs; §17.1.1.2 stops Timer B there).
    assert txn.state is State.TERMINATED or (invite and txn.state is State.PROCEEDING)


@given(
    actions=st.lists(
        st.sampled_from(["retransmit", "ack", "100", "180", "200", "486", "tick"]), max_size=10
    ),
    invite=st.booleans(),
)
def test_server_transaction_raises_only_the_documented_error(
    actions: list[str], invite: bool
) -> None:
    req = request(INVITE if invite else OPTIONS)
    txn = ServerTransaction(req, DEST, config=UDP, outbox=[])
    ack = request(INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK"))
    now = 0.0
    for action in actions:
        now += 1.0
        if action == "retransmit":
            txn.receive_request(req, now)
        elif action == "ack":
            if invite:
                txn.receive_request(ack, now)
        elif action == "tick":
            txn.on_timer(now + 40.0)
        else:
            try:
                txn.send_response(respond(req, int(action)), now)
            except TransactionStateError:
                assert txn.state is not State.PROCEEDING or not invite
    fire_all(txn, now + 200.0)
    assert txn.state in (State.TERMINATED, State.PROCEEDING, State.TRYING)
