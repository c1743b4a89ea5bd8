"""NOTIFY_WEBHOOK_SECRET is checked at load: a bad one is one line naming the variable, never its value."""

from __future__ import annotations

import base64

import pytest

from settings import SettingsError, load_settings

BASE = {"database_url": "postgresql://x", "redis_url": "redis://x", "notify_webhook_url": "https://hooks.example/in"}


@pytest.mark.parametrize(
    "secret",
    [
        "abc" + base64.b64encode(b"s" * 32).decode(),  # no whsec_ prefix
        "whsec_not*base64!",
        "whsec_" + base64.b64encode(b"short").decode(),  # under 24 bytes
        "whsec_" + base64.b64encode(b"s" * 65).decode(),  # over 64 bytes
    ],
)
def test_a_malformed_secret_is_one_line_naming_the_variable(secret: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(**BASE, notify_webhook_secret=secret)
    message = str(raised.value.code)
    assert "NOTIFY_WEBHOOK_SECRET" in message and "\n" not in message
    assert secret not in message


def test_a_url_without_a_secret_or_a_lease_shorter_than_the_timeout_is_refused() -> None:
    with pytest.raises(SettingsError, match="NOTIFY_WEBHOOK_SECRET is required"):
        load_settings(**BASE)
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    with pytest.raises(SettingsError, match="NOTIFY_LEASE_SECONDS"):
        load_settings(**BASE, notify_webhook_secret=secret, notify_webhook_timeout=30, notify_lease_seconds=30)


def test_a_good_secret_gives_its_key_and_stays_hidden() -> None:
    secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    settings = load_settings(**BASE, notify_webhook_secret=secret)
    assert settings.notify_webhook_key == b"s" * 32
    assert secret not in repr(settings)
