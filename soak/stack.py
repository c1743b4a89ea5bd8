"""Bringing the soak's processes up: migrate, simulator, currency sync, workers, scheduler, web."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from soak.infra import free_port
from soak.supervisor import PAYMENTS, Supervisor

API_KEY = "soak-api-key"
IPN_SECRET = "soak-ipn-secret"
API_TOKEN = "soak-api-token"
OPERATOR_TOKEN = "soak-operator-token"
PAYOUT_EMAIL = "payouts@soak.test"
PAYOUT_PASSWORD = "soak-payout-password"
SECRETS = (API_KEY, IPN_SECRET, API_TOKEN, OPERATOR_TOKEN, PAYOUT_PASSWORD)
NAMESPACE = "dramatiq"
GATEWAY_TIMEOUT_S = 3.0
PAYMENT_LIFETIME_S = 20.0
WORKER_PROCESSES = 2  # per worker dyno


@dataclass(frozen=True)
class Endpoints:
    web_url: str
    sim_url: str
    env: dict[str, str]


def environment(database_url: str, redis_url: str, web_port: int, sim_port: int, workers: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - a fallback for HOME only
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORT": str(web_port),
        "API_TOKEN": API_TOKEN,
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "NOWPAYMENTS_API_KEY": API_KEY,
        "NOWPAYMENTS_IPN_SECRET": IPN_SECRET,
        "NOWPAYMENTS_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
        "NOWPAYMENTS_TIMEOUT_SECONDS": str(GATEWAY_TIMEOUT_S),
        "NOWPAYMENTS_EMAIL": PAYOUT_EMAIL,
        "NOWPAYMENTS_PASSWORD": PAYOUT_PASSWORD,
        "PAYMENTS_POLL_FIRST_DELAY": "3",
        "PAYMENTS_POLL_MIN_INTERVAL": "2",
        "PAYMENTS_POLL_MAX_INTERVAL": "6",
        "PAYMENTS_EXPIRY_GRACE": "0",
        "WORKER_PROCESSES": str(WORKER_PROCESSES),
        "WORKER_THREADS": str(workers),
        "DB_POOL_MAX": "6",
        "BROKER_NAMESPACE": NAMESPACE,
        "LOG_FORMAT": "json",
        "SIMULATOR_PORT": str(sim_port),
    }


def _run(args: list[str], env: dict[str, str], logdir: Path, name: str) -> None:
    with open(logdir / f"{name}.log", "ab") as log:
        code = subprocess.call([PAYMENTS, *args], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120)
    if code != 0:
        raise RuntimeError(f"payments {' '.join(args)} exited {code}; see {logdir / name}.log")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def start_stack(supervisor: Supervisor, database_url: str, redis_url: str, *, seed: int, workers: int) -> Endpoints:
    web_port, sim_port = free_port(), free_port()
    env = environment(database_url, redis_url, web_port, sim_port, workers)
    logdir = supervisor.logdir
    _run(["migrate"], env, logdir, "release")
    supervisor.add("simulator", ["simulator", "--port", str(sim_port), "--payment-lifetime",
                                 str(PAYMENT_LIFETIME_S), "--seed", str(seed)], env)  # fmt: skip
    wait_http(f"http://127.0.0.1:{sim_port}/v1/status")
    _run(["currencies", "sync"], env, logdir, "currencies-sync")
    for name in ("worker-1", "worker-2"):
        supervisor.add(name, ["worker"], env)
    supervisor.add("scheduler", ["scheduler"], env)
    supervisor.add("web", ["web"], env)
    wait_http(f"http://127.0.0.1:{web_port}/healthz")
    return Endpoints(f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}", env)


def gateway_orphans(env: dict[str, str]) -> list[dict[str, object]] | None:
    """`payments reconcile --gateway --json`'s orphans (created while the gateway timed out), or None if it failed."""
    proc = subprocess.run(
        [PAYMENTS, "reconcile", "--gateway", "--days", "1", "--json"], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    try:
        return list(json.loads(proc.stdout)["orphans"])
    except (ValueError, KeyError):
        return None
