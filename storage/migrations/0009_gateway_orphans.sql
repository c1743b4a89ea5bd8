-- Gateway payments that carry one of our order ids (a PAY_… id) under a provider id we never stored:
-- a worker died between the gateway's answer and our write, and the retry made a second payment.
-- They are found by `payments reconcile --gateway` and kept for an operator. Nothing is ever credited
-- from this table: funds received on an orphan are held for review until an operator resolves it.
CREATE TABLE gateway_orphans (
    provider_payment_id text PRIMARY KEY,
    payment_id          text NOT NULL REFERENCES payments (id),
    gateway_status      text NOT NULL,
    pay_currency        text,
    pay_amount          numeric(38, 18),
    actually_paid       numeric(38, 18),
    funds_received      boolean NOT NULL,
    found_at            timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    resolved_at         timestamptz,
    resolved_by         text CHECK (length(resolved_by) <= 200),
    resolution_note     text CHECK (length(resolution_note) <= 2000),
    CONSTRAINT orphan_resolved_by_someone CHECK ((resolved_at IS NULL) = (resolved_by IS NULL))
);

CREATE INDEX gateway_orphans_unresolved ON gateway_orphans (found_at) WHERE resolved_at IS NULL;
