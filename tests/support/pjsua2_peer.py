"""A pjsua2 softphone rep for press-1 tests, run as its own process (DESIGN §8).

    python -m tests.support.pjsua2_peer --sip-port P --rtp-port R --record out.wav \\
        --answer-after 2.0 --dtmf 1 --dtmf-after 3.5 --max-seconds 20

It listens on 127.0.0.1:P (UDP), prints ``READY`` once it does, rings on the first INVITE,
answers it after ``--answer-after`` seconds, records what it hears (the conference port of the
call into a WAV file) from the moment media is up, and ``--dtmf-after`` seconds after the
answer stops recording and sends ``--dtmf`` as RFC 4733 events. It ends when the call is
disconnected (or after ``--max-seconds``) and prints one JSON line with what happened.

DESIGN §8 rules: one process per peer (a pjlib assertion aborts the process), ``setNullDev()``,
``threadCnt = 0`` and ``mainThreadOnly = True`` with the library polled every 10 ms from this
thread, and every ``Call`` reference dropped before ``libDestroy()``. Nothing in ``dialer/``
imports pjsua2.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

import pjsua2 as pj  # type: ignore[import-untyped, import-not-found, unused-ignore]

#: Poll interval of the library (ms): DESIGN §8 asks for 10-20 ms.
POLL_MS = 10


class PeerCall(pj.Call):  # type: ignore[misc]
    """The one call of this peer: records its audio, reports its state."""

    def __init__(self, peer: Peer, account: pj.Account, call_id: int) -> None:
        super().__init__(account, call_id)
        self.peer = peer

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.peer.confirmed = True
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.peer.disconnected = True
            self.peer.disconnect_status = info.lastStatusCode

    def onCallMediaState(self, prm: Any) -> None:
        self.peer.media_updates += 1
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.peer.media_active(self.getAudioMedia(media.index))


class PeerAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, peer: Peer) -> None:
        super().__init__()
        self.peer = peer

    def onIncomingCall(self, prm: Any) -> None:
        if self.peer.call is not None:
            busy = PeerCall(self.peer, self, prm.callId)
            op = pj.CallOpParam()
            op.statusCode = 486
            busy.answer(op)
            return
        call = PeerCall(self.peer, self, prm.callId)
        self.peer.call = call
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        self.peer.ringing_at = time.monotonic()


class Peer:
    """The softphone's state, driven from :func:`main`'s polling loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.call: PeerCall | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.audio: pj.AudioMedia | None = None
        self.ringing_at: float | None = None
        self.answered_at: float | None = None
        self.dtmf_sent = False
        self.confirmed = False
        self.disconnected = False
        self.disconnect_status: int | None = None
        self.media_updates = 0
        self.recorded = False

    def media_active(self, audio: pj.AudioMedia) -> None:
        self.audio = audio
        if self.recorder is None and not self.dtmf_sent:
            self.recorder = pj.AudioMediaRecorder()
            self.recorder.createRecorder(self.args.record)
            audio.startTransmit(self.recorder)
            self.recorded = True

    def stop_recording(self) -> None:
        if self.recorder is not None and self.audio is not None:
            self.audio.stopTransmit(self.recorder)
        # Destroying the recorder writes the WAV header's sizes.
        self.recorder = None
        gc.collect()

    def step(self, now: float) -> None:
        call = self.call
        if call is None or self.disconnected:
            return
        if self.answered_at is None and self.ringing_at is not None:
            if now - self.ringing_at >= self.args.answer_after:
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answer(op)
                self.answered_at = now
        elif (
            self.answered_at is not None
            and not self.dtmf_sent
            and now - self.answered_at >= self.args.dtmf_after
        ):
            self.stop_recording()
            call.dialDtmf(self.args.dtmf)  # RFC 4733 by default (PJSUA_DTMF_METHOD_RFC2833)
            self.dtmf_sent = True


def _codecs(endpoint: pj.Endpoint) -> None:
    """G.711 only, µ-law first: what the daemon's prompt is made of."""
    for codec in endpoint.codecEnum2():
        priority = {"PCMU/8000/1": 255, "PCMA/8000/1": 254}.get(codec.codecId, 0)
        endpoint.codecSetPriority(codec.codecId, priority)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp-port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--answer-after", type=float, default=0.0)
    parser.add_argument("--dtmf", default="1")
    parser.add_argument("--dtmf-after", type=float, default=3.0)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)

    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 1
    config.logConfig.consoleLevel = 1
    config.medConfig.ecTailLen = 0  # no echo canceller: record the audio as it arrived
    config.medConfig.noVad = True
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = args.sip_port
    transport.boundAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()
    _codecs(endpoint)

    peer = Peer(args)
    account_config = pj.AccountConfig()
    account_config.idUri = f"sip:rep@127.0.0.1:{args.sip_port}"
    account_config.mediaConfig.transportConfig.port = args.rtp_port
    account_config.mediaConfig.transportConfig.portRange = 1
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account = PeerAccount(peer)
    account.create(account_config)
    print("READY", flush=True)

    deadline = time.monotonic() + args.max_seconds
    while time.monotonic() < deadline and not peer.disconnected:
        endpoint.libHandleEvents(POLL_MS)
        peer.step(time.monotonic())
    # A few more polls so the BYE's 200 goes out.
    for _ in range(10):
        endpoint.libHandleEvents(POLL_MS)

    report = {
        "answered": peer.answered_at is not None,
        "confirmed": peer.confirmed,
        "dtmf_sent": peer.dtmf_sent,
        "disconnected": peer.disconnected,
        "disconnect_status": peer.disconnect_status,
        "media_updates": peer.media_updates,
        "recorded": peer.recorded,
    }
    peer.stop_recording()
    # DESIGN §8: drop every Call reference before libDestroy().
    peer.call = None
    peer.audio = None
    del account
    gc.collect()
    endpoint.libDestroy()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
