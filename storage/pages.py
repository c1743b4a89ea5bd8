"""Keyset pagination shared by the list queries: pages ordered by (created_at, id), never by OFFSET.

A position is the last row's (created_at, id); the next page starts strictly after it, so rows
added meanwhile never shift a page and deep pages cost what the first one costs (each list has an
index on its filter columns followed by created_at and id).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import asyncpg

T = TypeVar("T")


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: str


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: Position | None  # where the next page starts; None on the last page


async def fetch_page(
    conn: asyncpg.Connection,
    select: str,
    where: str,
    params: Sequence[Any],
    *,
    after: Position | None,
    limit: int,
    newest_first: bool,
    from_row: Callable[[asyncpg.Record], T],
) -> Page[T]:
    """``select`` ``WHERE where`` (its values in ``params`` as $1...), one page after ``after``.

    ``select`` and ``where`` are constant SQL written by the caller; every value travels as a parameter.
    """
    comparison, order = ("<", "DESC") if newest_first else (">", "ASC")
    args = list(params)
    if after is not None:
        args += [after.created_at, after.id]
        where += f" AND (created_at, id) {comparison} (${len(args) - 1}, ${len(args)})"
    args.append(limit + 1)  # one more than asked: tells whether another page follows
    rows = await conn.fetch(f"{select} WHERE {where} ORDER BY created_at {order}, id {order} LIMIT ${len(args)}", *args)
    items = [from_row(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    return Page(items, Position(last["created_at"], last["id"]) if last is not None else None)
