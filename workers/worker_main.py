"""Module the dramatiq CLI loads in each worker process: `dramatiq workers.worker_main`.

Reads the environment, builds the broker (Redis or RabbitMQ) with the worker runtime, declares the
actors, consumes the settle-deposit and create-payment queues in groups (on Redis), and makes repeated stop signals
harmless (workers/stopping.py).
"""

from __future__ import annotations

from entrypoints.logs import configure_logging
from settings import load_settings
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.create_group import install_group_creation
from workers.notification_actors import declare_notification_actors
from workers.runtime import StageRuntime
from workers.settle_group import install_group_settlement
from workers.stopping import guard_stop_signals

settings = load_settings()
configure_logging(settings)
broker = build_broker(settings, runtime=StageRuntime(settings), metrics=settings.worker_metrics_port is not None)
actors = declare_actors(broker)
install_group_settlement(broker, settings)
install_group_creation(broker, settings)
notification_actor = declare_notification_actors(broker)
guard_stop_signals()
