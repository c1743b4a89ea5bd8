"""Gateway orphans: gateway payments made for one of our payments that we never recorded.

A worker that dies between the gateway's answer to "create a payment" and our write of it leaves
the gateway holding a payment we do not know; the retry creates a second one, which we store.
The first is an orphan: it carries our ``order_id`` (the internal ``PAY_…`` id) under a provider
id that is not the one stored. If a customer pays it anyway, those funds are held for an
operator; nothing credits them automatically, so nothing can be credited twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

# Gateway statuses that say money reached the payment's address.
FUNDED_STATUSES = frozenset({"confirming", "confirmed", "sending", "partially_paid", "finished", "refunded"})


@dataclass(frozen=True)
class GatewayListing:
    """What the gateway's payment list says about one payment (the fields orphans need)."""

    provider_payment_id: str
    order_id: str | None
    status: str
    pay_currency: str | None
    pay_amount: Decimal | None
    actually_paid: Decimal | None


@dataclass(frozen=True)
class Orphan:
    provider_payment_id: str
    payment_id: str
    gateway_status: str
    pay_currency: str | None
    pay_amount: Decimal | None
    actually_paid: Decimal | None

    @property
    def funds_received(self) -> bool:
        return bool(self.actually_paid and self.actually_paid > 0) or self.gateway_status in FUNDED_STATUSES


def find_orphans(listings: Iterable[GatewayListing], stored: Mapping[str, str | None]) -> list[Orphan]:
    """The listings whose ``order_id`` is one of our payments (``stored``: payment id → the provider
    id we recorded, or None) under another provider id. Listings for other orders are not ours."""
    orphans = []
    for listing in listings:
        if listing.order_id is None or listing.order_id not in stored:
            continue
        if stored[listing.order_id] == listing.provider_payment_id:
            continue
        orphans.append(
            Orphan(
                provider_payment_id=listing.provider_payment_id,
                payment_id=listing.order_id,
                gateway_status=listing.status,
                pay_currency=listing.pay_currency,
                pay_amount=listing.pay_amount,
                actually_paid=listing.actually_paid,
            )
        )
    return orphans
