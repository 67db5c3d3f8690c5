"""Canonical Kubernetes Quantity strings, rounded up to milli-units (what the HPA's MilliValue reads)."""

from __future__ import annotations

import math

import pytest

from metrics_adapter.quantity import format_quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(0.0, "0", id="zero"),
        pytest.param(1.5, "1500m", id="fraction in milli"),
        pytest.param(0.5, "500m", id="half"),
        pytest.param(2.0, "2", id="whole number"),
        pytest.param(1000.0, "1k", id="thousand uses k"),
        pytest.param(1500.0, "1500", id="1500 keeps units"),
        pytest.param(1e6, "1M", id="million uses M"),
        pytest.param(0.0004, "1m", id="tiny load rounds up, never to zero"),
        pytest.param(0.1 + 0.2, "301m", id="binary float noise rounds up"),
        pytest.param(-1.5, "-1500m", id="negative"),
        pytest.param(7.0, "7", id="replica count"),
    ],
)
def test_format_quantity(value: float, expected: str) -> None:
    assert format_quantity(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="infinity"),
        pytest.param(1e17, id="beyond int64 milli"),
    ],
)
def test_unrepresentable_values_raise(value: float) -> None:
    with pytest.raises(ValueError, match="quantity"):
        format_quantity(value)
