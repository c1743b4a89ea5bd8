"""A currency we accept deposits in, as an operator sees it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Currency:
    code: str  # lowercase gateway code, e.g. "btc", "usdttrc20"
    name: str
    network: str | None
    ticker: str | None
    precision: int | None
    wallet_regex: str | None
    extra_id_required: bool  # the coin needs a memo / destination tag
    extra_id_regex: str | None
    min_amount_usd: Decimal | None
    gateway_enabled: bool = True
    operator_active: bool = True

    @property
    def active(self) -> bool:
        return self.gateway_enabled and self.operator_active
