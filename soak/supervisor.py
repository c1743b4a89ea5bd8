"""The platform's role: start the Procfile processes, restart whichever died, and the soak's kills."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PAYMENTS = str(Path(sys.executable).parent / "payments")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class Dyno:
    """One `payments ...` process in a session of its own; its output appended to a log file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], logdir: Path) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PAYMENTS, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        """The worker processes the dramatiq parent forked (its process group, without itself)."""
        if self.proc is None:
            return []
        return [pid for pid in _group_members(self.proc.pid) if pid != self.proc.pid]

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash: nothing is cleaned up)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Supervisor:
    def __init__(self, logdir: Path, rng: random.Random) -> None:
        self.logdir = logdir
        self.rng = rng
        self.dynos: dict[str, Dyno] = {}
        self.stopping = False

    def add(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Dyno:
        dyno = Dyno(name, args, env, self.logdir)
        self.dynos[name] = dyno
        dyno.start()
        return dyno

    def restart_dead(self) -> list[str]:
        """What a platform does: start again every process that exited (for any reason)."""
        restarted: list[str] = []
        if self.stopping:
            return restarted
        for dyno in self.dynos.values():
            if not dyno.alive:
                dyno.restarts += 1
                dyno.start()
                restarted.append(dyno.name)
        return restarted

    def kill_random_worker_process(self, processes_per_dyno: int) -> int | None:
        """SIGKILL one worker process (a dramatiq child) of a random worker dyno; its pid, or None when a
        worker dyno is still (re)starting: another worker must be up to take over what the dead one held."""
        workers = [dyno.children() for name, dyno in self.dynos.items() if name.startswith("worker")]
        if any(len(children) < processes_per_dyno for children in workers):
            return None
        candidates = [pid for children in workers for pid in children]
        pid = self.rng.choice(candidates)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def crash(self, name: str) -> None:
        """SIGKILL a dyno; the next `restart_dead` brings it back."""
        self.dynos[name].kill()

    def stop_all(self, timeout: float = 30) -> None:
        self.stopping = True  # nothing is restarted from now on
        for dyno in self.dynos.values():
            if dyno.alive and dyno.proc is not None:
                dyno.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for dyno in self.dynos.values():
            if dyno.proc is None:
                continue
            try:
                dyno.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
            dyno.kill()
