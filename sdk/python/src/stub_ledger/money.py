"""Exact money: amounts travel as decimal strings with at most 6 fraction digits (micro-units).

Nothing here goes through a float: a float such as 0.1 is refused, because it cannot say which
decimal the caller meant.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Union

Amount = Union[str, int, Decimal]
"""An amount in the budget's currency: "0.04", Decimal("0.04") or a whole number."""

MICROS_PER_UNIT = 1_000_000
AMOUNT_MICROS_MAX = 10**12 * MICROS_PER_UNIT


def to_micros(amount: Amount) -> int:
    """The amount in integer micro-units; more than 6 fraction digits is an error."""
    if isinstance(amount, bool) or isinstance(amount, float):
        raise TypeError("amounts are decimal strings, Decimal or int, never float or bool")
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    micros = value * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise ValueError(f"amount {amount!r} has more than 6 fraction digits")
    result = int(micros)
    if result < 0 or result > AMOUNT_MICROS_MAX:
        raise ValueError(f"amount {amount!r} is out of range")
    return result


def micros_ceiling(value: Decimal) -> int:
    """A Decimal number of micro-units rounded up to a whole micro-unit."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def format_micros(micros: int) -> str:
    """Micro-units as the shortest decimal string: 40000 -> "0.04", 2000000 -> "2"."""
    sign = "-" if micros < 0 else ""
    whole, fraction = divmod(abs(micros), MICROS_PER_UNIT)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def to_decimal(text: str) -> Decimal:
    """A decimal string from the server as a Decimal."""
    return Decimal(text)
