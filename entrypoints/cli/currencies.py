"""`payments currencies`: the coin catalogue synced from NOWPayments, and the operator's on/off switch."""

from __future__ import annotations

import click

from domain.currencies import Currency
from domain.errors import InvalidRequest
from entrypoints.cli.common import database, emit_json, emit_table, json_option, query, run, settings


@click.group()
def currencies() -> None:
    """Sync, list and switch the currencies deposits and withdrawals may use.

    \b
    Examples:
      payments currencies sync
      payments currencies deactivate btc
    """


@currencies.command()
def sync() -> None:
    """Fetch the gateway's currencies and minimums (keeps every operator switch).

    \b
    Example:
      payments currencies sync
    """
    from services.context import gateway_from_settings
    from services.sync_currencies import sync_currencies

    config = settings()
    config.require("nowpayments_api_key")

    async def fetch() -> list[Currency]:
        async with database(config) as pool, gateway_from_settings(config) as gateway:
            return await sync_currencies(pool, gateway)

    synced = run(fetch())
    click.echo(f"synced {len(synced)} currencies ({sum(c.gateway_enabled for c in synced)} enabled)")


@currencies.command(name="list")
@json_option
def list_(as_json: bool) -> None:
    """List every known currency and whether it is active.

    \b
    Examples:
      payments currencies list
      payments currencies list --json
    """
    from storage.currencies import list_currencies

    found = query(list_currencies)
    if as_json:
        emit_json([{**_fields(c), "active": c.active} for c in found])
        return
    rows = [(c.code, c.network, _minimum(c), "memo" if c.extra_id_required else "", _state(c)) for c in found]
    emit_table(("code", "network", "min", "memo", "state"), rows, empty="no currencies: run `payments currencies sync`")


def _fields(currency: Currency) -> dict[str, object]:
    return {key: getattr(currency, key) for key in currency.__dataclass_fields__}


def _minimum(currency: Currency) -> str:
    return f"${currency.min_amount_usd}" if currency.min_amount_usd is not None else "-"


def _state(currency: Currency) -> str:
    if currency.active:
        return "active"
    return "off by operator" if not currency.operator_active else "off"


@currencies.command()
@click.argument("code")
def activate(code: str) -> None:
    """Switch a currency back on (a sync never switches it on or off for you).

    \b
    Example:
      payments currencies activate btc
    """
    _switch(code, active=True)


@currencies.command()
@click.argument("code")
def deactivate(code: str) -> None:
    """Switch a currency off: new deposits and withdrawals in it are refused; a later sync keeps it off.

    \b
    Example:
      payments currencies deactivate btc
    """
    _switch(code, active=False)


def _switch(code: str, *, active: bool) -> None:
    from storage.currencies import set_operator_active
    from storage.db import transaction

    config = settings()
    code = code.lower()

    async def write() -> bool:
        async with database(config) as pool, transaction(pool) as conn:
            return await set_operator_active(conn, code, active)

    if not run(write()):
        raise InvalidRequest(f"no currency {code!r}")
    click.echo(f"{code} {'activated' if active else 'deactivated'}")
