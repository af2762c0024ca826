-- 0001: leads and their append-only timeline.
--
-- A lead row is the current state; lead_events is the history. Every state change is one
-- statement (or one transaction) that updates leads and appends its lead_events row, so the
-- two never disagree. leads.event_seq is the last seq handed out for the lead: bumping it
-- with UPDATE takes the lead's row lock, which serialises appends per lead without a gap-free
-- sequence table.

CREATE TABLE leads (
    id              uuid        PRIMARY KEY,
    status          text        NOT NULL DEFAULT 'received',
    phone           text        NOT NULL,                   -- E.164
    name            text,
    email           text,
    company         text,
    source          text,
    external_id     text,
    idempotency_key text,
    intent          text        CHECK (intent IN ('high', 'medium', 'low')),
    consent         boolean,
    fields          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at     timestamptz NOT NULL,                   -- the daemon's clock
    submitted_at    timestamptz,                            -- the client's, clamped to received_at
    assigned_rep    text,
    -- Work claiming by several daemons (FOR UPDATE SKIP LOCKED), used by later issues.
    claimed_by      text,
    lease_until     timestamptz,
    next_attempt_at timestamptz,
    event_seq       integer     NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT leads_fields_is_object CHECK (jsonb_typeof(fields) = 'object'),
    CONSTRAINT leads_submitted_not_future CHECK (submitted_at IS NULL OR submitted_at <= received_at)
);

-- Idempotency is enforced here, never by a read-then-write. A lead without a source shares one
-- namespace of external ids (coalesce), and leads without an external id never conflict.
CREATE UNIQUE INDEX leads_source_external_id_key
    ON leads (coalesce(source, ''), external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX leads_idempotency_key_key
    ON leads (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Claiming: the next unfinished lead whose time has come.
CREATE INDEX leads_status_next_attempt_idx ON leads (status, next_attempt_at);
CREATE INDEX leads_received_at_idx ON leads (received_at);

CREATE TABLE lead_events (
    lead_id uuid        NOT NULL REFERENCES leads (id),
    seq     integer     NOT NULL CHECK (seq > 0),
    at      timestamptz NOT NULL,
    kind    text        NOT NULL,
    data    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT lead_events_lead_id_seq_key PRIMARY KEY (lead_id, seq)
);

-- The timeline is evidence (SLA, compliance): rows are never rewritten.
CREATE FUNCTION lead_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lead_events is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER lead_events_append_only
    BEFORE UPDATE OR DELETE ON lead_events
    FOR EACH ROW EXECUTE FUNCTION lead_events_append_only();
