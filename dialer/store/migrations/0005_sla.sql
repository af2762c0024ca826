-- 0005: SLA milestones recorded once, and the open leads the SLA timers watch.
--
-- Every daemon on the database watches every open lead's SLA clock (so a lead is escalated
-- even when the daemon that stored it died). Each milestone must still be recorded once: the
-- escalation takes the lead's row lock and checks the timeline, and this unique index is the
-- backstop (INSERT ... ON CONFLICT DO NOTHING), so two daemons never both record a breach.
CREATE UNIQUE INDEX lead_events_sla_milestone_key
    ON lead_events (lead_id, kind) WHERE kind IN ('sla_at_risk', 'sla_breached');

-- The last SLA milestone recorded for the lead (NULL: none yet). Written in the escalation's
-- transaction, with its lead_events row; it keeps breached leads out of the index below, so
-- start-up and re-sync scan only leads whose clock still runs.
ALTER TABLE leads
    ADD COLUMN sla_milestone text CHECK (sla_milestone IN ('at_risk', 'breached'));

-- Open SLA clocks: not called yet, not breached yet, and not closed without a call (blocked
-- by compliance, or failed: an invalid lead is never called, lead.failed already tells).
CREATE INDEX leads_sla_open_idx ON leads (received_at)
    WHERE called_at IS NULL AND sla_milestone IS DISTINCT FROM 'breached'
      AND status NOT IN ('completed', 'blocked_compliance', 'failed');

-- Reports: breaches by reason and connected calls look events up by kind.
CREATE INDEX lead_events_kind_lead_idx ON lead_events (kind, lead_id)
    WHERE kind IN ('sla_breached', 'connected');
