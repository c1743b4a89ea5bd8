-- Balances move once per statement per account instead of once per entry row.
--
-- Until now every entry row UPDATEd its account's balance from its BEFORE trigger: a group of N deposits
-- for one busy user rewrote that one row N times in a transaction (N row versions, and N guard-trigger
-- calls), which was most of the time a group spent in Postgres. The rules are unchanged:
--   * each entry's balance_after is the account's balance after it, chained in entry-id order, computed
--     here (whatever the INSERT says) from the account row locked by the writing transaction;
--   * a balance never goes negative, not even between two entries of one statement;
--   * a balance equals the sum of its entries (it moves by exactly the statement's entries);
--   * entries join only ledger transactions of their own database transaction (the seal of 0003).
--
-- Per row (BEFORE INSERT): the seal, and balance_after = the balance so far in this statement, read from
-- the locked account row and the statement's own latest entry for it (rows of the same statement that
-- were already processed are visible to the trigger). Per statement (AFTER INSERT, with the transition
-- table of the inserted rows): every balance_after is verified against the locked balance plus the
-- running sum in id order, none may be negative, and each account's balance moves once by its total.

CREATE FUNCTION ledger_entries_mark_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Entries of this statement get ids above this; only a hint (the statement check below is authoritative).
    PERFORM set_config('ledger.entries_after', (SELECT last_value FROM ledger_entries_id_seq)::text, true);
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_mark_statement BEFORE INSERT ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_mark_statement();

CREATE OR REPLACE FUNCTION ledger_entry_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    writer bigint;
    stored numeric(20, 2);
    so_far numeric(20, 2);
BEGIN
    SELECT written_by_xact INTO writer FROM ledger_transactions WHERE id = NEW.transaction_id;
    IF writer IS DISTINCT FROM txid_current() THEN
        RAISE EXCEPTION 'ledger transaction % is sealed: entries are added only when it is created',
            NEW.transaction_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.created_at := now();
    NEW.balance_after := NULL;
    SELECT balance INTO stored FROM ledger_accounts WHERE id = NEW.account_id AND tracks_balance FOR UPDATE;
    IF FOUND THEN
        -- In the (account_id, id) index's own order, so the plan is one descent of that index, always.
        SELECT balance_after INTO so_far FROM ledger_entries
         WHERE account_id = NEW.account_id
           AND id > coalesce(nullif(current_setting('ledger.entries_after', true), '')::bigint, 0)
         ORDER BY account_id DESC, id DESC LIMIT 1;
        NEW.balance_after := coalesce(so_far, stored) + NEW.amount;
    END IF;
    RETURN NEW;
END $$;

-- Accounts are reached by primary key only (arrays, scalar subqueries): plpgsql keeps its plans, and a
-- plan made for a two-row statement must stay right for a statement of thousands of rows.
CREATE FUNCTION ledger_entries_settle_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[];
    totals numeric[];
    bad record;
BEGIN
    SELECT array_agg(account_id ORDER BY account_id), array_agg(total ORDER BY account_id) INTO ids, totals
      FROM (SELECT account_id, sum(amount) AS total FROM added GROUP BY account_id) s;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM ledger_accounts WHERE id = ANY (ids) AND tracks_balance ORDER BY id FOR UPDATE;
    SELECT c.id, c.balance_after, c.expected INTO bad
      FROM (SELECT e.id, e.balance_after,
                   (SELECT a.balance FROM ledger_accounts a WHERE a.id = e.account_id AND a.tracks_balance)
                   + sum(e.amount) OVER (PARTITION BY e.account_id ORDER BY e.id) AS expected
              FROM added e) c
     WHERE c.balance_after IS DISTINCT FROM c.expected
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger entry % would record balance_after % where the balance is %', bad.id, bad.balance_after,
            bad.expected USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM added WHERE balance_after < 0) THEN
        RAISE EXCEPTION 'new row for relation "ledger_accounts" violates check constraint "balance_not_negative"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'balance_not_negative', TABLE = 'ledger_accounts';
    END IF;
    UPDATE ledger_accounts a
       SET balance = a.balance + t.total, last_entry_at = now()
      FROM unnest(ids, totals) AS t (id, total)
     WHERE a.id = t.id AND a.tracks_balance;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entries_settle_balances AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_settle_balances();
