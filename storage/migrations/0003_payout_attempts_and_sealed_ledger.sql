-- Payout attempts whose outcome is unknown, operator review of withdrawals, and sealed ledger transactions.

-- Set just before a payout request is sent: a later refusal then cannot prove that nothing was paid.
ALTER TABLE withdrawals ADD COLUMN payout_attempted_at timestamptz;
-- Why an operator must look at this withdrawal before anything else happens to it (NULL: nothing to look at).
ALTER TABLE withdrawals ADD COLUMN review_reason text;

-- A ledger transaction takes entries only in the database transaction that created it: entries cannot be
-- appended to one that has already committed. Each ledger transaction records the id of the database
-- transaction that wrote it (txid_current() is the top-level id, the same inside savepoints); a trigger
-- forces it, so it cannot be forged, and an entry is accepted only from that same database transaction.
ALTER TABLE ledger_transactions ADD COLUMN written_by_xact bigint;

CREATE FUNCTION ledger_transaction_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.written_by_xact := txid_current();
    NEW.created_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_transactions_stamp BEFORE INSERT ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_transaction_stamp();

CREATE OR REPLACE FUNCTION ledger_entry_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_balance numeric(20, 2);
    writer bigint;
BEGIN
    SELECT written_by_xact INTO writer FROM ledger_transactions WHERE id = NEW.transaction_id;
    IF writer IS DISTINCT FROM txid_current() THEN
        RAISE EXCEPTION 'ledger transaction % is sealed: entries are added only when it is created',
            NEW.transaction_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.created_at := now();
    UPDATE ledger_accounts
       SET balance = balance + NEW.amount, last_entry_at = now()
     WHERE id = NEW.account_id AND tracks_balance
    RETURNING balance INTO new_balance;
    NEW.balance_after := new_balance;
    RETURN NEW;
END $$;
