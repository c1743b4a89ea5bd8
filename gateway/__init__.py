"""NOWPayments adapter (floor 2): REST client, IPN signatures, and a local simulator.

Public names:
- `gateway.client.NowPaymentsClient`
- `gateway.models`: `GatewayPayment`, `GatewayCurrency`, `MinAmount`
- `gateway.errors`: `GatewayError`, `GatewayTransientError`, `GatewayRejected`,
  `GatewayProtocolError`, `InvalidSignature`
- `gateway.signature`: `canonical_json`, `sign`, `verify_ipn`
- `gateway.simulator`: `create_simulator_app`, `SimulatorServer`, `serve`

Retry rule worth knowing: `create_payment` is repeated only when the gateway cannot have
acted on the request (connection refused, HTTP 429). After a timeout, a dropped connection
or a 5xx the payment may exist, so `GatewayTransientError` is raised for the caller to
reconcile instead of risking a second payment for the same order.
"""
