-- Requests a worker refused (a raw message, or a race with a currency switched off): the definite answer
-- `GET /v1/deposits/{request_id}` and `GET /v1/withdrawals/by-request/{request_id}` give for them. The first
-- refusal of a request_id is the answer for good: a replay finds it and is refused the same way.
CREATE TABLE request_rejections (
    kind          text NOT NULL CHECK (kind IN ('deposit', 'withdrawal')),
    request_id    text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
    -- The refused arguments' fingerprint (as payments/withdrawals.request_fingerprint); NULL when they could not be read.
    request_fingerprint text,
    error         text NOT NULL CHECK (length(error) <= 64),
    reason        text NOT NULL CHECK (length(reason) <= 500),
    field         text CHECK (length(field) <= 64),
    rejected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, request_id)
);

-- A record of what happened, like the ledger: never changed or removed.
CREATE FUNCTION request_rejections_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'request_rejections is append-only' USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER request_rejections_append_only BEFORE UPDATE OR DELETE ON request_rejections
    FOR EACH ROW EXECUTE FUNCTION request_rejections_append_only();
