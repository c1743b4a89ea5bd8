"""DATABASE_URL, REDIS_URL and LOG_LEVEL: every form a client accepts passes, anything else is one line."""

from __future__ import annotations

import pytest

from settings import SettingsError, load_settings

PASSWORD = "pw-Never-Shown-71"


def _load(**values: str):
    base = {"database_url": "postgresql://postgres@127.0.0.1:5432/payments", "redis_url": "redis://127.0.0.1:6379/0"}
    base.update(values)
    return load_settings(**base)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db.internal/payments",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql:///payments?host=/var/run/postgresql",
        "postgresql://u:p@h1:5432,h2:5433/payments?target_session_attrs=read-write",
        f"postgres://u:{PASSWORD}@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d8abc",
    ],
)
def test_database_urls_clients_accept_are_accepted(url):
    assert _load(database_url=url).database_url.get_secret_value() == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"postgres://u:{PASSWORD}@host:port/db", "is not a valid URL"),
        (f"mysql://u:{PASSWORD}@host/db", "must be a URL starting with postgres:// or postgresql://"),
        ("localhost:5432/db", "must be a URL starting with postgres:// or postgresql://"),
        (f"postgres://u:{PASSWORD}@/db", "has no host name"),
        (f"postgres://u:{PASSWORD}@host:99999/db", "is not a valid URL"),
    ],
)
def test_malformed_database_urls_are_one_line_without_the_password(url, says):
    with pytest.raises(SettingsError) as info:
        _load(database_url=url)
    message = str(info.value.code)
    assert message.startswith(f"configuration error: DATABASE_URL {says}")
    assert PASSWORD not in message


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", f"rediss://:{PASSWORD}@redis.internal:6380", "unix:///run/redis.sock"]
)
def test_redis_urls_clients_accept_are_accepted(url):
    assert _load(redis_url=url).redis_url.get_secret_value() == url


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "http://127.0.0.1:6379", "unix://"])
def test_malformed_redis_urls_are_refused(url):
    with pytest.raises(SettingsError) as info:
        _load(redis_url=url)
    assert str(info.value.code).startswith("configuration error: REDIS_URL ")


@pytest.mark.parametrize(("given", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("CRITICAL", "CRITICAL")])
def test_log_level_any_case(given, level):
    assert _load(log_level=given).log_level == level


@pytest.mark.parametrize("given", ["LOUD", "verbose", "10"])
def test_unknown_log_level_is_refused(given):
    with pytest.raises(SettingsError) as info:
        _load(log_level=given)
    assert str(info.value.code).startswith("configuration error: LOG_LEVEL ")
