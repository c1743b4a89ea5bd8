"""The one place configuration comes from: the environment, validated at start.

Names are a contract with operators (README "Settings"). Platform conventions stay
unprefixed (`DATABASE_URL`, `REDIS_URL`, `PORT`); gateway settings start with
`NOWPAYMENTS_`, our own rules with `PAYMENTS_`. Secrets are `SecretStr` and never print.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit

import pydantic_settings
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.payments import VariancePolicy

NOWPAYMENTS_PRODUCTION_URL = "https://api.nowpayments.io/v1"
NOWPAYMENTS_SANDBOX_URL = "https://api-sandbox.nowpayments.io/v1"
IPN_PATH = "/ipn/nowpayments"
PAYOUT_IPN_PATH = "/ipn/nowpayments/payouts"

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's marker, not a secret
WEBHOOK_SECRET_BYTES = (24, 64)  # Standard Webhooks: a random key of 192 to 512 bits
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DATABASE_SCHEMES = ("postgres", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("amqp://", "amqps://", "redis://", "rediss://", "unix://")

PositiveDecimal = Annotated[Decimal, Field(gt=0, max_digits=20, decimal_places=2)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # Platform
    database_url: SecretStr
    redis_url: SecretStr | None = None
    # Verify the certificate of a `rediss://` Redis. Heroku Redis presents a self-signed one, so a
    # Heroku deploy sets this to false (app.json does): the connection is still encrypted.
    redis_tls_verify: bool = True
    # The message broker: `amqp://…` runs the pipeline on RabbitMQ; unset, REDIS_URL is the broker.
    broker_url: SecretStr | None = None
    # Keeps this deployment's messages apart from others on the same broker: the Redis key prefix,
    # or on RabbitMQ a prefix of the queue names (none for the default).
    broker_namespace: str = Field(default="dramatiq", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    port: int = Field(default=8000, ge=1, le=65535)
    web_receive_timeout: float = Field(default=10.0, gt=0, le=300)
    api_token: SecretStr | None = None
    public_base_url: str | None = None
    log_level: LogLevel = "INFO"
    log_format: str = Field(default="json", pattern="^(json|console)$")

    # Gateway
    nowpayments_api_key: SecretStr | None = None
    nowpayments_ipn_secret: SecretStr | None = None
    nowpayments_sandbox: bool = False
    nowpayments_base_url: str | None = None
    nowpayments_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # After a create-payment attempt with no answer, the gateway's payment list is trusted to say "not made"
    # only once that attempt is this old: a request the gateway still acts on, or a list that lags, is covered.
    nowpayments_lookup_settle_seconds: float = Field(default=30.0, ge=0, le=3600)

    # Deposits
    payments_min_deposit_usd: PositiveDecimal = Decimal("1.00")
    payments_max_deposit_usd: PositiveDecimal = Decimal("100000.00")
    payments_underpaid_policy: VariancePolicy = VariancePolicy.CREDIT_RECEIVED
    payments_overpaid_policy: VariancePolicy = VariancePolicy.CREDIT_RECEIVED

    # Withdrawals
    operator_token: SecretStr | None = None
    nowpayments_email: SecretStr | None = None
    nowpayments_password: SecretStr | None = None
    payments_withdrawal_min_usd: PositiveDecimal = Decimal("10.00")
    payments_withdrawal_max_usd: PositiveDecimal = Decimal("50000.00")
    payments_withdrawal_network_fee_usd: Annotated[Decimal, Field(ge=0, decimal_places=2)] = Decimal("1.00")
    # Per-currency network fees as JSON, e.g. {"btc": "2.50", "eth": "1.20"}; others use the default above.
    payments_withdrawal_network_fees: dict[str, Annotated[Decimal, Field(ge=0, decimal_places=2)]] = Field(
        default_factory=dict
    )
    payments_withdrawal_service_fee_usd: Annotated[Decimal, Field(ge=0, decimal_places=2)] = Decimal("0.50")
    payments_withdrawal_service_fee_percent: Annotated[Decimal, Field(ge=0, lt=100)] = Decimal("0")

    # Polling and expiry (seconds)
    payments_poll_first_delay: float = Field(default=20.0, ge=0)
    payments_poll_min_interval: float = Field(default=15.0, gt=0)
    payments_poll_max_interval: float = Field(default=600.0, gt=0)
    payments_expiry_grace: float = Field(default=900.0, ge=0)
    payments_scheduler_tick: float = Field(default=2.0, gt=0)
    payments_scheduler_batch: int = Field(default=500, ge=1, le=10000)

    # settle-deposit messages settled together in one database transaction (1: one at a time)
    payments_settle_group: int = Field(default=500, ge=1, le=4000)
    # create-payment messages a worker process takes together and runs concurrently (1: one at a time)
    payments_create_group: int = Field(default=50, ge=1, le=1000)

    # Notifications (Standard Webhooks): where events are sent, the signing secret in its whsec_ form,
    # and the retry schedule (seconds per failed attempt, the last one repeating) until give-up.
    notify_webhook_url: str | None = None
    notify_webhook_secret: SecretStr | None = None
    notify_webhook_timeout: float = Field(default=15.0, gt=0, le=60)
    notify_lease_seconds: float = Field(default=60.0, gt=0)
    notify_retry_schedule: list[Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0], min_length=1
    )
    notify_give_up_after: float = Field(default=86400.0, gt=0)
    notify_requeue_after: float = Field(default=60.0, gt=0)

    # Worker processes (`payments worker`): dramatiq --processes / --threads
    worker_processes: int = Field(default=2, ge=1, le=64)
    worker_threads: int = Field(default=8, ge=1, le=256)
    # Where `payments worker` serves its Prometheus metrics (message counts, durations, failures by actor);
    # unset = no worker metrics endpoint (e.g. on a platform that routes no traffic to workers).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - a scrape target listens on every interface by default

    # Database pool per process
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, values: object) -> object:
        """``API_TOKEN=`` is the same as no API_TOKEN: required settings then say so, optional ones fall back."""
        if isinstance(values, dict):
            return {key: value for key, value in values.items() if not (isinstance(value, str) and not value.strip())}
        return values

    @field_validator("notify_webhook_secret")
    @classmethod
    def _webhook_secret_form(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_webhook_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _webhook_settings_agree(self) -> Settings:
        if self.notify_webhook_url and self.notify_webhook_secret is None:
            raise ValueError("NOTIFY_WEBHOOK_SECRET is required when NOTIFY_WEBHOOK_URL is set")
        if self.notify_lease_seconds <= self.notify_webhook_timeout:
            raise ValueError("NOTIFY_LEASE_SECONDS must be longer than NOTIFY_WEBHOOK_TIMEOUT")
        return self

    @property
    def notify_webhook_key(self) -> bytes | None:
        """The raw HMAC key behind NOTIFY_WEBHOOK_SECRET."""
        if self.notify_webhook_secret is None:
            return None
        return decode_webhook_secret(self.notify_webhook_secret.get_secret_value())

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: SecretStr) -> SecretStr:
        _check_url(value.get_secret_value(), DATABASE_SCHEMES)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_url(value.get_secret_value(), REDIS_SCHEMES)
        return value


    @model_validator(mode="after")
    def _a_broker_is_named(self) -> Settings:
        if self.redis_url is None and self.broker_url is None:
            raise ValueError("REDIS_URL is required but not set (or set BROKER_URL to amqp://… for RabbitMQ)")
        if self.broker_url is not None and not self.broker_url.get_secret_value().startswith(BROKER_SCHEMES):
            raise ValueError("BROKER_URL must start with " + ", ".join(BROKER_SCHEMES))
        return self

    @property
    def broker_dsn(self) -> str:
        """Where messages go: BROKER_URL when set, else REDIS_URL (a secret: never log it)."""
        chosen = self.broker_url or self.redis_url
        assert chosen is not None  # checked at load
        return chosen.get_secret_value()

    @property
    def redis_options(self) -> dict[str, object]:
        """Connection options every Redis client of ours passes with the broker URL."""
        if self.broker_dsn.startswith("rediss://") and not self.redis_tls_verify:
            return {"ssl_cert_reqs": None, "ssl_check_hostname": False}
        return {}

    @property
    def uses_rabbitmq(self) -> bool:
        return self.broker_dsn.startswith(("amqp://", "amqps://"))

    @field_validator("public_base_url", "nowpayments_base_url", "notify_webhook_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def gateway_base_url(self) -> str:
        if self.nowpayments_base_url:
            return self.nowpayments_base_url
        return NOWPAYMENTS_SANDBOX_URL if self.nowpayments_sandbox else NOWPAYMENTS_PRODUCTION_URL

    @property
    def payouts_enabled(self) -> bool:
        """Withdrawals go out through the NOWPayments payout API; otherwise an operator pays by hand."""
        return self.nowpayments_email is not None and self.nowpayments_password is not None

    @property
    def payout_ipn_callback_url(self) -> str | None:
        return f"{self.public_base_url}{PAYOUT_IPN_PATH}" if self.public_base_url else None

    @property
    def ipn_callback_url(self) -> str | None:
        """Where NOWPayments should post IPNs; ``None`` turns the fast path off (polling only)."""
        return f"{self.public_base_url}{IPN_PATH}" if self.public_base_url else None

    def require(self, *names: str) -> None:
        """Stop the process if a setting this process needs is unset (named, never shown)."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise SettingsError(f"{name.upper()} is required for this process but is not set")


def decode_webhook_secret(text: str) -> bytes:
    """``whsec_<base64>`` to the key bytes; the error never repeats the secret."""
    shortest, longest = WEBHOOK_SECRET_BYTES
    problem = f"must be {WEBHOOK_SECRET_PREFIX} followed by the base64 of {shortest} to {longest} random bytes"
    if not text.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(problem)
    try:
        key = base64.b64decode(text.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(problem) from None
    if not shortest <= len(key) <= longest:
        raise ValueError(problem)
    return key


def _check_url(url: str, schemes: tuple[str, ...]) -> None:
    """Refuse a URL no client could use, naming what is wrong and never echoing the URL (it holds a password)."""
    expected = " or ".join(f"{scheme}://" for scheme in schemes)
    try:
        parts = urlsplit(url.strip())
        if parts.scheme not in schemes:
            raise ValueError(f"must be a URL starting with {expected}")
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("must name a socket path, e.g. unix:///run/redis.sock")
            return
        if not parts.hostname and "," not in parts.netloc and not parts.query:
            raise ValueError("has no host name")
        if "," not in parts.netloc:  # asyncpg's several-hosts form has no single port to check
            _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        message = str(exc)
        if not message.startswith(("must", "has")):  # urllib's own words may quote the value
            message = "is not a valid URL (check the port and any special characters in the password)"
        raise ValueError(message) from None


class SettingsError(SystemExit):
    """A configuration problem; exits the process with one line naming the variable."""

    def __init__(self, line: str) -> None:
        super().__init__(f"configuration error: {line}")


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad variable and what is wrong, without echoing any value."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        if not item["loc"]:  # a rule across settings: its message names them
            parts.append(str(item["msg"]).removeprefix("Value error, "))
            continue
        name = "_".join(str(piece) for piece in item["loc"]).upper()
        message = "is required but not set" if item["type"] == "missing" else item["msg"].removeprefix("Value error, ")
        parts.append(f"{name} {message}")
    return "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment; raise `SettingsError` (a `SystemExit`) if it is wrong."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None
    except pydantic_settings.SettingsError as exc:  # a value the environment source cannot even parse (bad JSON)
        match = re.search(r'field "([a-z0-9_]+)"', str(exc))
        name = match.group(1).upper() if match else "a setting"
        raise SettingsError(f"{name} is not valid JSON") from None
