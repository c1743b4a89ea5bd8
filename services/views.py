"""JSON shapes the HTTP API returns, each built through its model in answers.py.

Money leaves as decimal strings, never JSON floats.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.errors import DomainError
from domain.links import explorer_link, payment_uri
from domain.money import CENT, plain_amount
from domain.payments import Payment
from domain.rejections import Rejection
from domain.withdrawals import Withdrawal
from services.answers import (
    BalanceAnswer,
    HistoryItemView,
    PaymentView,
    RefusedReplay,
    RejectionView,
    WithdrawalDetail,
    WithdrawalEventView,
    WithdrawalView,
)
from storage.ledger import BalanceView, HistoryItem


def _money(value: Decimal | None) -> str | None:
    """USD as text with exactly two decimals: ``"0.00"``, ``"25.50"``."""
    return None if value is None else format(value.quantize(CENT), "f")


def _crypto(value: Decimal | None) -> str | None:
    return None if value is None else plain_amount(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def payment_uri_for(payment: Payment) -> str | None:
    if not payment.pay_address:
        return None
    try:
        return payment_uri(
            payment.currency_code, payment.network, payment.pay_address, payment.pay_amount, payment.payin_extra_id
        )
    except (ValueError, DomainError):  # an address the URI rules refuse: show no URI rather than a wrong one
        return None


def qr_path(payment_id: str) -> str:
    return f"/v1/payments/{payment_id}/qr.svg"


def payment_view(
    payment: Payment, *, qr_code_url: str | None = None, refused_replay: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The payment as the API shows it; ``qr_code_url`` is the signed link (the bare path when not given).

    ``refused_replay`` (`refused_replay_view`) is shown only when given.
    """
    link = explorer_link(
        payment.network,
        payment.currency_code,
        tx_hash=payment.payin_hash,
        address=None if payment.payin_hash else payment.pay_address,
    )
    view = {
        "internal_payment_id": payment.id,
        "request_id": payment.request_id,
        "user_id": payment.user_id,
        "status": payment.status.value,
        "gateway_status": payment.gateway_status,
        "amount_usd": _money(payment.amount_usd),
        "currency_code": payment.currency_code,
        "description": payment.description,
        "pay_address": payment.pay_address,
        "payin_extra_id": payment.payin_extra_id,
        "pay_amount": _crypto(payment.pay_amount),
        "actually_paid": _crypto(payment.actually_paid),
        "network": payment.network,
        "payin_hash": payment.payin_hash,
        "payment_uri": payment_uri_for(payment),
        "qr_code_url": (qr_code_url or qr_path(payment.id)) if payment.pay_address else None,
        "explorer_link": link,
        "expires_at": _time(payment.expires_at),
        "credit_usd": _money(payment.credit_usd),
        "variance": payment.variance,
        "hold_reason": payment.hold_reason,
        "settled_at": _time(payment.settled_at),
        "error_code": payment.error_code,
        "error_message": payment.error_message,
        "created_at": _time(payment.created_at),
        "updated_at": _time(payment.updated_at),
    }
    if refused_replay is not None:
        view["refused_replay"] = refused_replay
    return PaymentView.model_validate(view).model_dump(mode="json", exclude_unset=True)


def balance_view(balance: BalanceView) -> dict[str, Any]:
    view = {
        "user_id": balance.user_id,
        "balance_usd": _money(balance.balance_usd),
        "held_usd": _money(balance.held_usd),
        "total_deposited": _money(balance.total_deposited),
        "total_withdrawn": _money(balance.total_withdrawn),
        "last_transaction_at": _time(balance.last_transaction_at),
    }
    return BalanceAnswer.model_validate(view).model_dump(mode="json")


def history_item_view(item: HistoryItem) -> dict[str, Any]:
    view = {
        "id": item.entry_id,
        "type": item.type,
        "amount_usd": _money(item.amount_usd),
        "balance_after": _money(item.balance_after),
        "description": item.description,
        "reference": item.reference,
        "created_at": _time(item.created_at),
    }
    return HistoryItemView.model_validate(view).model_dump(mode="json")


def _withdrawal_fields(withdrawal: Withdrawal) -> dict[str, Any]:
    return {
        "internal_withdrawal_id": withdrawal.id,
        "request_id": withdrawal.request_id,
        "user_id": withdrawal.user_id,
        "status": withdrawal.status.value,
        "amount_usd": _money(withdrawal.amount_usd),
        "network_fee_usd": _money(withdrawal.network_fee_usd),
        "service_fee_usd": _money(withdrawal.service_fee_usd),
        "total_fee_usd": _money(withdrawal.total_fee_usd),
        "final_amount_usd": _money(withdrawal.final_amount_usd),
        "currency_code": withdrawal.currency_code,
        "wallet_address": withdrawal.wallet_address,
        "extra_id": withdrawal.extra_id,
        "payout_mode": withdrawal.payout_mode,
        "payout_amount": _crypto(withdrawal.payout_amount),
        "payout_status": withdrawal.payout_status,
        "transaction_hash": withdrawal.transaction_hash,
        "error_code": withdrawal.error_code,
        "error_message": withdrawal.error_message,
        "review_reason": withdrawal.review_reason,
        "payout_attempted_at": _time(withdrawal.payout_attempted_at),
        "created_at": _time(withdrawal.created_at),
        "updated_at": _time(withdrawal.updated_at),
        "completed_at": _time(withdrawal.completed_at),
    }


def withdrawal_view(withdrawal: Withdrawal) -> dict[str, Any]:
    """A withdrawal without its events, as lists show it."""
    return WithdrawalView.model_validate(_withdrawal_fields(withdrawal)).model_dump(mode="json")


def _event_fields(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "from_status": event["from_status"],
        "to_status": event["to_status"],
        "actor": event["actor"],
        "note": event["note"],
        "at": _time(event["created_at"]),
    }


def withdrawal_event_view(event: dict[str, Any]) -> dict[str, Any]:
    return WithdrawalEventView.model_validate(_event_fields(event)).model_dump(mode="json")


def withdrawal_detail(
    withdrawal: Withdrawal, events: list[dict[str, Any]], *, refused_replay: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A withdrawal with every event (who, when, why), as a single withdrawal is shown."""
    fields = {**_withdrawal_fields(withdrawal), "events": [_event_fields(e) for e in events]}
    if refused_replay is not None:
        fields["refused_replay"] = refused_replay
    return WithdrawalDetail.model_validate(fields).model_dump(mode="json", exclude_unset=True)


def rejection_view(rejection: Rejection) -> dict[str, Any]:
    """A request refused for good, as ``GET /v1/deposits/{request_id}`` (or a replay) answers it."""
    view = {
        "request_id": rejection.request_id,
        "status": "rejected",
        "error": rejection.error,
        "reason": rejection.reason,
        "field": rejection.field,
        "rejected_at": _time(rejection.rejected_at),
    }
    return RejectionView.model_validate(view).model_dump(mode="json")


def refused_replay_view(rejection: Rejection) -> dict[str, Any]:
    """Beside a payment or withdrawal: a later request under its request_id, with other arguments, was refused."""
    view = {
        "note": "a request with different arguments under this request_id was refused; this record is not its answer",
        "reason": rejection.reason,
        "rejected_at": _time(rejection.rejected_at),
    }
    return RefusedReplay.model_validate(view).model_dump(mode="json")
