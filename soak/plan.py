"""What the soak sends: users, their deposits (scenario and amount) and their one withdrawal."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

CENT = Decimal("0.01")
# The simulator's scenarios and what each pays as a fraction of the payment's amount.
SCENARIO_WEIGHTS = {"paid": 40, "over": 15, "partial": 15, "failed": 15, "expired": 15}
CREDITING = frozenset({"paid", "over", "partial"})
WITHDRAWAL_OUTCOMES = ("paid_out", "rejected", "cancelled", "gateway_failed")
WITHDRAWAL_USD = Decimal("20.00")
FUNDING_USD = Decimal("60.00")


@dataclass(frozen=True)
class DepositSpec:
    request_id: str
    user_id: str
    amount_usd: Decimal
    scenario: str
    twice: bool  # every message for it is sent twice

    @property
    def credits(self) -> bool:
        return self.scenario in CREDITING


@dataclass(frozen=True)
class WithdrawalSpec:
    request_id: str
    user_id: str
    amount_usd: Decimal
    outcome: str
    twice: bool


@dataclass(frozen=True)
class UserPlan:
    user_id: str
    deposits: tuple[DepositSpec, ...]
    withdrawal: WithdrawalSpec


def make_plan(*, users: int, deposits_per_user: int, seed: int, run_id: str) -> list[UserPlan]:
    """Each user's first deposit is paid in full (it funds the withdrawal); the others draw a scenario."""
    rng = random.Random(seed)
    scenarios, weights = zip(*SCENARIO_WEIGHTS.items(), strict=True)
    plans = []
    for n in range(users):
        user_id = f"soak-{run_id}-u{n}"
        twice = rng.random() < 0.2
        deposits = [DepositSpec(f"{user_id}-d0", user_id, FUNDING_USD, "paid", twice)]
        for d in range(1, deposits_per_user):
            amount = Decimal(rng.randint(500, 50_000)) * CENT  # above every coin's gateway minimum
            deposits.append(DepositSpec(f"{user_id}-d{d}", user_id, amount, rng.choices(scenarios, weights)[0], twice))
        outcome = WITHDRAWAL_OUTCOMES[n % len(WITHDRAWAL_OUTCOMES)]
        withdrawal = WithdrawalSpec(f"{user_id}-w", user_id, WITHDRAWAL_USD, outcome, twice)
        plans.append(UserPlan(user_id, tuple(deposits), withdrawal))
    return plans


def expected_credit(amount_usd: Decimal, pay_amount: Decimal, actually_paid: Decimal) -> Decimal:
    """What arrived, in USD, rounded down to the cent; an exact payment credits the ordered amount."""
    if actually_paid == pay_amount:
        return amount_usd
    return (actually_paid / pay_amount * amount_usd).quantize(CENT, rounding=ROUND_DOWN)
