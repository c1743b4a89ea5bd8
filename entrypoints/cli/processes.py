"""The long-running processes of the Procfile, plus the release step, the simulator and the demo."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import click

from entrypoints.cli.common import run, settings
from entrypoints.logs import configure_logging
from settings import Settings, SettingsError

WORKER_SHUTDOWN_TIMEOUT_MS = 25_000  # platforms kill 30 s after SIGTERM


@click.command()
def migrate() -> None:
    """Apply the database migrations not applied yet (`payments release` does this first).

    Safe to run on every deploy and from several places at once: an advisory lock lets one apply.

    \b
    Example:
      payments migrate
    """
    from entrypoints.startup import open_database
    from storage.migrate import migrate as apply_migrations

    config = settings()

    async def apply() -> list[str]:
        conn = await open_database(config)
        try:
            return await apply_migrations(conn)
        finally:
            await conn.close()

    applied = run(apply())
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@click.command()
def release() -> int:
    """The release phase: apply migrations, then load the currency catalogue from the gateway.

    A failed catalogue sync keeps an existing catalogue (logged); with none at all the release fails,
    since every deposit would be refused as an unknown currency.

    \b
    Example:
      payments release
    """
    from entrypoints.release import release as run_release

    return run_release(settings())


@click.command()
def web() -> None:
    """Serve the IPN endpoints, the JSON API, /healthz and /metrics on $PORT.

    \b
    Example:
      PORT=8000 payments web
    """
    from entrypoints.startup import run_web

    run_web(settings())


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dramatiq_args", nargs=-1, type=click.UNPROCESSED)
def worker(dramatiq_args: tuple[str, ...]) -> int:
    """Run the dramatiq workers over every actor (WORKER_PROCESSES x WORKER_THREADS).

    Extra arguments go to the dramatiq CLI, e.g. -Q to consume only some queues. With
    WORKER_METRICS_PORT set, message counts, durations and failures by actor are served there.

    \b
    Examples:
      payments worker
      payments worker -Q poll-status
    """
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from entrypoints.startup import check_services

    config = settings()
    config.require("nowpayments_api_key")
    check_services(config)
    argv = [
        "workers.worker_main",
        "--processes",
        str(config.worker_processes),
        "--threads",
        str(config.worker_threads),
        "--worker-shutdown-timeout",
        str(WORKER_SHUTDOWN_TIMEOUT_MS),
        # dramatiq's launcher waits this long for a "ready" signal that a child dying at boot never sends;
        # the only process we fork is the metrics server, so a short wait only makes a failed boot exit sooner.
        "--worker-fork-timeout",
        "1000",
        "--skip-logging",
        *dramatiq_args,
    ]
    # The dramatiq launcher runs in this process rather than exec'd, so its own log lines go through
    # our logging setup (one JSON object per line); --skip-logging keeps it from adding a plain one.
    os.environ.update(_worker_environment(config))
    return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)


def _worker_environment(config: Settings) -> dict[str, str]:
    """The environment for dramatiq, with its Prometheus middleware's settings when metrics are on.

    The middleware reads its port and its multiprocess directory from the environment of the
    dramatiq parent, which forks the server. The directory is named after the port (only one worker
    can hold a port) and emptied here, so a restart starts counting from zero and two workers on one
    machine never share files.
    """
    env = dict(os.environ)
    if config.worker_metrics_port is None:
        return env
    directory = Path(tempfile.gettempdir()) / f"payments-worker-metrics-{config.worker_metrics_port}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    env.update(
        dramatiq_prom_port=str(config.worker_metrics_port),
        dramatiq_prom_host=config.worker_metrics_host,
        dramatiq_prom_db=str(directory),
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    return env


@click.command()
def scheduler() -> None:
    """Enqueue due polls, expiry checks, payout checks and lost settlements, every PAYMENTS_SCHEDULER_TICK.

    Every second (on a timer of its own, whatever the tick) it also puts the messages of worker
    processes that died (no heartbeat for 5 s) back at the head of their queues.

    Any number may run: they never claim the same payment.

    \b
    Example:
      payments scheduler
    """
    from entrypoints.scheduler import run_scheduler
    from entrypoints.startup import check_services
    from workers.actors import declare_actors
    from workers.broker import PaymentsRedisBroker, build_broker
    from workers.enqueue import ActorEnqueuer
    from workers.recovery import SWEEP_INTERVAL_S, DeadWorkerSweeper

    config = settings()
    check_services(config)
    broker = build_broker(config)
    declare_actors(broker)
    sweep = None
    if isinstance(broker, PaymentsRedisBroker):  # RabbitMQ redelivers a dead consumer's messages itself
        sweep = DeadWorkerSweeper(broker).sweep
    run(run_scheduler(config, ActorEnqueuer(broker), requeue_dead_workers=sweep, sweep_interval_s=SWEEP_INTERVAL_S))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=lambda: int(os.environ.get("SIMULATOR_PORT", "8090")), show_default="8090")
@click.option("--auto-advance", type=float, default=None, help="Seconds between automatic status steps.")
@click.option("--payment-lifetime", type=float, default=1200.0, show_default=True, help="Seconds a payment lives.")
@click.option("--seed", type=int, default=None, help="Seed of the fault and IPN-delivery draws.")
def simulator(host: str, port: int, auto_advance: float | None, payment_lifetime: float, seed: int | None) -> None:
    """Run the offline NOWPayments simulator (signs IPNs with NOWPAYMENTS_IPN_SECRET).

    \b
    Example:
      NOWPAYMENTS_IPN_SECRET=dev payments simulator --port 8090 --auto-advance 2
    """
    from gateway.simulator import SimulatorConfig, serve

    configure_logging(level=os.environ.get("LOG_LEVEL", "INFO"), fmt=os.environ.get("LOG_FORMAT", "console"))
    secret = os.environ.get("NOWPAYMENTS_IPN_SECRET")
    if not secret:
        raise SettingsError("NOWPAYMENTS_IPN_SECRET is required for the simulator (it signs IPNs with it)")
    config = SimulatorConfig(
        ipn_secret=secret,
        api_key=os.environ.get("NOWPAYMENTS_API_KEY"),
        auto_advance_seconds=auto_advance,
        payment_lifetime_seconds=payment_lifetime,
        seed=seed,
        payout_email=os.environ.get("NOWPAYMENTS_EMAIL"),
        payout_password=os.environ.get("NOWPAYMENTS_PASSWORD"),
    )
    serve(config, host, port)


@click.command()
@click.option("--keep-running", is_flag=True, help="Leave the processes up after the demo.")
def demo(keep_running: bool) -> int:
    """Run the whole pipeline end to end, offline by default (see scripts/demo).

    \b
    Example:
      payments demo --keep-running
    """
    from entrypoints.demo import run_demo

    return run_demo(keep_running=keep_running)


COMMANDS = (release, migrate, web, worker, scheduler, simulator, demo)
