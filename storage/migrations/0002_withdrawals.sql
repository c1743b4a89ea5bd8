-- Withdrawal requests, their audit trail, and the hold/post/release ledger links.

CREATE TABLE withdrawals (
    id                    text PRIMARY KEY,
    request_id            text NOT NULL UNIQUE,
    request_fingerprint   text NOT NULL,
    user_id               text NOT NULL,
    amount_usd            numeric(20, 2) NOT NULL CHECK (amount_usd > 0),
    currency_code         text NOT NULL REFERENCES currencies (code),
    wallet_address        text NOT NULL,
    extra_id              text,
    network_fee_usd       numeric(20, 2) NOT NULL CHECK (network_fee_usd >= 0),
    service_fee_usd       numeric(20, 2) NOT NULL CHECK (service_fee_usd >= 0),
    total_fee_usd         numeric(20, 2) NOT NULL CHECK (total_fee_usd = network_fee_usd + service_fee_usd),
    final_amount_usd      numeric(20, 2) NOT NULL CHECK (final_amount_usd > 0),
    status                text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'approved', 'processing', 'completed', 'rejected', 'cancelled', 'failed')),
    payout_mode           text CHECK (payout_mode IN ('gateway', 'manual')),
    payout_amount         numeric(38, 18),
    provider_payout_id    text UNIQUE,
    payout_status         text,
    transaction_hash      text,
    error_code            text,
    error_message         text,
    -- only the holder calls the payout API, so concurrent deliveries send one payout
    payout_claimed_until  timestamptz,
    -- when the scheduler should next ask the gateway about a payout in flight
    next_check_at         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    completed_at          timestamptz,
    CONSTRAINT withdrawal_amount_splits CHECK (amount_usd = final_amount_usd + total_fee_usd)
);

CREATE INDEX withdrawals_due ON withdrawals (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX withdrawals_user ON withdrawals (user_id, created_at DESC);
CREATE INDEX withdrawals_open ON withdrawals (status) WHERE status IN ('pending', 'approved', 'processing');

-- Who moved a withdrawal, when and why: every transition is recorded here.
CREATE TABLE withdrawal_events (
    id              bigserial PRIMARY KEY,
    withdrawal_id   text NOT NULL REFERENCES withdrawals (id),
    from_status     text,
    to_status       text NOT NULL,
    actor           text NOT NULL,
    note            text NOT NULL DEFAULT '',
    detail          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX withdrawal_events_withdrawal ON withdrawal_events (withdrawal_id, id);

CREATE TRIGGER withdrawal_events_append_only BEFORE UPDATE OR DELETE ON withdrawal_events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
