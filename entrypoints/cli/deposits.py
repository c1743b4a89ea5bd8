"""`payments deposits`: deposits held for an operator, and the operator's release or dismissal."""

from __future__ import annotations

from decimal import Decimal

import click

from domain.money import format_usd
from entrypoints.cli.common import (
    DecimalAmount,
    emit_json,
    emit_table,
    json_option,
    note_option,
    operator_option,
    query,
    with_pool,
)


@click.group()
def deposits() -> None:
    """List deposits held for review, and release (credit) or dismiss them.

    \b
    Examples:
      payments deposits held
      payments deposits release PAY_20250114123456_abc12345 --note "confirmed"
    """


@deposits.command()
@json_option
def held(as_json: bool) -> None:
    """List deposits held for review, with what arrived and why they are held.

    \b
    Examples:
      payments deposits held
      payments deposits held --json
    """
    from services.views import payment_view
    from storage.payments import list_held

    found = query(list_held)
    if as_json:
        emit_json([payment_view(p) for p in found])
        return
    rows = [
        (
            p.id,
            p.status,
            p.user_id,
            format_usd(p.amount_usd),
            f"{p.actually_paid or 0} of {p.pay_amount or '?'}",
            p.currency_code,
            p.hold_reason,
        )
        for p in found
    ]
    emit_table(("id", "status", "user", "ordered", "received", "currency", "held because"), rows, empty="none held")


@deposits.command()
@click.argument("payment_id")
@note_option("Why (required).")
@operator_option
@click.option("--credit", type=DecimalAmount(), default=None, help="USD to credit (default: the value that arrived).")
def release(payment_id: str, note: str, operator: str, credit: Decimal | None) -> None:
    """Credit a held deposit: the value that arrived, or a smaller --credit; never more than arrived.

    \b
    Example:
      payments deposits release PAY_20250114123456_abc12345 --note "customer confirmed" --credit 12.34
    """
    from services.release_deposit import release_held_deposit

    released = with_pool(
        lambda pool: release_held_deposit(pool, payment_id, operator=operator, note=note, credit_usd=credit)
    )
    click.echo(f"{released.id} released: {format_usd(released.credit_usd or 0)} credited to {released.user_id}")


@deposits.command()
@click.argument("payment_id")
@note_option("Why (required).")
@operator_option
def dismiss(payment_id: str, note: str, operator: str) -> None:
    """Close a held deposit without crediting anything (e.g. after reversing a refunded credit by hand).

    \b
    Example:
      payments deposits dismiss PAY_20250114123456_abc12345 --note "refund reversed by adjustment"
    """
    from services.release_deposit import dismiss_deposit_hold

    dismissed = with_pool(lambda pool: dismiss_deposit_hold(pool, payment_id, operator=operator, note=note))
    click.echo(f"{dismissed.id}: hold dismissed, nothing credited")
