"""The message contract and the HTTP request bodies: one strict model each.

Every actor takes its arguments by name (positional also works, in the documented order, which
is the order of the fields below). Anything malformed raises `InvalidRequest`, which the actors
never retry: the message goes to the dead-letter queue with the reason logged, and nothing is
written. The web API validates its bodies with the same models.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from services.validation import CurrencyCode, Description, Reference, StrictModel, UsdAmount

MAX_ADDRESS_TEXT = 256  # the use case strips and checks the address itself (at most 128 characters)
MAX_NOTE_TEXT = 1000
MAX_TX_HASH_TEXT = 256  # the use case checks the hash's format (at most 200 characters)

WalletAddress = Annotated[str, StringConstraints(max_length=MAX_ADDRESS_TEXT)]
ExtraId = Annotated[str, StringConstraints(max_length=MAX_ADDRESS_TEXT)]
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE_TEXT)]
TxHash = Annotated[str, StringConstraints(max_length=MAX_TX_HASH_TEXT)]


class CreatePaymentRequest(StrictModel):
    """Message of `create_payment` (queue create-payment) and body of ``POST /v1/deposits``."""

    request_id: Reference
    user_id: Reference
    amount_usd: UsdAmount
    currency_code: CurrencyCode
    description: Description = ""


class WithdrawalRequest(StrictModel):
    """Message of `request_withdrawal` (queue process-withdrawal) and body of ``POST /v1/withdrawals``."""

    request_id: Reference
    user_id: Reference
    amount_usd: UsdAmount
    currency_code: CurrencyCode
    wallet_address: WalletAddress
    extra_id: ExtraId | None = None


class PaymentMessage(StrictModel):
    """Message of `poll_status` and `settle_deposit`."""

    payment_id: Reference


class WithdrawalMessage(StrictModel):
    """Message of `process_withdrawal`."""

    withdrawal_id: Reference


class NotificationMessage(StrictModel):
    """Message of `deliver_notifications` (queue deliver-notifications): a PAY_…, WD_… or request id."""

    subject_id: Reference


class CancelWithdrawalBody(StrictModel):
    """Body of ``POST /v1/withdrawals/{withdrawal_id}/cancel``: only the owner (``user_id``) may cancel."""

    user_id: Reference
    note: Note | None = None


class OperatorDecisionBody(StrictModel):
    """Body of ``POST /v1/operator/withdrawals/{withdrawal_id}/{approve|reject|complete}``."""

    operator: Reference
    note: Note | None = None
    tx_hash: TxHash | None = None
