"""Every `payments` command explains itself, and every listing has a --json form for scripts."""

from __future__ import annotations

import json

import click
import pytest

from entrypoints.cli.main import cli
from tests.e2e.procs import Launcher, minimal_env

REDIS_DB0 = "redis://127.0.0.1:6379/0"


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", _command_paths(cli), ids=lambda path: " ".join(path) or "payments")
def test_every_command_and_action_has_its_own_help_with_an_example(launcher: Launcher, path: tuple[str, ...]):
    proc = launcher.run(*path, "--help", env=minimal_env(), timeout=30)
    assert proc.popen.returncode == 0, proc.output
    assert proc.stdout.startswith(f"Usage: payments {' '.join(path)}".rstrip()), proc.stdout
    assert "Example" in proc.stdout and "payments " in proc.stdout.split("Example", 1)[1], proc.stdout
    assert proc.stderr == ""


def test_listings_print_json_to_stdout_and_logs_to_stderr(launcher: Launcher, database_url, redis_namespace):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=REDIS_DB0, BROKER_NAMESPACE=redis_namespace)
    for args, expected in [
        (("currencies", "list"), []),
        (("withdrawals", "list"), []),
        (("deposits", "held"), []),
        (("dlq", "list", "poll-status"), {"queue": "poll-status", "total": 0, "messages": []}),
    ]:
        proc = launcher.run(*args, "--json", env=env, timeout=60)
        assert proc.popen.returncode == 0, proc.output
        assert json.loads(proc.stdout) == expected, args

    balance = launcher.run("balance", "nobody", "--json", env=env, timeout=60)
    assert balance.popen.returncode == 0, balance.output
    assert json.loads(balance.stdout) == {
        "user_id": "nobody",
        "balance_usd": "0.00",
        "held_usd": "0.00",
        "total_deposited": "0.00",
        "total_withdrawn": "0.00",
        "last_transaction_at": None,
        "history": [],
    }


def test_a_missing_argument_is_a_usage_error_not_a_traceback(launcher: Launcher):
    proc = launcher.run("withdrawals", "approve", env=minimal_env(), timeout=30)
    assert proc.popen.returncode == 2
    assert "Missing argument 'WITHDRAWAL_ID'" in proc.stderr and "Traceback" not in proc.output
    assert proc.stdout == ""


def test_an_unknown_withdrawal_is_refused_in_one_line(launcher: Launcher, database_url, redis_namespace):
    env = minimal_env(DATABASE_URL=database_url, REDIS_URL=REDIS_DB0, BROKER_NAMESPACE=redis_namespace)
    proc = launcher.run("withdrawals", "approve", "WD_nope", "--note", "x", env=env, timeout=60)
    assert proc.popen.returncode == 4, proc.output
    assert proc.stderr.strip().splitlines() == ["not found: withdrawal_id: no withdrawal 'WD_nope'"]
