"""structlog setup: JSON lines for machines, or readable console output for people.

Every value echoed into a log line is capped at MAX_LOGGED_VALUE characters (with the original length),
in both places lines come from: our structlog events (a processor) and the standard library's records,
where dramatiq formats whole messages into its lines (a record factory capping the arguments).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

from settings import Settings

MAX_LOGGED_VALUE = 200
MAX_LOGGED_TRACEBACK = 20_000  # a traceback is worth keeping whole, up to a point


def capped(text: str, limit: int = MAX_LOGGED_VALUE) -> str:
    """``text`` itself, or its first ``limit`` characters, an ellipsis and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def _capped_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return capped(value)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else repr(value)
    return value if len(text) <= MAX_LOGGED_VALUE and not isinstance(value, bytes | bytearray) else capped(text)


def cap_long_values(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: no value in an event is longer than MAX_LOGGED_VALUE characters (tracebacks longer)."""
    for key, value in event_dict.items():
        if key == "exception" and isinstance(value, str):
            event_dict[key] = capped(value, MAX_LOGGED_TRACEBACK)
        else:
            event_dict[key] = _capped_value(value)
    return event_dict


def _capped_argument(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value  # never long, and %d / %f need them as they are
    text = str(value)
    return capped(text) if len(text) > MAX_LOGGED_VALUE else value


def _capping_record_factory(make_record: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if isinstance(record.args, Mapping):
            record.args = {key: _capped_argument(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_capped_argument(value) for value in record.args)
        elif isinstance(record.msg, str):
            record.msg = capped(record.msg, MAX_LOGGED_TRACEBACK)
        return record

    factory.caps_values = True  # type: ignore[attr-defined]
    return factory


def cap_standard_library_records() -> None:
    """Cap the arguments of every standard-library log record (once per process)."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "caps_values", False):
        logging.setLogRecordFactory(_capping_record_factory(current))


def configure_logging(settings: Settings | None = None, *, level: str | None = None, fmt: str | None = None) -> None:
    level = (level or (settings.log_level if settings else "INFO")).upper()
    fmt = fmt or (settings.log_format if settings else "json")
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            cap_long_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    cap_standard_library_records()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr, format="%(message)s")
