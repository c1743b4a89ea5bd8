"""Links that carry their own permission: an HMAC over what they open and until when.

A payment's QR code must work in an ``<img>`` tag, where no bearer token can be sent. Its URL
carries ``expires`` (Unix seconds) and ``signature`` = HMAC-SHA256 over the payment id and that
expiry, so it opens that one payment's QR code until then, and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import LinkExpired, LinkSignatureInvalid

QR_LINK_LIFETIME = timedelta(hours=1)
_KEY_LABEL = b"payments-pipeline/qr-link/v1"
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class QrLinkSigner:
    """Signs and checks QR links; the key is derived from a secret (the API token), never the secret itself."""

    key: bytes
    lifetime: timedelta = QR_LINK_LIFETIME

    @classmethod
    def from_secret(cls, secret: str, *, lifetime: timedelta = QR_LINK_LIFETIME) -> QrLinkSigner:
        # A derived key: a leaked link signature says nothing usable about the API token.
        return cls(hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest(), lifetime)

    def _signature(self, payment_id: str, expires: int) -> str:
        return hmac.new(self.key, f"qr\n{payment_id}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, payment_id: str, now: datetime) -> tuple[int, str]:
        """``(expires, signature)`` for a link to ``payment_id``'s QR code, valid for ``lifetime`` from ``now``."""
        expires = int((now + self.lifetime).timestamp())
        return expires, self._signature(payment_id, expires)

    def query(self, payment_id: str, now: datetime) -> str:
        expires, signature = self.sign(payment_id, now)
        return f"expires={expires}&signature={signature}"

    def verify(self, payment_id: str, expires: str | None, signature: str | None, now: datetime) -> None:
        """Return if the link opens ``payment_id`` at ``now``; raise `LinkSignatureInvalid` or `LinkExpired`."""
        if not (expires and signature and _EXPIRES.fullmatch(expires) and _SIGNATURE.fullmatch(signature)):
            raise LinkSignatureInvalid("the link needs `expires` (Unix seconds) and a 64-hex-digit `signature`")
        if not hmac.compare_digest(self._signature(payment_id, int(expires)), signature):
            raise LinkSignatureInvalid("the link's signature is not valid for this payment")
        if int(expires) <= now.timestamp():
            raise LinkExpired("the link has expired; read the payment again for a fresh one")
