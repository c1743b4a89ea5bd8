"""Strict pydantic models for what other systems send us, and their errors as `InvalidRequest`.

A queue message and an HTTP body are validated by the same model (`StrictModel.from_message`,
`StrictModel.from_body`); the same models later produce the JSON Schemas and the OpenAPI document.
Every refusal names the field and says what is wrong with it, in the words the message contract
documents, and never echoes more than a short prefix of what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from domain.errors import InvalidRequest
from domain.money import parse_usd

MAX_REF_LENGTH = 128
MAX_DESCRIPTION_LENGTH = 500
MAX_AMOUNT_TEXT = 64
MAX_ERRORS_SHOWN = 5
MAX_ECHO = 60


def shown(value: Any) -> str:
    """``repr(value)``, cut short: what an error may echo of a caller's input."""
    text = repr(value)
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def _refuse(code: str, reason: str) -> PydanticCustomError:
    # The reason goes in as context, never as the template, so braces in the input stay inert.
    return PydanticCustomError(code, "{reason}", {"reason": reason})


def _printable(text: str) -> str:
    if not text.isprintable():
        raise _refuse("control_characters", "must not contain control characters")
    return text


def _currency_code(value: str) -> str:
    code = value.strip().lower()
    if not (2 <= len(code) <= 20 and code.isascii() and code.isalnum()):
        raise _refuse("currency_code", f"{shown(value)} is not a currency code")
    return code


def _usd_amount(value: Any) -> Decimal:
    if isinstance(value, Decimal):  # in-process callers; JSON never produces one
        value = format(value, "f")
    if isinstance(value, str) and len(value) > MAX_AMOUNT_TEXT:
        raise _refuse("decimal_string", f"must be at most {MAX_AMOUNT_TEXT} characters")
    try:
        return parse_usd(value)
    except InvalidRequest as exc:
        raise _refuse("decimal_string", exc.reason) from None


def _none_as_empty(value: Any) -> Any:
    return "" if value is None else value


Reference = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_REF_LENGTH),
    AfterValidator(_printable),
]
"""An opaque id from the caller (request id, user id, payment id): non-empty printable text, bounded."""

CurrencyCode = Annotated[
    str,
    AfterValidator(_currency_code),
    WithJsonSchema({"type": "string", "pattern": "^\\s*[A-Za-z0-9]{2,20}\\s*$", "examples": ["btc", "usdttrc20"]}),
]
"""A coin's ticker as NOWPayments names it, any case; kept in lower case."""

UsdAmount = Annotated[
    Decimal,
    PlainValidator(_usd_amount),
    PlainSerializer(lambda amount: format(amount, "f"), return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": "^(0|[1-9][0-9]{0,14})(\\.[0-9]{1,2})?$", "examples": ["25.00"]},
        mode="validation",
    ),
]
"""A positive USD amount as a decimal string (``"25.50"``): never a JSON number, at most two places."""

Description = Annotated[
    str,
    StringConstraints(max_length=MAX_DESCRIPTION_LENGTH),
    BeforeValidator(_none_as_empty),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": MAX_DESCRIPTION_LENGTH}, {"type": "null"}]}, mode="validation"
    ),
]
"""Free text shown to the user; null means none."""


def bind_arguments(names: Sequence[str], args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Map a message's positional ``args`` onto ``names`` in order and merge its ``kwargs``."""
    if len(args) > len(names):
        raise InvalidRequest(f"expected at most {len(names)} arguments, got {len(args)}")
    bound = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in bound:
            raise InvalidRequest(f"argument {shown(key)} given twice")
        bound[key] = value
    return bound


class StrictModel(BaseModel):
    """Base of every message and request body: unknown fields refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @classmethod
    def from_message(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        """Validate a queue message's ``args`` (in the documented order) and ``kwargs``."""
        return cls._validated(bind_arguments(tuple(cls.model_fields), args, kwargs), noun="argument")

    @classmethod
    def from_body(cls, body: Any) -> Self:
        """Validate a decoded JSON request body."""
        if not isinstance(body, dict):
            raise InvalidRequest("body must be a JSON object")
        return cls._validated(body, noun="field")

    @classmethod
    def _validated(cls, data: Mapping[str, Any], *, noun: str) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _as_invalid_request(cls, exc, noun) from None


def _reason(model: type[BaseModel], error: ErrorDetails) -> str:
    kind, given = error["type"], error.get("input")
    if kind == "string_type":
        field = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
        nullable = field is not None and not field.is_required() and field.default is None
        return f"must be a string{' or null' if nullable else ''}, got {type(given).__name__}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {error.get('ctx', {}).get('max_length')} characters"
    return error["msg"]


def _as_invalid_request(model: type[BaseModel], exc: ValidationError, noun: str) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing"]
    problems: list[tuple[str | None, str]] = []
    if missing:
        problems.append((None, f"missing required {noun}(s): {', '.join(missing)}"))
    for error in errors:
        place = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append((None, f"unexpected {noun} {shown(place)}"))
        elif error["type"] != "missing":
            problems.append((place, _reason(model, error)))
    if len(problems) == 1:
        field, reason = problems[0]
        return InvalidRequest(reason, field=field)
    lines = [f"{field}: {reason}" if field else reason for field, reason in problems[:MAX_ERRORS_SHOWN]]
    if len(problems) > MAX_ERRORS_SHOWN:
        lines.append(f"and {len(problems) - MAX_ERRORS_SHOWN} more")
    return InvalidRequest("; ".join(lines))
