-- Currencies, deposit payments and their events, and the double-entry ledger.
-- Ledger invariants live here, in Postgres, not only in Python:
--   * every ledger transaction's entries sum to zero (deferred constraint trigger, checked at commit);
--   * user balances never go negative (CHECK);
--   * a tracked balance changes only through an entry, so it always equals the sum of its entries;
--   * transactions and entries are append-only (UPDATE, DELETE and TRUNCATE are refused);
--   * one ledger transaction per idempotency key (UNIQUE).

CREATE TABLE currencies (
    code             text PRIMARY KEY CHECK (code ~ '^[a-z0-9]{2,20}$'),
    name             text NOT NULL,
    network          text,
    ticker           text,
    precision        integer CHECK (precision BETWEEN 0 AND 18),
    wallet_regex     text,
    extra_id_required boolean NOT NULL DEFAULT false,
    extra_id_regex   text,
    min_amount_usd   numeric(20, 2) CHECK (min_amount_usd >= 0),
    gateway_enabled  boolean NOT NULL DEFAULT true,
    -- An operator's switch: a sync from the gateway never touches it.
    operator_active  boolean NOT NULL DEFAULT true,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id                     text PRIMARY KEY,
    request_id             text NOT NULL UNIQUE,
    request_fingerprint    text NOT NULL,
    user_id                text NOT NULL,
    amount_usd             numeric(20, 2) NOT NULL CHECK (amount_usd > 0),
    currency_code          text NOT NULL REFERENCES currencies (code),
    description            text NOT NULL DEFAULT '',
    status                 text NOT NULL DEFAULT 'pending' CHECK (status IN (
        'pending', 'confirming', 'confirmed', 'partially_paid',
        'completed', 'failed', 'expired', 'cancelled', 'refunded')),
    gateway_status         text,
    provider_payment_id    text UNIQUE,
    pay_address            text,
    payin_extra_id         text,
    pay_amount             numeric(38, 18),
    actually_paid          numeric(38, 18),
    pay_currency           text,
    network                text,
    payin_hash             text,
    expires_at             timestamptz,
    gateway_updated_at     timestamptz,
    error_code             text,
    error_message          text,
    -- creation lease: only the holder calls the gateway, so concurrent deliveries create one gateway payment
    create_claimed_until   timestamptz,
    -- partially paid payments become final (creditable) once past their expiry and grace
    final_at               timestamptz,
    credit_usd             numeric(20, 2),
    variance               text,
    hold_reason            text,
    settled_at             timestamptz,
    ledger_transaction_id  bigint,
    -- the next time the scheduler should look at this payment; NULL once nothing is left to do
    next_poll_at           timestamptz,
    poll_attempts          integer NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_due ON payments (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX payments_user ON payments (user_id, created_at DESC);

CREATE TABLE payment_events (
    id              bigserial PRIMARY KEY,
    payment_id      text NOT NULL REFERENCES payments (id),
    source          text NOT NULL CHECK (source IN ('create', 'poll', 'ipn', 'scheduler', 'settle', 'operator')),
    from_status     text,
    to_status       text,
    gateway_status  text,
    detail          jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_events_payment ON payment_events (payment_id, id);

-- Ledger -------------------------------------------------------------------------------------------

CREATE TABLE ledger_accounts (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL UNIQUE,
    kind            text NOT NULL CHECK (kind IN ('user_available', 'user_held', 'gateway_clearing', 'payouts', 'fees')),
    user_id         text,
    -- user accounts keep a running balance; platform accounts are summed from their entries
    tracks_balance  boolean NOT NULL,
    balance         numeric(20, 2),
    last_entry_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT balance_not_negative CHECK (balance >= 0),
    CONSTRAINT balance_tracked_iff_flag CHECK (tracks_balance = (balance IS NOT NULL)),
    CONSTRAINT user_accounts_have_user CHECK ((kind LIKE 'user_%') = (user_id IS NOT NULL)),
    CONSTRAINT user_accounts_track_balance CHECK (tracks_balance = (kind LIKE 'user_%'))
);

CREATE INDEX ledger_accounts_user ON ledger_accounts (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE ledger_transactions (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    type             text NOT NULL CHECK (type IN ('deposit', 'withdrawal', 'payment', 'refund', 'fee', 'bonus', 'adjustment')),
    description      text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    id              bigserial PRIMARY KEY,
    transaction_id  bigint NOT NULL REFERENCES ledger_transactions (id),
    account_id      bigint NOT NULL REFERENCES ledger_accounts (id),
    amount          numeric(20, 2) NOT NULL CHECK (amount <> 0),
    balance_after   numeric(20, 2),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id);

-- New accounts start empty: a balance cannot be conjured by inserting an account with one.
CREATE FUNCTION ledger_account_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.balance := CASE WHEN NEW.tracks_balance THEN 0 ELSE NULL END;
    NEW.last_entry_at := NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_account_open BEFORE INSERT ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_account_open();

-- A balance moves only from inside ledger_entry_apply (trigger depth 2), never by a direct UPDATE.
CREATE FUNCTION ledger_account_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger accounts cannot be deleted' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.code IS DISTINCT FROM OLD.code OR NEW.kind IS DISTINCT FROM OLD.kind
       OR NEW.user_id IS DISTINCT FROM OLD.user_id OR NEW.tracks_balance IS DISTINCT FROM OLD.tracks_balance THEN
        RAISE EXCEPTION 'ledger account % cannot be redefined', OLD.code USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.balance IS DISTINCT FROM OLD.balance AND pg_trigger_depth() < 2 THEN
        RAISE EXCEPTION 'balance of % changes only through ledger entries', OLD.code
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_account_guard BEFORE UPDATE OR DELETE ON ledger_accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_account_guard();

-- Applying an entry moves the account's running balance and records balance_after.
-- The CHECK on ledger_accounts refuses an overdraft, aborting the whole transaction.
CREATE FUNCTION ledger_entry_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_balance numeric(20, 2);
BEGIN
    UPDATE ledger_accounts
       SET balance = balance + NEW.amount, last_entry_at = now()
     WHERE id = NEW.account_id AND tracks_balance
    RETURNING balance INTO new_balance;
    NEW.balance_after := new_balance;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_entry_apply BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_apply();

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_accounts_no_truncate BEFORE TRUNCATE ON ledger_accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- At commit: each touched ledger transaction has at least two entries summing to zero.
CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tx_id bigint;
    total numeric;
    n integer;
BEGIN
    -- Each branch names only its own table's column: plpgsql resolves NEW fields when a line runs.
    IF TG_TABLE_NAME = 'ledger_entries' THEN
        tx_id := NEW.transaction_id;
    ELSE
        tx_id := NEW.id;
    END IF;
    SELECT coalesce(sum(amount), 0), count(*) INTO total, n FROM ledger_entries WHERE transaction_id = tx_id;
    IF n < 2 OR total <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: % entries summing to %', tx_id, n, total
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();
CREATE CONSTRAINT TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();

ALTER TABLE payments
    ADD CONSTRAINT payments_ledger_transaction FOREIGN KEY (ledger_transaction_id) REFERENCES ledger_transactions (id);
