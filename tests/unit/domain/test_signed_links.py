"""QR links signed for one payment until a time: forged, foreign and expired links are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import LinkExpired, LinkSignatureInvalid
from domain.signed_links import QR_LINK_LIFETIME, QrLinkSigner

NOW = datetime(2025, 1, 14, 12, 0, tzinfo=UTC)
SIGNER = QrLinkSigner.from_secret("api-token")


def test_a_link_opens_its_payment_until_it_expires() -> None:
    expires, signature = SIGNER.sign("PAY_1", NOW)
    assert expires == int((NOW + QR_LINK_LIFETIME).timestamp())
    SIGNER.verify("PAY_1", str(expires), signature, NOW)
    SIGNER.verify("PAY_1", str(expires), signature, NOW + QR_LINK_LIFETIME - timedelta(seconds=1))
    with pytest.raises(LinkExpired):
        SIGNER.verify("PAY_1", str(expires), signature, NOW + QR_LINK_LIFETIME)


def test_a_link_opens_no_other_payment_and_cannot_be_extended_or_forged() -> None:
    expires, signature = SIGNER.sign("PAY_1", NOW)
    refused = [
        ("PAY_2", str(expires), signature),  # another payment
        ("PAY_1", str(expires + 3600), signature),  # a later expiry
        ("PAY_1", str(expires), "0" * 64),  # made up
        ("PAY_1", str(expires), signature.upper()),  # not how we write it
        ("PAY_1", str(expires), signature[:-1]),
        ("PAY_1", None, signature),
        ("PAY_1", str(expires), None),
        ("PAY_1", "-1", signature),
        ("PAY_1", "1e9", signature),
    ]
    for payment_id, given_expires, given_signature in refused:
        with pytest.raises(LinkSignatureInvalid):
            SIGNER.verify(payment_id, given_expires, given_signature, NOW)
    with pytest.raises(LinkSignatureInvalid):
        QrLinkSigner.from_secret("another-token").verify("PAY_1", str(expires), signature, NOW)


def test_the_key_is_derived_not_the_token_itself() -> None:
    assert SIGNER.key != b"api-token" and len(SIGNER.key) == 32
    assert SIGNER.query("PAY_1", NOW) == "expires={}&signature={}".format(*SIGNER.sign("PAY_1", NOW))
