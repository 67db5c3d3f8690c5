"""Format numbers as canonical Kubernetes resource.Quantity strings (DecimalSI).

The HPA reads `value.MilliValue()` = ceil(q * 1000), so we round up to whole milli-units first: a
forecast of 0.0004 rps is served as "1m" rather than "0" and never silently loses load. Canonical
form strips trailing zeros in steps of 1000: 1500 milli -> "1500m", 2000 milli -> "2",
3_000_000 milli -> "3k". NaN and infinities have no Quantity form and are rejected.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

_SUFFIXES = ("m", "", "k", "M", "G", "T", "P", "E")
# MilliValue is an int64 on the consumer side: 9.2e18 milli.
_MAX_ABS_MILLI = 2**63 - 1


def format_quantity(value: float) -> str:
    """Return the canonical DecimalSI Quantity string of `value`, rounded up to a milli-unit."""
    if not math.isfinite(value):
        raise ValueError(f"cannot express {value!r} as a Kubernetes quantity")
    milli = int((Decimal(repr(value)) * 1000).to_integral_value(rounding=ROUND_CEILING))
    if abs(milli) > _MAX_ABS_MILLI:
        raise ValueError(f"{value!r} is outside the int64 milli-unit range of a Kubernetes quantity")
    if milli == 0:
        return "0"
    sign = "-" if milli < 0 else ""
    mantissa = abs(milli)
    exponent_index = 0
    while mantissa % 1000 == 0 and exponent_index < len(_SUFFIXES) - 1:
        mantissa //= 1000
        exponent_index += 1
    return f"{sign}{mantissa}{_SUFFIXES[exponent_index]}"
