"""What differs between payments and payouts for IPN delivery, scenarios and the control API,
so one implementation of each of those serves both kinds (`PAYMENTS`, `PAYOUTS`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.simulator import shapes
from gateway.simulator.state import SimPayment, SimPayout, SimState
from gateway.simulator.steps import PAYOUT_SCENARIOS, SCENARIOS, apply_payment_step, apply_payout_status

E = TypeVar("E", SimPayment, SimPayout)


@dataclass(frozen=True, slots=True)
class Kind(Generic[E]):
    """`name` ("payment" | "payout") is the control answers' key and the {name}_id path
    parameter; entities live in `state.{name}s` under their `{name}_id`. A scenario's steps
    are statuses, or (status, extra) pairs; the first scenario is the default."""

    name: str
    view: Callable[[E], dict[str, Any]]  # the control API's stable representation
    ipn_body: Callable[[E], dict[str, Any]]
    scenarios: Mapping[str, tuple[Any, ...]]  # name → steps
    apply_step: Callable[[E, Any], None]

    def table(self, state: SimState) -> dict[int, E]:
        table: dict[int, E] = getattr(state, f"{self.name}s")
        return table

    def ident(self, entity: E) -> int:
        ident: int = getattr(entity, f"{self.name}_id")
        return ident

    def key(self, entity: E) -> str:
        """Names one entity among both kinds (e.g. "payment:4012345678")."""
        return f"{self.name}:{self.ident(entity)}"

    @property
    def default_scenario(self) -> str:
        return next(iter(self.scenarios))

    def steps(self, scenario: str) -> list[str]:
        return [step[0] if isinstance(step, tuple) else step for step in self.scenarios[scenario]]


PAYMENTS: Kind[SimPayment] = Kind("payment", shapes.payment_view, shapes.ipn_wire, SCENARIOS, apply_payment_step)
PAYOUTS: Kind[SimPayout] = Kind(
    "payout", shapes.payout_view, shapes.payout_ipn_wire, PAYOUT_SCENARIOS, apply_payout_status
)
