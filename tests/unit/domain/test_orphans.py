"""Which gateway payments are orphans of ours (domain/orphans.py)."""

from __future__ import annotations

from decimal import Decimal

from domain.orphans import GatewayListing, find_orphans


def _listing(provider_id: str, order_id: str | None, status: str = "waiting", paid: str | None = None):
    return GatewayListing(provider_id, order_id, status, "btc", Decimal("0.001"), Decimal(paid) if paid else None)


def test_a_second_gateway_payment_for_our_order_is_an_orphan_and_the_stored_one_is_not():
    stored = {"PAY_1": "100", "PAY_2": None}
    listings = [_listing("100", "PAY_1"), _listing("101", "PAY_1", "finished", "0.001"), _listing("200", "PAY_2")]
    orphans = find_orphans(listings, stored)
    assert [(o.provider_payment_id, o.payment_id) for o in orphans] == [("101", "PAY_1"), ("200", "PAY_2")]
    assert [o.funds_received for o in orphans] == [True, False]


def test_payments_for_orders_that_are_not_ours_or_without_an_order_are_ignored():
    listings = [_listing("300", "someone-else"), _listing("301", None), _listing("302", "PAY_unknown")]
    assert find_orphans(listings, {"PAY_1": "100"}) == []


def test_funds_count_as_received_from_a_funded_status_even_without_an_amount():
    [orphan] = find_orphans([_listing("101", "PAY_1", "confirming")], {"PAY_1": "100"})
    assert orphan.funds_received
    [unpaid] = find_orphans([_listing("102", "PAY_1", "expired", "0")], {"PAY_1": "100"})
    assert not unpaid.funds_received
