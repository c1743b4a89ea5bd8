"""Every actor fed generated malformed messages through the real Redis broker and worker threads
(hypothesis): each is dead-lettered with its reason logged; never retried, nothing written, and the
worker still works a good message afterwards."""

from __future__ import annotations

import json
import uuid

import dramatiq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from tests.integration.fuzz.conftest import row_counts
from tests.integration.stack import Stack, eventually

ACTORS = {
    "create_payment": "create-payment",
    "poll_status": "poll-status",
    "settle_deposit": "settle-deposit",
    "request_withdrawal": "process-withdrawal",
    "process_withdrawal": "process-withdrawal",
}
ARGUMENTS = ("request_id", "user_id", "amount_usd", "currency_code", "description", "payment_id", "withdrawal_id",
             "wallet_address", "extra_id")  # fmt: skip
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | st.sampled_from(
    ["25.00", "-1", "1e400", "NaN", "PAY_20260101120000_abc12345", "WD_20260101120000_abc12345", "btc", ""]
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
messages = st.tuples(
    st.sampled_from(sorted(ACTORS)),
    st.lists(values, max_size=4),
    st.dictionaries(st.sampled_from(ARGUMENTS) | st.text(max_size=10), values, max_size=6),
)


def _pending(stack: Stack) -> int:
    client, queues = stack.broker.client, set(ACTORS.values())
    return sum(client.hlen(f"{stack.namespace}:{queue}{suffix}.msgs") for queue in queues for suffix in ("", ".DQ"))


def _dead_letter_ids(stack: Stack) -> set[str]:
    ids = set()
    for queue in set(ACTORS.values()):
        for body in stack.broker.client.hvals(f"{stack.namespace}:{queue}.XQ.msgs"):
            ids.add(json.loads(body)["message_id"])
    return ids


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # the simulator uses random
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(messages, min_size=1, max_size=12))
async def test_malformed_messages_are_dead_lettered_with_a_reason_never_retried_nothing_written(fuzz_stack, batch):
    stack = fuzz_stack
    before = await row_counts(stack)
    with capture_logs() as logs:
        sent = [
            stack.broker.enqueue(dramatiq.Message(ACTORS[actor], actor, tuple(args), kwargs, {}))
            for actor, args, kwargs in batch
        ]

        async def finished() -> bool:
            return _pending(stack) == 0

        await eventually(finished, timeout=60)
    dead = _dead_letter_ids(stack)
    reasons = {entry["message_id"]: entry.get("reason") for entry in logs if entry["event"] == "message_dead_lettered"}
    for message in sent:
        assert message.message_id in dead, f"{message.actor_name} {message.args} {message.kwargs} not dead-lettered"
        assert reasons.get(message.message_id), f"{message.actor_name} dead-lettered without a logged reason"
    assert not [e for e in logs if e["event"] in ("worker_boot_failed",)]
    assert await row_counts(stack) == before

    # the worker still works: a good message is processed
    request_id = f"after-fuzz-{uuid.uuid4().hex[:8]}"
    stack.actors.create_payment.send(request_id=request_id, user_id="u-fuzz", amount_usd="10.00", currency_code="btc")
    assert (await stack.payment_for_request(request_id)).provider_payment_id
