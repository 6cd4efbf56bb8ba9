"""Parse ECS task-level ``cpu`` and ``memory`` values into CPU units and MiB (pure functions).

ECS writes them as strings: cpu as CPU units ("256") or vCPU ("0.25 vCPU"); memory as MiB ("512") or
GB ("1 GB", "1GB"). Plain integers are accepted too. 1 vCPU = 1024 units, 1 GB = 1024 MiB, as in ECS.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_CPU_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>vcpu)?\s*$", re.IGNORECASE)
_MEM_RE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>gb|mb|mib|gib)?\s*$", re.IGNORECASE)


def _scaled(value: int | str, pattern: re.Pattern[str], scale_units: set[str], what: str) -> int:
    if isinstance(value, bool):  # bool is an int; "true" is never a size
        raise ValueError(f"{what} must be a number or an ECS size string, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative, got {value}")
        return value
    match = pattern.match(value)
    if match is None:
        raise ValueError(f"{what} {value!r} is not an ECS size")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{what} {value!r} is not a number") from exc
    unit = (match["unit"] or "").lower()
    if unit in scale_units:
        number *= 1024
    if number != number.to_integral_value():
        raise ValueError(f"{what} {value!r} is not a whole number of units")
    return int(number)


def parse_cpu(value: int | str) -> int:
    """CPU units from an ECS cpu value: ``"256"`` -> 256, ``"0.25 vCPU"`` -> 256, ``"2 vCPU"`` -> 2048.

    Raises ValueError with a message naming the value when it is not an ECS cpu value.
    """
    return _scaled(value, _CPU_RE, {"vcpu"}, "cpu")


def parse_memory(value: int | str) -> int:
    """MiB from an ECS memory value: ``"512"`` -> 512, ``"1 GB"`` -> 1024, ``"0.5GB"`` -> 512.

    Raises ValueError with a message naming the value when it is not an ECS memory value.
    """
    return _scaled(value, _MEM_RE, {"gb", "gib"}, "memory")
