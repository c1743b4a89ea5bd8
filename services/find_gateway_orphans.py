"""Find gateway payments made for our payments under ids we never stored, and record them."""

from __future__ import annotations

from datetime import date

import asyncpg
import structlog

from domain.orphans import GatewayListing, Orphan, find_orphans
from gateway.client import NowPaymentsClient
from gateway.models import GatewayPayment
from storage import orphans as orphan_store
from storage.db import transaction
from storage.orphans import OrphanRecord

log = structlog.get_logger(__name__)

PAGE_SIZE = 500
MAX_PAGES = 10_000  # 5 million payments: a bound on a gateway that keeps answering "more"


def _listing(payment: GatewayPayment) -> GatewayListing:
    return GatewayListing(
        provider_payment_id=payment.payment_id,
        order_id=payment.order_id,
        status=payment.status,
        pay_currency=payment.pay_currency,
        pay_amount=payment.pay_amount,
        actually_paid=payment.actually_paid,
    )


async def _gateway_listings(gateway: NowPaymentsClient, date_from: date, date_to: date) -> list[GatewayListing]:
    """Every payment the gateway lists as created in the window, page by page (oldest first)."""
    listings: list[GatewayListing] = []
    for page in range(MAX_PAGES):
        answer = await gateway.list_payments(limit=PAGE_SIZE, page=page, date_from=date_from, date_to=date_to)
        listings.extend(_listing(p) for p in answer.payments)
        if not answer.payments or page + 1 >= answer.pages_count:
            break
    return listings


async def find_gateway_orphans(
    pool: asyncpg.Pool, gateway: NowPaymentsClient, *, date_from: date, date_to: date
) -> list[OrphanRecord]:
    """Record the orphans of the window (idempotent: a second run finds the same rows) and return
    every unresolved orphan, from this window or an earlier run. Nothing is credited."""
    listings = await _gateway_listings(gateway, date_from, date_to)
    ours = [item.order_id for item in listings if item.order_id]
    async with transaction(pool) as conn:
        stored = await orphan_store.stored_provider_ids(conn, ours)
        found: list[Orphan] = find_orphans(listings, stored)
        await orphan_store.record(conn, found)
        unresolved = await orphan_store.unresolved(conn)
    for orphan in found:
        log.warning(
            "gateway_orphan_found",
            provider_payment_id=orphan.provider_payment_id,
            payment_id=orphan.payment_id,
            gateway_status=orphan.gateway_status,
            funds_received=orphan.funds_received,
        )
    log.info("gateway_orphans_checked", listed=len(listings), found=len(found), unresolved=len(unresolved))
    return unresolved
