"""The one error table: every declared error has a row, and a subclass finds its own or its nearest base's."""

from __future__ import annotations

import inspect

import pytest

import domain.errors
import gateway.errors
import services.errors
from domain.errors import InvalidRequest
from entrypoints.errors import ERRORS, EXIT_NOT_FOUND, outcome_for, public_message
from entrypoints.web.log_budget import LogBudget
from gateway.errors import GatewayTransientError
from services.errors import InsufficientFunds, PaymentNotFound, UnknownPayout, WithdrawalNotFound


def _declared() -> list[type[BaseException]]:
    modules = (domain.errors, gateway.errors, services.errors)
    return [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == module.__name__
    ]


@pytest.mark.parametrize("cls", _declared(), ids=lambda cls: cls.__name__)
def test_every_declared_error_says_when_it_is_raised_and_maps_to_an_answer(cls: type[BaseException]) -> None:
    assert (cls.__doc__ or "").startswith(("Raised ", "Base class: raised ")), cls
    if cls is not domain.errors.DomainError and cls.__name__ not in ("GatewayError", "CallbackRefused"):
        assert any(base in ERRORS for base in cls.__mro__), cls


def test_rows_are_found_by_the_nearest_class() -> None:
    assert outcome_for(WithdrawalNotFound("no withdrawal 'x'")) == outcome_for(PaymentNotFound("no such payment"))
    assert outcome_for(PaymentNotFound("x")).exit_code == EXIT_NOT_FOUND
    assert (outcome_for(UnknownPayout("x")).http_status, outcome_for(UnknownPayout("x")).code) == (
        404,
        "unknown_payout",
    )
    assert outcome_for(InsufficientFunds("x")).code == "insufficient_funds"
    assert outcome_for(InvalidRequest("x")).code == "invalid_request"
    assert outcome_for(KeyError("a bug")) is None


def test_internal_details_of_gateway_failures_are_not_shown() -> None:
    exc = GatewayTransientError("POST https://gateway.internal/v1/payment: connection reset")
    outcome = outcome_for(exc)
    assert outcome is not None and "gateway.internal" not in public_message(exc, outcome)


def test_a_log_budget_lets_a_burst_through_per_period_and_counts_the_rest() -> None:
    now = [0.0]
    budget = LogBudget(burst=2, period=60.0, clock=lambda: now[0])
    assert [budget.spend() for _ in range(5)] == [0, 0, None, None, None]
    now[0] = 61.0
    assert budget.spend() == 3
    assert budget.spend() == 0
