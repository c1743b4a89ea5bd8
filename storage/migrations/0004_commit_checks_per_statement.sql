-- Zero-sum at commit, checked once per database transaction instead of once per row.
--
-- 0001 queued a deferred check for every ledger transaction and every entry inserted: a batch of N
-- deposits ran 3N balance queries at commit. The rule is unchanged: at commit, every ledger transaction
-- this database transaction wrote has at least two entries summing to zero. Entries can only be added
-- to a ledger transaction written by the same database transaction (the seal of 0003), so "every
-- ledger transaction written by this database transaction" covers every entry it inserted as well.
--
-- Statement-level triggers (with their transition tables) on both tables, under the names the per-row
-- checks had, register the writing database transaction in ledger_commit_checks, once; a deferred
-- constraint trigger on that row checks all of its ledger transactions in one query at commit and
-- removes the row. Nobody else may remove or change it.

CREATE INDEX ledger_transactions_written_by ON ledger_transactions (written_by_xact);

CREATE TABLE ledger_commit_checks (
    xact bigint PRIMARY KEY
);

CREATE FUNCTION ledger_commit_check_register() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written) THEN
        INSERT INTO ledger_commit_checks (xact) VALUES (txid_current()) ON CONFLICT (xact) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;


CREATE FUNCTION ledger_commit_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT t.id, count(e.id) AS n, coalesce(sum(e.amount), 0) AS total INTO bad
      FROM ledger_transactions t
      LEFT JOIN ledger_entries e ON e.transaction_id = t.id
     WHERE t.written_by_xact = NEW.xact
     GROUP BY t.id
    HAVING count(e.id) < 2 OR coalesce(sum(e.amount), 0) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: % entries summing to %', bad.id, bad.n, bad.total
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    DELETE FROM ledger_commit_checks WHERE xact = NEW.xact;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER ledger_commit_checks_balanced AFTER INSERT ON ledger_commit_checks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_commit_check();

-- Only the check itself (trigger depth 2) removes a registration; an UPDATE could re-point it.
CREATE FUNCTION ledger_commit_check_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND pg_trigger_depth() >= 2 THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'ledger_commit_checks is maintained by the ledger triggers: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;

CREATE TRIGGER ledger_commit_checks_guard BEFORE UPDATE OR DELETE ON ledger_commit_checks
    FOR EACH ROW EXECUTE FUNCTION ledger_commit_check_guard();
CREATE TRIGGER ledger_commit_checks_no_truncate BEFORE TRUNCATE ON ledger_commit_checks
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

DROP TRIGGER ledger_entries_balanced ON ledger_entries;
DROP TRIGGER ledger_transactions_balanced ON ledger_transactions;
DROP FUNCTION ledger_transaction_balanced();

CREATE TRIGGER ledger_transactions_balanced AFTER INSERT ON ledger_transactions
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_commit_check_register();
-- Entries only join ledger transactions of their own database transaction (sealed), already registered;
-- registering here as well keeps the check in place should the seal ever be relaxed.
CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION ledger_commit_check_register();
