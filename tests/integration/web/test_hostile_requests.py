"""The web app under hostile and careless requests: a JSON 4xx every time, never a 500 or a traceback.

Requests go over real sockets to the Stack's web app. Some are written byte by byte
(``raw_http``) because an HTTP client library refuses to send them: header bytes that are not
UTF-8, a body that stops halfway.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

from structlog.testing import capture_logs

from settings import IPN_PATH, PAYOUT_IPN_PATH
from tests.integration.stack import API_TOKEN, IPN_SECRET, OPERATOR_TOKEN, Stack

# Only a guard so that a server that never answers fails the test instead of hanging it.
NO_ANSWER_GUARD = 20.0
IPN_ROUTES = (IPN_PATH, PAYOUT_IPN_PATH)


async def raw_http(stack: Stack, head: bytes, body: bytes = b"") -> tuple[int, Any]:
    """Send ``head`` (request line and headers, no blank line) and ``body`` as given; return status and JSON."""
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.web_port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), NO_ANSWER_GUARD)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode("latin-1")


def _auth(token: str = API_TOKEN) -> bytes:
    return f"Authorization: Bearer {token}".encode()


def assert_json_error(status: int, body: Any, want_status: int, want_code: str | None = None) -> None:
    assert status == want_status, (status, body)
    assert isinstance(body, dict) and set(body) == {"error", "message"}, body
    assert isinstance(body["message"], str) and "Traceback" not in body["message"], body
    if want_code is not None:
        assert body["error"] == want_code, body


async def test_framework_errors_answer_json_like_ours(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        for path in ("/nowhere", "/v1/nowhere", "/v1/payments"):
            async with stack.http.get(stack.web_url + path, headers=headers) as response:
                assert_json_error(response.status, await response.json(content_type=None), 404, "not_found")
        for method, path in (("GET", "/v1/deposits"), ("PUT", IPN_PATH), ("DELETE", "/v1/withdrawals/WD_x")):
            async with stack.http.request(method, stack.web_url + path, headers=headers) as response:
                body = await response.json(content_type=None)
                assert_json_error(response.status, body, 405, "method_not_allowed")
                assert response.headers.get("Allow"), "a 405 still says what is allowed"
        too_big = json.dumps({"request_id": "r", "description": "x" * 400_000}).encode()
        for path in ("/v1/deposits", "/v1/withdrawals", IPN_PATH):
            async with stack.http.post(stack.web_url + path, data=too_big, headers=headers) as response:
                assert_json_error(response.status, await response.json(content_type=None), 413, "too_large")


async def test_the_bearer_scheme_is_case_insensitive(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        url = stack.web_url + "/v1/users/someone/balance"
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            async with stack.http.get(url, headers={"Authorization": f"{scheme} {API_TOKEN}"}) as response:
                assert response.status == 200, scheme
        for header in (f"Basic {API_TOKEN}", f"Bearer{API_TOKEN}", f"Bearer {API_TOKEN} extra", "bearer "):
            async with stack.http.get(url, headers={"Authorization": header}) as response:
                assert_json_error(response.status, await response.json(), 401, "unauthorized")


async def test_a_non_ascii_authorization_header_is_a_401_on_every_api_route(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        routes = [
            b"GET /v1/users/u1/balance",
            b"GET /v1/users/u1/transactions",
            b"GET /v1/users/u1/payments",
            b"GET /v1/users/u1/withdrawals",
            b"GET /v1/operator/withdrawals",
            b"GET /v1/operator/deposits/held",
            b"GET /v1/payments/PAY_1",
            b"GET /v1/payments/PAY_1/qr.svg",
            b"GET /v1/deposits/req-1",
            b"POST /v1/deposits",
            b"POST /v1/withdrawals",
            b"GET /v1/withdrawals/WD_1",
            b"POST /v1/withdrawals/WD_1/cancel",
            b"POST /v1/operator/withdrawals/WD_1/approve",
        ]
        for route in routes:
            for value in (b"Bearer \xe9\xff", "Bearer tökén".encode(), b"\xe9 " + API_TOKEN.encode()):
                head = route + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nAuthorization: " + value
                status, body = await raw_http(stack, head, b"{}")
                assert_json_error(status, body, 401, "unauthorized")


async def test_a_nul_or_control_character_in_a_path_id_is_a_400(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        for bad in ("a%00b", "%00", "a%0Ab", "x" * 300):
            for method, path, token, body in (
                ("GET", f"/v1/payments/{bad}", API_TOKEN, b""),
                ("GET", f"/v1/payments/{bad}/qr.svg", API_TOKEN, b""),
                ("GET", f"/v1/deposits/{bad}", API_TOKEN, b""),
                ("GET", f"/v1/users/{bad}/balance", API_TOKEN, b""),
                ("GET", f"/v1/users/{bad}/transactions", API_TOKEN, b""),
                ("GET", f"/v1/users/{bad}/payments", API_TOKEN, b""),
                ("GET", f"/v1/users/{bad}/withdrawals", API_TOKEN, b""),
                ("GET", f"/v1/withdrawals/{bad}", API_TOKEN, b""),
                ("POST", f"/v1/withdrawals/{bad}/cancel", API_TOKEN, b'{"user_id": "u1"}'),
                ("POST", f"/v1/operator/withdrawals/{bad}/approve", OPERATOR_TOKEN, b'{"operator": "alice"}'),
            ):
                head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
                status, answer = await raw_http(stack, head + _auth(token), body)
                assert_json_error(status, answer, 400, "invalid_request")
                assert answer["message"].startswith(("payment_id:", "request_id:", "user_id:", "withdrawal_id:"))


async def test_out_of_range_integers_in_the_query_are_a_400(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        base = stack.web_url + "/v1/users/u1/transactions"
        for query in (
            "before=9223372036854775808",
            "before=-9223372036854775809",
            "before=" + "9" * 30,
            "before=" + "9" * 5000,
            "before=0",
            "before=-1",
            "limit=" + "9" * 5000,
        ):
            async with stack.http.get(f"{base}?{query}", headers=headers) as response:
                assert_json_error(response.status, await response.json(), 400, "invalid_request")
        async with stack.http.get(f"{base}?limit=9223372036854775808&before=9223372036854775807", headers=headers) as r:
            assert r.status == 200 and await r.json() == {"items": [], "next_before": None}


async def test_deeply_nested_or_huge_number_bodies_are_a_400(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        deep_list = b"[" * 100_000 + b"]" * 100_000
        deep_object = b'{"a":' * 30_000 + b"1" + b"}" * 30_000
        deep_value = b'{"request_id": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        huge_number = b'{"request_id": "r1", "amount_usd": ' + b"7" * 5000 + b', "currency_code": "btc"}'
        routes = [
            ("/v1/deposits", API_TOKEN),
            ("/v1/withdrawals", API_TOKEN),
            ("/v1/withdrawals/WD_1/cancel", API_TOKEN),
            ("/v1/operator/withdrawals/WD_1/approve", OPERATOR_TOKEN),
        ]
        for path, token in routes:
            for body in (deep_list, deep_object, deep_value, huge_number):
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                async with stack.http.post(stack.web_url + path, data=body, headers=headers) as response:
                    assert_json_error(response.status, await response.json(), 400, "invalid_request")


def _deep_ipn_body(levels: int) -> bytes:
    inner = b'{"payment_id": 1, "payment_status": "finished", "x": ' + b'{"a":' * levels + b"1" + b"}" * levels + b"}"
    return inner + b" " * (60_000 - len(inner))


async def test_ipn_headers_that_are_not_a_hex_signature_are_a_401(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        body = b'{"payment_id": 1, "payment_status": "finished"}'
        for route in IPN_ROUTES:
            for value in (b"\xe9" * 128, "é".encode() * 64, b"\xff\xfe", b"zz" * 64, b"ab" * 63, b"ab" * 65):
                head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n".encode()
                status, answer = await raw_http(stack, head + b"x-nowpayments-sig: " + value, body)
                assert_json_error(status, answer, 401, "invalid_signature")


async def test_a_deeply_nested_ipn_is_refused_on_both_routes(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        for levels in (900, 1_000, 5_000):
            body = _deep_ipn_body(levels)
            assert len(body) <= 64 * 1024
            forged = hmac.new(b"not the secret", body, hashlib.sha512).hexdigest()
            signed = hmac.new(IPN_SECRET.encode(), body, hashlib.sha512).hexdigest()
            for route in IPN_ROUTES:
                for signature in (forged, signed, signed.upper()):
                    headers = {"x-nowpayments-sig": signature, "Content-Type": "application/json"}
                    async with stack.http.post(stack.web_url + route, data=body, headers=headers) as response:
                        answer = await response.json(content_type=None)
                    assert response.status in (400, 401), (levels, route, response.status, answer)
                    assert_json_error(response.status, answer, response.status)
                    if signature is forged:
                        assert answer["error"] == "invalid_signature"


async def test_ipn_rejections_are_logged_at_a_bounded_rate(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False) as stack:
        body = b'{"payment_id": 1, "payment_status": "finished"}'
        with capture_logs() as logs:
            for index in range(60):
                headers = {"x-nowpayments-sig": f"{index:0128x}", "Content-Type": "application/json"}
                async with stack.http.post(stack.web_url + IPN_PATH, data=body, headers=headers) as response:
                    assert response.status == 401
        rejected = [entry for entry in logs if entry["event"] == "ipn_rejected"]
        assert 1 <= len(rejected) <= 10, len(rejected)
        assert rejected[0]["reason"] == "signature mismatch"


async def test_a_body_that_stops_arriving_is_cut_off(database_url, redis_namespace):
    async with Stack(database_url, redis_namespace, ipn=False, start_worker=False, web_receive_timeout=0.5) as stack:
        for route, auth in ((IPN_PATH, b"x-nowpayments-sig: " + b"ab" * 64), ("/v1/deposits", _auth())):
            head = f"POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n".encode() + auth
            status, answer = await raw_http(stack, head, b'{"request_id": ')  # and nothing more, ever
            assert_json_error(status, answer, 408, "request_timeout")
