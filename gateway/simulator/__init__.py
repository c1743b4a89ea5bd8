"""A local NOWPayments simulator: the offline sandbox for tests and the demo.

It speaks the parts of the REST API our client uses (DESIGN.md §6) with the same shapes,
error bodies and type drift, signs IPN callbacks the way NOWPayments does, and adds a
small control API under ``/sim`` (not part of NOWPayments) to drive payments through
their statuses, inject faults and inspect what happened. State is in memory. Everything it
is told at start is one `SimulatorConfig`.

Control API (no key):
  POST /sim/payments/{id}/status  {"status", "actually_paid"?, "send_ipn"?: true}
  POST /sim/payments/{id}/play    {"scenario": paid|partial|over|late|failed|expired,
                                   "send_ipn"?: true, "step_delay"?: 0, "play_id"?: "..."}
                                  (a repeated play_id waits for the first play instead of
                                   playing again: safe for a client to retry)
  GET  /sim/payments/{id}         GET /sim/payments?order_id=...
  POST /sim/faults {"status"?: 500, "count"?: 1, "rate"?: 0.1, "path_prefix"?: "/v1/",
                    "method"?: "POST", "delay"?: seconds, "acted"?: false}
  GET  /sim/faults                DELETE /sim/faults
  POST /sim/ipn-delivery {"duplicate_rate"?, "delay_rate"?, "reorder_rate"?, "delay_seconds"?}
  GET  /sim/ipn-delivery          DELETE /sim/ipn-delivery (faithful delivery again)
  POST /sim/seed {"seed": n}      (restarts the random draws of faults and IPN delivery)
  GET  /sim/ipn-log[?payment_id=|?payout_id=]  GET /sim/requests[?path_prefix=]

A fault fires on the next "count" matching requests, or, given only a "rate", on that
fraction of them until cleared (seeded draws: a run is reproducible). It waits "delay"
seconds (a "delay" longer than the caller's timeout is a timeout), then answers the error
"status" without acting, or, with "acted", after acting. Rate faults are tried in the order
given, the first that fires wins. IPN delivery knobs: see `IpnDelivery`.

Payments list: GET /v1/payment/?limit=&page=&sortBy=&orderBy=&dateFrom=&dateTo= needs the
payout login's JWT besides the API key and answers {"data", "limit", "page", "pagesCount",
"total"}, as the official Node SDK's `listPayments` reads it.

Payouts (mass payouts API): POST /v1/auth {email, password} gives a JWT valid for
`jwt_ttl_seconds` (default 300); POST /v1/payout, GET /v1/payout/{id} and GET /v1/payout
need it as ``Authorization: Bearer`` besides the API key (401 AUTH_REQUIRED when missing or
expired); /v1/payout/validate-address and /v1/payout/fee need only the key. A second payout
with a `unique_external_id` already used is refused (400 DUPLICATE_EXTERNAL_ID) and nothing
is created. Payouts start CREATING and move WAITING → PROCESSING → SENDING → FINISHED, or
end FAILED/REJECTED; IPNs for them are signed like payment IPNs, with the withdrawal
object as body. Control API for payouts:
  POST /sim/payouts/{id}/status  {"status", "send_ipn"?: true, "error"?, "hash"?}
  POST /sim/payouts/{id}/play    {"scenario": finished|failed|rejected, "send_ipn"?: true,
                                  "step_delay"?: 0, "play_id"?: "..."}
  GET  /sim/payouts/{id}         GET /sim/payouts[?unique_external_id=][&batch_id=][&status=]
                                 (oldest first, with "count": proves a payout was made once)
With `auto_advance_seconds`, new payouts play "finished" by themselves. Faults match payout
paths like any other ("path_prefix": "/v1/payout"); an injected 401 answers AUTH_REQUIRED.

Modules: config (SimulatorConfig, FaultRule, IpnDelivery), catalogue, state, steps (statuses,
scenarios), shapes (wire shapes and drift), params, responses, login (JWT), currency_api,
payment_api, payout_api, kinds, ipn, play, faults, control_input, control_api, control_knobs,
app, server.
"""

from gateway.simulator.app import create_simulator_app
from gateway.simulator.catalogue import CATALOGUE, SimCurrency
from gateway.simulator.config import FaultRule, IpnDelivery, SimulatorConfig
from gateway.simulator.server import SimulatorServer, serve
from gateway.simulator.state import SimPayment, SimPayout, SimState
from gateway.simulator.steps import apply_payout_status, apply_status

__all__ = [
    "CATALOGUE",
    "FaultRule",
    "IpnDelivery",
    "SimCurrency",
    "SimPayment",
    "SimPayout",
    "SimState",
    "SimulatorConfig",
    "SimulatorServer",
    "apply_payout_status",
    "apply_status",
    "create_simulator_app",
    "serve",
]
