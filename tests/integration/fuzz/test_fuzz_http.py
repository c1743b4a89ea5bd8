"""Every HTTP route fed generated paths, headers and bodies (hypothesis): an answer below 500 every
time, nothing written, and the web process still serving afterwards."""

from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.integration.fuzz.conftest import row_counts
from tests.integration.stack import API_TOKEN, OPERATOR_TOKEN

ROUTES = (
    ("POST", "/ipn/nowpayments"), ("POST", "/ipn/nowpayments/payouts"),
    ("GET", "/v1/payments/{}"), ("GET", "/v1/payments/{}/qr.svg"),
    ("POST", "/v1/deposits"), ("GET", "/v1/deposits/{}"),
    ("GET", "/v1/users/{}/balance"), ("GET", "/v1/users/{}/transactions"),
    ("POST", "/v1/withdrawals"), ("GET", "/v1/withdrawals/{}"), ("POST", "/v1/withdrawals/{}/cancel"),
    ("POST", "/v1/operator/withdrawals/{}/approve"), ("POST", "/v1/operator/withdrawals/{}/reject"),
    ("POST", "/v1/operator/withdrawals/{}/complete"),
)  # fmt: skip
FIELDS = ("request_id", "user_id", "amount_usd", "currency_code", "wallet_address", "extra_id", "description",
          "payment_id", "payment_status", "actually_paid", "pay_amount", "note", "operator", "tx_hash", "id",
          "status")  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    | st.sampled_from(["25.00", "-1", "1e400", "NaN", "0.000000000000000000001", "btc", "PAY_x", "finished"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner,
                                                                 max_size=6),
    max_leaves=12,
)  # fmt: skip
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8).map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
)
path_ids = st.text(max_size=30).map(lambda text: quote(text, safe="")) | st.sampled_from(
    ["PAY_20260101120000_abc12345", "WD_20260101120000_abc12345", "%00", "..%2F..", "9" * 40]
)
# by name: a strategy's repr is printed in hypothesis' reports, and the tokens are secrets
AUTHORIZATION = {"api": f"Bearer {API_TOKEN}", "operator": f"Bearer {OPERATOR_TOKEN}", "wrong": "Bearer nope",
                 "basic": "Basic eA==", "none": None}  # fmt: skip
auth = st.sampled_from(sorted(AUTHORIZATION))
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
requests = st.tuples(
    st.sampled_from(ROUTES), path_ids, auth, bodies,
    st.sampled_from([None, "application/json", "text/plain", "application/json; charset=latin-1"]),
    header_values,  # an x-nowpayments-sig
    st.dictionaries(st.sampled_from(["limit", "before", "x"]), st.text(max_size=25), max_size=2),
)  # fmt: skip


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")  # the simulator uses random
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests)
async def test_any_request_to_any_route_is_answered_below_500_and_writes_nothing(fuzz_stack, request):
    stack = fuzz_stack
    (method, template), path_id, auth_name, body, content_type, signature, query = request
    authorization = AUTHORIZATION[auth_name]
    before = await row_counts(stack)
    url = URL(stack.web_url + template.format(path_id), encoded=True).with_query(query)
    headers = {"x-nowpayments-sig": signature}
    if authorization:
        headers["Authorization"] = authorization
    if content_type:
        headers["Content-Type"] = content_type
    async with stack.http.request(method, url, data=body, headers=headers,
                                  timeout=aiohttp.ClientTimeout(total=20)) as response:  # fmt: skip
        status, text = response.status, await response.text(errors="replace")
    assert status < 500, (method, str(url), status, text[:300])
    assert "Traceback" not in text
    assert await row_counts(stack) == before
    async with stack.http.get(stack.web_url + "/healthz") as health:
        assert health.status == 200
