"""Every route of the web app, once: what registers it with aiohttp and what /openapi.json describes.

Each entry carries the route's models (query, body, answers) and the errors its handler may raise;
the app is built from this table and the document is generated from it, so neither can list a
route, a parameter or an answer the other does not have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiohttp import web
from pydantic import BaseModel

from domain.errors import InvalidRequest, InvalidTransition
from entrypoints.web import deposits, events, health, ipn, operator, payments, readiness, users, withdrawals
from entrypoints.web.queries import (
    EventsQuery,
    PageQuery,
    PaymentListQuery,
    QrLinkQuery,
    TransactionsQuery,
    WithdrawalListQuery,
)
from gateway.errors import (
    CallbacksDisabled,
    GatewayConfigurationError,
    GatewayError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTransientError,
    InvalidSignature,
    MalformedCallback,
)
from services.answers import (
    BalanceAnswer,
    DepositQueued,
    EventPage,
    HistoryPage,
    PaymentIpnAccepted,
    PaymentPage,
    PaymentView,
    PayoutIpnAccepted,
    RejectionView,
    Unhealthy,
    WithdrawalDetail,
    WithdrawalPage,
)
from services.answers import Healthy as HealthyAnswer
from services.commands import CancelWithdrawalBody, CreatePaymentRequest, OperatorDecisionBody, WithdrawalRequest
from services.errors import (
    InsufficientFunds,
    PaymentNotFound,
    RequestIdReused,
    UnknownPayment,
    UnknownPayout,
    WithdrawalNotFound,
)
from settings import IPN_PATH, PAYOUT_IPN_PATH

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPERATOR_PREFIX = "/v1/operator/"


class Auth(StrEnum):
    NONE = "none"
    API = "api"  # Authorization: Bearer $API_TOKEN
    OPERATOR = "operator"  # Authorization: Bearer $OPERATOR_TOKEN
    API_OR_QR_LINK = "api_or_qr_link"  # the bearer token, or the signed link's expires + signature
    IPN = "ipn"  # x-nowpayments-sig, checked by the handler


@dataclass(frozen=True)
class MediaAnswer:
    """An answer that is not one of our JSON models (an image, Prometheus text, the document itself)."""

    media_type: str
    schema: Mapping[str, object]


# One JSON model, one of several (an answer that is either, e.g. a payment or the refusal recorded for it), or not JSON.
AnswerSpec = type[BaseModel] | tuple[type[BaseModel], ...] | MediaAnswer


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: Auth
    answer: AnswerSpec
    status: int = 200
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[type[BaseException], ...] = ()
    other_answers: Mapping[int, AnswerSpec] = field(default_factory=dict)
    uses_database: bool = True  # then a lost connection is a 503 database_unavailable


_GATEWAY_ERRORS = (
    GatewayTransientError,
    GatewayProtocolError,
    GatewayRejected,
    GatewayConfigurationError,
    GatewayError,
)
_IPN_ERRORS = (InvalidSignature, MalformedCallback, CallbacksDisabled, InvalidRequest)
_DECISION_ERRORS = (InvalidRequest, WithdrawalNotFound, InvalidTransition)
_SVG = MediaAnswer("image/svg+xml", {"type": "string", "description": "an SVG image"})
_PROMETHEUS = MediaAnswer("text/plain", {"type": "string", "description": "Prometheus text exposition format"})
_DOCUMENT = MediaAnswer("application/json", {"type": "object", "description": "this document (OpenAPI 3.1)"})


async def _openapi(request: web.Request) -> web.Response:
    from entrypoints.web.openapi import openapi_response  # it reads this table: imported once both exist

    return openapi_response(request)


ROUTES: tuple[Route, ...] = (
    Route("POST", IPN_PATH, ipn.ipn_payment, "NOWPayments payment callback (IPN)", "gateway", Auth.IPN,
          PaymentIpnAccepted, errors=(*_IPN_ERRORS, UnknownPayment)),
    Route("POST", PAYOUT_IPN_PATH, ipn.ipn_payout, "NOWPayments payout callback (IPN)", "gateway", Auth.IPN,
          PayoutIpnAccepted, errors=(*_IPN_ERRORS, UnknownPayout, InvalidTransition)),
    Route("GET", "/healthz", health.healthz, "Postgres and Redis answer", "operations", Auth.NONE, HealthyAnswer,
          other_answers={503: Unhealthy}, uses_database=False),
    Route("GET", "/readyz", readiness.readyz, "Postgres and the broker answer, migrations applied", "operations",
          Auth.NONE, readiness.Ready, other_answers={503: readiness.NotReady}, uses_database=False),
    Route("GET", "/metrics", health.metrics, "Prometheus metrics", "operations", Auth.NONE, _PROMETHEUS),
    Route("GET", "/openapi.json", _openapi, "This description of the API (OpenAPI 3.1)", "operations", Auth.NONE,
          _DOCUMENT, uses_database=False),
    Route("POST", "/v1/deposits", deposits.post_deposit, "Queue a deposit (create_payment)", "deposits", Auth.API,
          DepositQueued, status=202, body=CreatePaymentRequest, errors=(InvalidRequest, RequestIdReused),
          other_answers={200: (PaymentView, RejectionView)}),
    Route("GET", "/v1/deposits/{request_id}", deposits.get_deposit,
          "The payment made for your request_id, or its refusal", "deposits", Auth.API, (PaymentView, RejectionView),
          errors=(InvalidRequest, PaymentNotFound)),
    Route("GET", "/v1/payments/{payment_id}", payments.get_payment, "A payment", "deposits", Auth.API, PaymentView,
          errors=(InvalidRequest, PaymentNotFound)),
    Route("GET", "/v1/payments/{payment_id}/qr.svg", payments.get_payment_qr, "A payment's QR code",
          "deposits", Auth.API_OR_QR_LINK, _SVG, query=QrLinkQuery, errors=(InvalidRequest, PaymentNotFound)),
    Route("GET", "/v1/events", events.get_events, "Announced events after a cursor, in commit order", "events",
          Auth.API, EventPage, query=EventsQuery, errors=(InvalidRequest,)),
    Route("GET", "/v1/users/{user_id}/balance", users.get_balance, "A user's balance", "users", Auth.API,
          BalanceAnswer, errors=(InvalidRequest,)),
    Route("GET", "/v1/users/{user_id}/transactions", users.get_transactions, "A user's ledger history, newest first",
          "users", Auth.API, HistoryPage, query=TransactionsQuery, errors=(InvalidRequest,)),
    Route("GET", "/v1/users/{user_id}/payments", users.get_user_payments, "A user's payments, newest first",
          "users", Auth.API, PaymentPage, query=PaymentListQuery, errors=(InvalidRequest,)),
    Route("GET", "/v1/users/{user_id}/withdrawals", users.get_user_withdrawals, "A user's withdrawals, newest first",
          "users", Auth.API, WithdrawalPage, query=WithdrawalListQuery, errors=(InvalidRequest,)),
    Route("POST", "/v1/withdrawals", withdrawals.post_withdrawal, "Request a withdrawal (quoted and held at once)",
          "withdrawals", Auth.API, WithdrawalDetail, status=201, body=WithdrawalRequest,
          errors=(InvalidRequest, InsufficientFunds, RequestIdReused, *_GATEWAY_ERRORS),
          other_answers={200: (WithdrawalDetail, RejectionView)}),
    Route("GET", "/v1/withdrawals/by-request/{request_id}", withdrawals.get_withdrawal_by_request,
          "The withdrawal made for your request_id, or its refusal", "withdrawals", Auth.API,
          (WithdrawalDetail, RejectionView), errors=(InvalidRequest, WithdrawalNotFound)),
    Route("GET", "/v1/withdrawals/{withdrawal_id}", withdrawals.get_withdrawal, "A withdrawal and its events",
          "withdrawals", Auth.API, WithdrawalDetail, errors=(InvalidRequest, WithdrawalNotFound)),
    Route("POST", "/v1/withdrawals/{withdrawal_id}/cancel", withdrawals.post_withdrawal_cancel,
          "The owner cancels a pending withdrawal", "withdrawals", Auth.API, WithdrawalDetail,
          body=CancelWithdrawalBody, errors=_DECISION_ERRORS),
    Route("GET", OPERATOR_PREFIX + "withdrawals", operator.get_withdrawals, "Withdrawals, newest first", "operator",
          Auth.OPERATOR, WithdrawalPage, query=WithdrawalListQuery, errors=(InvalidRequest,)),
    Route("GET", OPERATOR_PREFIX + "deposits/held", operator.get_held_deposits,
          "Deposits held for an operator, oldest first", "operator", Auth.OPERATOR, PaymentPage, query=PageQuery,
          errors=(InvalidRequest,)),
    Route("POST", OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/approve", operator.post_approve,
          "Approve a pending withdrawal (its payout is queued)", "operator", Auth.OPERATOR, WithdrawalDetail,
          body=OperatorDecisionBody, errors=_DECISION_ERRORS),
    Route("POST", OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/reject", operator.post_reject,
          "Reject a withdrawal (a note is required; the hold is released)", "operator", Auth.OPERATOR,
          WithdrawalDetail, body=OperatorDecisionBody, errors=_DECISION_ERRORS),
    Route("POST", OPERATOR_PREFIX + "withdrawals/{withdrawal_id}/complete", operator.post_complete,
          "Record a manual payout's transaction hash (the hold is posted)", "operator", Auth.OPERATOR,
          WithdrawalDetail, body=OperatorDecisionBody, errors=_DECISION_ERRORS),
)  # fmt: skip

_BY_HANDLER = {route.handler: route for route in ROUTES}


def add_routes(router: web.UrlDispatcher) -> None:
    for route in ROUTES:
        if route.method == "GET":
            router.add_get(route.path, route.handler)  # and HEAD
        else:
            router.add_route(route.method, route.path, route.handler)


def route_of(request: web.Request) -> Route | None:
    """The table's entry for the route ``request`` matched; None for the framework's own (404, 405)."""
    return _BY_HANDLER.get(request.match_info.handler)
