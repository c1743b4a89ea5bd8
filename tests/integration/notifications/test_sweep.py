"""The scheduler's notification sweep: enqueues each subject whose oldest pending event is due, once."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import pytest

from domain.errors import InvalidRequest
from entrypoints.scheduler import enqueue_due_notifications
from services.context import FollowUp
from tests.integration.notifications.helpers import delivery_settings, visible_ids, write_story
from tests.integration.notifications.receiver import new_secret
from workers.notification_actors import subject_id_message


class RecordingEnqueuer:
    """Our own Enqueuer interface, writing down what it is asked to send."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def deliver_notifications(self, subject_id: str) -> None:
        self.subjects.append(subject_id)

    async def send_many(self, follow_ups: Sequence[FollowUp]) -> None:
        for stage, subject_id in follow_ups:
            assert stage == "deliver_notifications"
            await self.deliver_notifications(subject_id)


async def test_each_due_subject_is_enqueued_once_until_its_requeue_time(pool: asyncpg.Pool, database_url: str) -> None:
    settings = delivery_settings(database_url, "http://127.0.0.1:9/hooks", new_secret(), notify_requeue_after=600.0)
    await write_story(pool, "PAY_A")
    await write_story(pool, "PAY_B")
    await visible_ids(pool, None, 8)
    first, second = RecordingEnqueuer(), RecordingEnqueuer()
    assert await enqueue_due_notifications(pool, first, settings) == 2  # type: ignore[arg-type]
    assert sorted(first.subjects) == ["PAY_A", "PAY_B"]  # one message per subject, not per event
    assert await enqueue_due_notifications(pool, second, settings) == 0  # type: ignore[arg-type]


async def test_no_webhook_url_means_no_sweep(pool: asyncpg.Pool, database_url: str) -> None:
    settings = delivery_settings(database_url, "http://127.0.0.1:9/hooks", new_secret())
    unset = settings.model_copy(update={"notify_webhook_url": None})
    await write_story(pool, "PAY_A")
    enqueue = RecordingEnqueuer()
    assert await enqueue_due_notifications(pool, enqueue, unset) == 0  # type: ignore[arg-type]
    assert enqueue.subjects == []


@pytest.mark.parametrize("args, kwargs", [((), {}), ((42,), {}), ((), {"subject": "PAY_A"}), (("",), {})])
def test_a_malformed_message_is_refused(args: tuple, kwargs: dict) -> None:
    with pytest.raises(InvalidRequest):
        subject_id_message(args, kwargs)
