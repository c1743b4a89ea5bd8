"""Schemathesis over /openapi.json against a running app: every operation, valid and invalid input.

Synchronous (schemathesis calls over ``requests``): a test runs it in a thread while the app serves
on the test's event loop.
"""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

# No 500, and every answer (status, media type, body) as the document says.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    *,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
    max_examples: int,
) -> int:
    """Up to ``max_examples`` cases of ``operation`` in ``mode``; raises on the first failing check."""
    calls = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS)

    check()
    return calls


def fuzz_api(
    document: dict[str, Any], base_url: str, headers_for: dict[str, dict[str, str]], *, max_examples: int
) -> tuple[int, list[str]]:
    """Call every operation with up to ``max_examples`` generated cases per generation mode.

    ``headers_for`` maps a path prefix to the headers to send (the longest matching prefix wins).
    Returns the number of calls made and one line per failing operation and mode.
    """
    schema = schemathesis.openapi.from_dict(document)
    calls = 0
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            prefix = max((p for p in headers_for if operation.path.startswith(p)), key=len, default=None)
            headers = headers_for[prefix] if prefix is not None else {}
            takes_input = bool(operation.path_parameters or operation.query or operation.body)
            # An operation that takes nothing cannot be sent anything invalid.
            modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
            for mode in modes:
                try:
                    calls += _fuzz_operation(
                        operation, mode, base_url=base_url, session=session, headers=headers, max_examples=max_examples
                    )
                except Exception as exc:  # every failing operation is reported, not only the first
                    failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    return calls, failures
