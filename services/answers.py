"""The JSON the HTTP API answers, one pydantic model each.

The presenters build every answer through these models, and /openapi.json describes the answers
from the same models, so the document cannot drift from what the handlers send.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.payments import PaymentStatus
from domain.withdrawals import WithdrawalStatus

Usd = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", examples=["25.00"], description="USD, two decimals")]
CryptoAmount = Annotated[
    str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$", examples=["0.00041234"], description="a coin amount, plain decimal")
]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, examples=["2025-01-14T12:34:56+00:00"])]
Cursor = Annotated[str, Field(description="opaque: pass it back as `cursor` for the next page")]


class Answer(BaseModel):
    """Base of every answer: exactly these fields, each always present (null where it has no value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorAnswer(Answer):
    """Every refusal, ours and the framework's: a stable code and a sentence for people."""

    error: str = Field(description="a stable code, listed under the answer that carries it", examples=["not_found"])
    message: str = Field(description="what was wrong, for people; never echoes secrets")


class RefusedReplay(Answer):
    """Beside a payment or withdrawal: a later request under its request_id, with other arguments, was refused."""

    note: str
    reason: str
    rejected_at: Timestamp | None


class RejectionView(Answer):
    """A request refused for good (by the door or a worker): the answer to its request_id from then on."""

    request_id: str
    status: Literal["rejected"]
    error: str = Field(description="the refusal's code, as in the error answers")
    reason: str
    field: str | None
    rejected_at: Timestamp | None


class PaymentView(Answer):
    """A deposit payment: where to pay, what arrived, what was credited."""

    internal_payment_id: str = Field(examples=["PAY_20250114123456_abc12345"])
    request_id: str
    user_id: str
    status: PaymentStatus
    gateway_status: str | None
    amount_usd: Usd
    currency_code: str
    description: str
    pay_address: str | None
    payin_extra_id: str | None = Field(description="memo/tag to send with the coins, for coins that need one")
    pay_amount: CryptoAmount | None
    actually_paid: CryptoAmount | None
    network: str | None
    payin_hash: str | None
    payment_uri: str | None
    qr_code_url: str | None = Field(
        description="the QR code's URL, signed for this payment and expiring in an hour: usable in an <img> "
        "without the API token (relative to the API's base URL)"
    )
    explorer_link: str | None
    expires_at: Timestamp | None
    credit_usd: Usd | None
    variance: str | None
    hold_reason: str | None
    settled_at: Timestamp | None
    error_code: str | None
    error_message: str | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    refused_replay: RefusedReplay | None = Field(
        default=None, description="present only when a request with other arguments under this request_id was refused"
    )


class PaymentPage(Answer):
    items: list[PaymentView]
    next: Cursor | None = Field(description="the cursor of the next page; null on the last page")


class DepositQueued(Answer):
    request_id: str
    message_id: str
    status: Literal["queued"]


class BalanceAnswer(Answer):
    user_id: str
    balance_usd: Usd
    held_usd: Usd
    total_deposited: Usd
    total_withdrawn: Usd
    last_transaction_at: Timestamp | None


class HistoryItemView(Answer):
    id: int = Field(description="the ledger entry's id")
    type: str
    amount_usd: Usd = Field(description="signed: negative for money leaving the balance")
    balance_after: Usd
    description: str
    reference: str
    created_at: Timestamp | None


class HistoryPage(Answer):
    items: list[HistoryItemView]
    next_before: int | None = Field(description="pass as `before` for the next page; null on the last page")


class WithdrawalView(Answer):
    internal_withdrawal_id: str = Field(examples=["WD_20250114123456_abc12345"])
    request_id: str
    user_id: str
    status: WithdrawalStatus
    amount_usd: Usd
    network_fee_usd: Usd
    service_fee_usd: Usd
    total_fee_usd: Usd
    final_amount_usd: Usd
    currency_code: str
    wallet_address: str
    extra_id: str | None
    payout_mode: str | None
    payout_amount: CryptoAmount | None
    payout_status: str | None
    transaction_hash: str | None
    error_code: str | None
    error_message: str | None
    review_reason: str | None
    payout_attempted_at: Timestamp | None
    created_at: Timestamp | None
    updated_at: Timestamp | None
    completed_at: Timestamp | None


class WithdrawalEventView(Answer):
    from_status: str | None
    to_status: str
    actor: str = Field(examples=["user:user-42", "operator:alice", "gateway:nowpayments"])
    note: str
    at: Timestamp | None


class WithdrawalDetail(WithdrawalView):
    events: list[WithdrawalEventView]
    refused_replay: RefusedReplay | None = Field(
        default=None, description="present only when a request with other arguments under this request_id was refused"
    )


class EventBody(Answer):
    type: str = Field(examples=["deposit.credited"], description="one of the event types in the README")
    id: str = Field(examples=["evt_0123456789abcdefghijklmn"], description="the same as the webhook-id header")
    created_at: str
    data: dict[str, Any] = Field(description="the subject's view, as the API returns it")


class EventPage(Answer):
    events: list[EventBody]
    next_after: str | None = Field(description="pass as `after` to read on; the same `after` when nothing is new")


class WithdrawalPage(Answer):
    items: list[WithdrawalView]
    next: Cursor | None = Field(description="the cursor of the next page; null on the last page")


class Healthy(Answer):
    status: Literal["ok"]


class Unhealthy(Answer):
    status: Literal["unhealthy"]
    failures: dict[str, str] = Field(description="each failing dependency and the kind of its failure")


class PaymentIpnAccepted(Answer):
    status: Literal["ok"]
    payment_status: PaymentStatus


class PayoutIpnAccepted(Answer):
    status: Literal["ok"]
    withdrawal_status: WithdrawalStatus
