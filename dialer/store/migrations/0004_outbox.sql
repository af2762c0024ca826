-- 0004: the transactional outbox of notifications (webhooks, Slack, email).
--
-- A row is written in the same transaction as the lead event that causes it, one row per
-- (event, endpoint), so a notification exists exactly when its cause committed. Delivery
-- workers claim due rows with FOR UPDATE SKIP LOCKED (several daemons share the table).
--
-- Life of a row: pending -> delivering -> delivered, or back to pending with a later
-- next_attempt_at after a failed attempt, or dead after max_attempts failures.
-- While delivering, next_attempt_at is the end of the claimant's lease: a worker that died
-- mid-delivery leaves a row that becomes due again when its lease lapses (at-least-once).
--
-- Order per lead: a row is claimable only when no earlier row (smaller id) of the same lead
-- and endpoint is still pending or delivering. Enqueueing takes the lead's row lock, so ids of
-- one lead are handed out in commit order.

CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id         uuid        NOT NULL REFERENCES leads (id),
    endpoint        text        NOT NULL,                   -- a [notify] endpoint name
    event_type      text        NOT NULL,                   -- e.g. lead.received
    payload         jsonb       NOT NULL,                   -- the JSON body, as sent
    -- "<event id>:<endpoint>": sent as Idempotency-Key; unique, so re-enqueueing is a no-op.
    idempotency_key text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    claimed_by      text,                                   -- worker id of the last claim
    claim_token     uuid,                                   -- fences late results of old claims
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    CONSTRAINT outbox_idempotency_key_key UNIQUE (idempotency_key),
    CONSTRAINT outbox_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT outbox_delivered_at_set CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);

-- Claiming: due rows of one endpoint, oldest first. Finished rows drop out of the index.
CREATE INDEX outbox_due_idx ON outbox (endpoint, next_attempt_at, id)
    WHERE status IN ('pending', 'delivering');

-- Order per lead: "is an earlier row of this lead and endpoint unfinished?"
CREATE INDEX outbox_lead_unfinished_idx ON outbox (lead_id, endpoint, id)
    WHERE status IN ('pending', 'delivering');

-- Operators: dead letters to inspect or replay.
CREATE INDEX outbox_dead_idx ON outbox (updated_at) WHERE status = 'dead';

-- A lead's notifications, for its page and for tests.
CREATE INDEX outbox_lead_idx ON outbox (lead_id, id);
