"""Reading `/metrics` in tests: Prometheus text to {sample: value}, integral values written as integers."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families


def metric_samples(text: str) -> dict[str, str]:
    """``{'payments_total{status="pending"}': "1", "payments_held_for_review": "0", ...}``."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            value = Decimal(repr(sample.value))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = (
                str(int(value)) if value == value.to_integral_value() else str(value)
            )
    return samples
