"""What a stage needs from the outside world, passed in so tests can call stages directly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

import asyncpg

from gateway.client import NowPaymentsClient
from services.catalogue import CatalogueRefresher
from settings import Settings

Stage = Literal["poll_status", "settle_deposit", "process_withdrawal", "deliver_notifications"]


class FollowUp(NamedTuple):
    """One follow-up message: the stage to run and the payment, withdrawal or subject it runs on."""

    stage: Stage
    subject_id: str


class PartialSend(Exception):
    """`Enqueuer.send_many` stopped early: the first ``sent`` follow-ups were sent, the rest may not have been.

    The broker's own error is the ``__cause__``.
    """

    def __init__(self, sent: int) -> None:
        super().__init__(f"only the first {sent} follow-ups were sent")
        self.sent = sent


class Enqueuer(Protocol):
    """Sends follow-up messages. Implementations must be safe to call more than once per fact."""

    async def send_many(self, follow_ups: Sequence[FollowUp]) -> None:
        """Send each follow-up, in order, in as few broker round trips as the broker allows.

        Raises `PartialSend` (caused by the broker's error) when it fails part of the way.
        """
        ...

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
