"""JSON as the gateway speaks it, with money kept exact.

Reading: every non-integer number becomes a `Decimal` built from its text; NaN and
Infinity (which Python's json accepts by default) are refused.
Writing: `Decimal` values go out as JSON numbers spelled with their exact digits, never
through float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def dumps(value: Any) -> str:
    """Compact JSON; `Decimal` written as a number from its exact decimal text."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        out.append(decimal_text(value))
    elif isinstance(value, float):
        raise TypeError("floats are not written to gateway JSON; use Decimal")
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} to JSON")
