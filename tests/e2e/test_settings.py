"""settings.load_settings / SettingsError: the one-line, value-free configuration errors operators see."""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from settings import (
    NOWPAYMENTS_PRODUCTION_URL,
    NOWPAYMENTS_SANDBOX_URL,
    Settings,
    SettingsError,
    load_settings,
)

DB_PASSWORD = "db-pass-Zq81secret"
REDIS_PASSWORD = "redis-pass-Xy77secret"
API_TOKEN = "api-token-Kk55secret"
API_KEY = "sk-very-secret"
IPN_SECRET = "ipn-secret-Mm33secret"
SECRETS = (DB_PASSWORD, REDIS_PASSWORD, API_TOKEN, API_KEY, IPN_SECRET)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with no setting of ours in it (names are case-insensitive), then the two required ones."""
    fields = set(Settings.model_fields)
    for name in list(os.environ):
        if name.lower() in fields:
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    return monkeypatch


def _error() -> str:
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value.code)
    assert message.startswith("configuration error: ")
    assert "\n" not in message, "a configuration error is one line"
    return message


def _all_secrets_set(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", f"postgresql://payments:{DB_PASSWORD}@db.internal:5432/payments")
    env.setenv("REDIS_URL", f"redis://default:{REDIS_PASSWORD}@redis.internal:6379/0")
    env.setenv("API_TOKEN", API_TOKEN)
    env.setenv("NOWPAYMENTS_API_KEY", API_KEY)
    env.setenv("NOWPAYMENTS_IPN_SECRET", IPN_SECRET)


def test_missing_database_url_is_named_in_one_line(env):
    env.delenv("DATABASE_URL")
    message = _error()
    assert "DATABASE_URL" in message
    assert "required" in message
    assert "REDIS_URL" not in message, "only the missing variable is named"


@pytest.mark.parametrize("value", ["", "  "])
def test_empty_database_url_counts_as_missing(env, value):
    env.setenv("DATABASE_URL", value)
    message = _error()
    assert "DATABASE_URL" in message and "required" in message


def test_settings_error_is_a_system_exit_so_the_process_stops(env):
    env.delenv("REDIS_URL")
    with pytest.raises(SystemExit) as info:
        load_settings()
    assert isinstance(info.value, SettingsError)
    assert "REDIS_URL" in str(info.value.code)


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1", "8000.5"])
def test_invalid_port_is_named(env, value):
    env.setenv("PORT", value)
    message = _error()
    assert "PORT" in message
    assert f" {value}" not in message.removeprefix("configuration error: PORT"), "the value is not echoed"


@pytest.mark.parametrize("value", ["1", "8000", "65535"])
def test_valid_port_is_an_int(env, value):
    env.setenv("PORT", value)
    assert load_settings().port == int(value)


def test_invalid_base_url_never_shows_the_api_key(env):
    _all_secrets_set(env)
    env.setenv("NOWPAYMENTS_BASE_URL", f"ftp://user:{API_KEY}@gateway.example/v1")
    message = _error()
    assert "NOWPAYMENTS_BASE_URL" in message
    for secret in SECRETS:
        assert secret not in message


@pytest.mark.parametrize(
    "variable",
    [
        "PORT",
        "NOWPAYMENTS_SANDBOX",
        "NOWPAYMENTS_TIMEOUT_SECONDS",
        "PAYMENTS_MIN_DEPOSIT_USD",
        "PAYMENTS_UNDERPAID_POLICY",
        "LOG_FORMAT",
        "PUBLIC_BASE_URL",
        "DB_POOL_MAX",
    ],
)
def test_a_secret_pasted_into_the_wrong_variable_is_not_echoed(env, variable):
    """An operator pastes the API key where another value belongs: the error names the variable, not the key."""
    _all_secrets_set(env)
    env.setenv(variable, API_KEY)
    message = _error()
    assert variable in message
    for secret in SECRETS:
        assert secret not in message


def test_several_bad_variables_are_all_named_in_one_line(env):
    env.delenv("DATABASE_URL")
    env.setenv("PORT", "abc")
    env.setenv("LOG_FORMAT", "xml")
    message = _error()
    for name in ("DATABASE_URL", "PORT", "LOG_FORMAT"):
        assert name in message


def test_malformed_json_setting_is_a_one_line_error_naming_it(env):
    """PAYMENTS_WITHDRAWAL_NETWORK_FEES is JSON; a JSON typo must stop the process like any other bad value."""
    env.setenv("PAYMENTS_WITHDRAWAL_NETWORK_FEES", "{btc: 2.50}")
    try:
        load_settings()
    except SettingsError as exc:
        message = str(exc.code)
    except Exception as exc:  # what the bug raises: pydantic_settings' own SettingsError, a traceback at start
        pytest.fail(f"not a one-line configuration error: {type(exc).__module__}.{type(exc).__name__}: {exc}")
    else:
        pytest.fail("malformed JSON was accepted")
    assert "PAYMENTS_WITHDRAWAL_NETWORK_FEES" in message
    assert "\n" not in message


def test_repr_str_and_json_never_contain_secret_values(env):
    _all_secrets_set(env)
    settings = load_settings()
    # the values did arrive
    assert settings.api_token is not None and settings.api_token.get_secret_value() == API_TOKEN
    assert DB_PASSWORD in settings.database_url.get_secret_value()
    assert REDIS_PASSWORD in settings.redis_url.get_secret_value()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        for secret in SECRETS:
            assert secret not in shown
    # and the hosts, which are not secret, are still visible nowhere they should not be either: the whole URL is secret
    assert "db.internal" not in settings.model_dump_json()


def test_require_names_the_missing_variable(env):
    settings = load_settings()
    with pytest.raises(SettingsError) as info:
        settings.require("nowpayments_api_key")
    assert "NOWPAYMENTS_API_KEY" in str(info.value.code)
    assert "\n" not in str(info.value.code)


def test_require_names_the_first_missing_of_several(env):
    env.setenv("API_TOKEN", API_TOKEN)
    settings = load_settings()
    with pytest.raises(SettingsError) as info:
        settings.require("api_token", "nowpayments_ipn_secret")
    message = str(info.value.code)
    assert "NOWPAYMENTS_IPN_SECRET" in message
    assert "API_TOKEN" not in message.replace("NOWPAYMENTS_IPN_SECRET", "")
    assert API_TOKEN not in message


def test_require_passes_when_set(env):
    _all_secrets_set(env)
    load_settings().require("api_token", "nowpayments_ipn_secret", "nowpayments_api_key")


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("name", ["api_token", "nowpayments_api_key", "nowpayments_ipn_secret"])
def test_require_treats_an_empty_secret_as_missing(env, name, value):
    """`API_TOKEN=` (set but empty) must not pass for a token: with it the API would accept no token at all."""
    env.setenv(name.upper(), value)
    settings = load_settings()
    with pytest.raises(SettingsError) as info:
        settings.require(name)
    assert name.upper() in str(info.value.code)


def test_gateway_base_url_defaults_to_production(env):
    assert load_settings().gateway_base_url == NOWPAYMENTS_PRODUCTION_URL == "https://api.nowpayments.io/v1"


@pytest.mark.parametrize("value", ["true", "1", "TRUE", "yes"])
def test_gateway_base_url_sandbox(env, value):
    env.setenv("NOWPAYMENTS_SANDBOX", value)
    assert load_settings().gateway_base_url == NOWPAYMENTS_SANDBOX_URL == "https://api-sandbox.nowpayments.io/v1"


@pytest.mark.parametrize("sandbox", ["true", "false"])
def test_gateway_base_url_override_wins_and_loses_its_trailing_slash(env, sandbox):
    env.setenv("NOWPAYMENTS_SANDBOX", sandbox)
    env.setenv("NOWPAYMENTS_BASE_URL", "http://127.0.0.1:8090/v1/")
    assert load_settings().gateway_base_url == "http://127.0.0.1:8090/v1"


def test_empty_base_url_means_unset(env):
    env.setenv("NOWPAYMENTS_BASE_URL", "")
    assert load_settings().gateway_base_url == NOWPAYMENTS_PRODUCTION_URL


def test_ipn_callback_url_from_public_base_url(env):
    env.setenv("PUBLIC_BASE_URL", "https://pay.example.com/")
    assert load_settings().ipn_callback_url == "https://pay.example.com/ipn/nowpayments"


def test_no_public_base_url_means_polling_only(env):
    assert load_settings().ipn_callback_url is None
    env.setenv("PUBLIC_BASE_URL", "")
    assert load_settings().ipn_callback_url is None


def test_public_base_url_must_be_http(env):
    env.setenv("PUBLIC_BASE_URL", "pay.example.com")
    assert "PUBLIC_BASE_URL" in _error()


def test_decimal_settings_parse_exactly(env):
    env.setenv("PAYMENTS_MIN_DEPOSIT_USD", "0.10")
    env.setenv("PAYMENTS_MAX_DEPOSIT_USD", "99999.99")
    settings = load_settings()
    assert isinstance(settings.payments_min_deposit_usd, Decimal)
    assert settings.payments_min_deposit_usd.as_tuple() == Decimal("0.10").as_tuple()
    assert str(settings.payments_min_deposit_usd) == "0.10"
    assert str(settings.payments_max_deposit_usd) == "99999.99"


def test_decimal_defaults_are_exact(env):
    settings = load_settings()
    assert str(settings.payments_min_deposit_usd) == "1.00"
    assert str(settings.payments_max_deposit_usd) == "100000.00"


@pytest.mark.parametrize("value", ["0.001", "0", "-5", "ten"])
def test_invalid_deposit_limit_is_named(env, value):
    env.setenv("PAYMENTS_MIN_DEPOSIT_USD", value)
    assert "PAYMENTS_MIN_DEPOSIT_USD" in _error()


def test_variable_names_are_case_insensitive(env):
    env.setenv("port", "9001")
    assert load_settings().port == 9001


def test_overrides_beat_the_environment(env):
    env.setenv("PORT", "9001")
    assert load_settings(port=9002).port == 9002
