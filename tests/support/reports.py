"""A fixture of 50 leads with known timestamps, for the reports tests.

Written through the store (``Store.create_lead``, ``Store.append_event``) plus the pipeline's
columns set directly (``called_at``, ``assigned_rep``, ``sla_due_at``), exactly as the pipeline
leaves them. The expected report values are worked out by hand in the tests
(tests/dialer/test_store_reports.py), from the table below.

Five groups of ten leads (clock start ``T0 + group * 2 h + j * 5 min``; group "none" at
``T0 + 20 h + j * 1 min``). Every other lead has a ``submitted_at`` 2 s before its
``received_at`` (the clock starts at the submission). Time-to-call in seconds (None: never
dialled):

====== ====== ======= ====== ===================================================
rep    team   source  intent time-to-call (s)
====== ====== ======= ====== ===================================================
ann    west   web     high   10 20 30 40 50 70 100 200 400 900
bob    west   crm     medium 30 45 60 120 240 600 1200* 1800 2400** 4000
cid    east   web     low    5 5 5 5 5 3000 3000 3000 7200 90000
dee    east,  crm     (none) 100 200 300 400 500 600 700 800 900 1000
       north
(none)        partner high   never dialled (10 leads)
====== ====== ======= ====== ===================================================

``*`` ``sla_due_at`` = clock start + 900 s (a rule's SLA); ``**`` = clock start + 2400 s.
Connected (a ``connected`` event): ann all but the 900 s lead; bob 30, 60, 240, 1200, 4000;
cid the first two; dee all. ``sla_breached`` events: ann 400 s ``all_missed``, ann 900 s
``rep_rejected``; bob 1200 s ``all_missed`` (4000 s: none); cid 90000 s
``prospect_unreachable``; group none j=0..3 ``no_rep_available``, j=4..6
``outside_calling_hours``, j=7..9 none.

Two more leads of ann fall outside ``[T0, T0 + 24 h)``: received 1 s before ``T0`` and at
``T0 + 24 h`` exactly (the range is half-open).

Voicemail (press-1: a rep leg picked up by a voicemail box, a ``rep_voicemail`` event then a
``rep_leg_ended`` with result ``voicemail``): on ann's leads j=0 and j=8, bob's leg; on ann's
j=8, cid's leg too; on group none j=0, ann's leg (a lead nobody took). On the out-of-range
lead at ``T0 + 24 h``, bob's leg (not counted). Per rep: ann 1, bob 2, cid 1, dee 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from dialer.config import Config, parse_config
from dialer.domain import Intent
from dialer.store import NewLead, Store

__all__ = ["T0", "FixtureLead", "build_leads", "insert_fixture", "reports_config"]

T0: Final = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
RANGE_END: Final = T0 + timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FixtureLead:
    """One lead of the fixture."""

    clock_start: datetime
    submitted: bool
    rep: str | None
    source: str
    intent: Intent | None
    ttc_s: float | None
    sla_due_after_s: float | None = None
    connected: bool = False
    breach_reason: str | None = None
    #: Reps whose leg on this lead went to voicemail.
    voicemail_reps: tuple[str, ...] = ()


_GROUPS: Final = (
    ("ann", "web", Intent.HIGH, [10, 20, 30, 40, 50, 70, 100, 200, 400, 900]),
    ("bob", "crm", Intent.MEDIUM, [30, 45, 60, 120, 240, 600, 1200, 1800, 2400, 4000]),
    ("cid", "web", Intent.LOW, [5, 5, 5, 5, 5, 3000, 3000, 3000, 7200, 90000]),
    ("dee", "crm", None, [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]),
)
_CONNECTED: Final = {
    "ann": {0, 1, 2, 3, 4, 5, 6, 7, 8},
    "bob": {0, 2, 4, 6, 9},
    "cid": {0, 1},
    "dee": set(range(10)),
}
_BREACHES: Final = {
    ("ann", 8): "all_missed",
    ("ann", 9): "rep_rejected",
    ("bob", 6): "all_missed",
    ("cid", 9): "prospect_unreachable",
}
_DUE_OVERRIDES: Final = {("bob", 6): 900.0, ("bob", 8): 2400.0}
_VOICEMAILS: Final = {("ann", 0): ("bob",), ("ann", 8): ("bob", "cid"), (None, 0): ("ann",)}


def build_leads() -> list[FixtureLead]:
    """The 50 leads in the range, then the two outside it."""
    leads: list[FixtureLead] = []
    for group, (rep, source, intent, ttcs) in enumerate(_GROUPS):
        for j, ttc in enumerate(ttcs):
            leads.append(
                FixtureLead(
                    clock_start=T0 + timedelta(hours=2 * group, minutes=5 * j),
                    submitted=j % 2 == 1,
                    rep=rep,
                    source=source,
                    intent=intent,
                    ttc_s=float(ttc),
                    sla_due_after_s=_DUE_OVERRIDES.get((rep, j)),
                    connected=j in _CONNECTED[rep],
                    breach_reason=_BREACHES.get((rep, j)),
                    voicemail_reps=_VOICEMAILS.get((rep, j), ()),
                )
            )
    for j in range(10):
        reason = None
        if j < 4:
            reason = "no_rep_available"
        elif j < 7:
            reason = "outside_calling_hours"
        leads.append(
            FixtureLead(
                clock_start=T0 + timedelta(hours=20, minutes=j),
                submitted=j % 2 == 1,
                rep=None,
                source="partner",
                intent=Intent.HIGH,
                ttc_s=None,
                breach_reason=reason,
                voicemail_reps=_VOICEMAILS.get((None, j), ()),
            )
        )
    for clock_start in (T0 - timedelta(seconds=1), RANGE_END):
        leads.append(
            FixtureLead(
                clock_start=clock_start,
                submitted=False,
                rep="ann",
                source="web",
                intent=Intent.HIGH,
                ttc_s=10.0,
                connected=True,
                voicemail_reps=("bob",) if clock_start == RANGE_END else (),
            )
        )
    return leads


def reports_config() -> Config:
    """Reps and teams of the fixture, default ``[sla]`` (high 300 s, medium 1 h, low 1 d)."""
    return parse_config(
        {
            "api": {"tokens": ["reports-token"]},
            "reps": [
                {"id": "ann", "sip_uri": "sip:ann@127.0.0.1", "teams": ["west"]},
                {"id": "bob", "sip_uri": "sip:bob@127.0.0.1", "teams": ["west"]},
                {"id": "cid", "sip_uri": "sip:cid@127.0.0.1", "teams": ["east"]},
                {"id": "dee", "sip_uri": "sip:dee@127.0.0.1", "teams": ["east", "north"]},
            ],
        },
        env={},
    )


async def insert_fixture(store: Store) -> list[str]:
    """Insert every fixture lead with its events; returns the ids in :func:`build_leads`
    order."""
    ids: list[str] = []
    pool = store.pool
    for index, spec in enumerate(build_leads()):
        # The submission is 2 s before receipt, so the clock start is still ``clock_start``.
        received_at = spec.clock_start + timedelta(seconds=2 if spec.submitted else 0)
        lead, created = await store.create_lead(
            NewLead(
                phone="+14155550100",
                source=spec.source,
                external_id=f"fixture-{index}",
                intent=spec.intent,
                received_at=received_at,
                submitted_at=spec.clock_start if spec.submitted else None,
            )
        )
        assert created
        ids.append(lead.id)
        due_at = (
            spec.clock_start + timedelta(seconds=spec.sla_due_after_s)
            if spec.sla_due_after_s is not None
            else None
        )
        called_at = (
            spec.clock_start + timedelta(seconds=spec.ttc_s) if spec.ttc_s is not None else None
        )
        await pool.execute(
            "UPDATE leads SET assigned_rep = $2, sla_due_at = $3, called_at = $4"
            " WHERE id = $1::uuid",
            lead.id,
            spec.rep,
            due_at,
            called_at,
        )
        for rep_id in spec.voicemail_reps:
            at = spec.clock_start + timedelta(seconds=3)
            await store.append_event(lead.id, "rep_voicemail", {"leg": 1, "rep_id": rep_id}, at=at)
            await store.append_event(
                lead.id, "rep_leg_ended", {"rep_id": rep_id, "result": "voicemail"}, at=at
            )
        if called_at is not None:
            await store.append_event(
                lead.id, "calling_prospect", {"rep_id": spec.rep}, at=called_at
            )
        if spec.connected and called_at is not None:
            await store.append_event(
                lead.id, "connected", {"rep_id": spec.rep}, at=called_at + timedelta(seconds=5)
            )
        if spec.breach_reason is not None:
            await store.append_event(
                lead.id,
                "sla_breached",
                {"reason": spec.breach_reason},
                at=spec.clock_start + timedelta(seconds=300),
            )
    return ids
