"""The simulator's memory: payments, payouts, sign-in tokens, armed faults, logs of what
happened, and the background tasks it runs. Everything lives in one `SimState` per app."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, web

from gateway.simulator.config import FaultRule, IpnDelivery, SimulatorConfig

if TYPE_CHECKING:
    from gateway.simulator.ipn import HeldIpn


def now() -> datetime:
    return datetime.now(UTC)


def after(previous: datetime) -> datetime:
    """Now, or 1 ms after `previous` if that is later: each entity's updated_at strictly
    increases at millisecond resolution, so ordering by it is meaningful."""
    moment = now()
    minimum = previous + timedelta(milliseconds=1)
    return moment if moment >= minimum else minimum


@dataclass
class SimPayment:
    payment_id: int
    purchase_id: int
    status: str
    pay_address: str
    payin_extra_id: str | None
    price_amount: Decimal
    price_currency: str
    pay_amount: Decimal
    pay_currency: str
    network: str
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    case: str | None
    created_at: datetime
    updated_at: datetime
    expiration_estimate_date: datetime
    actually_paid: Decimal = Decimal(0)
    payin_hash: str | None = None
    payout_hash: str | None = None
    outcome_amount: Decimal | None = None
    outcome_currency: str | None = None
    answers: int = 0  # how many API answers carried this payment (drives the type drift)


@dataclass
class SimPayout:
    """One withdrawal of a mass payout (`payout_id` is the withdrawal id)."""

    payout_id: int
    batch_id: int
    status: str
    address: str
    currency: str
    amount: Decimal
    extra_id: str | None
    ipn_callback_url: str | None
    unique_external_id: str | None
    created_at: datetime
    updated_at: datetime | None = None
    hash: str | None = None
    error: str | None = None


@dataclass
class ArmedFault:
    """A fault rule in force, with how many more requests it fires on (None: until cleared)."""

    rule: FaultRule
    remaining: int | None

    @classmethod
    def arm(cls, rule: FaultRule) -> ArmedFault:
        return cls(rule, rule.count)

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


def _first_id(low: int, high: int) -> int:
    return random.randint(low, high)


def _next_id(current: int) -> int:
    return current + random.randint(1, 97)


@dataclass
class SimState:
    config: SimulatorConfig
    payments: dict[int, SimPayment] = field(default_factory=dict)
    payouts: dict[int, SimPayout] = field(default_factory=dict)
    payout_by_external_id: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict, repr=False)  # JWT → monotonic expiry
    jwt_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    payout_answers: int = 0  # drives the payout answers' type drift
    faults: list[ArmedFault] = field(default_factory=list)
    fault_random: random.Random = field(default_factory=random.Random, repr=False)
    ipn_delivery: IpnDelivery = field(default_factory=IpnDelivery)
    ipn_random: random.Random = field(default_factory=random.Random, repr=False)
    held_ipns: dict[str, HeldIpn] = field(default_factory=dict, repr=False)  # by Kind.key
    ipn_log: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    plays: dict[str, asyncio.Task[list[dict[str, Any]]]] = field(default_factory=dict, repr=False)  # by play key
    http: ClientSession | None = None
    next_payment_id: int = field(default_factory=lambda: _first_id(4_000_000_000, 5_999_000_000))
    next_purchase_id: int = field(default_factory=lambda: _first_id(4_000_000_000, 5_999_000_000))
    next_payout_id: int = field(default_factory=lambda: _first_id(5_000_000_000, 5_499_000_000))
    next_batch_id: int = field(default_factory=lambda: _first_id(5_500_000_000, 5_999_000_000))

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> SimState:
        state = cls(config=config, ipn_delivery=config.ipn_delivery)
        state.reseed(config.seed)
        state.faults = [ArmedFault.arm(rule) for rule in config.faults]
        return state

    def reseed(self, seed: int | None) -> None:
        """Restart both generators of random misbehaviour (faults, IPN delivery) from `seed`."""
        self.fault_random.seed(seed)
        self.ipn_random.seed(None if seed is None else seed + 1)

    def payment_ids(self) -> tuple[int, int]:
        """A new payment's (payment_id, purchase_id)."""
        ids = self.next_payment_id, self.next_purchase_id
        self.next_payment_id = _next_id(self.next_payment_id)
        self.next_purchase_id = _next_id(self.next_purchase_id)
        return ids

    def batch_id(self) -> int:
        batch = self.next_batch_id
        self.next_batch_id = _next_id(batch)
        return batch

    def payout_id(self) -> int:
        payout = self.next_payout_id
        self.next_payout_id = _next_id(payout)
        return payout

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


STATE_KEY: web.AppKey[SimState] = web.AppKey("nowpayments_sim_state", SimState)


def state_of(request: web.Request) -> SimState:
    return request.app[STATE_KEY]
