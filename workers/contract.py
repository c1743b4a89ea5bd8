"""The message contract as data: each actor's queue and message model, and its JSON Schema.

`payments schema messages` prints these schemas and docs/message-schemas.json holds them, so a
system in any language can validate what it writes into Redis. They come from the same pydantic
models the actors validate with (services/commands.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from services.commands import (
    CreatePaymentRequest,
    NotificationMessage,
    PaymentMessage,
    WithdrawalMessage,
    WithdrawalRequest,
)
from workers.actors import QUEUE_CREATE_PAYMENT, QUEUE_POLL_STATUS, QUEUE_PROCESS_WITHDRAWAL, QUEUE_SETTLE_DEPOSIT
from workers.enqueue import ACTOR_DELIVER_NOTIFICATIONS, QUEUE_DELIVER_NOTIFICATIONS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class ActorContract:
    actor: str
    queue: str
    model: type[BaseModel]
    sent_by: str  # who normally sends it: "you" (other systems) or "pipeline" (our own stages)


CONTRACT: tuple[ActorContract, ...] = (
    ActorContract("create_payment", QUEUE_CREATE_PAYMENT, CreatePaymentRequest, "you"),
    ActorContract("request_withdrawal", QUEUE_PROCESS_WITHDRAWAL, WithdrawalRequest, "you"),
    ActorContract("poll_status", QUEUE_POLL_STATUS, PaymentMessage, "pipeline"),
    ActorContract("settle_deposit", QUEUE_SETTLE_DEPOSIT, PaymentMessage, "pipeline"),
    ActorContract("process_withdrawal", QUEUE_PROCESS_WITHDRAWAL, WithdrawalMessage, "pipeline"),
    ActorContract(ACTOR_DELIVER_NOTIFICATIONS, QUEUE_DELIVER_NOTIFICATIONS, NotificationMessage, "pipeline"),
)


def _argument_forms(contract: ActorContract, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """By name (``args`` empty, ``kwargs`` the model) or by position (``args`` in field order, ``kwargs`` empty)."""
    order = list(contract.model.model_fields)
    required = [i for i, name in enumerate(order) if contract.model.model_fields[name].is_required()]
    by_name = {"properties": {"args": {"maxItems": 0}, "kwargs": {"$ref": f"#/$defs/{contract.model.__name__}"}}}
    positional = {
        "prefixItems": [arguments["properties"][name] for name in order],
        "minItems": max(required, default=-1) + 1,
        "maxItems": len(order),
    }
    by_position = {"properties": {"args": positional, "kwargs": {"maxProperties": 0}}}
    return [by_name, by_position]


def message_schema(contract: ActorContract) -> dict[str, Any]:
    """The JSON Schema of the whole message as it sits in Redis (``dramatiq:<queue>.msgs``)."""
    arguments = contract.model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    definitions = arguments.pop("$defs", {})
    names = ", ".join(contract.model.model_fields)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": f"{contract.actor} (queue {contract.queue})",
        "description": f"{(contract.model.__doc__ or '').strip()} Arguments go by name in `kwargs` (preferred), "
        f"or by position in `args` in this order: {names}.",
        "type": "object",
        "required": ["queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp"],
        "properties": {
            "queue_name": {"const": contract.queue},
            "actor_name": {"const": contract.actor},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "options": {
                "type": "object",
                "properties": {"redis_message_id": {"type": "string", "description": "the same id as message_id"}},
            },
            "message_id": {"type": "string", "description": "a fresh UUID, also the key in <queue>.msgs"},
            "message_timestamp": {"type": "integer", "description": "milliseconds since the epoch"},
        },
        "oneOf": _argument_forms(contract, arguments),
        "$defs": {**definitions, contract.model.__name__: arguments},
    }


def message_schemas() -> dict[str, Any]:
    """Every actor's message schema, by actor name, in the order of the contract."""
    return {contract.actor: message_schema(contract) for contract in CONTRACT}
