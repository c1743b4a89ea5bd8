"""Double-entry postings: which accounts move, by how much, under which idempotency key.

Every posting balances to zero here, and again in Postgres at commit. User accounts keep a
running balance that may never go negative; platform accounts are summed from their entries
(no running balance, so no single hot row serialises every settlement).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from domain.money import CENT, ZERO


class AccountKind(StrEnum):
    USER_AVAILABLE = "user_available"
    USER_HELD = "user_held"
    GATEWAY_CLEARING = "gateway_clearing"  # what NOWPayments owes us for deposits it received
    PAYOUTS = "payouts"  # what we owe the payout rail for withdrawals sent
    FEES = "fees"  # fee revenue

    @property
    def is_user(self) -> bool:
        return self in (AccountKind.USER_AVAILABLE, AccountKind.USER_HELD)


class TransactionType(StrEnum):
    """The seed's transaction types, shown in the user's history."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    PAYMENT = "payment"
    REFUND = "refund"
    FEE = "fee"
    BONUS = "bonus"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, order=True)
class AccountRef:
    kind: AccountKind
    user_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind.is_user != (self.user_id is not None):
            raise ValueError(f"{self.kind} accounts {'need' if self.kind.is_user else 'take no'} user_id")

    @property
    def code(self) -> str:
        """Stable unique name of the account, e.g. ``user:42:available`` or ``platform:fees``."""
        if self.user_id is not None:
            return f"user:{self.user_id}:{self.kind.value.removeprefix('user_')}"
        return f"platform:{self.kind.value}"

    @classmethod
    def available(cls, user_id: str) -> AccountRef:
        return cls(AccountKind.USER_AVAILABLE, user_id)

    @classmethod
    def held(cls, user_id: str) -> AccountRef:
        return cls(AccountKind.USER_HELD, user_id)


GATEWAY_CLEARING = AccountRef(AccountKind.GATEWAY_CLEARING)
PAYOUTS = AccountRef(AccountKind.PAYOUTS)
FEES = AccountRef(AccountKind.FEES)


@dataclass(frozen=True)
class Entry:
    account: AccountRef
    amount: Decimal  # signed: positive increases the account, negative decreases it


@dataclass(frozen=True)
class LedgerPosting:
    """One ledger transaction. ``idempotency_key`` names its cause, so a replay is a no-op."""

    idempotency_key: str
    type: TransactionType
    description: str
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            raise ValueError("a posting needs an idempotency key")
        if len(self.entries) < 2:
            raise ValueError("a posting needs at least two entries")
        for entry in self.entries:
            if entry.amount == ZERO or entry.amount != entry.amount.quantize(CENT):
                raise ValueError(f"entry amount {entry.amount} must be a non-zero amount in cents")
        total = sum((entry.amount for entry in self.entries), ZERO)
        if total != ZERO:
            raise ValueError(f"posting {self.idempotency_key} does not balance: sums to {total}")


def deposit_posting(*, payment_id: str, user_id: str, amount_usd: Decimal, description: str) -> LedgerPosting:
    """Credit a user for a deposit the gateway received."""
    if amount_usd <= ZERO:
        raise ValueError(f"a deposit credits a positive amount, not {amount_usd}")
    return LedgerPosting(
        idempotency_key=f"deposit:{payment_id}",
        type=TransactionType.DEPOSIT,
        description=description,
        entries=(
            Entry(AccountRef.available(user_id), amount_usd),
            Entry(GATEWAY_CLEARING, -amount_usd),
        ),
    )


def withdrawal_settle_key(withdrawal_id: str) -> str:
    """Completion and release of a hold share one key, so Postgres itself lets only one of them exist."""
    return f"withdrawal:{withdrawal_id}:settle"


def withdrawal_hold_posting(*, withdrawal_id: str, user_id: str, amount_usd: Decimal) -> LedgerPosting:
    """Reserve the requested amount: available → held. The user's history shows it as the withdrawal."""
    return LedgerPosting(
        idempotency_key=f"withdrawal:{withdrawal_id}:hold",
        type=TransactionType.WITHDRAWAL,
        description=f"Withdrawal requested - {withdrawal_id}",
        entries=(
            Entry(AccountRef.available(user_id), -amount_usd),
            Entry(AccountRef.held(user_id), amount_usd),
        ),
    )


def withdrawal_release_posting(*, withdrawal_id: str, user_id: str, amount_usd: Decimal, why: str) -> LedgerPosting:
    """Give a held amount back: held → available (rejected, cancelled or failed)."""
    return LedgerPosting(
        idempotency_key=withdrawal_settle_key(withdrawal_id),
        type=TransactionType.REFUND,
        description=f"Withdrawal {why} - {withdrawal_id}",
        entries=(
            Entry(AccountRef.held(user_id), -amount_usd),
            Entry(AccountRef.available(user_id), amount_usd),
        ),
    )


def withdrawal_complete_posting(
    *, withdrawal_id: str, user_id: str, amount_usd: Decimal, final_amount_usd: Decimal, total_fee_usd: Decimal
) -> LedgerPosting:
    """Post the hold: the user's held amount leaves, split between the payout and the fee revenue."""
    entries = [Entry(AccountRef.held(user_id), -amount_usd), Entry(PAYOUTS, final_amount_usd)]
    if total_fee_usd > ZERO:
        entries.append(Entry(FEES, total_fee_usd))
    return LedgerPosting(
        idempotency_key=withdrawal_settle_key(withdrawal_id),
        type=TransactionType.WITHDRAWAL,
        description=f"Withdrawal completed - {withdrawal_id}",
        entries=tuple(entries),
    )
