"""The short variant of the benchmark (`python -m bench --quick`): it runs end to end and prints every figure.

Timings are printed for people to read, never asserted here (they depend on the machine).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_ROWS = {
    "pgbench TPC-B-like (before)": r"\d[\d,]* tps",
    "settlement, 1,000 of 100 users, 1 proc": r"\d[\d,]* /s .* \d+\.\d\dx pgbench",
    "settlement, 1,000 of 100 users, 2 proc": r"\d[\d,]* /s .* \d+\.\d\dx pgbench",
    "settlement, 1,000 of one user, 2 proc": r"\d[\d,]* /s .* \d+\.\d\dx pgbench, \d+\.\d\dx many",
    "full deposit path, 40 deposits": r"\d[\d,]* /s",
    "scheduler tick, 2,000 stored, 200 due": r"\d[\d,]* ms",
    "scheduler tick, 20,000 stored, 200 due": r"\d[\d,]* ms .* \d+\.\d\dx the smaller",
    "IPN at 200 req/s, p50 / p99": r"\d+\.\d / \d+\.\d ms",
    "worker peak RSS per process (MB)": r"\d+ MB",
    "pgbench TPC-B-like (after)": r"\d[\d,]* tps",
}


def test_quick_benchmark_prints_every_figure():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for line in result.stdout.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = " | ".join(cells[1:])
    assert set(rows) == set(EXPECTED_ROWS), result.stdout
    for measure, figure in EXPECTED_ROWS.items():
        assert re.search(figure, rows[measure]), (measure, rows[measure])
