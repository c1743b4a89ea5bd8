"""The crash soak's short variant (`python -m soak --quick`), as the README runs it: every correctness
verdict must hold. Its timings are printed for people, never asserted."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.procs import REPO

VERDICTS = (
    "every paid, over-paid and partial deposit credited exactly once with what arrived",
    "nothing credited for failed or expired deposits",
    "every completed withdrawal posted and paid out once",
    "every rejected, cancelled or failed withdrawal released once",
    "ledger zero-sum, balances equal entries, none negative",
    "every message processed (queues empty)",
    "every dead letter logged with a reason",
    "no secret in any process log",
)


def test_quick_soak_keeps_every_cent_under_kills_outages_and_a_failing_gateway(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "soak", "--quick", "--workdir", str(tmp_path / "soak")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = proc.stdout
    print(report)
    assert proc.returncode == 0, report + proc.stderr[-3000:]
    for verdict in VERDICTS:
        assert f"[ok] {verdict}" in report, report
    assert "VIOLATION" not in report and "CLIENT PROBLEM" not in report
    assert "worker processes SIGKILLed" in report and "recovery after a kill" in report
