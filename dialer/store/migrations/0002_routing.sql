-- 0002: routing state shared by every daemon on this database.
--
-- reps mirrors [[reps]] (synced from config at start) plus the live state only the database
-- can hold across daemons: status, the reservation that keeps a rep from being rung for two
-- leads at once (reserved_by + lease_until + the daemon holding it), and the counters the
-- strategies and capacity limits read. Reserving uses SELECT ... FOR UPDATE SKIP LOCKED, so
-- two daemons never take the same rep; a lease that lapses (a daemon died) frees the rep.

CREATE TABLE reps (
    id                 text        PRIMARY KEY,
    name               text        NOT NULL,
    sip_uri            text        NOT NULL,
    timezone           text        NOT NULL DEFAULT 'UTC',  -- for "today" in the rep's zone
    -- false when the rep is no longer in the config: kept for history, never routed to.
    active             boolean     NOT NULL DEFAULT true,
    status             text        NOT NULL DEFAULT 'available'
        CHECK (status IN ('available', 'busy', 'wrap_up', 'away', 'offline')),
    status_changed_at  timestamptz NOT NULL DEFAULT now(),
    reserved_by        text,                                 -- lead id
    reserved_until     timestamptz,
    reserved_by_daemon text,
    last_assigned_at   timestamptz,
    calls_day          date,                                 -- the day calls_today counts
    calls_today        integer     NOT NULL DEFAULT 0,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reps_reservation_complete
        CHECK ((reserved_by IS NULL) = (reserved_until IS NULL))
);

CREATE INDEX reps_reserved_by_idx ON reps (reserved_by) WHERE reserved_by IS NOT NULL;

-- One row per lead given to a rep: capacity (last hour, today) and history.
CREATE TABLE rep_assignments (
    rep_id      text        NOT NULL REFERENCES reps (id),
    lead_id     text        NOT NULL,
    assigned_at timestamptz NOT NULL,
    CONSTRAINT rep_assignments_pkey PRIMARY KEY (rep_id, assigned_at, lead_id)
);

-- Every distinct rule set ever loaded, by content hash.
CREATE TABLE routing_rulesets (
    version             text        PRIMARY KEY,             -- sha256 of the canonical JSON
    body                jsonb       NOT NULL,
    first_activated_at  timestamptz NOT NULL,
    activated_at        timestamptz NOT NULL                 -- last time a daemon loaded it
);

-- Round-robin position per rule pool (key: rule name, "<rule>#overflow", "fallback"), shared by
-- every daemon: the row lock serialises reservations of one pool, which keeps turns fair.
CREATE TABLE routing_cursors (
    key        text        PRIMARY KEY,
    position   integer     NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Each routing decision: which rule-set version decided, and the full explanation.
CREATE TABLE routing_decisions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id     uuid        NOT NULL REFERENCES leads (id),
    version     text        NOT NULL REFERENCES routing_rulesets (version),
    decided_at  timestamptz NOT NULL,
    rule        text        NOT NULL,
    outcome     text        NOT NULL,
    explanation jsonb       NOT NULL
);

CREATE INDEX routing_decisions_lead_idx ON routing_decisions (lead_id, decided_at);

-- Do-not-call list (E.164).
CREATE TABLE dnc (
    phone    text        PRIMARY KEY,
    reason   text        NOT NULL DEFAULT '',
    added_at timestamptz NOT NULL DEFAULT now()
);
