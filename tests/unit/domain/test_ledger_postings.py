from decimal import Decimal

import pytest

from domain.ledger import (
    FEES,
    GATEWAY_CLEARING,
    PAYOUTS,
    AccountKind,
    AccountRef,
    Entry,
    LedgerPosting,
    TransactionType,
    deposit_posting,
)

D = Decimal
USER = AccountRef.available("u1")


def test_deposit_posting_balances_and_credits_the_user():
    posting = deposit_posting(payment_id="PAY_1", user_id="u1", amount_usd=D("25.50"), description="deposit")
    assert posting.idempotency_key == "deposit:PAY_1"
    assert posting.type is TransactionType.DEPOSIT
    assert posting.description == "deposit"
    assert sum(e.amount for e in posting.entries) == 0
    by_account = {e.account: e.amount for e in posting.entries}
    assert by_account == {AccountRef.available("u1"): D("25.50"), GATEWAY_CLEARING: D("-25.50")}


def test_deposit_postings_for_different_payments_have_different_keys():
    a = deposit_posting(payment_id="PAY_1", user_id="u1", amount_usd=D("1.00"), description="")
    b = deposit_posting(payment_id="PAY_2", user_id="u1", amount_usd=D("1.00"), description="")
    assert a.idempotency_key != b.idempotency_key


@pytest.mark.parametrize("amount", [D("0.001"), D("10.005")])
def test_deposit_posting_refuses_sub_cent(amount):
    with pytest.raises(ValueError, match="non-zero amount in cents"):
        deposit_posting(payment_id="PAY_1", user_id="u1", amount_usd=amount, description="")


@pytest.mark.parametrize("amount", [D("0"), D("-5.00")])
def test_deposit_posting_refuses_zero_and_negative(amount):
    with pytest.raises(ValueError, match="positive amount"):
        deposit_posting(payment_id="PAY_1", user_id="u1", amount_usd=amount, description="")


def _posting(*entries, key="k"):
    return LedgerPosting(idempotency_key=key, type=TransactionType.ADJUSTMENT, description="", entries=tuple(entries))


def test_balanced_multi_entry_posting_is_accepted():
    posting = _posting(
        Entry(AccountRef.held("u1"), D("-10.00")),
        Entry(PAYOUTS, D("9.00")),
        Entry(FEES, D("1.00")),
    )
    assert len(posting.entries) == 3


def test_unbalanced_posting_is_refused():
    with pytest.raises(ValueError, match="does not balance"):
        _posting(Entry(USER, D("10.00")), Entry(GATEWAY_CLEARING, D("-9.99")))


@pytest.mark.parametrize("entries", [(), (Entry(USER, D("10.00")),)])
def test_fewer_than_two_entries_is_refused(entries):
    with pytest.raises(ValueError, match="at least two entries"):
        _posting(*entries)


def test_zero_amount_entry_is_refused_even_when_balanced():
    with pytest.raises(ValueError, match="non-zero"):
        _posting(Entry(USER, D("10.00")), Entry(GATEWAY_CLEARING, D("-10.00")), Entry(FEES, D("0.00")))


def test_sub_cent_amounts_are_refused_even_when_balanced():
    with pytest.raises(ValueError, match="in cents"):
        _posting(Entry(USER, D("10.005")), Entry(GATEWAY_CLEARING, D("-10.005")))


def test_amount_with_trailing_zero_places_is_a_whole_cent():
    posting = _posting(Entry(USER, D("10.0000")), Entry(GATEWAY_CLEARING, D("-10")))
    assert sum(e.amount for e in posting.entries) == 0


def test_empty_key_is_refused():
    with pytest.raises(ValueError, match="idempotency key"):
        _posting(Entry(USER, D("1.00")), Entry(GATEWAY_CLEARING, D("-1.00")), key="")


def test_posting_is_immutable():
    posting = _posting(Entry(USER, D("1.00")), Entry(GATEWAY_CLEARING, D("-1.00")))
    with pytest.raises(AttributeError):
        posting.idempotency_key = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        (AccountRef.available("42"), "user:42:available"),
        (AccountRef.held("42"), "user:42:held"),
        (GATEWAY_CLEARING, "platform:gateway_clearing"),
        (PAYOUTS, "platform:payouts"),
        (FEES, "platform:fees"),
    ],
)
def test_account_codes(ref, code):
    assert ref.code == code


def test_account_codes_are_unique_across_kinds_and_users():
    refs = [AccountRef.available(u) for u in ("1", "2", "1:held")] + [AccountRef.held(u) for u in ("1", "2")]
    refs += [GATEWAY_CLEARING, PAYOUTS, FEES]
    assert len({r.code for r in refs}) == len(refs)


@pytest.mark.parametrize("kind", [AccountKind.USER_AVAILABLE, AccountKind.USER_HELD])
def test_user_accounts_need_a_user_id(kind):
    with pytest.raises(ValueError, match="need user_id"):
        AccountRef(kind)


@pytest.mark.parametrize("kind", [AccountKind.GATEWAY_CLEARING, AccountKind.PAYOUTS, AccountKind.FEES])
def test_platform_accounts_take_no_user_id(kind):
    with pytest.raises(ValueError, match="take no user_id"):
        AccountRef(kind, "42")
    assert AccountRef(kind).user_id is None


def test_is_user():
    assert {k for k in AccountKind if k.is_user} == {AccountKind.USER_AVAILABLE, AccountKind.USER_HELD}


def test_account_refs_are_hashable_equal_by_value_and_sortable():
    assert AccountRef.available("7") == AccountRef(AccountKind.USER_AVAILABLE, "7")
    assert len({AccountRef.available("7"), AccountRef.available("7"), AccountRef.held("7")}) == 2
    ordered = sorted([AccountRef.held("b"), FEES, AccountRef.available("a"), GATEWAY_CLEARING])
    assert ordered == sorted(ordered, key=lambda r: (r.kind, r.user_id or ""))
