"""`payments balance USER_ID`: a user's balances and recent history, as the API shows them."""

from __future__ import annotations

import asyncpg
import click

from domain.money import format_usd
from entrypoints.cli.common import emit_json, json_option, query


@click.command()
@click.argument("user_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="History lines to show.")
@json_option
def balance(user_id: str, limit: int, as_json: bool) -> None:
    """Show a user's available and held balance, totals and newest history first.

    \b
    Examples:
      payments balance user-42
      payments balance user-42 --limit 100 --json
    """
    from services.views import balance_view, history_item_view
    from storage import ledger

    async def read(conn: asyncpg.Connection) -> tuple[ledger.BalanceView, list[ledger.HistoryItem]]:
        return await ledger.user_balance(conn, user_id), await ledger.user_history(conn, user_id, limit=limit)

    view, history = query(read)
    if as_json:
        emit_json({**balance_view(view), "history": [history_item_view(item) for item in history]})
        return
    click.echo(f"user {view.user_id}: balance {format_usd(view.balance_usd)}, held {format_usd(view.held_usd)}")
    click.echo(f"  total deposited {format_usd(view.total_deposited)}, withdrawn {format_usd(view.total_withdrawn)}")
    for item in history:
        click.echo(
            f"  {item.created_at:%Y-%m-%d %H:%M:%S}  {item.type:10} {format_usd(item.amount_usd):>12}"
            f"  balance after {format_usd(item.balance_after):>12}  {item.description}"
        )
