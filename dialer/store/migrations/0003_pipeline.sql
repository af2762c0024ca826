-- 0003: what the pipeline needs to resume any lead from its last durable state.
--
-- A lead being worked on is claimed by one daemon (leads.claimed_by + lease_until, from 0001),
-- renewed by that daemon's heartbeat. The columns below are the durable facts a daemon that
-- takes a lead over (after a crash, or after its lease lapsed) needs to carry on: the SLA
-- deadline the routing rule chose, when a rep first answered, when the prospect was first
-- dialled with a rep on the line (time-to-call), how many ring rounds and prospect attempts
-- were spent, and which reps were already rung.

ALTER TABLE leads
    ADD COLUMN sla_due_at        timestamptz,                 -- from the routing decision
    ADD COLUMN first_touch_at    timestamptz,                 -- first rep leg answered
    ADD COLUMN called_at         timestamptz,                 -- first prospect INVITE, rep on line
    ADD COLUMN ring_rounds       integer     NOT NULL DEFAULT 0,
    ADD COLUMN tried_reps        text[]      NOT NULL DEFAULT '{}',
    ADD COLUMN prospect_attempts integer     NOT NULL DEFAULT 0,
    ADD COLUMN waiting_since     timestamptz,                 -- entered waiting_for_rep
    ADD COLUMN status_reason     text;                        -- why the last status was set

-- Claiming (FOR UPDATE SKIP LOCKED): only open leads are indexed, so the claim query stays
-- cheap however many finished leads the table holds.
CREATE INDEX leads_claimable_idx ON leads ((coalesce(next_attempt_at, received_at)))
    WHERE status IN ('received', 'routing', 'ringing_reps', 'calling_prospect', 'connected',
                     'scheduled');
-- Waiting leads are offered to the first free rep, oldest SLA first.
CREATE INDEX leads_waiting_idx ON leads (sla_due_at) WHERE status = 'waiting_for_rep';
-- Keyset pagination of GET /v1/leads, with or without a status filter.
CREATE INDEX leads_received_id_idx ON leads (received_at, id);
CREATE INDEX leads_status_received_id_idx ON leads (status, received_at, id);
-- Start-up recovery and lease sweeps look leads up by owner.
CREATE INDEX leads_claimed_by_idx ON leads (claimed_by) WHERE claimed_by IS NOT NULL;

-- The rep lifecycle driven by the pipeline: reserved -> ringing -> on_call -> wrap_up ->
-- available. ``activity`` is set only while the pipeline owns the rep (ringing, on a call);
-- together with the reservation lease it lets any daemon free a rep whose daemon died.
ALTER TABLE reps
    ADD COLUMN activity      text CHECK (activity IN ('ringing', 'on_call')),
    ADD COLUMN wrap_up_until timestamptz,
    ADD COLUMN missed_in_row integer NOT NULL DEFAULT 0;

-- Wake-ups for every daemon on this database (LISTEN dialer_pipeline): a new lead to route,
-- or a rep who became free for the leads waiting for one. Notifications are delivered at
-- commit, so a listener never looks for a row it cannot see yet.
CREATE FUNCTION dialer_notify_lead_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialer_pipeline', 'lead');
    RETURN NULL;
END;
$$;

CREATE TRIGGER leads_notify_stored
    AFTER INSERT ON leads
    FOR EACH STATEMENT EXECUTE FUNCTION dialer_notify_lead_stored();

CREATE FUNCTION dialer_notify_rep_free() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialer_pipeline', 'rep');
    RETURN NULL;
END;
$$;

CREATE TRIGGER reps_notify_free
    AFTER UPDATE ON reps
    FOR EACH ROW
    WHEN (NEW.active AND NEW.status = 'available' AND NEW.reserved_by IS NULL
          AND (OLD.status IS DISTINCT FROM 'available' OR OLD.reserved_by IS NOT NULL))
    EXECUTE FUNCTION dialer_notify_rep_free();
