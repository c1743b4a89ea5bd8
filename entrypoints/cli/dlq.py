"""`payments dlq`: the messages dramatiq dead-lettered on a queue: list, show, replay, purge.

Replaying is safe because every stage is idempotent: a message that already did its work does
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import redis

from entrypoints.cli.common import emit_json, emit_table, json_option, settings
from workers.dead_letters import QUEUES, DeadLetter, DeadLetters

queue_argument = click.argument("queue", metavar="QUEUE", type=click.Choice(QUEUES))


@click.group()
def dlq() -> None:
    """Inspect and act on dead-lettered messages (kept 7 days by dramatiq), one queue at a time.

    QUEUE is one of create-payment, poll-status, settle-deposit, process-withdrawal. Keys are read
    under BROKER_NAMESPACE (default "dramatiq"): <namespace>:<queue>.XQ and .XQ.msgs.

    \b
    Examples:
      payments dlq list create-payment
      payments dlq replay create-payment 6c1f0d3e-5d0c-4b8e-9f4e-1b2a3c4d5e6f
    """


@contextmanager
def _dead_letters(queue: str) -> Iterator[DeadLetters]:
    config = settings()
    if config.uses_rabbitmq:  # RabbitMQ keeps dead letters in <queue>.XQ queues: use its own tools there
        raise click.UsageError("`payments dlq` reads Redis dead letters; BROKER_URL points at RabbitMQ")
    client = redis.Redis.from_url(config.broker_dsn, **config.redis_options)
    try:
        yield DeadLetters(client, config.broker_namespace, queue)
    finally:
        client.close()


def _summary(letter: DeadLetter) -> dict[str, object]:
    return {
        "message_id": letter.message_id,
        "queue": letter.queue,
        "dead_lettered_at": letter.dead_lettered_at,
        "actor": letter.actor,
        "retries": letter.retries,
        **letter.arguments,
    }


@dlq.command(name="list")
@queue_argument
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@json_option
def list_(queue: str, limit: int, as_json: bool) -> None:
    """List a queue's dead letters, oldest first.

    \b
    Examples:
      payments dlq list create-payment
      payments dlq list settle-deposit --json
    """
    with _dead_letters(queue) as letters:
        found, total = letters.list(limit), letters.count()
    if as_json:
        emit_json({"queue": queue, "total": total, "messages": [_summary(letter) for letter in found]})
        return
    rows = [(x.message_id, x.dead_lettered_at, x.actor, x.retries, _arguments(x)) for x in found]
    emit_table(("message id", "dead-lettered (UTC)", "actor", "retries", "arguments"), rows, empty=f"{queue}: none")
    if total > len(found):
        click.echo(f"... and {total - len(found)} more (--limit)", err=True)


def _arguments(letter: DeadLetter) -> str:
    if letter.body is None:
        return f"undecodable: {letter.raw[:60]}"
    args = letter.arguments
    text = ", ".join([*map(repr, args["args"]), *(f"{k}={v!r}" for k, v in args["kwargs"].items())])
    return text if len(text) <= 100 else text[:97] + "..."


@dlq.command()
@queue_argument
@click.argument("message_id")
@json_option
def show(queue: str, message_id: str, as_json: bool) -> None:
    """Show one dead letter whole: when it died and the message as it sits in Redis.

    \b
    Example:
      payments dlq show create-payment 6c1f0d3e-5d0c-4b8e-9f4e-1b2a3c4d5e6f
    """
    with _dead_letters(queue) as letters:
        letter = letters.get(message_id)
    if as_json:
        emit_json({**_summary(letter), "message": letter.body, "raw": None if letter.body else letter.raw})
        return
    click.echo(f"{letter.message_id} on {queue}, dead-lettered {letter.dead_lettered_at:%Y-%m-%d %H:%M:%S} UTC")
    click.echo(f"  actor {letter.actor}, retries {letter.retries}")
    click.echo(f"  message: {letter.raw}")


@dlq.command()
@queue_argument
@click.argument("message_ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter of the queue.")
def replay(queue: str, message_ids: tuple[str, ...], replay_all: bool) -> None:
    """Put dead letters back on their queue, with a fresh retry budget.

    Safe to repeat: a message already replayed is no longer a dead letter (exit 4), and every
    stage does nothing for work already done.

    \b
    Examples:
      payments dlq replay settle-deposit 6c1f0d3e-5d0c-4b8e-9f4e-1b2a3c4d5e6f
      payments dlq replay poll-status --all
    """
    if bool(message_ids) == replay_all:
        raise click.UsageError("name the message ids to replay, or give --all (not both)")
    with _dead_letters(queue) as letters:
        ids = list(message_ids) or [letter.message_id for letter in letters.list(limit=letters.count() or 1)]
        for message_id in ids:
            letter = letters.replay(message_id)
            click.echo(f"{letter.message_id} replayed onto {queue} ({letter.actor})")


@dlq.command()
@queue_argument
@click.argument("message_ids", nargs=-1)
@click.option("--yes", is_flag=True, help="Confirm: the messages are deleted for good.")
def purge(queue: str, message_ids: tuple[str, ...], yes: bool) -> None:
    """Delete dead letters for good: the given ones, or all of the queue's. Needs --yes.

    \b
    Examples:
      payments dlq purge create-payment 6c1f0d3e-5d0c-4b8e-9f4e-1b2a3c4d5e6f --yes
      payments dlq purge create-payment --yes
    """
    if not yes:
        what = f"{len(message_ids)} dead letter(s)" if message_ids else f"every dead letter of {queue}"
        raise click.UsageError(f"this deletes {what} for good: add --yes")
    with _dead_letters(queue) as letters:
        deleted = letters.purge(list(message_ids) if message_ids else None)
    click.echo(f"{deleted} dead letter(s) purged from {queue}")
