"""Deciding about a create-payment attempt whose answer was lost (timeout, cut connection, crash).

The gateway may have made the payment. Before asking it to make another, create-payment looks for it
on the gateway's payment list by our order id (the internal ``PAY_…`` id) and adopts what it finds.
These are the pure parts of that decision: which listed payment is ours, which window of creation
times to search, and whether "not listed" can be trusted yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

# The gateway stamps created_at with its own clock; allow this much disagreement with ours (both are
# NTP-synchronised servers). A payment outside the window is missed, not lost: a second one is made
# and `payments reconcile --gateway` flags the first.
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class ListedPayment:
    """What the payment list says about one gateway payment (the fields the choice needs)."""

    order_id: str | None
    price_amount: Decimal | None
    price_currency: str | None
    pay_currency: str | None


def is_ours(listed: ListedPayment, *, payment_id: str, amount_usd: Decimal, currency_code: str) -> bool:
    """The listed payment was made for this payment: our order id, and the price and coin we asked for.

    A listing with our order id but another price or coin is not adopted (it stays for reconcile to flag).
    """
    if listed.order_id != payment_id:
        return False
    if listed.price_amount is not None and listed.price_amount != amount_usd:
        return False
    if listed.price_currency is not None and listed.price_currency.lower() != "usd":
        return False
    return listed.pay_currency is None or listed.pay_currency.lower() == currency_code.lower()


def search_window(
    recorded_at: datetime, last_attempt: datetime | None, now: datetime, settle_seconds: float
) -> tuple[datetime, datetime]:
    """Creation times to search: from when we recorded the payment (no attempt is older) to when the
    last attempt's payment would have been made at the latest (the settle time after it, the same bound
    that lets "not listed" be believed; now, if sooner), each widened by the clock skew allowed between
    us and the gateway. Payments made after that are not read: on a busy gateway they are thousands."""
    latest = now if last_attempt is None else min(now, last_attempt + timedelta(seconds=settle_seconds))
    return recorded_at - CLOCK_SKEW, latest + CLOCK_SKEW


def seconds_until_trusted(last_attempt: datetime, now: datetime, settle_seconds: float) -> float:
    """How long until "not listed" may be believed for an attempt sent at ``last_attempt`` (0: now)."""
    remaining = (last_attempt + timedelta(seconds=settle_seconds) - now).total_seconds()
    return max(0.0, remaining)
