-- The notification outbox: one row per event, written by the same database transaction as the change it
-- announces (so nothing is announced that did not commit), delivered afterwards by the delivery stage.

CREATE TABLE outbox_events (
    seq bigserial PRIMARY KEY,
    -- Public id, sent as `webhook-id` and used as the events API cursor. Never contains a full stop (Standard
    -- Webhooks signs "{id}.{timestamp}.{body}").
    id text NOT NULL UNIQUE CHECK (id ~ '^evt_[a-z0-9]+$'),
    type text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    subject_id text NOT NULL CHECK (length(subject_id) BETWEEN 1 AND 128),
    -- The same fact recorded twice (a redelivered message, a replayed callback) is one event.
    dedupe_key text UNIQUE,
    -- The exact JSON body sent, so every attempt and every reader sees the same bytes.
    payload text NOT NULL CHECK ((payload::jsonb ->> 'id') = id),
    created_at timestamptz NOT NULL,
    -- The writing database transaction (top-level id, the same inside savepoints). Sequence values are not
    -- commit order; readers only see events whose transaction is older than every transaction still running,
    -- ordered by (xact_id, seq), so an event that commits late can never land behind a reader's cursor.
    xact_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    -- Delivery state.
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_attempt_at timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_token uuid,
    leased_until timestamptz,
    -- Set when the scheduler enqueued this subject's delivery, so it is not enqueued again every tick.
    queued_until timestamptz,
    last_error text,
    delivered_at timestamptz,
    given_up_at timestamptz,
    CHECK (delivered_at IS NULL OR given_up_at IS NULL)
);

-- A trigger, not only a default: the writer cannot forge its place in the readers' order.
CREATE FUNCTION outbox_event_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.xact_id := pg_current_xact_id();
    RETURN NEW;
END $$;

CREATE TRIGGER outbox_events_stamp BEFORE INSERT ON outbox_events
    FOR EACH ROW EXECUTE FUNCTION outbox_event_stamp();

-- The events API reads in (xact_id, seq) order from a cursor.
CREATE INDEX outbox_events_read_order ON outbox_events (xact_id, seq);
CREATE INDEX outbox_events_created_at ON outbox_events (created_at);
-- Delivery finds a subject's oldest pending event, and the scheduler the pending events that are due.
CREATE INDEX outbox_events_pending_by_subject ON outbox_events (subject_id, xact_id, seq)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE INDEX outbox_events_pending_due ON outbox_events (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
