"""Load currencies from the gateway into our table; an operator's deactivation survives."""

from __future__ import annotations

import asyncpg
import structlog

from domain.currencies import Currency
from domain.money import CENT
from gateway.client import NowPaymentsClient
from gateway.errors import GatewayError
from gateway.models import GatewayCurrency
from storage import currencies
from storage.db import transaction

log = structlog.get_logger(__name__)


def _to_domain(item: GatewayCurrency, *, selected: bool, min_usd: object) -> Currency:
    return Currency(
        code=item.code,
        name=item.name,
        network=item.network,
        ticker=item.ticker,
        precision=item.precision,
        wallet_regex=item.wallet_regex,
        extra_id_required=item.extra_id_exists,
        extra_id_regex=item.extra_id_regex,
        min_amount_usd=min_usd.quantize(CENT) if min_usd is not None else None,  # type: ignore[attr-defined]
        gateway_enabled=item.enabled and selected,
    )


async def sync_currencies(pool: asyncpg.Pool, gateway: NowPaymentsClient) -> list[Currency]:
    """Fetch full-currencies and the merchant's selected coins; store them with USD minimums.

    Coins the merchant has not selected are stored but not enabled. Minimums are looked up
    only for enabled coins (one request each).
    """
    listed = await gateway.full_currencies()
    selected = {code.lower() for code in await gateway.merchant_coins()}
    result: list[Currency] = []
    for item in listed:
        is_selected = not selected or item.code in selected
        min_usd = None
        if item.enabled and is_selected:
            try:
                min_usd = (await gateway.min_amount(item.code, "usd")).fiat_equivalent
            except GatewayError as exc:
                log.warning("min_amount_unavailable", currency=item.code, error=type(exc).__name__)
        result.append(_to_domain(item, selected=is_selected, min_usd=min_usd))
    async with transaction(pool) as conn:
        await currencies.upsert_from_gateway(conn, result)
    log.info("currencies_synced", count=len(result), enabled=sum(c.gateway_enabled for c in result))
    return result
