"""What every `payments` command shares: settings, a database pool, the `--json` switch, printing.

Data goes to stdout (tables for people, JSON with ``--json`` for scripts); log lines and errors go
to stderr, so the two never interleave.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

import asyncpg
import click

from entrypoints.logs import configure_logging
from settings import Settings, load_settings
from storage.db import create_pool

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def settings() -> Settings:
    """The environment's settings (one line and exit 2 if wrong), with logging to stderr configured."""
    loaded = load_settings()
    configure_logging(loaded)
    return loaded


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@asynccontextmanager
async def database(config: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(config.database_url.get_secret_value(), min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def query(read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run one read on a connection of a pool made for this command, and close it again."""
    config = settings()

    async def on_a_connection() -> T:
        async with database(config) as pool, pool.acquire() as conn:
            return await read(conn)

    return run(on_a_connection())


def with_pool(action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run one action that manages its own transactions on a pool made for this command."""
    config = settings()

    async def on_the_pool() -> T:
        async with database(config) as pool:
            return await action(pool)

    return run(on_the_pool())


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table.")(function)


def operator_option(function: F) -> F:
    return click.option(
        "--operator",
        default=lambda: os.environ.get("USER") or "cli",
        show_default="$USER",
        help="Who decides; recorded with the decision.",
    )(function)


def note_option(help_text: str) -> Callable[[F], F]:
    return click.option("--note", default="", help=help_text)


class DecimalAmount(click.ParamType):
    """A decimal amount given as text (``12.34``), never through float."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            self.fail(f"{value!r} is not a decimal amount", param, ctx)
        if not amount.is_finite():
            self.fail(f"{value!r} is not a decimal amount", param, ctx)
        return amount


def emit_json(data: Any) -> None:
    click.echo(json.dumps(_plain(data), indent=2, sort_keys=True))


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> None:
    """Columns padded to their widest cell; ``empty`` (to stderr) when there is nothing to show."""
    if not rows:
        click.echo(empty, err=True)
        return
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return f"{value:%Y-%m-%d %H:%M:%S}"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-ready: amounts as decimal strings (never floats), times in ISO 8601, enums by value."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
