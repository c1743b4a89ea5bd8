"""What every process checks before it starts, so an operational mistake ends in one line, not a traceback.

Each line names the setting or the service and what to do: Postgres or Redis unreachable, a login
refused, a database that does not exist or is not migrated, a port already taken. Nothing here
ever prints a URL (it holds a password).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from urllib.parse import urlsplit

import asyncpg
import redis

from settings import Settings
from storage.db import connect
from storage.migrate import pending_migrations

CONNECT_TIMEOUT_SECONDS = 10.0
MAX_REASON = 200


class StartupError(Exception):
    """An operational problem found at start; ``str()`` is the one line to print."""


def _reason(exc: BaseException, secret_url: str) -> str:
    """The error's own words on one line, without the password even if a library quoted it."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    password = urlsplit(secret_url).password if "://" in secret_url else None
    if password:
        text = text.replace(password, "***")
    return text[:MAX_REASON]


async def open_database(settings: Settings) -> asyncpg.Connection:
    """A connection to DATABASE_URL, or a `StartupError` saying why there is none."""
    dsn = settings.database_url.get_secret_value()
    try:
        return await connect(dsn, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except asyncpg.InvalidCatalogNameError as exc:
        raise StartupError(
            f"Postgres: {_reason(exc, dsn)}: create it, or fix the database name in DATABASE_URL"
        ) from None
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        raise StartupError(f"Postgres refused the login in DATABASE_URL: {_reason(exc, dsn)}") from None
    except (OSError, TimeoutError) as exc:
        raise StartupError(
            f"Postgres unreachable (DATABASE_URL): {_reason(exc, dsn)}; check DATABASE_URL and that Postgres is running"
        ) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        raise StartupError(f"Postgres (DATABASE_URL) refused the connection: {_reason(exc, dsn)}") from None


async def check_database(settings: Settings, *, require_migrated: bool = True) -> None:
    conn = await open_database(settings)
    try:
        pending = await pending_migrations(conn) if require_migrated else []
    finally:
        await conn.close()
    if pending:
        raise StartupError(
            f"the database in DATABASE_URL is not migrated ({len(pending)} pending: {', '.join(pending)}):"
            " run `payments migrate` (the release phase does)"
        )


def check_redis(settings: Settings) -> None:
    """The Redis broker answers (REDIS_URL)."""
    url = settings.broker_dsn
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
        **settings.redis_options,  # type: ignore[arg-type]
    )
    try:
        client.ping()
    except redis.exceptions.AuthenticationError as exc:
        raise StartupError(f"Redis refused the login in REDIS_URL: {_reason(exc, url)}") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise StartupError(
                f"Redis's TLS certificate (REDIS_URL) did not verify: {_reason(exc, url)}; Heroku Redis presents"
                " a self-signed certificate: set REDIS_TLS_VERIFY=false"
            ) from None
        raise StartupError(
            f"Redis unreachable (REDIS_URL): {_reason(exc, url)}; check REDIS_URL and that Redis is running"
        ) from None
    except redis.exceptions.RedisError as exc:
        raise StartupError(f"Redis (REDIS_URL) refused the connection: {_reason(exc, url)}") from None
    finally:
        client.close()


def check_rabbitmq(settings: Settings) -> None:
    """The RabbitMQ broker answers (BROKER_URL)."""
    import pika

    url = settings.broker_dsn
    pika_log = logging.getLogger("pika")
    level, pika_log.level = pika_log.level, logging.CRITICAL + 1  # its own retelling is not the one line
    try:
        parameters = pika.URLParameters(url)
        parameters.socket_timeout = CONNECT_TIMEOUT_SECONDS
        parameters.connection_attempts = 1
        pika.BlockingConnection(parameters).close()
    except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
        raise StartupError(
            f"RabbitMQ unreachable (BROKER_URL): {_reason(exc, url)}; check BROKER_URL and that RabbitMQ is running"
        ) from None
    finally:
        pika_log.setLevel(level)


def check_services(settings: Settings) -> None:
    """What web, worker and scheduler need before they start: a migrated Postgres and a broker that answers."""
    asyncio.run(check_database(settings))
    if settings.uses_rabbitmq:
        check_rabbitmq(settings)
    else:
        check_redis(settings)


def port_error(exc: OSError, port: int) -> StartupError | None:
    """The one line for a failed listen on PORT, or None when the error is about something else."""
    if exc.errno == errno.EADDRINUSE:
        return StartupError(f"PORT {port} is already in use by another process: stop it or set PORT to a free port")
    if exc.errno == errno.EACCES:
        return StartupError(f"PORT {port} needs privileges this process lacks: set PORT to 1024 or above")
    return None


def run_web(settings: Settings) -> None:
    """`payments web`: its settings, then its services, then listen on PORT."""
    from entrypoints.web.app import serve

    settings.require("api_token", "nowpayments_ipn_secret")
    check_services(settings)
    try:
        serve(settings)
    except OSError as exc:
        error = port_error(exc, settings.port)
        if error is None:
            raise
        raise error from None
