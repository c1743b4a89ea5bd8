"""create-payment for a group of requests at once: the single stage (services/create_payment.py) run for
every member concurrently on one event loop, at most `CONCURRENCY` at a time.

Every guarantee is the single stage's own, per member: the request recorded once under its request_id
lock, the creation lease, the gateway called outside any transaction, the answer recorded once. A member
that finds another holder's live lease is finished, as the actor finishes it (the stage made the
scheduler's look due when that lease ends). Any other member that does not end with its payment (refused,
gateway down, any error) is handed back to the caller, which runs it alone with the ordinary retries,
refusal record and dead-lettering; it never holds back or rolls back the others.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import structlog

from domain.payments import Payment
from services.commands import CreatePaymentRequest
from services.context import StageContext
from services.create_payment import create_payment
from services.errors import CreationInProgress
from services.settle_batch import GroupOutcome

log = structlog.get_logger(__name__)

# Gateway calls in flight at once for one group (each member holds a pooled connection only inside
# its short transactions, never during its gateway call).
CONCURRENCY = 16


async def create_group(ctx: StageContext, members: Sequence[tuple[str, CreatePaymentRequest]]) -> GroupOutcome:
    """Run create-payment for each ``(key, request)``; answers the keys finished and the keys to run alone."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(request: CreatePaymentRequest) -> Payment:
        async with gate:
            return await create_payment(ctx, request)

    tasks = [asyncio.ensure_future(one(request)) for _, request in members]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        # A stop cancelled the group (workers/stopping.py): what finished is kept, the rest goes back.
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        log.warning("payments_group_interrupted", size=len(members), unfinished=sum(not _ended(t) for t in tasks))
    results = [task.exception() or task.result() if _ended(task) else asyncio.CancelledError() for task in tasks]
    finished: set[str] = set()
    left: set[str] = set()
    reasons: Counter[str] = Counter()
    for (key, request), result in zip(members, results, strict=True):
        if isinstance(result, Payment):
            finished.add(key)
        elif isinstance(result, CreationInProgress):
            finished.add(key)
            log.info("lease_held_left_to_scheduler", actor="create_payment", subject=request.request_id)
        else:
            left.add(key)
            reasons[type(result).__name__] += 1
    log.info("payments_created_in_group", size=len(members), finished=len(finished), left=dict(reasons))
    return GroupOutcome(finished=frozenset(finished), left=frozenset(left - finished))


def _ended(task: asyncio.Task[Payment]) -> bool:
    """Ran to an answer or an error (not cancelled)."""
    return task.done() and not task.cancelled()
