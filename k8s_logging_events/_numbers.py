"""Numbers in options: one check for the handler's options and the sink's keywords alike.

A value from a file or the environment may be a number written as a string; NaN, infinity,
booleans and seconds beyond what a wait accepts are refused with a ValueError that names the
option, the value and what is allowed, when the option is given, never at a write.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import threading
from collections.abc import Sequence

RATE = "requests per second; 0: no limit"
"""What ``qps`` and ``drain_qps`` mean, for their messages."""


def number(
    name: str,
    value: object,
    *,
    minimum: float,
    maximum: float = math.inf,
    integer: bool = False,
    meaning: str = "",
) -> float:
    """``value`` as a finite number from ``minimum`` to ``maximum``, else ValueError; any real
    number (a Fraction, numpy's) or one in a string (``"5"``, from the environment) is one,
    NaN, infinity and booleans are not."""
    allowed = f"{'a whole number' if integer else 'a number'} >= {minimum:g}"
    if maximum < math.inf:
        allowed += f" and <= {maximum:.15g}"  # 1048576, not 1.04858e+06
    if meaning:
        allowed += f" ({meaning})"
    converted: float | None = None
    if not isinstance(value, bool) and isinstance(value, numbers.Real | str):
        with contextlib.suppress(ValueError, OverflowError):  # 10**400: out of range
            converted = float(value.strip() if isinstance(value, str) else value)
    if (
        converted is None
        or not math.isfinite(converted)
        or not minimum <= converted <= maximum
        or (integer and not converted.is_integer())
    ):
        raise ValueError(f"{name} must be {allowed}, not {value!r}")
    return converted


def seconds(name: str, value: object, *, minimum: float, meaning: str = "seconds") -> float:
    """A duration: at most what a wait or a socket accepts (more raises OverflowError there)."""
    return number(name, value, minimum=minimum, maximum=threading.TIMEOUT_MAX, meaning=meaning)


def given_seconds(value: object) -> float | None:
    """A timeout passed in code (``flush``, ``shutdown``, ``drain``): any real number (a
    Fraction, numpy's) as a float, at most what a wait takes; None for what is none (text,
    a bool), which the caller says and replaces."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return min(float(value), threading.TIMEOUT_MAX)
    except OverflowError:  # 10**400: beyond every wait, or long past
        return 0.0 if value < 0 else threading.TIMEOUT_MAX


def whole(name: str, value: object, *, minimum: int, maximum: float = math.inf) -> int:
    return int(number(name, value, minimum=minimum, maximum=maximum, integer=True))


def timeout(value: object) -> float | tuple[float, float] | None:
    """``request_timeout``: None, seconds for both, or ``[connect, read]`` seconds."""
    meaning = "seconds to connect and to read"
    if value is None:
        return None
    if isinstance(value, str | numbers.Real):
        return seconds("request_timeout", value, minimum=0.001, meaning=meaning)
    if isinstance(value, Sequence) and len(value) == 2:
        connect, read = (
            seconds("request_timeout", item, minimum=0.001, meaning=meaning) for item in value
        )
        return connect, read
    raise ValueError(f"request_timeout must be a number or a pair of numbers, not {value!r}")
