"""The dead-letter queues dramatiq's Redis broker keeps: read them, put a message back, or delete it.

Layout (dramatiq 2.2.1, ``brokers/redis/dispatch.lua``): a dead-lettered message's id sits in the
sorted set ``<namespace>:<queue>.XQ`` scored by when it died (ms), its body in the hash
``<namespace>:<queue>.XQ.msgs``. A queue is the list ``<namespace>:<queue>`` of ids plus the hash
``<namespace>:<queue>.msgs`` of bodies. Replay and purge are single Lua scripts, so a message is
moved or deleted once even when two operators run the command at the same moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from domain.errors import InvalidRequest
from workers.actors import QUEUE_CREATE_PAYMENT, QUEUE_POLL_STATUS, QUEUE_PROCESS_WITHDRAWAL, QUEUE_SETTLE_DEPOSIT
from workers.enqueue import QUEUE_DELIVER_NOTIFICATIONS

QUEUES = (
    QUEUE_CREATE_PAYMENT,
    QUEUE_POLL_STATUS,
    QUEUE_SETTLE_DEPOSIT,
    QUEUE_PROCESS_WITHDRAWAL,
    QUEUE_DELIVER_NOTIFICATIONS,
)

# KEYS: XQ, XQ.msgs, queue, queue.msgs; ARGV: id, body to enqueue. 1 if moved, 0 if it was not dead-lettered.
_REPLAY = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('hdel', KEYS[2], ARGV[1])
redis.call('hset', KEYS[4], ARGV[1], ARGV[2])
redis.call('rpush', KEYS[3], ARGV[1])
return 1
"""

# KEYS: XQ, XQ.msgs; ARGV: ids. The number of dead letters deleted.
_PURGE = """
local removed = 0
for _, id in ipairs(ARGV) do
    if redis.call('zrem', KEYS[1], id) == 1 then removed = removed + 1 end
    redis.call('hdel', KEYS[2], id)
end
return removed
"""


class DeadLetterNotFound(LookupError):
    """Raised when a message id is not (or no longer) in a queue's dead letters."""


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    queue: str
    dead_lettered_at: datetime
    body: dict[str, Any] | None  # None when the body is not a JSON object (it was dead-lettered undecodable)
    raw: str

    @property
    def actor(self) -> str:
        return str(self.body.get("actor_name", "?")) if self.body else "?"

    @property
    def arguments(self) -> dict[str, Any]:
        if not self.body:
            return {}
        return {"args": self.body.get("args", []), "kwargs": self.body.get("kwargs", {})}

    @property
    def retries(self) -> int:
        return int((self.body or {}).get("options", {}).get("retries", 0))


class DeadLetters:
    """One queue's dead letters under one broker namespace."""

    def __init__(self, client: redis.Redis, namespace: str, queue: str) -> None:
        self.client = client
        self.queue = queue
        self.queue_key = f"{namespace}:{queue}"
        self.key = f"{self.queue_key}.XQ"

    def list(self, limit: int = 100) -> list[DeadLetter]:
        """Oldest first."""
        pairs = self.client.zrange(self.key, 0, limit - 1, withscores=True)
        ids = [_text(member) for member, _ in pairs]
        bodies = self.client.hmget(f"{self.key}.msgs", ids) if ids else []
        return [
            _dead_letter(self.queue, message_id, score, body)
            for (message_id, (_, score), body) in zip(ids, pairs, bodies, strict=True)
            if body is not None
        ]

    def count(self) -> int:
        return int(self.client.zcard(self.key))

    def get(self, message_id: str) -> DeadLetter:
        score = self.client.zscore(self.key, message_id)
        body = self.client.hget(f"{self.key}.msgs", message_id)
        if score is None or body is None:
            raise DeadLetterNotFound(f"no dead letter {message_id!r} in {self.queue}")
        return _dead_letter(self.queue, message_id, score, body)

    def replay(self, message_id: str) -> DeadLetter:
        """Put the message back on its queue with a fresh retry budget; the stages make running it again safe."""
        letter = self.get(message_id)
        if letter.body is None:
            raise InvalidRequest(f"dead letter {message_id!r} is not a message dramatiq can decode: purge it")
        body = dict(letter.body)
        options = {key: value for key, value in body.get("options", {}).items() if key not in ("retries", "traceback")}
        body["options"] = {**options, "redis_message_id": message_id}
        keys = [self.key, f"{self.key}.msgs", self.queue_key, f"{self.queue_key}.msgs"]
        if not self.client.eval(_REPLAY, len(keys), *keys, message_id, json.dumps(body, separators=(",", ":"))):
            raise DeadLetterNotFound(f"no dead letter {message_id!r} in {self.queue} (replayed or purged meanwhile)")
        return letter

    def purge(self, message_ids: list[str] | None = None) -> int:
        """Delete the given dead letters, or all of them; returns how many were deleted."""
        ids = message_ids if message_ids is not None else [_text(m) for m in self.client.zrange(self.key, 0, -1)]
        if not ids:
            return 0
        return int(self.client.eval(_PURGE, 2, self.key, f"{self.key}.msgs", *ids))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _dead_letter(queue: str, message_id: str, score: float, raw: bytes | str) -> DeadLetter:
    text = _text(raw) if isinstance(raw, str) else raw.decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return DeadLetter(
        message_id=message_id,
        queue=queue,
        dead_lettered_at=datetime.fromtimestamp(score / 1000, UTC),
        body=body if isinstance(body, dict) else None,
        raw=text,
    )
