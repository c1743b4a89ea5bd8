"""`payments events replay --since …`: send notification events again from an event or a time on."""

from __future__ import annotations

import click

from entrypoints.cli.common import emit_json, json_option, with_pool


@click.group()
def events() -> None:
    """Notification events (the outbox behind the webhooks and GET /v1/events).

    \b
    Examples:
      payments events replay --since 2025-01-14T12:00:00Z
    """


@events.command()
@click.option("--since", required=True, help="An event id (evt_…) or an ISO 8601 time (UTC unless an offset is given).")
@json_option
def replay(since: str, as_json: bool) -> None:
    """Make every committed event from SINCE on pending again; delivery sends them anew, same ids, in order.

    \b
    Examples:
      payments events replay --since evt_3k0v9d2m1q8x7c4b6n5a0z1y
      payments events replay --since 2025-01-14T12:00:00Z
    """
    from services.replay_events import replay_events

    report = with_pool(lambda pool: replay_events(pool, since))
    if as_json:
        emit_json({"events": report.events, "subjects": report.subjects})
        return
    click.echo(f"{report.events} events of {report.subjects} subjects will be sent again")
