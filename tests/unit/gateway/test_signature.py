"""canonical_json against known JavaScript output, and verify_ipn accept/reject rules."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from decimal import Decimal

import pytest
from pydantic import SecretStr

from gateway.errors import InvalidSignature
from gateway.signature import canonical_json, js_number, sign, verify_ipn

SECRET = "ipn-test-secret"


def parse(text: str) -> object:
    return json.loads(text, parse_float=Decimal)


# Expected strings are what node's JSON.stringify prints for the same (sorted) values.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.000002", "0.000002"),
        ("0.0000001", "1e-7"),
        ("1e-7", "1e-7"),
        ("0.000001", "0.000001"),
        ("20.0", "20"),
        ("20.50", "20.5"),
        ("-0.0", "0"),
        ("-0", "0"),
        ("1e21", "1e+21"),
        ("1e20", "100000000000000000000"),
        ("123456789012345678901", "123456789012345680000"),
        ("1.2345678901234568e20", "123456789012345680000"),
        ("12345678901234567890123", "1.2345678901234568e+22"),
        ("0.1", "0.1"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("-1.5e-10", "-1.5e-10"),
        ("5e-324", "5e-324"),
        ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ("0.002941176470588235294", "0.0029411764705882353"),
        ("1e400", "null"),
        ("true", "true"),
        ("null", "null"),
    ],
)
def test_scalars_match_javascript(text: str, expected: str) -> None:
    assert canonical_json(parse(text)) == expected


def test_js_number_direct() -> None:
    assert js_number(2e-06) == "0.000002"
    assert js_number(1e-07) == "1e-7"
    assert js_number(20.0) == "20"
    assert js_number(-0.0) == "0"
    assert js_number(float("inf")) == "null"


def test_nested_objects_sorted_recursively_and_compact() -> None:
    value = parse('{"b": {"z": 1, "a": [ {"y": 2.0, "x": 0.000002} ]}, "a": "first", "B": null}')
    assert canonical_json(value) == '{"B":null,"a":"first","b":{"a":[{"x":0.000002,"y":2}],"z":1}}'


def test_strings_non_ascii_and_slash_unescaped_control_chars_escaped() -> None:
    value = {"city": "Zürich", "emoji": "pay 😀", "url": "https://x.test/ipn", "ctl": 'a\n"b\\\x01\x1f\t'}
    assert canonical_json(value) == (
        '{"city":"Zürich","ctl":"a\\n\\"b\\\\\\u0001\\u001f\\t","emoji":"pay 😀","url":"https://x.test/ipn"}'
    )


def test_lone_surrogates_escaped_pairs_joined() -> None:
    value = parse('{"s": "\\ud800x\\udc00", "p": "\\ud83d\\ude00"}')
    assert canonical_json(value) == '{"p":"😀","s":"\\ud800x\\udc00"}'


def test_keys_sorted_by_utf16_code_units() -> None:
    # U+FF5E is one UTF-16 unit (0xFF5E); U+1F600 is a pair starting 0xD83D, so it sorts first
    # in JavaScript even though its code point is larger.
    value = {"\uff5e": 1, "😀": 2, "é": 3, "a": 4}
    assert canonical_json(value) == '{"a":4,"é":3,"😀":2,"～":1}'


def test_array_index_keys_come_first_like_javascript_objects() -> None:
    value = {"b": 1, "10": 2, "9": 3, "a": 4, "01": 5}
    assert canonical_json(value) == '{"9":3,"10":2,"01":5,"a":4,"b":1}'


def test_python_json_dumps_differs_for_such_bodies() -> None:
    body = {"actually_paid": Decimal("0.000002"), "price_amount": Decimal("20.0"), "city": "Zürich"}
    python_form = json.dumps(
        {k: float(v) if isinstance(v, Decimal) else v for k, v in body.items()}, sort_keys=True, separators=(",", ":")
    )
    assert python_form != canonical_json(body)
    assert canonical_json(body) == '{"actually_paid":0.000002,"city":"Zürich","price_amount":20}'


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_cross_check_with_node() -> None:
    samples = [
        '{"payment_id": 5077125051, "pay_amount": 0.00000710, "price_amount": 1.0,'
        ' "nested": {"b": [1e21, 1e-7, -0.0, 123.456e5], "a": "Zür/ich \\u2028 \\u0007"}}',
        '[0.1, 0.2, 3e-300, 7.0e22, {"z": {"y": {"x": 1}}}]',
    ]
    script = (
        "const s=o=>Array.isArray(o)?o.map(s):(o&&typeof o==='object')?"
        "Object.keys(o).sort().reduce((r,k)=>(r[k]=s(o[k]),r),{}):o;"
        "const lines=require('fs').readFileSync(0,'utf8').split('\\n');"
        "process.stdout.write(JSON.stringify(lines.map(l=>JSON.stringify(s(JSON.parse(l))))));"
    )
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "-e", script], input="\n".join(samples), capture_output=True, text=True, check=True
    )
    expected = json.loads(result.stdout)
    assert [canonical_json(parse(s)) for s in samples] == expected


def test_sign_is_lowercase_hex_hmac_sha512() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha512).hexdigest()
    assert sign(body, SECRET) == expected
    assert sign({"a": 1}, SECRET) == expected
    assert sign(body, SecretStr(SECRET)) == expected
    assert len(expected) == 128 and expected == expected.lower()


IPN_BODY = {
    "payment_id": 5077125051,
    "payment_status": "finished",
    "pay_address": "bc1qexample",
    "price_amount": Decimal("20.0"),
    "price_currency": "usd",
    "pay_amount": Decimal("0.000002"),
    "actually_paid": Decimal("0.0000001"),
    "pay_currency": "btc",
    "order_id": "PAY_20250114123456_abc12345",
    "order_description": "Zürich deposit / test",
    "purchase_id": "4944856743",
    "updated_at": 1736857296000,
}


def test_verify_accepts_raw_signed_body() -> None:
    raw = canonical_json(IPN_BODY).encode()
    parsed = verify_ipn(raw, sign(raw, SECRET), SecretStr(SECRET))
    assert parsed["pay_amount"] == Decimal("0.000002")
    assert isinstance(parsed["pay_amount"], Decimal)
    assert parsed["payment_id"] == 5077125051


def test_verify_accepts_raw_signed_body_that_is_not_canonical() -> None:
    raw = b'{ "payment_status": "waiting", "payment_id": "1" }'
    assert verify_ipn(raw, sign(raw, SECRET), SECRET)["payment_status"] == "waiting"


def test_verify_accepts_body_signed_over_js_canonical_form() -> None:
    # The body as a Python service might re-serialise it: unsorted, spaced, ASCII-escaped,
    # Python float text. Its bytes differ from what was signed; the canonical form matches.
    python_text = json.dumps(
        {k: float(v) if isinstance(v, Decimal) else v for k, v in IPN_BODY.items()}, ensure_ascii=True
    )
    assert "2e-06" in python_text and "1e-07" in python_text and "\\u00fc" in python_text
    signature = sign(canonical_json(IPN_BODY).encode(), SECRET)
    assert sign(python_text.encode(), SECRET) != signature
    parsed = verify_ipn(python_text.encode(), signature, SECRET)
    assert parsed["order_description"] == "Zürich deposit / test"


def test_verify_accepts_uppercase_signature_hex() -> None:
    raw = canonical_json(IPN_BODY).encode()
    assert verify_ipn(raw, sign(raw, SECRET).upper(), SECRET)


def test_verify_rejects_one_character_change_in_body() -> None:
    raw = canonical_json(IPN_BODY).encode()
    signature = sign(raw, SECRET)
    tampered = raw.replace(b'"finished"', b'"finishes"')
    assert tampered != raw
    with pytest.raises(InvalidSignature) as info:
        verify_ipn(tampered, signature, SECRET)
    assert info.value.reason == "signature mismatch"


def test_verify_rejects_amount_change() -> None:
    raw = canonical_json(IPN_BODY).encode()
    signature = sign(raw, SECRET)
    with pytest.raises(InvalidSignature):
        verify_ipn(raw.replace(b"0.000002", b"0.000003"), signature, SECRET)


def test_verify_rejects_one_character_change_in_signature() -> None:
    raw = canonical_json(IPN_BODY).encode()
    signature = sign(raw, SECRET)
    flipped = ("0" if signature[10] != "0" else "1").join((signature[:10], signature[11:]))
    with pytest.raises(InvalidSignature) as info:
        verify_ipn(raw, flipped, SECRET)
    assert info.value.reason == "signature mismatch"


def test_verify_rejects_wrong_secret() -> None:
    raw = canonical_json(IPN_BODY).encode()
    with pytest.raises(InvalidSignature):
        verify_ipn(raw, sign(raw, "another-secret"), SECRET)


@pytest.mark.parametrize("signature", [None, "", "   "])
def test_verify_rejects_missing_signature(signature: str | None) -> None:
    with pytest.raises(InvalidSignature) as info:
        verify_ipn(b'{"payment_id":1}', signature, SECRET)
    assert info.value.reason == "missing signature"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'"text"', b"\xff\xfe", b'{"a":NaN}'])
def test_verify_rejects_malformed_body(raw: bytes) -> None:
    with pytest.raises(InvalidSignature) as info:
        verify_ipn(raw, sign(raw, SECRET), SECRET)
    assert info.value.reason == "malformed body"


def test_errors_do_not_leak_secret() -> None:
    raw = canonical_json(IPN_BODY).encode()
    with pytest.raises(InvalidSignature) as info:
        verify_ipn(raw, "0" * 128, SecretStr(SECRET))
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)


def test_unconfigured_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="not configured"):
        verify_ipn(b"{}", "ab", "")


def test_canonical_path_returns_the_signed_values_not_the_sent_digits() -> None:
    """A body re-formatted with a number that only matches the signed one as a double is read as signed."""
    signed = b'{"actually_paid":0,"payment_id":5,"payment_status":"finished"}'
    signature = sign(signed, "secret-for-test")
    sent = b'{"payment_status": "finished", "payment_id": 5, "actually_paid": 1e-400}'
    body = verify_ipn(sent, signature, "secret-for-test")
    assert body["actually_paid"] == 0 and body["payment_id"] == 5


def test_js_number_plain_shortcut_agrees_with_the_general_algorithm() -> None:
    """Doubles Python writes without an exponent take a shortcut; it must print what the full algorithm prints."""
    from random import Random

    from gateway.signature import _js_number_general

    rng = Random(20261201)
    values = [0.1, 0.5, 1.0, 20.0, 123.456, 9007199254740993.0, 1e-4, 1e15, 9.999999999999999e15, 0.00041234]
    values += [rng.uniform(0.5, 10.0) * 10.0 ** rng.randint(-8, 18) for _ in range(5000)]
    values += [float(rng.randint(-(2**60), 2**60)) for _ in range(1000)]
    for value in values + [-v for v in values]:
        assert js_number(value) == _js_number_general(value), value
