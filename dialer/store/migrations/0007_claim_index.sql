-- 0007: claiming work no longer walks the leads already in hand.
--
-- leads_claimable_idx (0003) held every open lead, claimed or not, and the claim filtered out
-- the claimed ones with live leases row by row. A bridged call stays ``connected`` and claimed
-- for its whole duration, so with thousands of held calls every claim walked thousands of
-- rows. The claim (dialer/store/pipeline.py, _CLAIM_READY) now reads three disjoint sets, each
-- from an index whose scan touches only candidates:
--   * fresh work: unclaimed leads in a working status, oldest first (below);
--   * recovery: claimed leads, by lease expiry (below; the index range stops at now(), so
--     live leases are never walked);
--   * due retries: scheduled leads by retry time, from leads_status_next_attempt_idx (0001),
--     whose range also stops at now(), so leads scheduled for later (outside calling hours)
--     are never walked either. Scheduled leads are therefore left out of the fresh index.
--
-- Plain CREATE INDEX, not CONCURRENTLY: the migration runner (dialer/store/migrate.py) applies
-- each file in a transaction, where CONCURRENTLY is not allowed. The build holds a SHARE lock
-- on leads (writes wait, reads do not) while it scans the table, twice.

CREATE INDEX leads_claim_fresh_idx ON leads ((coalesce(next_attempt_at, received_at)))
    WHERE claimed_by IS NULL
      AND status IN ('received', 'routing', 'ringing_reps', 'calling_prospect', 'connected');

CREATE INDEX leads_claim_lease_idx ON leads (lease_until, (coalesce(next_attempt_at, received_at)))
    WHERE claimed_by IS NOT NULL
      AND status IN ('received', 'routing', 'ringing_reps', 'calling_prospect', 'connected',
                     'scheduled');

-- Only the claim used it (the SLA queries have leads_sla_open_idx, start-up expiry and
-- shutdown unclaim use leads_claimed_by_idx, reports and pages their own). DROP INDEX takes an
-- ACCESS EXCLUSIVE lock on leads until this file's transaction commits: it comes last.
DROP INDEX leads_claimable_idx;
