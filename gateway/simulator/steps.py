"""Statuses and how a payment or payout moves through them: the sandbox cases, the scenarios
the control API and auto-advance play, and what the gateway fills in at each status."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal

from gateway.simulator.catalogue import CATALOGUE, SimCurrency, plain
from gateway.simulator.state import SimPayment, SimPayout, after

GATEWAY_STATUSES = (
    "waiting",
    "confirming",
    "confirmed",
    "sending",
    "partially_paid",
    "finished",
    "failed",
    "refunded",
    "expired",
)
PAYOUT_STATUSES = ("CREATING", "WAITING", "PROCESSING", "SENDING", "FINISHED", "FAILED", "REJECTED")
SERVICE_FEE = Decimal("0.005")

# Sandbox `case` values → scenario played by auto-advance.
CASES = {
    "success": "paid",
    "common": "paid",
    "partially_paid": "partial",
    "failed": "failed",
    "fail": "failed",
    "expired": "expired",
}

PaymentStep = tuple[str, Decimal | None]

# Each step: (status, actually_paid as a fraction of pay_amount, or None to leave it).
SCENARIOS: Mapping[str, tuple[PaymentStep, ...]] = {
    "paid": (
        ("waiting", Decimal(0)),
        ("confirming", Decimal(1)),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "partial": (("waiting", Decimal(0)), ("confirming", Decimal("0.5")), ("partially_paid", None)),
    "over": (
        ("waiting", Decimal(0)),
        ("confirming", Decimal("1.5")),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "late": (
        ("waiting", Decimal(0)),
        ("expired", None),
        ("confirming", Decimal(1)),
        ("confirmed", None),
        ("sending", None),
        ("finished", None),
    ),
    "failed": (("waiting", Decimal(0)), ("failed", None)),
    "expired": (("waiting", Decimal(0)), ("expired", None)),
}
PAYOUT_SCENARIOS: Mapping[str, tuple[str, ...]] = {
    "finished": ("WAITING", "PROCESSING", "SENDING", "FINISHED"),
    "failed": ("WAITING", "PROCESSING", "FAILED"),
    "rejected": ("REJECTED",),
}


def _currency_of(p: SimPayment) -> SimCurrency:
    return CATALOGUE[p.pay_currency]


def apply_status(p: SimPayment, status: str, actually_paid: Decimal | None = None) -> None:
    """Set a status (any, even backwards) and fill what the gateway would have filled."""
    currency = _currency_of(p)
    if actually_paid is not None:
        p.actually_paid = actually_paid
    elif p.actually_paid == 0 and status in ("confirming", "confirmed", "sending", "finished"):
        p.actually_paid = p.pay_amount
    elif p.actually_paid == 0 and status == "partially_paid":
        p.actually_paid = plain((p.pay_amount / 2).quantize(currency.quantum, rounding=ROUND_DOWN))
    p.status = status
    if p.payin_hash is None and p.actually_paid > 0:
        p.payin_hash = currency.tx_hash()
    if p.payout_hash is None and status in ("sending", "finished"):
        p.payout_hash = currency.tx_hash()
    if status == "finished":
        p.outcome_amount = plain((p.actually_paid * (1 - SERVICE_FEE)).quantize(currency.quantum, rounding=ROUND_DOWN))
        p.outcome_currency = p.pay_currency
    p.updated_at = after(p.updated_at)


def apply_payment_step(p: SimPayment, step: PaymentStep) -> None:
    """One scenario step: the status, and what has arrived as a fraction of pay_amount."""
    status, fraction = step
    paid = None
    if fraction is not None:
        paid = plain((p.pay_amount * fraction).quantize(_currency_of(p).quantum, rounding=ROUND_DOWN))
    apply_status(p, status, paid)


def apply_payout_status(p: SimPayout, status: str, *, error: str | None = None, tx_hash: str | None = None) -> None:
    """Set a payout status (any, even backwards) and fill the hash/error the gateway would."""
    status = status.strip().upper()
    p.status = status
    if tx_hash is not None:
        p.hash = tx_hash
    elif p.hash is None and status in ("SENDING", "FINISHED"):
        p.hash = CATALOGUE[p.currency].tx_hash()
    if error is not None:
        p.error = error
    elif p.error is None and status == "FAILED":
        p.error = "Withdrawal failed: transaction was not sent"
    elif p.error is None and status == "REJECTED":
        p.error = "Withdrawal rejected"
    p.updated_at = after(p.updated_at or p.created_at)
