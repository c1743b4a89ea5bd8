"""`payments schema`: the machine-readable contracts, the queue messages' JSON Schemas and the OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

import click


def _print(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@click.group()
def schema() -> None:
    """Print the JSON Schemas of the queue messages, or the HTTP API's OpenAPI document.

    \b
    Examples:
      payments schema messages
      payments schema messages create_payment
      payments schema openapi > openapi.json
    """


@schema.command()
@click.argument("actor", required=False)
def messages(actor: str | None) -> None:
    """The JSON Schema of each actor's message (queue and actor names included), or of ACTOR's only.

    Each schema describes the whole message as it sits in Redis, arguments by name in `kwargs`.

    \b
    Examples:
      payments schema messages > message-schemas.json
      payments schema messages request_withdrawal
    """
    from workers.contract import message_schemas

    schemas = message_schemas()
    if actor is None:
        _print(schemas)
    elif actor in schemas:
        _print(schemas[actor])
    else:
        raise click.BadParameter(f"no actor {actor!r}; the actors are: {', '.join(schemas)}", param_hint="ACTOR")


@schema.command()
def openapi() -> None:
    """The OpenAPI 3.1 document of the HTTP API (what `web` serves at /openapi.json).

    \b
    Examples:
      payments schema openapi > openapi.json
    """
    from entrypoints.web.openapi import openapi_document

    _print(openapi_document())
