"""Secrets never appear in a log line, an error body or a process's output during the whole suite.

The guard knows the suite's test secrets (named below, read from the modules that define them once
they are loaded) and every JWT an in-process simulator issued. `tests/conftest.py` feeds it every
test phase's captured stdout, stderr and log records (pytest captures at the file-descriptor level,
so structlog, stdlib logging and worker threads are all in there) and the failure text; the e2e
launcher feeds it each process's stdout and stderr files. Leaks are reported by the secret's name,
never its value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

# module → names of the secret constants it defines (a tuple of secrets counts as several)
KNOWN_SECRETS = {
    "tests.integration.stack": ("API_KEY", "IPN_SECRET", "API_TOKEN", "OPERATOR_TOKEN", "PAYOUT_PASSWORD"),
    "tests.integration.gateway.conftest": ("IPN_SECRET", "API_KEY", "PAYOUT_PASSWORD"),
    "tests.e2e.conftest": ("SIM_API_KEY", "SIM_IPN_SECRET"),
    "tests.e2e.test_cli": ("API_TOKEN", "SECRET_API_KEY", "DB_PASSWORD"),
    "tests.e2e.test_settings": ("SECRETS",),
}


class SecretGuard:
    def __init__(self) -> None:
        self.issued_jwts: set[str] = set()
        self.leaks: list[str] = []

    def secrets(self) -> dict[str, str]:
        """name → value of every known secret of the modules loaded so far, and the JWTs issued."""
        found: dict[str, str] = {}
        for module_name, names in KNOWN_SECRETS.items():
            module = sys.modules.get(module_name)
            for name in names if module is not None else ():
                value = getattr(module, name, None)
                values = value if isinstance(value, tuple) else (value,)
                for index, item in enumerate(values):
                    if isinstance(item, str) and item:
                        found[f"{module_name}.{name}" + (f"[{index}]" if isinstance(value, tuple) else "")] = item
        for n, token in enumerate(sorted(self.issued_jwts)):
            found[f"simulator JWT #{n}"] = token
        return found

    def names_in(self, text: str) -> list[str]:
        if not text:
            return []
        return [name for name, value in self.secrets().items() if value in text]

    def check(self, where: str, text: str) -> list[str]:
        """Record (and return) the names of the secrets found in ``text``."""
        names = self.names_in(text)
        self.leaks.extend(leak for leak in (f"{where}: {name}" for name in names) if leak not in self.leaks)
        return names

    @contextmanager
    def watching_simulator_logins(self) -> Iterator[None]:
        """Remember every JWT the in-process simulators issue (they are secrets too)."""
        from gateway.simulator import login

        issue = login._issue_jwt

        def recording(state):  # type: ignore[no-untyped-def]
            token = issue(state)
            self.issued_jwts.add(token)
            return token

        login._issue_jwt = recording
        try:
            yield
        finally:
            login._issue_jwt = issue


GUARD = SecretGuard()
