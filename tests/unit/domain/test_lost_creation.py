"""Which listed gateway payment an earlier create-payment attempt made, where to look, and when a miss counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.lost_creation import CLOCK_SKEW, ListedPayment, is_ours, search_window, seconds_until_trusted

PAY = "PAY_20261201070000_abc12345"


def _listed(**changes: object) -> ListedPayment:
    values: dict[str, object] = {
        "order_id": PAY, "price_amount": Decimal("25"), "price_currency": "usd", "pay_currency": "btc"
    }  # fmt: skip
    values.update(changes)
    return ListedPayment(**values)  # type: ignore[arg-type]


def _ours(listed: ListedPayment) -> bool:
    return is_ours(listed, payment_id=PAY, amount_usd=Decimal("25.00"), currency_code="btc")


def test_our_order_at_our_price_and_coin_is_ours_whatever_the_case_and_trailing_zeros() -> None:
    assert _ours(_listed())
    assert _ours(_listed(price_amount=Decimal("25.000"), price_currency="USD", pay_currency="BTC"))


def test_a_listing_that_omits_price_or_coin_is_judged_by_the_order_id() -> None:
    assert _ours(_listed(price_amount=None, price_currency=None, pay_currency=None))


@pytest.mark.parametrize(
    "changes",
    [
        {"order_id": "PAY_20261201070000_other999"},
        {"order_id": None},
        {"price_amount": Decimal("25.01")},
        {"price_currency": "eur"},
        {"pay_currency": "eth"},
    ],
)
def test_another_order_price_or_coin_is_not_ours(changes: dict[str, object]) -> None:
    assert not _ours(_listed(**changes))


def test_the_window_runs_from_the_recorded_payment_to_the_last_attempt_settled_widened_by_the_clock_skew() -> None:
    recorded = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    attempt = recorded + timedelta(seconds=40)
    now = recorded + timedelta(minutes=10)  # a busy gateway has made thousands since: they are not read
    settled = attempt + timedelta(seconds=30)
    assert search_window(recorded, attempt, now, 30) == (recorded - CLOCK_SKEW, settled + CLOCK_SKEW)
    soon = attempt + timedelta(seconds=5)  # before the settle time is over, up to now
    assert search_window(recorded, attempt, soon, 30) == (recorded - CLOCK_SKEW, soon + CLOCK_SKEW)
    assert search_window(recorded, None, now, 30) == (recorded - CLOCK_SKEW, now + CLOCK_SKEW)


def test_a_miss_is_trusted_only_once_the_last_attempt_is_the_settle_time_old() -> None:
    sent = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert seconds_until_trusted(sent, sent + timedelta(seconds=5), 30) == 25
    assert seconds_until_trusted(sent, sent + timedelta(seconds=30), 30) == 0
    assert seconds_until_trusted(sent, sent + timedelta(hours=1), 30) == 0
    assert seconds_until_trusted(sent, sent, 0) == 0
