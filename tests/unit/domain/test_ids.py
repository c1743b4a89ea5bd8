from datetime import UTC, datetime

from domain.ids import PAYMENT_ID, WITHDRAWAL_ID, new_payment_id, new_withdrawal_id


def test_payment_id_format():
    pid = new_payment_id()
    assert PAYMENT_ID.match(pid), pid
    assert not WITHDRAWAL_ID.match(pid)


def test_withdrawal_id_format():
    wid = new_withdrawal_id()
    assert WITHDRAWAL_ID.match(wid), wid
    assert not PAYMENT_ID.match(wid)


def test_ids_carry_the_given_timestamp():
    now = datetime(2025, 1, 14, 12, 34, 56, tzinfo=UTC)
    assert new_payment_id(now).startswith("PAY_20250114123456_")
    assert new_withdrawal_id(now).startswith("WD_20250114123456_")
    assert PAYMENT_ID.match(new_payment_id(now))


def test_ids_default_to_current_utc_time():
    before = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    stamp = new_payment_id().split("_")[1]
    after = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    assert before <= stamp <= after


def test_ids_are_unique_within_one_second():
    now = datetime(2025, 1, 14, 12, 34, 56, tzinfo=UTC)
    payments = {new_payment_id(now) for _ in range(1000)}
    withdrawals = {new_withdrawal_id(now) for _ in range(1000)}
    assert len(payments) == 1000
    assert len(withdrawals) == 1000
    assert all(PAYMENT_ID.match(p) for p in payments)
    assert all(WITHDRAWAL_ID.match(w) for w in withdrawals)


def test_regexes_refuse_malformed_ids():
    for bad in [
        "PAY_2025011412345_abc12345",  # 13 digits
        "PAY_20250114123456_ABC12345",  # upper case suffix
        "PAY_20250114123456_abc1234",  # 7 characters
        "pay_20250114123456_abc12345",
        "WD_20250114123456_abc12345",
    ]:
        assert not PAYMENT_ID.match(bad), bad
