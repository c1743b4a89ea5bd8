"""Fixtures for process-level tests: a launcher that never leaks processes, the simulator, a private broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from gateway.simulator import SimulatorConfig, SimulatorServer
from tests.conftest import REDIS_URL, _admin, _dsn_for
from tests.e2e.procs import Launcher
from tests.secrets_guard import GUARD

SIM_API_KEY = "sim-api-key-for-process-tests"
SIM_IPN_SECRET = "sim-ipn-secret-for-process-tests"


@pytest.fixture
def launcher(tmp_path) -> Iterator[Launcher]:
    logdir = tmp_path / "proc-logs"
    logdir.mkdir()
    procs = Launcher(logdir)
    yield procs
    procs.cleanup()
    for proc in procs.procs:
        assert proc.live_group() == [], f"{proc.name} left processes running: {proc.live_group()}"
    leaked = {proc.name: GUARD.check(f"process {proc.name}", proc.output) for proc in procs.procs}
    assert not any(leaked.values()), f"secrets in process output (by name): {leaked}"


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    sim = SimulatorServer(SimulatorConfig(ipn_secret=SIM_IPN_SECRET, api_key=SIM_API_KEY))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A brand-new database with nothing in it (not cloned from the migrated template)."""
    name = f"payments_empty_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    yield _dsn_for(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def broker_env(redis_namespace: str) -> dict[str, str]:
    """Environment for processes that use the broker: the shared Redis, under this test's own namespace
    (its keys are deleted afterwards; nothing else on that Redis is touched)."""
    return {"REDIS_URL": REDIS_URL, "BROKER_NAMESPACE": redis_namespace}
