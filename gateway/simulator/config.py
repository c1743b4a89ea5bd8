"""What a simulator is told when it starts: credentials, pacing, and the faults it plays.

`SimulatorConfig` is the one object `create_simulator_app`, `SimulatorServer` and `serve`
take. `FaultRule` and `IpnDelivery` are also what the control API (`/sim/faults`,
`/sim/ipn-delivery`) builds from a request body, so a fault given at start and one given at
run time mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

JWT_TTL_SECONDS = 300.0
PAYMENT_LIFETIME_SECONDS = 20 * 60.0
MERCHANT_COINS_KEYS = ("selectedCurrencies", "currencies")


@dataclass(frozen=True, slots=True)
class FaultRule:
    """A misbehaviour of the API for requests under `path_prefix` (and `method`, if given).

    It fires on the next `count` matching requests, or, with `count` None, on a `rate`
    fraction of them (drawn from the simulator's seeded fault generator) until cleared.
    Firing waits `delay` seconds (after reading the whole request: a slow gateway has it and
    may act on it even if the caller gives up), then answers the error `status`, if any, or
    answers normally, late. With `acted`, the request is served first and its answer is
    replaced by the error: the gateway did the work and the caller cannot tell.
    """

    status: int | None = None
    delay: float = 0.0
    path_prefix: str = "/v1/"
    method: str | None = None
    count: int | None = 1
    rate: float = 1.0
    acted: bool = False

    def __post_init__(self) -> None:
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError('"status" must be an HTTP error status')
        if self.delay < 0:
            raise ValueError('"delay" must not be negative')
        if self.status is None and self.delay <= 0:
            raise ValueError('give a "status", a "delay", or both')
        if not self.path_prefix.startswith("/v1"):
            raise ValueError('"path_prefix" must start with /v1')
        if self.count is not None and self.count < 1:
            raise ValueError('"count" must be a positive integer')
        if not 0 < self.rate <= 1:
            raise ValueError('"rate" must be a fraction above 0 and at most 1')
        if self.acted and self.status is None:
            raise ValueError('"acted" needs a "status" to answer with')


@dataclass(frozen=True, slots=True)
class IpnDelivery:
    """How IPN callbacks misbehave, as real ones do; all rates are fractions of callbacks.

    `duplicate_rate`: the callback is sent a second time right after the first.
    `delay_rate`: the callback leaves in the background up to `delay_seconds` later, so later
    news may overtake it. `reorder_rate`: the callback is held back until the entity's next
    callback has been sent (or `delay_seconds` have passed), so the two arrive swapped.
    Draws come from the simulator's seeded IPN generator: a run with a seed is reproducible.
    """

    duplicate_rate: float = 0.0
    delay_rate: float = 0.0
    reorder_rate: float = 0.0
    delay_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "delay_rate", "reorder_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f'"{name}" must be a fraction between 0 and 1')
        if self.delay_seconds <= 0:
            raise ValueError('"delay_seconds" must be positive')

    @property
    def faithful(self) -> bool:
        return self.duplicate_rate == self.delay_rate == self.reorder_rate == 0


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """`ipn_secret` signs IPNs; `api_key`, when set, is the only key accepted (any non-empty
    key otherwise). `payout_email`/`payout_password` are what POST /v1/auth accepts (without
    them every sign-in is refused); its tokens expire after `jwt_ttl_seconds`.
    `auto_advance_seconds`: new payments play their sandbox case and new payouts "finished"
    by themselves, one step every so many seconds. `merchant_coins_key` is the shape of GET
    /v1/merchant/coins: "selectedCurrencies" (what live clients see) or "currencies" (the
    SDK/docs shape). `payment_lifetime_seconds` sets new payments' `expiration_estimate_date`
    (20 minutes, as the gateway's; the soak shortens it). `seed` makes fault and IPN-delivery
    draws reproducible; `faults` and `ipn_delivery` are in force from the start (the control API changes them later).
    IPNs leave over at most `ipn_connections` connections at once; an attempt fails when the merchant
    has not answered within `ipn_timeout_seconds` of it being sent (connecting and each read).
    """

    ipn_secret: str = field(repr=False)
    api_key: str | None = field(default=None, repr=False)
    payout_email: str | None = field(default=None, repr=False)
    payout_password: str | None = field(default=None, repr=False)
    auto_advance_seconds: float | None = None
    merchant_coins_key: str = "selectedCurrencies"
    jwt_ttl_seconds: float = JWT_TTL_SECONDS
    payment_lifetime_seconds: float = PAYMENT_LIFETIME_SECONDS
    seed: int | None = None
    faults: tuple[FaultRule, ...] = ()
    ipn_delivery: IpnDelivery = IpnDelivery()
    ipn_timeout_seconds: float = 5.0
    ipn_connections: int = 100

    def __post_init__(self) -> None:
        if not self.ipn_secret:
            raise ValueError("ipn_secret is required")
        if self.merchant_coins_key not in MERCHANT_COINS_KEYS:
            raise ValueError('merchant_coins_key must be "selectedCurrencies" or "currencies"')
        if self.auto_advance_seconds is not None and self.auto_advance_seconds < 0:
            raise ValueError("auto_advance_seconds must not be negative")
        if (self.payout_email is None) != (self.payout_password is None):
            raise ValueError("give both payout_email and payout_password, or neither")
        if self.payment_lifetime_seconds <= 0:
            raise ValueError("payment_lifetime_seconds must be positive")
        if self.jwt_ttl_seconds <= 0:
            raise ValueError("jwt_ttl_seconds must be positive")
        if self.ipn_timeout_seconds <= 0 or self.ipn_connections < 1:
            raise ValueError("ipn_timeout_seconds must be positive and ipn_connections at least 1")
