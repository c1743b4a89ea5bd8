"""The suite-wide secret guard (tests/secrets_guard.py) sees the secrets it must look for."""

from __future__ import annotations

import aiohttp

from tests.integration import stack
from tests.secrets_guard import GUARD, SecretGuard


def test_known_secrets_are_found_by_name_never_by_value():
    guard = SecretGuard()
    names = guard.names_in(f"a log line with {stack.OPERATOR_TOKEN} in it")
    assert names == ["tests.integration.stack.OPERATOR_TOKEN"]
    assert stack.OPERATOR_TOKEN not in repr(names)
    assert guard.names_in("an innocent line") == []


async def test_jwts_the_simulator_issues_are_secrets_for_the_rest_of_the_session():
    sim = stack.SimulatorServer(
        stack.SimulatorConfig(
            ipn_secret=stack.IPN_SECRET, api_key=stack.API_KEY,
            payout_email=stack.PAYOUT_EMAIL, payout_password=stack.PAYOUT_PASSWORD,
        )
    )  # fmt: skip
    sim.start()
    try:
        async with aiohttp.ClientSession() as http:
            body = {"email": stack.PAYOUT_EMAIL, "password": stack.PAYOUT_PASSWORD}
            async with http.post(sim.api_url + "/auth", json=body, headers={"x-api-key": stack.API_KEY}) as response:
                token = (await response.json())["token"]
    finally:
        sim.stop()
    assert token in GUARD.issued_jwts
    assert any(name.startswith("simulator JWT") for name in GUARD.names_in(f"Bearer {token}"))
