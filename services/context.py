"""What a stage needs from the outside world, passed in so tests can call stages directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import asyncpg

from gateway.client import NowPaymentsClient
from services.catalogue import CatalogueRefresher
from settings import Settings


class Enqueuer(Protocol):
    """Sends follow-up messages. Implementations must be safe to call more than once per fact."""

    async def poll_status(self, payment_id: str) -> None: ...

    async def settle_deposit(self, payment_id: str) -> None: ...

    async def process_withdrawal(self, withdrawal_id: str) -> None: ...

    async def deliver_notifications(self, subject_id: str) -> None: ...


@dataclass(frozen=True)
class StageContext:
    pool: asyncpg.Pool
    gateway: NowPaymentsClient
    settings: Settings
    enqueue: Enqueuer
    # Per process: how often a currency nobody knows may trigger a catalogue refresh.
    catalogue: CatalogueRefresher = field(default_factory=lambda: CatalogueRefresher())


def gateway_from_settings(settings: Settings) -> NowPaymentsClient:
    """The gateway client every process builds the same way (payout credentials when configured)."""
    return NowPaymentsClient(
        base_url=settings.gateway_base_url,
        api_key=settings.nowpayments_api_key,
        timeout=settings.nowpayments_timeout_seconds,
        email=settings.nowpayments_email,
        password=settings.nowpayments_password,
    )
