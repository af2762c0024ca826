"""A short SIPp load in CI: ``dialer run`` under 15 leads/s for 18 s, parallel ring of 3.

Reps are SIPp UAS processes (many reps per SIPp, told apart by the user part of their URI):
most answer after a lognormal delay, 10% answer 486 Busy, 10% never answer and wait for the
CANCEL. The prospects answer and hang up after a second. The test fails on correctness only,
never on timing:

- a lost lead: every ``202`` must end ``completed``, or parked (``waiting_for_rep`` /
  ``scheduled``) when every rep it rang was busy or silent;
- a rep rung for two leads at once, seen from the daemon's timelines *and* from SIPp's own
  message logs (per rep user part, INVITE to CANCEL/BYE/failure, no overlap);
- any SIP error SIPp saw: a failed call or an unexpected message, or a rep call that never
  ended (a CANCEL never sent leaves a losing rep ringing).

Shown to catch a dropped CANCEL (CallController._cancel returning without sending it, in a
copy of the tree): the run fails (leads stuck ringing, 40 rep calls never ended, SIPp call
timeouts); see benchmarks/README.md, "Time to call under load".
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from benchmarks.load_common import (
    DONE_STATUSES,
    PARKED_STATUSES,
    AnswerDelay,
    Floor,
    FloorSpec,
    LeadGenerator,
    analyse,
    fetch_leads,
    sipp_glare_aborts,
    sipp_rep_overlaps,
    sipp_unended_calls,
    wait_settled,
)
from tests.support.sipp import needs_sipp

pytestmark = [pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow, needs_sipp]

RATE = 15.0
DURATION_S = 18.0
#: A losing rep leg whose CANCEL was answered 200 but whose INVITE never gets its 487 (SIPp
#: aborts the call on glare, see below) ends only when the INVITE transaction gives up, 64*T1 =
#: 32 s after the CANCEL (RFC 3261 section 9.1); its lead stays ``connected`` until then, so the
#: settle window must outlast that timer. Without glare every lead settles within seconds.
SETTLE_S = 45.0


@pytest.mark.timeout(140)
async def test_short_load_loses_no_lead_rings_no_rep_twice_and_sees_no_sip_error(
    tmp_path: Path, database_url: str
) -> None:
    spec = FloorSpec(
        reps=60,
        rep_sipps=2,
        ring_size=3,
        ring_timeout_s=3.0,
        answer=AnswerDelay(kind="lognormal", median_ms=300, sigma=0.5),
        p_busy=0.1,
        p_no_answer=0.1,
        hold_ms=1000,
        retry_after_s=0.5,
        max_rounds=2,
        trace_messages=True,
        sipp_timeout_s=100,
        pin=False,
        buff_size=None,
        database_url=database_url,
        pool_max=6,
    )
    floor = Floor(spec, workdir=tmp_path / "floor")
    async with floor:
        generator = LeadGenerator(
            floor.base_url, rate=RATE, duration=DURATION_S, run_id=f"ci-{time.time():.0f}"
        )
        posted = await generator.run()
        accepted = [p for p in posted if p.status == 202 and p.lead_id]
        assert len(accepted) == len(posted), [p for p in posted if p.status != 202][:3]
        await wait_settled(
            floor.base_url,
            expected=len(accepted),
            timeout=SETTLE_S,
            settled=DONE_STATUSES | PARKED_STATUSES,
        )
        leads = await fetch_leads(floor.base_url, [p.lead_id for p in accepted if p.lead_id])
        results, exit_code = await floor.stop()

    report = analyse(posted, leads)
    assert report["lost_leads"] == 0, (report["statuses"], report["lost_examples"])
    # Well below the daemon's capacity every lead settles within the drain.
    assert report["unfinished_leads"] == 0, report["statuses"]
    # Most leads were bridged: the run exercised the whole path, not only the parking lot.
    assert report["statuses"].get("completed", 0) >= 0.8 * len(accepted), report["statuses"]
    assert report["double_rung"] == [], report["double_rung"]
    logs = [sipp.workdir / "messages.log" for sipp in floor.rep_sipps]
    overlaps = sipp_rep_overlaps(logs)
    assert overlaps == [], overlaps[:5]
    # Every rep call SIPp saw also ended (a losing leg never CANCELled rings on).
    unended = sipp_unended_calls(logs)
    assert unended == [], (len(unended), unended[:5])
    delays = spec.answer.delays_ms()
    for result in results:
        assert result.unexpected_messages == 0, (result.summary(), result.errors()[-3000:])
        # Two reps with the same simulated answer delay answer at the same instant: the
        # loser's CANCEL can cross its 200 inside SIPp, which then aborts that call. That is
        # glare (the daemon handles it), not a daemon error; every other failure is one.
        glare, other = sipp_glare_aborts(result.workdir, delays)
        assert other == [], other[:5]
        assert result.failed_calls == glare, (result.summary(), result.errors()[-3000:])
    assert exit_code == 0, floor.log_path.read_text()[-3000:]
