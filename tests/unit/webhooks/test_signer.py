"""Our Standard Webhooks signatures, checked by the reference verifier (the `standardwebhooks` package)."""

from __future__ import annotations

import base64
import os
import time

import pytest
import standardwebhooks

from settings import decode_webhook_secret
from webhooks.signer import WebhookSigner


def _secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def test_the_reference_verifier_accepts_our_headers() -> None:
    secret = _secret()
    body = '{"type":"deposit.credited","id":"evt_abc","data":{"note":"café ✓"}}'.encode()
    headers = WebhookSigner(decode_webhook_secret(secret)).headers("evt_abc", int(time.time()), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert standardwebhooks.Webhook(secret).verify(body, headers)["data"]["note"] == "café ✓"


def test_a_changed_body_id_or_key_fails_verification() -> None:
    secret = _secret()
    signer = WebhookSigner(decode_webhook_secret(secret))
    body = b'{"id":"evt_abc"}'
    headers = signer.headers("evt_abc", int(time.time()), body)
    verifier = standardwebhooks.Webhook(secret)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(b'{"id":"evt_abd"}', headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        verifier.verify(body, {**headers, "webhook-id": "evt_abd"})
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(_secret()).verify(body, headers)


def test_same_signature_as_the_reference_signer() -> None:
    from datetime import UTC, datetime

    secret = _secret()
    stamp = 1674087231
    body = '{"type":"contact.created"}'
    ours = WebhookSigner(decode_webhook_secret(secret)).signature("msg_1", stamp, body.encode())
    theirs = standardwebhooks.Webhook(secret).sign("msg_1", datetime.fromtimestamp(stamp, tz=UTC), body)
    assert ours == theirs


def test_an_id_with_a_full_stop_is_refused_and_the_key_never_shows() -> None:
    signer = WebhookSigner(b"k" * 32)
    with pytest.raises(ValueError, match="full stop"):
        signer.signature("evt_a.b", 1, b"{}")
    assert "kkkk" not in repr(signer)
