"""The short variant of scripts/bench.py: it runs end to end and prints every figure.

Timings are printed for people to read, never asserted here (they depend on the machine).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_prints_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line.strip()}
    assert set(lines) == {"settle_one_user", "settle_many_users", "scheduler", "ipn", "memory"}
    for name in ("settle_one_user", "settle_many_users"):
        assert re.search(r"settle_per_s=\d+\.\d", lines[name]), lines[name]
    assert "claimed=50" in lines["scheduler"] and "claimed_again=0" in lines["scheduler"]
    assert re.search(r"requests_per_s=\d+\.\d", lines["ipn"])
    assert re.search(r"peak RSS \d+ MB", lines["memory"])
