"""Standard Webhooks signatures (symmetric, ``v1``).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256 keyed by the raw
secret bytes (the base64 after ``whsec_``), sent base64-encoded as ``v1,<signature>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SIGNATURE_VERSION = "v1"


class WebhookSigner:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the webhook signing key is empty")
        self._key = key

    def __repr__(self) -> str:
        return "WebhookSigner(key=<hidden>)"

    def signature(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` value for these exact body bytes."""
        if "." in webhook_id:
            raise ValueError("a webhook id must not contain a full stop (it delimits the signed content)")
        signed = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"

    def headers(self, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        """The three Standard Webhooks headers for one attempt (the timestamp is the attempt's, in unix seconds)."""
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(webhook_id, timestamp, body),
        }
