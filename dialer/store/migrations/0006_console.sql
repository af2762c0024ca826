-- 0006: what reps record after a call (rep console), and what the dashboard reads fast.
--
-- A disposition is history, not state: a rep who picked the wrong button saves another one,
-- and the latest row is the lead's disposition. Each row is written in the same transaction
-- as its ``disposition`` lead_events row (and its webhook outbox rows).

CREATE TABLE lead_dispositions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lead_id     uuid        NOT NULL REFERENCES leads (id),
    rep_id      text        NOT NULL,
    disposition text        NOT NULL CHECK (disposition IN (
                    'connected', 'voicemail', 'wrong_number', 'qualified', 'not_interested',
                    'callback')),
    notes       text        NOT NULL DEFAULT '' CHECK (length(notes) <= 4000),
    at          timestamptz NOT NULL
);

CREATE INDEX lead_dispositions_lead_idx ON lead_dispositions (lead_id, id DESC);
CREATE INDEX lead_dispositions_rep_at_idx ON lead_dispositions (rep_id, at);

-- Dashboard: open leads by deadline, and daily trends by time of the first call.
CREATE INDEX leads_called_at_idx ON leads (called_at) WHERE called_at IS NOT NULL;
-- Rep board: who missed which leg today (rep_leg_ended events by rep).
CREATE INDEX lead_events_kind_at_idx ON lead_events (kind, at);
