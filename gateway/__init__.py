"""NOWPayments adapter (floor 2): REST client, IPN signatures, and a local simulator.

Public names:
- `gateway.client.NowPaymentsClient`
- `gateway.models`: `GatewayPayment`, `GatewayPaymentPage`, `GatewayPayout`, `GatewayCurrency`, `MinAmount`,
  `PAYOUT_STATUSES`
- `gateway.errors`: `GatewayError`, `GatewayTransientError`, `GatewayRejected`,
  `GatewayConfigurationError`, `GatewayProtocolError`, `InvalidSignature`,
  `DUPLICATE_EXTERNAL_ID` (the `GatewayRejected.code` of a reused payout id)
- `gateway.signature`: `canonical_json`, `sign`, `verify_ipn`
- `gateway.simulator`: `SimulatorConfig`, `create_simulator_app`, `SimulatorServer`, `serve`

Retry rule worth knowing: `create_payment` is repeated only when the gateway cannot have
acted on the request (connection refused, HTTP 429). After a timeout, a dropped connection
or a 5xx the payment may exist, so `GatewayTransientError` is raised for the caller to
reconcile instead of risking a second payment for the same order. `create_payout` follows
the same rule; its `unique_external_id` makes a repeat harmless (refused with
`DUPLICATE_EXTERNAL_ID`) and `find_payout_by_external_id` is how a caller reconciles.
"""
