"""IPN signatures: HMAC-SHA512 over what JavaScript's `JSON.stringify` prints.

NOWPayments signs the callback body with the IPN secret over `JSON.stringify` of the
body with object keys sorted recursively. Python's `json.dumps(sort_keys=True)` differs
from that for some bodies (`2e-06` vs `0.000002`, `20.0` vs `20`, `\\u00fc` vs `ü`,
`\\/`...), so `canonical_json` reimplements the JavaScript output exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import SecretStr

from gateway import wire
from gateway.errors import InvalidSignature

_SHORT_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}


def _join_surrogates(text: str) -> str:
    """Merge adjacent high+low surrogate code points into one character, as UTF-16 would."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


# A character QuoteJSONString writes other than as itself: a control, a quote, a backslash, a surrogate.
_NEEDS_ESCAPE = re.compile("[\x00-\x1f\"\\\\\ud800-\udfff]")


def _quote(text: str) -> str:
    """ECMAScript QuoteJSONString (well-formed JSON.stringify, ES2019)."""
    if _NEEDS_ESCAPE.search(text) is None:  # the common case: every character written as itself
        return f'"{text}"'
    out = ['"']
    for ch in _join_surrogates(text):
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _utf16_key(text: str) -> bytes:
    # Big-endian UTF-16 bytes compare in the same order as the sequences of code units,
    # which is how JavaScript's default sort compares strings.
    return _join_surrogates(text).encode("utf-16-be", "surrogatepass")


_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_ARRAY_INDEX = 2**32 - 2


@lru_cache(maxsize=1024)
def _cached_key_order(keys: tuple[str, ...]) -> tuple[str, ...]:
    """`_key_order` for a tuple of keys; a callback's objects repeat the same few key sets."""
    return tuple(_key_order(list(keys)))


def _key_order(keys: list[str]) -> list[str]:
    """The order JSON.stringify writes an object whose keys were inserted sorted.

    `Object.keys(obj).sort()` sorts by UTF-16 code units, but a JavaScript object always
    enumerates array-index keys ("0".."4294967294") first, in numeric order, then the
    other keys in insertion order. NOWPayments' signer rebuilds the object from the
    sorted keys, so its output follows those rules.
    """
    indices = [k for k in keys if _ARRAY_INDEX.fullmatch(k) and int(k) <= _MAX_ARRAY_INDEX]
    index_set = set(indices)
    others = [k for k in keys if k not in index_set]
    return sorted(indices, key=int) + sorted(others, key=_utf16_key)


def js_number(value: float) -> str:
    """ECMAScript Number::toString(10) for a double (the text JSON.stringify writes).

    Non-finite values become ``null``, as JSON.stringify writes them.
    """
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value == 0:
        return "0"  # also -0
    text = repr(value)
    if "e" not in text:
        # Python writes 1e-4 <= |x| < 1e16 in plain notation with the same shortest round-trip digits
        # as JavaScript (which writes 1e-6 <= |x| < 1e21 plainly); only a whole number's ".0" differs.
        return text[:-2] if text.endswith(".0") else text
    return _js_number_general(value)


def _js_number_general(value: float) -> str:
    """The general ECMAScript Number::toString(10) for a finite, non-zero double."""
    sign = "-" if value < 0 else ""
    # repr gives the shortest digit string that round-trips, which is what the
    # ECMAScript algorithm asks for (k as small as possible).
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    exponent += len(digit_tuple) - len(digits)  # account for the stripped zeros
    k = len(digits)
    n = exponent + k  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp_text = f"e+{e}" if e >= 0 else f"e-{-e}"
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + exp_text
    return sign + text


def _number_to_double(value: int | Decimal | float) -> float:
    # Signature canonicalisation only, never money: JavaScript holds every JSON number as
    # an IEEE double, so converting through float() here reproduces exactly what the
    # gateway's JSON.stringify saw. Amounts themselves stay Decimal everywhere else.
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf
    except ValueError:  # Decimal sNaN
        return math.nan


def _js_number(value: int | float | Decimal) -> str:
    return js_number(_number_to_double(value))


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[str]:
    keys = list(mapping.keys())
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"object keys must be strings, got {type(key).__name__}")
    return list(_cached_key_order(tuple(keys)))


_JAVASCRIPT = wire.Dialect(quote=_quote, number=_js_number, keys=_sorted_keys, unwritable="cannot canonicalise {}")


def canonical_json(value: Any) -> str:
    """What JavaScript's ``JSON.stringify`` prints for `value` with object keys sorted recursively.

    Input is JSON as Python holds it after ``json.loads(..., parse_float=Decimal)``:
    dict, list, str, int, Decimal (float also accepted), bool, None.
    """
    return wire.write(value, _JAVASCRIPT)


def _secret_bytes(secret: SecretStr | str) -> bytes:
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not isinstance(raw, str) or not raw:
        # A configuration problem, not a bad callback: refuse loudly (without the value).
        raise ValueError("IPN secret is not configured")
    return raw.encode("utf-8")


def sign(payload: bytes | Mapping[str, Any], secret: SecretStr | str) -> str:
    """Lowercase hex HMAC-SHA512 of `payload` (a Mapping is canonicalised first)."""
    if isinstance(payload, Mapping):
        data = canonical_json(payload).encode("utf-8")
    elif isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
    else:
        raise TypeError("payload must be bytes or a mapping")
    return hmac.new(_secret_bytes(secret), data, hashlib.sha512).hexdigest()


_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")
MAX_BODY_DEPTH = 16  # a real callback nests two levels (the body, its "fee" object)
MAX_CANONICAL_BODY = 16 * 1024  # a real callback is about 1 KB; bigger ones must match as sent


def _presented(signature: str | None) -> bytes:
    """The signature header as 128 lowercase hex digits, or `InvalidSignature` for any other shape."""
    if not signature or not signature.strip():
        raise InvalidSignature("missing signature")
    text = signature.strip().lower()
    if not _HEX_SIGNATURE.fullmatch(text):
        raise InvalidSignature("malformed signature")
    return text.encode("ascii")


def _depth_at_most(value: Any, limit: int) -> bool:
    """Whether no object or array in ``value`` lies more than ``limit`` levels deep (walked without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def _parsed_object(raw_body: bytes) -> dict[str, Any]:
    """The body as a JSON object within `MAX_BODY_DEPTH`, or `InvalidSignature("malformed body")`."""
    try:
        parsed = wire.loads(raw_body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidSignature("malformed body") from exc
    if not isinstance(parsed, dict) or not _depth_at_most(parsed, MAX_BODY_DEPTH):
        raise InvalidSignature("malformed body")
    return parsed


def verify_ipn(raw_body: bytes, signature: str | None, secret: SecretStr | str) -> dict[str, Any]:
    """Authenticate a NOWPayments callback and return its parsed body.

    Cheapest checks first, so forged callbacks cost little: the header's shape, then the HMAC of
    the raw bytes (real callbacks arrive already canonical). Only a small body that parses within
    bounds is tried again with the HMAC of its JavaScript-style canonical form. Numbers in the
    returned dict are `int` or `Decimal`, never float.
    """
    key = _secret_bytes(secret)
    presented = _presented(signature)
    raw = bytes(raw_body)
    raw_mac = hmac.new(key, raw, hashlib.sha512).hexdigest().encode("ascii")
    if hmac.compare_digest(raw_mac, presented):
        return _parsed_object(raw)
    if len(raw) > MAX_CANONICAL_BODY:
        raise InvalidSignature("signature mismatch")
    canonical = canonical_json(_parsed_object(raw))
    canonical_mac = hmac.new(key, canonical.encode("utf-8"), hashlib.sha512).hexdigest().encode("ascii")
    if hmac.compare_digest(canonical_mac, presented):
        # Return what was signed, not the bytes we were sent: numbers that differ only below a
        # double's precision (0 vs 1e-400) canonicalise alike, and must not slip through as sent.
        return wire.loads(canonical.encode("utf-8"))
    raise InvalidSignature("signature mismatch")
