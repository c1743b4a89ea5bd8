"""structlog setup: JSON lines for machines, or readable console output for people.

Libraries log through the standard library (dramatiq, aiohttp, asyncio, warnings); their records go
through the same structlog processors and renderer, so with LOG_FORMAT=json every line a process
writes is one JSON object, tracebacks included (as a field, not as extra lines).

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


_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _OursHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the root handler we installed, so configuring again replaces it instead of adding a second."""


def _renderer(fmt: str) -> Any:
    return structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)


def _standard_library_handler(fmt: str) -> logging.Handler:
    """A stderr handler rendering stdlib records with our processors and renderer."""
    handler = _OursHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED_PROCESSORS, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                cap_long_values,
                _renderer(fmt),
            ],
        )
    )
    return handler


def configure_logging(settings: Settings | None = None, *, level: str | None = None, fmt: str | None = None) -> None:
    level = (level or (settings.log_level if settings else "INFO")).upper()
    fmt = fmt or (settings.log_format if settings else "json")
    numeric_level = getattr(logging, level, logging.INFO)
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.processors.format_exc_info, cap_long_values, _renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    cap_standard_library_records()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OursHandler) or type(h) is logging.StreamHandler]:
        root.removeHandler(old)  # ours from an earlier call, or basicConfig's
    root.addHandler(_standard_library_handler(fmt))
    root.setLevel(numeric_level)
    logging.captureWarnings(True)  # Python warnings are log lines too, not bare multi-line text
