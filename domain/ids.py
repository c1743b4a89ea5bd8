"""Internal ids readable by people: ``PAY_20250114123456_abc12345``, ``WD_…``."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
PAYMENT_ID = re.compile(r"^PAY_[0-9]{14}_[a-z0-9]{8}$")
WITHDRAWAL_ID = re.compile(r"^WD_[0-9]{14}_[a-z0-9]{8}$")


def _new_id(prefix: str, now: datetime | None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{prefix}_{stamp}_{suffix}"


def new_payment_id(now: datetime | None = None) -> str:
    return _new_id("PAY", now)


def new_withdrawal_id(now: datetime | None = None) -> str:
    return _new_id("WD", now)
