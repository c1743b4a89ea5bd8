"""Look for the gateway payment an earlier create-payment attempt may have made before its answer was lost.

Searched on the gateway's payment list (GET /v1/payment/, behind the payout login's JWT: the list cannot
be filtered by order id), by creation time from when we recorded the payment, oldest first, page by page
up to a bound. Either the payment is found, or the list definitely does not hold it, or the question
could not be answered and nothing may be created yet.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from domain.lost_creation import ListedPayment, is_ours, search_window
from domain.payments import Payment
from gateway.client import NowPaymentsClient
from gateway.errors import GatewayError, GatewayTransientError
from gateway.models import GatewayPayment

log = structlog.get_logger(__name__)

PAGE_SIZE = 500
MAX_PAGES = 20  # 10,000 payments created in the window: past that the answer is "unknown", not "no"


class LookupInconclusive(Exception):
    """Raised when the window holds more payments than the bound lets us read: neither found nor absent."""


def _listed(payment: GatewayPayment) -> ListedPayment:
    return ListedPayment(
        order_id=payment.order_id,
        price_amount=payment.price_amount,
        price_currency=payment.price_currency,
        pay_currency=payment.pay_currency,
    )


async def find_lost_creation(
    gateway: NowPaymentsClient, payment: Payment, now: datetime, *, settle_seconds: float
) -> GatewayPayment | None:
    """The oldest gateway payment made for ``payment``, or None when the list definitely has none.

    Raises GatewayTransientError when the gateway cannot be asked (down, timing out, refusing the
    login, garbled), and LookupInconclusive when the window is too full to read to the end.
    """
    date_from, date_to = search_window(payment.created_at, payment.gateway_attempted_at, now, settle_seconds)
    for page in range(MAX_PAGES):
        try:
            answer = await gateway.list_payments(
                limit=PAGE_SIZE, page=page, sort_by="created_at", order_by="asc", date_from=date_from, date_to=date_to
            )
        except GatewayTransientError:
            raise
        except GatewayError as exc:
            raise GatewayTransientError(f"payment list lookup failed: {type(exc).__name__}") from exc
        for listed in answer.payments:
            if is_ours(_listed(listed), payment_id=payment.id, amount_usd=payment.amount_usd,
                       currency_code=payment.currency_code):  # fmt: skip
                return listed
            if listed.order_id == payment.id:  # ours by id, not by price or coin: left for reconcile
                log.error("gateway_payment_differs", payment_id=payment.id, provider_payment_id=listed.payment_id)
        if not answer.payments or page + 1 >= answer.pages_count:
            return None
    raise LookupInconclusive(f"more than {MAX_PAGES * PAGE_SIZE} gateway payments in the window of {payment.id}")
