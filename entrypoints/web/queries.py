"""Query-string models (validated like the bodies, described by /openapi.json) and the page cursor."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field

from domain.errors import InvalidRequest
from domain.payments import PaymentStatus
from domain.withdrawals import WithdrawalStatus
from services.validation import MAX_REF_LENGTH, StrictModel
from storage.pages import Position

MAX_PAGE = 100
DEFAULT_PAGE = 20
MAX_CURSOR = 400
MAX_ENTRY_ID = 2**63 - 1  # ledger entry ids are Postgres bigint
_MAX_CLAMPED = 10**19 - 1  # any integer of up to 19 digits is read, then kept within 1 to MAX_PAGE
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class QueryModel(StrictModel):
    """Query parameters arrive as text: numbers and statuses are read from it; unknown names are ignored."""

    model_config = ConfigDict(extra="ignore", strict=False, frozen=True)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Self:
        return cls._validated(dict(query), noun="query parameter")


PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"items per page, 1 to {MAX_PAGE}")]
PageCursor = Annotated[
    str, Field(min_length=1, max_length=MAX_CURSOR, description="the `next` of the previous page, as it was")
]


class PageQuery(QueryModel):
    limit: PageLimit = DEFAULT_PAGE
    cursor: PageCursor | None = None


class EventsQuery(QueryModel):
    after: str | None = Field(
        default=None,
        pattern=r"^evt_[a-z0-9]{1,60}$",
        description="the `next_after` of the previous page (an event id)",
    )
    limit: PageLimit = MAX_PAGE


class PaymentListQuery(PageQuery):
    status: PaymentStatus | None = Field(default=None, description="only payments in this status")


class WithdrawalListQuery(PageQuery):
    status: WithdrawalStatus | None = Field(default=None, description="only withdrawals in this status")


class TransactionsQuery(QueryModel):
    limit: Annotated[int, Field(ge=-_MAX_CLAMPED, le=_MAX_CLAMPED)] | None = Field(
        default=None, description=f"items per page ({DEFAULT_PAGE} when absent), kept within 1 to {MAX_PAGE}"
    )
    before: Annotated[int, Field(ge=1, le=MAX_ENTRY_ID)] | None = Field(
        default=None, description="the `next_before` of the previous page"
    )


class QrLinkQuery(QueryModel):
    """The signed link's parameters, as `qr_code_url` carries them; without them the bearer token is needed."""

    expires: Annotated[str, Field(max_length=20, description="Unix seconds, as signed")] | None = None
    signature: Annotated[str, Field(max_length=128, description="64 hex digits, as signed")] | None = None


def encode_cursor(position: Position | None) -> str | None:
    """An opaque text for ``position``: the client passes it back and never needs to read it."""
    if position is None:
        return None
    micros = (position.created_at - _EPOCH) // timedelta(microseconds=1)
    raw = json.dumps([micros, position.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    """The position a cursor stands for, or `InvalidRequest` for anything we did not write."""
    if cursor is None:
        return None
    try:
        decoded: Any = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        micros, last_id = decoded
        if type(micros) is not int or not isinstance(last_id, str) or not 0 < len(last_id) <= MAX_REF_LENGTH:
            raise ValueError
        if not last_id.isprintable():  # Postgres text cannot hold NUL
            raise ValueError
        return Position(_EPOCH + timedelta(microseconds=micros), last_id)
    except (ValueError, TypeError, OverflowError, binascii.Error, RecursionError):
        raise InvalidRequest("is not a cursor this API gave out", field="cursor") from None
