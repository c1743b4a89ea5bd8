"""`payments withdrawals`: list and inspect withdrawals, and the operator's decisions on them.

Each decision calls one use case in services/decide_withdrawal.py (the operator API calls the same
ones) and is recorded with the operator and the note.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import click

from domain.errors import InvalidRequest
from domain.money import format_usd
from domain.withdrawals import Withdrawal, WithdrawalStatus
from entrypoints.cli.common import (
    database,
    emit_json,
    emit_table,
    json_option,
    note_option,
    operator_option,
    query,
    run,
    settings,
)

Decision = Callable[[Any], Awaitable[Withdrawal]]


@click.group()
def withdrawals() -> None:
    """List, show, approve, reject or complete withdrawals.

    \b
    Examples:
      payments withdrawals list --status pending
      payments withdrawals approve WD_20250114123456_abc12345 --note "KYC checked"
    """


@withdrawals.command(name="list")
@click.option("--status", type=click.Choice([s.value for s in WithdrawalStatus]), help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
def list_(status: str | None, limit: int, as_json: bool) -> None:
    """List the newest withdrawals; those held for review say why.

    \b
    Examples:
      payments withdrawals list --status pending
      payments withdrawals list --json
    """
    from services.views import withdrawal_view
    from storage.withdrawals import list_withdrawals

    found = query(lambda conn: list_withdrawals(conn, status=status, limit=limit))
    if as_json:
        emit_json([withdrawal_view(w) for w in found])
        return
    rows = [
        (
            w.id,
            w.status,
            w.user_id,
            format_usd(w.amount_usd),
            format_usd(w.final_amount_usd),
            w.currency_code,
            w.wallet_address,
            w.review_reason or "",
        )
        for w in found
    ]
    headers = ("id", "status", "user", "amount", "pays", "currency", "address", "review")
    emit_table(headers, rows, empty="no withdrawals")


@withdrawals.command()
@click.argument("withdrawal_id")
@json_option
def show(withdrawal_id: str, as_json: bool) -> None:
    """Show one withdrawal and every event (who, when, why).

    \b
    Example:
      payments withdrawals show WD_20250114123456_abc12345
    """
    from services.views import withdrawal_event_view, withdrawal_view
    from storage.withdrawals import get_withdrawal, list_events

    async def read(conn: asyncpg.Connection) -> tuple[Withdrawal | None, list[dict[str, Any]]]:
        found = await get_withdrawal(conn, withdrawal_id)
        return found, (await list_events(conn, withdrawal_id) if found else [])

    w, events = query(read)
    if w is None:
        raise InvalidRequest(f"no withdrawal {withdrawal_id!r}")
    if as_json:
        emit_json({**withdrawal_view(w), "events": [withdrawal_event_view(e) for e in events]})
        return
    click.echo(
        f"{w.id} {w.status.value}: {format_usd(w.amount_usd)} for {w.user_id}, fees "
        f"{format_usd(w.total_fee_usd)}, pays {format_usd(w.final_amount_usd)} in {w.currency_code}"
        f" to {w.wallet_address}{' memo ' + w.extra_id if w.extra_id else ''}"
    )
    for e in events:
        click.echo(
            f"  {e['created_at']:%Y-%m-%d %H:%M:%S} {e['from_status'] or '-':>10} → {e['to_status']:10}"
            f" by {e['actor']}: {e['note']}"
        )


@withdrawals.command()
@click.argument("withdrawal_id")
@note_option("Why (recorded with the decision).")
@operator_option
def approve(withdrawal_id: str, note: str, operator: str) -> None:
    """Approve a pending withdrawal: its payout is enqueued.

    \b
    Example:
      payments withdrawals approve WD_20250114123456_abc12345 --note "KYC checked"
    """
    from services.decide_withdrawal import approve_withdrawal

    _decide(lambda ctx: approve_withdrawal(ctx, withdrawal_id, operator=operator, note=note))


@withdrawals.command()
@click.argument("withdrawal_id")
@note_option("Why (required: a rejection needs a reason).")
@operator_option
def reject(withdrawal_id: str, note: str, operator: str) -> None:
    """Reject a withdrawal not yet handed to the gateway: the hold goes back to the user, once.

    \b
    Example:
      payments withdrawals reject WD_20250114123456_abc12345 --note "wallet flagged"
    """
    from services.decide_withdrawal import reject_withdrawal

    _decide(lambda ctx: reject_withdrawal(ctx, withdrawal_id, operator=operator, note=note))


@withdrawals.command()
@click.argument("withdrawal_id")
@click.option("--tx-hash", default="", help="Transaction hash of the payout (required).")
@note_option("How it was paid.")
@operator_option
def complete(withdrawal_id: str, tx_hash: str, note: str, operator: str) -> None:
    """Complete an approved withdrawal paid by hand (manual payouts), or one held for review after checking
    the gateway: the hold is posted, once.

    \b
    Example:
      payments withdrawals complete WD_20250114123456_abc12345 --tx-hash 0xabc... --note "sent from cold wallet"
    """
    from services.decide_withdrawal import complete_withdrawal_manually

    _decide(lambda ctx: complete_withdrawal_manually(ctx, withdrawal_id, tx_hash=tx_hash, operator=operator, note=note))


def _decide(decision: Decision) -> None:
    """Run one decision with the full stage context (an approval enqueues the payout step)."""
    from services.context import StageContext, gateway_from_settings
    from workers.actors import declare_actors
    from workers.broker import build_broker
    from workers.enqueue import ActorEnqueuer

    config = settings()

    async def decide() -> Withdrawal:
        broker = build_broker(config)
        declare_actors(broker)
        try:
            async with database(config) as pool, gateway_from_settings(config) as gateway:
                return await decision(StageContext(pool, gateway, config, ActorEnqueuer(broker)))
        finally:
            broker.close()

    decided = run(decide())
    click.echo(f"{decided.id} is now {decided.status.value}")
