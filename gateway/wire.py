"""JSON as the gateway speaks it, with money kept exact.

Reading: every non-integer number becomes a `Decimal` built from its text; NaN and
Infinity (which Python's json accepts by default) are refused.
Writing: `Decimal` values go out as JSON numbers spelled with their exact digits, never
through float.
`write` is the one JSON walk; a `Dialect` says how strings, numbers and object keys are
spelled (`gateway.signature` uses it for JavaScript's canonical form).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON with `parse_float=Decimal`; integers stay `int`. Raises `ValueError`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)


def decimal_text(value: Decimal) -> str:
    """Plain positional text of a finite Decimal (``Decimal("1E-7")`` → ``"0.0000001"``)."""
    if not value.is_finite():
        raise ValueError("non-finite numbers cannot be written to JSON")
    text = format(value, "f")
    return "0" if text == "-0" else text


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one spelling of JSON writes what differs between spellings; `write` walks the rest.

    `quote` writes a string (values and object keys), `number` an int, float or Decimal
    (bools are not numbers here), `keys` gives an object's keys in the order they are
    written, refusing any that is not a string, and `unwritable` is the message for any
    other type, with ``{}`` for the type's name.
    """

    quote: Callable[[str], str]
    number: Callable[[int | float | Decimal], str]
    keys: Callable[[Mapping[Any, Any]], Iterable[str]]
    unwritable: str


def write(value: Any, dialect: Dialect) -> str:
    """Compact JSON of `value` (None, bool, str, numbers, Mappings, lists and tuples)."""
    parts: list[str] = []
    _walk(value, dialect, parts)
    return "".join(parts)


def _walk(value: Any, dialect: Dialect, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(dialect.quote(value))
    elif isinstance(value, int | float | Decimal):
        out.append(dialect.number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, key in enumerate(dialect.keys(value)):
            if index:
                out.append(",")
            out.append(dialect.quote(key))
            out.append(":")
            _walk(value[key], dialect, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _walk(item, dialect, out)
        out.append("]")
    else:
        raise TypeError(dialect.unwritable.format(type(value).__name__))


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _exact_number(value: int | float | Decimal) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return decimal_text(value)
    raise TypeError("floats are not written to gateway JSON; use Decimal")


def _insertion_order(mapping: Mapping[Any, Any]) -> Iterator[str]:
    # Checked one by one as they are written, so the first problem met is the one reported.
    for key in mapping:
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
        yield key


_GATEWAY = Dialect(quote=_quote, number=_exact_number, keys=_insertion_order, unwritable="cannot write {} to JSON")


def dumps(value: Any) -> str:
    """Compact JSON; `Decimal` written as a number from its exact decimal text."""
    return write(value, _GATEWAY)
