"""The published message contract: one schema per declared actor, on its queue, the same as docs/ holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dramatiq.brokers.stub import StubBroker
from jsonschema import Draft202012Validator

from workers.actors import declare_actors
from workers.contract import CONTRACT, message_schemas
from workers.notification_actors import declare_notification_actors

ROOT = Path(__file__).resolve().parents[3]


def test_every_declared_actor_has_its_schema_on_its_own_queue() -> None:
    broker = StubBroker()
    try:
        actors = declare_actors(broker)
        declared = {name: getattr(actors, name).queue_name for name in actors.__dataclass_fields__}
        notifications = declare_notification_actors(broker)
        declared[notifications.actor_name] = notifications.queue_name
    finally:
        broker.close()
    assert {c.actor: c.queue for c in CONTRACT} == declared
    for schema in message_schemas().values():
        Draft202012Validator.check_schema(schema)


def test_the_schemas_accept_the_readme_example_and_refuse_what_the_actors_refuse() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.search(r'```json\n(\{\n  "queue_name": "create-payment".*?)\n```', readme, re.S)
    assert example is not None, "the README's raw create_payment message"
    message = json.loads(example.group(1).replace('"<id>"', '"5f0c3a1e-0000-4000-8000-000000000001"'))
    validator = Draft202012Validator(message_schemas()["create_payment"])
    assert not list(validator.iter_errors(message))
    for bad_kwargs in (
        {**message["kwargs"], "amount_usd": 25.0},  # a JSON number, not a decimal string
        {**message["kwargs"], "amount_usd": "25.001"},
        {**message["kwargs"], "unknown": "x"},
        {key: value for key, value in message["kwargs"].items() if key != "request_id"},
    ):
        assert list(validator.iter_errors({**message, "kwargs": bad_kwargs})), bad_kwargs
    assert list(validator.iter_errors({**message, "queue_name": "poll-status"}))


def test_docs_hold_the_schemas_the_code_makes() -> None:
    published = json.loads((ROOT / "docs" / "message-schemas.json").read_text(encoding="utf-8"))
    assert published == message_schemas(), "regenerate: payments schema messages > docs/message-schemas.json"
