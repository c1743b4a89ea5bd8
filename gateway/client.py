"""Async client for the NOWPayments REST API: one method per endpoint we use.

The transport (session, retries, what may be repeated, the payout JWT) is `gateway.transport`;
this module turns each endpoint's answer into our models, refusing what we cannot read.
Payouts (the mass payouts API) also need the account's email and password; a payout POST
follows the same retry rule as a payment POST, and its `unique_external_id` is the
reconciliation key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from domain.money import decimal_from_wire
from gateway import wire
from gateway.errors import (
    DUPLICATE_EXTERNAL_ID,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
)
from gateway.models import GatewayCurrency, GatewayPayment, GatewayPaymentPage, GatewayPayout, MinAmount
from gateway.transport import Answer, GatewayTransport

log = logging.getLogger(__name__)

_LISTING_PAGE_SIZE = 100
_LISTING_MAX_PAGES = 20


class NowPaymentsClient(GatewayTransport):
    """NOWPayments API client. Never shows its API key, payout email, password or JWT in
    repr, logs or errors.

    `email`/`password` are only needed for payouts (`create_payout`, `get_payout`,
    `find_payout_by_external_id`); `validate_address` and `payout_fee` need only the API key.
    `token_max_age` is how long a JWT is reused before signing in again (NOWPayments issues
    them for about 5 minutes).
    """

    # -- API -------------------------------------------------------------------------

    async def status(self) -> bool:
        """GET /status (no key needed): True when the gateway answers ``{"message": "OK"}``."""
        try:
            answer = await self._request("GET", "/status")
        except (GatewayTransientError, GatewayProtocolError, GatewayRejected) as exc:
            log.warning("gateway status check failed: %s", exc)
            return False
        return isinstance(answer.body, Mapping) and str(answer.body.get("message", "")).upper() == "OK"

    async def full_currencies(self) -> list[GatewayCurrency]:
        answer = await self._request("GET", "/full-currencies")
        items = answer.body.get("currencies") if isinstance(answer.body, Mapping) else None
        if not isinstance(items, list):
            raise GatewayProtocolError("GET /full-currencies: no currencies list")
        return [GatewayCurrency.from_wire(item) for item in items]

    async def merchant_coins(self) -> list[str]:
        """Lowercase codes of the coins enabled on the merchant account."""
        answer = await self._request("GET", "/merchant/coins")
        body = answer.body
        items: Any = None
        if isinstance(body, Mapping):
            items = body.get("selectedCurrencies")
            if items is None:
                items = body.get("currencies")
        if not isinstance(items, list):
            raise GatewayProtocolError("GET /merchant/coins: no currency list")
        codes: list[str] = []
        for item in items:
            code = item.get("code") if isinstance(item, Mapping) else item
            if not isinstance(code, str) or not code.strip():
                raise GatewayProtocolError("GET /merchant/coins: an entry has no code")
            codes.append(code.strip().lower())
        return codes

    async def min_amount(self, currency_from: str, fiat_equivalent: str = "usd") -> MinAmount:
        params = {"currency_from": currency_from.lower(), "fiat_equivalent": fiat_equivalent.lower()}
        answer = await self._request("GET", "/min-amount", params=params)
        return MinAmount.from_wire(_mapping(answer.body, "GET /min-amount"), default_currency_from=currency_from)

    async def estimate(self, amount: Decimal, currency_from: str, currency_to: str) -> Decimal:
        params = {
            "amount": wire.decimal_text(_positive_decimal(amount, "amount")),
            "currency_from": currency_from.lower(),
            "currency_to": currency_to.lower(),
        }
        answer = await self._request("GET", "/estimate", params=params)
        body = _mapping(answer.body, "GET /estimate")
        try:
            estimated = decimal_from_wire(body.get("estimated_amount"))
        except (TypeError, ValueError) as exc:
            raise GatewayProtocolError("GET /estimate: estimated_amount is not a number") from exc
        if estimated is None:
            raise GatewayProtocolError("GET /estimate: no estimated_amount")
        return estimated

    async def create_payment(
        self,
        *,
        price_amount: Decimal,
        price_currency: str,
        pay_currency: str,
        order_id: str,
        order_description: str | None = None,
        ipn_callback_url: str | None = None,
        case: str | None = None,
    ) -> GatewayPayment:
        """POST /payment. Not repeated after a timeout or a dropped connection: the payment
        may exist, so `GatewayTransientError` goes back to the caller to reconcile."""
        body: dict[str, Any] = {
            "price_amount": _positive_decimal(price_amount, "price_amount"),
            "price_currency": price_currency.lower(),
            "pay_currency": pay_currency.lower(),
            "order_id": order_id,
        }
        if order_description is not None:
            body["order_description"] = order_description
        if ipn_callback_url is not None:
            body["ipn_callback_url"] = ipn_callback_url
        if case is not None:
            body["case"] = case
        answer = await self._request("POST", "/payment", json_body=body, idempotent=False)
        if answer.status not in (200, 201):
            raise GatewayProtocolError(f"POST /payment: unexpected HTTP {answer.status}")
        payment = GatewayPayment.from_wire(_mapping(answer.body, "POST /payment"))
        if payment.order_id is not None and payment.order_id != order_id:
            raise GatewayProtocolError("POST /payment: answer is for a different order_id")
        return payment

    async def get_payment(self, payment_id: str) -> GatewayPayment:
        payment_id = str(payment_id).strip()
        if not payment_id:
            raise ValueError("payment_id must not be empty")
        answer = await self._request("GET", "/payment/" + quote(payment_id, safe=""))
        payment = GatewayPayment.from_wire(_mapping(answer.body, "GET /payment"))
        if payment.payment_id != payment_id:
            raise GatewayProtocolError("GET /payment: answer is for a different payment")
        return payment

    async def list_payments(
        self,
        *,
        limit: int = 100,
        page: int = 0,
        sort_by: str = "created_at",
        order_by: str = "asc",
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> GatewayPaymentPage:
        """GET /payment/: one page (from 0) of the merchant's payments, created between
        `date_from` and `date_to` (dates, or aware datetimes). Needs the payout login, as
        the gateway lists payments only behind its JWT."""
        if not 1 <= limit <= 500 or page < 0:
            raise ValueError("limit must be 1 to 500 and page at least 0")
        if order_by not in ("asc", "desc"):
            raise ValueError('order_by must be "asc" or "desc"')
        params = {"limit": str(limit), "page": str(page), "sortBy": sort_by, "orderBy": order_by}
        for key, moment in (("dateFrom", date_from), ("dateTo", date_to)):
            if moment is not None:
                params[key] = _query_moment(moment)
        answer = await self._request("GET", "/payment/", params=params, payout_auth=True)
        return GatewayPaymentPage.from_wire(answer.body)

    # -- payouts (mass payouts API) ----------------------------------------------------

    async def validate_address(self, currency: str, address: str, extra_id: str | None = None) -> bool:
        """POST /payout/validate-address: True when the gateway answers 200 "OK", False when
        it refuses the address with a 400 (its message says why). Other errors raise."""
        body: dict[str, Any] = {"address": _required_text(address, "address"), "currency": currency.lower()}
        if extra_id is not None:
            body["extra_id"] = extra_id
        try:
            # A pure check: repeating it on a timeout is harmless.
            answer = await self._request(
                "POST", "/payout/validate-address", json_body=body, idempotent=True, expect_json=False
            )
        except GatewayRejected as exc:
            if exc.http_status == 400:
                log.info("gateway: payout address refused for %s (%s)", currency.lower(), exc.code)
                return False
            raise
        if _says_ok(answer):
            return True
        raise GatewayProtocolError("POST /payout/validate-address: 2xx answer that is not OK")

    async def payout_fee(self, currency: str, amount: Decimal) -> Decimal:
        """GET /payout/fee: the network fee NOWPayments charges to send `amount` of `currency`."""
        params = {"currency": currency.lower(), "amount": wire.decimal_text(_positive_decimal(amount, "amount"))}
        answer = await self._request("GET", "/payout/fee", params=params)
        body = _mapping(answer.body, "GET /payout/fee")
        answered_currency = body.get("currency")
        if isinstance(answered_currency, str) and answered_currency.strip().lower() != currency.lower():
            raise GatewayProtocolError("GET /payout/fee: answer is for a different currency")
        try:
            fee = decimal_from_wire(body.get("fee"))
        except (TypeError, ValueError) as exc:
            raise GatewayProtocolError("GET /payout/fee: fee is not a number") from exc
        if fee is None or fee < 0:
            raise GatewayProtocolError("GET /payout/fee: no usable fee")
        return fee

    async def create_payout(
        self,
        *,
        address: str,
        currency: str,
        amount: Decimal,
        unique_external_id: str,
        extra_id: str | None = None,
        ipn_callback_url: str | None = None,
    ) -> GatewayPayout:
        """POST /payout with one withdrawal. Needs the JWT (signed in on demand).

        Not repeated after a timeout, a dropped connection or a 5xx: the payout may exist, so
        `GatewayTransientError` goes back to the caller, who reconciles with
        `find_payout_by_external_id(unique_external_id)`. If the gateway already has a payout
        with this `unique_external_id`, `GatewayRejected` with code `DUPLICATE_EXTERNAL_ID`
        is raised and no second payout is made.
        """
        external_id = _required_text(unique_external_id, "unique_external_id")
        withdrawal: dict[str, Any] = {
            "address": _required_text(address, "address"),
            "currency": currency.lower(),
            "amount": _positive_decimal(amount, "amount"),
            "unique_external_id": external_id,
        }
        if extra_id is not None:
            withdrawal["extra_id"] = extra_id
        if ipn_callback_url is not None:
            withdrawal["ipn_callback_url"] = ipn_callback_url
        try:
            answer = await self._request(
                "POST", "/payout", json_body={"withdrawals": [withdrawal]}, idempotent=False, payout_auth=True
            )
        except GatewayRejected as exc:
            if _is_duplicate_external_id(exc):
                raise GatewayRejected(exc.http_status, DUPLICATE_EXTERNAL_ID, exc.message) from exc
            raise
        if answer.status not in (200, 201):
            raise GatewayProtocolError(f"POST /payout: unexpected HTTP {answer.status}")
        withdrawals = GatewayPayout.many_from_wire(answer.body)
        mine = [w for w in withdrawals if w.unique_external_id == external_id]
        if not mine and len(withdrawals) == 1 and withdrawals[0].unique_external_id is None:
            mine = withdrawals  # the gateway did not echo the id back; ours was the only withdrawal
        if len(mine) != 1:
            raise GatewayProtocolError("POST /payout: answer does not hold exactly our withdrawal")
        return mine[0]

    async def get_payout(self, payout_id: str) -> GatewayPayout:
        """GET /payout/{id}. `payout_id` is the withdrawal id; the batch id of a one-withdrawal
        batch is accepted too (the gateway answers with the batch's withdrawals)."""
        payout_id = str(payout_id).strip()
        if not payout_id:
            raise ValueError("payout_id must not be empty")
        answer = await self._request("GET", "/payout/" + quote(payout_id, safe=""), payout_auth=True)
        withdrawals = GatewayPayout.many_from_wire(answer.body)
        mine = [w for w in withdrawals if w.payout_id == payout_id]
        if not mine and len(withdrawals) == 1 and withdrawals[0].batch_id == payout_id:
            mine = withdrawals
        if len(mine) != 1:
            raise GatewayProtocolError("GET /payout: answer is not for this payout")
        return mine[0]

    async def find_payout_by_external_id(self, unique_external_id: str) -> GatewayPayout | None:
        """The payout carrying `unique_external_id`, or None if the gateway has none.

        This lookup is the reconciliation path: after a crash, or after `create_payout` ended
        ambiguously (timeout, 5xx) or with `DUPLICATE_EXTERNAL_ID`, it tells whether the
        gateway acted on the request, without risking a second payout.

        The real API lists payouts with GET /payout (filters batch_id, status, date_from,
        date_to; order_by, order; limit, page); the simulator also filters on
        `unique_external_id`, which we send. Every page is filtered again here, so a gateway
        that ignores that parameter still yields a right answer, newest payouts first, within
        `_LISTING_MAX_PAGES` pages.
        """
        external_id = _required_text(unique_external_id, "unique_external_id")
        found: dict[str, GatewayPayout] = {}
        for page in range(_LISTING_MAX_PAGES):
            params = {
                "unique_external_id": external_id,
                "limit": str(_LISTING_PAGE_SIZE),
                "page": str(page),
                "order_by": "dateCreated",
                "order": "desc",
            }
            answer = await self._request("GET", "/payout", params=params, payout_auth=True)
            listed = GatewayPayout.many_from_wire(answer.body)
            for payout in listed:
                if payout.unique_external_id == external_id:
                    found[payout.payout_id] = payout
            if found or len(listed) < _LISTING_PAGE_SIZE:
                break
        if len(found) > 1:
            # The gateway promises uniqueness; two payouts for one withdrawal need a human.
            raise GatewayProtocolError("GET /payout: several payouts carry one unique_external_id")
        return next(iter(found.values()), None)


def _says_ok(answer: Answer) -> bool:
    body = answer.body
    if isinstance(body, str):
        return body.strip().upper() == "OK"
    if isinstance(body, Mapping):
        return str(body.get("message", "")).strip().upper() == "OK" or body.get("result") is True
    return body is None and answer.text.strip().strip('"').upper() == "OK"


def _is_duplicate_external_id(exc: GatewayRejected) -> bool:
    """Whether a refused payout POST means "this unique_external_id is taken".

    The simulator answers 400 with code DUPLICATE_EXTERNAL_ID; a 409, or a message naming
    unique_external_id as existing/duplicate, is read the same way.
    """
    if exc.code == DUPLICATE_EXTERNAL_ID or exc.http_status == 409:
        return True
    message = exc.message.lower()
    return ("unique_external_id" in message or "external id" in message) and any(
        word in message for word in ("exist", "duplicate", "already", "taken")
    )


def _query_moment(moment: date) -> str:
    """YYYY-MM-DD for a date, UTC with milliseconds and "Z" for a datetime (the gateway's forms)."""
    if not isinstance(moment, datetime):
        return moment.isoformat()
    if moment.tzinfo is None:
        raise ValueError("date_from/date_to datetimes must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _required_text(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()


def _mapping(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise GatewayProtocolError(f"{what}: answer is not a JSON object")
    return body


def _positive_decimal(value: Decimal, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite amount")
    return value
