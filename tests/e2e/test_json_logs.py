"""LOG_FORMAT=json: a library's stdlib-logging record, traceback and warning included, is one JSON line.

The deploy test checks this on the real processes (dramatiq's own lines among them); here a fresh
interpreter logs what aiohttp logs when a handler fails, so the traceback case is seen for certain.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.procs import REPO, minimal_env

SCRIPT = """
import logging, warnings
from entrypoints.logs import configure_logging
configure_logging(level="info", fmt="json")
try:
    raise RuntimeError("boom")
except RuntimeError:
    logging.getLogger("aiohttp.server").exception("Error handling request")
logging.getLogger("dramatiq.worker.Worker").info("Worker has been shut down.")
logging.getLogger("asyncio").debug("below the level: not written")
warnings.warn("something old", DeprecationWarning, stacklevel=1)
import structlog
structlog.get_logger("ours").info("payment_created", payment_id="PAY_1")
"""


def test_every_line_is_one_json_object_with_tracebacks_as_a_field():
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", SCRIPT],
        cwd=REPO,
        env=minimal_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [r["event"] for r in records][:2] == ["Error handling request", "Worker has been shut down."]
    failure = records[0]
    assert failure["logger"] == "aiohttp.server" and failure["level"] == "error"
    assert "RuntimeError: boom" in failure["exception"]
    assert any("DeprecationWarning: something old" in r["event"] for r in records), records
    assert records[-1]["event"] == "payment_created" and records[-1]["payment_id"] == "PAY_1"
    assert not any("below the level" in r["event"] for r in records)
