"""How the simulator's answers look on the wire: the gateway's field names, its JavaScript
numbers (no trailing zeros), timestamps as ISO strings or epoch milliseconds, and the type
drift of ids and amounts between answers (DESIGN.md §6). The control API's views are here too:
stable, with ids and amounts as strings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway import wire
from gateway.simulator.catalogue import SimCurrency, plain
from gateway.simulator.state import SimPayment, SimPayout


def iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def payment_view(p: SimPayment) -> dict[str, Any]:
    """Stable representation for the control API: ids and amounts as strings."""
    return {
        "payment_id": str(p.payment_id),
        "purchase_id": str(p.purchase_id),
        "payment_status": p.status,
        "pay_address": p.pay_address,
        "payin_extra_id": p.payin_extra_id,
        "price_amount": wire.decimal_text(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": wire.decimal_text(p.pay_amount),
        "actually_paid": wire.decimal_text(p.actually_paid),
        "pay_currency": p.pay_currency,
        "network": p.network,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "ipn_callback_url": p.ipn_callback_url,
        "case": p.case,
        "payin_hash": p.payin_hash,
        "payout_hash": p.payout_hash,
        "outcome_amount": None if p.outcome_amount is None else wire.decimal_text(p.outcome_amount),
        "outcome_currency": p.outcome_currency,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "expiration_estimate_date": iso(p.expiration_estimate_date),
    }


def payout_view(p: SimPayout) -> dict[str, Any]:
    """Stable representation for the control API, in the withdrawal object's order: ids and
    amounts as strings."""
    return {
        "id": str(p.payout_id),
        "address": p.address,
        "currency": p.currency,
        "amount": wire.decimal_text(p.amount),
        "batch_withdrawal_id": str(p.batch_id),
        "status": p.status,
        "extra_id": p.extra_id,
        "hash": p.hash,
        "error": p.error,
        "unique_external_id": p.unique_external_id,
        "ipn_callback_url": p.ipn_callback_url,
        "created_at": iso(p.created_at),
        "updated_at": None if p.updated_at is None else iso(p.updated_at),
    }


def currency_wire(index: int, c: SimCurrency) -> dict[str, Any]:
    return {
        "id": index + 1,
        "code": c.code.upper(),
        "name": c.name,
        "enable": c.enabled,
        "wallet_regex": c.wallet_regex,
        "priority": index + 1,
        "extra_id_exists": c.extra_id_exists,
        "extra_id_regex": c.extra_id_regex,
        "logo_url": f"/images/coins/{c.code}.svg",
        "track": True,
        "cg_id": c.name.lower().split(" ")[0],
        "is_maxlimit": False,
        "network": c.network,
        "smart_contract": c.smart_contract,
        "network_precision": None,
        "explorer_link_hash": None,
        "precision": c.precision,
        "ticker": c.network if c.smart_contract else c.code,
        "is_defi": False,
        "is_popular": c.code in ("btc", "eth", "usdttrc20"),
        "is_stable": c.code == "usdttrc20",
        "available_for_to_conversion": True,
    }


def drift_id(value: int, answer: int) -> int | str:
    return str(value) if answer % 2 == 0 else value


def created_wire(p: SimPayment) -> dict[str, Any]:
    p.answers += 1
    n = p.answers
    return {
        "payment_id": drift_id(p.payment_id, n),
        "payment_status": p.status,
        "pay_address": p.pay_address,
        "price_amount": plain(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": plain(p.pay_amount),
        "amount_received": plain(p.pay_amount),
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "ipn_callback_url": p.ipn_callback_url,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "purchase_id": drift_id(p.purchase_id, n + 1),
        "smart_contract": None,
        "network": p.network,
        "network_precision": None,
        "time_limit": None,
        "burning_percent": None,
        "expiration_estimate_date": iso(p.expiration_estimate_date),
        "is_fixed_rate": False,
        "is_fee_paid_by_user": False,
        "valid_until": iso(p.expiration_estimate_date),
        "type": "crypto2crypto",
        "payin_extra_id": p.payin_extra_id,
    }


def status_wire(p: SimPayment) -> dict[str, Any]:
    p.answers += 1
    n = p.answers
    pay_amount: Decimal | str = plain(p.pay_amount)
    if n % 3 == 1:
        pay_amount = wire.decimal_text(pay_amount)
    return {
        "payment_id": drift_id(p.payment_id, n),
        "invoice_id": None,
        "payment_status": p.status,
        "pay_address": p.pay_address,
        "payin_extra_id": p.payin_extra_id,
        "price_amount": plain(p.price_amount),
        "price_currency": p.price_currency,
        "pay_amount": pay_amount,
        "actually_paid": plain(p.actually_paid),
        "actually_paid_at_fiat": 0,
        "pay_currency": p.pay_currency,
        "order_id": p.order_id,
        "order_description": p.order_description,
        "purchase_id": drift_id(p.purchase_id, n + 1),
        "outcome_amount": None if p.outcome_amount is None else plain(p.outcome_amount),
        "outcome_currency": p.outcome_currency,
        "payout_hash": p.payout_hash,
        "payin_hash": p.payin_hash,
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at) if n % 2 == 0 else millis(p.updated_at),
        "burning_percent": None,
        "type": "crypto2crypto",
        "network": p.network,
        "expiration_estimate_date": iso(p.expiration_estimate_date),
    }


def ipn_wire(p: SimPayment) -> dict[str, Any]:
    return {
        "actually_paid": plain(p.actually_paid),
        "actually_paid_at_fiat": 0,
        "fee": {"currency": p.pay_currency, "depositFee": 0, "serviceFee": 0, "withdrawalFee": 0},
        "invoice_id": None,
        "order_description": p.order_description,
        "order_id": p.order_id,
        "outcome_amount": None if p.outcome_amount is None else plain(p.outcome_amount),
        "outcome_currency": p.outcome_currency,
        "parent_payment_id": None,
        "pay_address": p.pay_address,
        "pay_amount": plain(p.pay_amount),
        "pay_currency": p.pay_currency,
        "payin_extra_id": p.payin_extra_id,
        "payin_hash": p.payin_hash,
        "payment_extra_ids": None,
        "payment_id": p.payment_id,
        "payment_status": p.status,
        "price_amount": plain(p.price_amount),
        "price_currency": p.price_currency,
        "purchase_id": str(p.purchase_id),
        "updated_at": millis(p.updated_at),
    }


def payout_wire(p: SimPayout, *, drift: int = 0) -> dict[str, Any]:
    """The withdrawal object. `drift` > 0 varies id/amount/updated_at types as the gateway does."""
    amount: Decimal | str = wire.decimal_text(plain(p.amount))
    payout_id: int | str = str(p.payout_id)
    updated_at: int | str | None = None if p.updated_at is None else iso(p.updated_at)
    if drift:
        if drift % 2 == 1:
            payout_id = p.payout_id
        if drift % 3 == 0:
            amount = plain(p.amount)
        if drift % 2 == 0 and p.updated_at is not None:
            updated_at = millis(p.updated_at)
    return {
        "id": payout_id,
        "address": p.address,
        "currency": p.currency,
        "amount": amount,
        "batch_withdrawal_id": str(p.batch_id),
        "status": p.status,
        "extra_id": p.extra_id,
        "hash": p.hash,
        "error": p.error,
        "is_request_payouts": False,
        "ipn_callback_url": p.ipn_callback_url,
        "unique_external_id": p.unique_external_id,
        "payout_description": None,
        "created_at": iso(p.created_at),
        "requested_at": None,
        "updated_at": updated_at,
    }


def payout_ipn_wire(p: SimPayout) -> dict[str, Any]:
    """A payout IPN's body: the withdrawal object, without drift."""
    return payout_wire(p)
