"""The one free-port helper every test kind uses.

A port the kernel hands out for ``bind(("127.0.0.1", 0))`` comes from the ephemeral range, the same
range every outgoing connection on the machine takes its local port from. Between this helper
closing its probe and the server under test binding the port (seconds, for a process that boots),
any connection made meanwhile (by this test, another xdist worker or another suite on the machine)
can take it, and the server then fails to listen. So ports come from below the ephemeral range,
where the kernel never picks one by itself, each xdist worker drawing from its own slice of it.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

LOWEST = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SLICES = 16  # xdist workers gw0..gw15 each get a slice of their own; more share by modulo


def _below_ephemeral() -> int:
    """The first port the kernel may pick by itself (32768 on Linux unless changed)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_slice(low: int, high: int) -> range:
    """This xdist worker's own ports in [low, high); the whole of it outside xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.removeprefix("gw").isdigit():
        return range(low, high)
    size = (high - low) // _SLICES
    start = low + (int(worker.removeprefix("gw")) % _SLICES) * size
    return range(start, start + size)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (or is bound to) right now, outside the ephemeral range."""
    high = _below_ephemeral()
    if high - LOWEST < _SLICES * 64:  # an unusual port range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    ports = _worker_slice(LOWEST, high)
    for port in random.sample(ports, k=min(200, len(ports))):
        if _bindable(port):
            return port
    raise RuntimeError(f"no free port among 200 tried in {ports.start}-{ports.stop - 1}")
