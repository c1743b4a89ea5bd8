"""`payments reconcile`: does the ledger agree with itself and with the payments and withdrawals?
With `--gateway`, also: does the gateway hold payments for our orders that we never stored?"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import click

from entrypoints.cli.common import emit_json, emit_table, json_option, query, settings, with_pool
from entrypoints.errors import EXIT_REFUSED
from storage.orphans import OrphanRecord
from storage.reconcile import CHECK_NAMES, find_differences


@click.command()
@json_option
@click.option("--gateway", is_flag=True, help="Also list the gateway's payments and find orphans (payout login).")
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True, help="Gateway window, in days.")
def reconcile(as_json: bool, gateway: bool, days: int) -> int:
    """Check the ledger against its invariants and against what it pays for; exit 1 on any difference.

    \b
    Checked, in one consistent snapshot:
      - every ledger transaction has two or more entries summing to zero, and all entries sum to zero;
      - every user balance equals the sum of its entries, and none is negative;
      - every settled payment has its one deposit posting, crediting what the payment says,
        and no other payment (nor anything else) has one;
      - every withdrawal's hold was posted for its amount; every completed one was posted once,
        every rejected, cancelled or failed one released once, and no open one either.

    \b
    With --gateway (needs NOWPAYMENTS_EMAIL/PASSWORD: the gateway lists payments behind its login),
    the gateway's payments created in the last --days are read page by page; one carrying our
    order id (a PAY_… id) under a payment id we did not store is a gateway orphan (a worker died
    between the gateway's answer and our write). Orphans are recorded for an operator, funds
    received on them are held for review and never credited, and any unresolved one exits 1.

    \b
    Examples:
      payments reconcile
      payments reconcile --json | jq '.differences[].check'
      payments reconcile --gateway --days 30
    """
    differences = query(find_differences)
    orphans = _gateway_orphans(days) if gateway else []
    if as_json:
        found = {"orphans": orphans} if gateway else {}
        emit_json({"checks": list(CHECK_NAMES), "differences": differences, **found})
    else:
        _print(differences, orphans, gateway=gateway)
    if differences:
        click.echo(f"{len(differences)} difference(s) found", err=True)
    if orphans:
        click.echo(f"{len(orphans)} unresolved gateway orphan(s)", err=True)
    return EXIT_REFUSED if differences or orphans else 0


def _gateway_orphans(days: int) -> list[OrphanRecord]:
    from services.context import gateway_from_settings
    from services.find_gateway_orphans import find_gateway_orphans

    config = settings()
    config.require("nowpayments_api_key", "nowpayments_email", "nowpayments_password")
    date_to = datetime.now(UTC) + timedelta(days=1)  # the gateway's dates are whole days: include today's
    date_from = date_to - timedelta(days=days + 1)

    async def find(pool: asyncpg.Pool) -> list[OrphanRecord]:
        client = gateway_from_settings(config)
        try:
            return await find_gateway_orphans(pool, client, date_from=date_from.date(), date_to=date_to.date())
        finally:
            await client.close()

    return with_pool(find)


def _print(differences: list[Any], orphans: list[OrphanRecord], *, gateway: bool) -> None:
    rows = [(d.check, d.subject, d.detail) for d in differences]
    rows += [("gateway_orphan", o.provider_payment_id, _orphan_detail(o)) for o in orphans]
    if rows:
        emit_table(("check", "subject", "difference"), rows, empty="")
    else:
        extra = " and no gateway orphans" if gateway else ""
        click.echo(f"no differences ({len(CHECK_NAMES)} checks){extra}")


def _orphan_detail(orphan: OrphanRecord) -> str:
    paid = f"{orphan.actually_paid} {orphan.pay_currency}" if orphan.actually_paid else "nothing"
    held = "funds received: held for review, never credited" if orphan.funds_received else "no funds received"
    return f"for {orphan.payment_id}, gateway status {orphan.gateway_status}, paid {paid}: {held}"
