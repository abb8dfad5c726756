"""How the engine reads what a client typed: numbers in ASCII only, JSON only so deep, echoes only so long.

Python is generous with text: `Decimal("1_0")`, `Decimal("١")` (Arabic-Indic one), `int("５")` (full-width five)
and `"ſol".upper() == "SOL"` all succeed. Each is a second spelling of a value that logs, stores, hashes and
compares differently from the first, so every reader of client text here accepts one spelling only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, TypeVar
from uuid import UUID

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

#: 32 hex digits, hyphens between the groups or none, as the engine writes order ids.
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
#: A decimal as the contract spells it: optional sign, ASCII digits, at most one point, optional exponent.
DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
#: What Decimal reads as NaN or Infinity: refused with "must be finite" rather than "not a number".
SPECIAL_TEXT = re.compile(r"[+-]?(?:inf|infinity|s?nan[0-9]*)", re.IGNORECASE)
#: str.strip() also strips Unicode spaces (U+3000, U+00A0, …); only these are ASCII layout around a value.
ASCII_SPACE = " \t\n\r\f\v"
#: The longest run of a client's input an error message repeats back: enough to recognise it, no more.
ECHO_LIMIT = 64
#: An order body is two levels deep (the sniper trigger). Every encoder on the way (the Idempotency-Key hash,
#: orjson, the standard library's fallback) stays far from its stack limit below this.
MAX_JSON_DEPTH = 16

_Value = TypeVar("_Value")
#: A parsed JSON array or object; what their members are does not matter to a depth count.
_Container = dict[object, object] | list[object]


class NotADecimal(ValueError):
    """Text that is not a decimal in the contract's spelling; `special` when it names NaN or Infinity."""

    def __init__(self, special: bool = False) -> None:
        super().__init__("not finite" if special else "not a decimal")
        self.special = special


def parse_decimal(text: str) -> Decimal:
    """The Decimal an ASCII decimal string spells (ASCII spaces around it allowed); NotADecimal otherwise."""
    core = text.strip(ASCII_SPACE)
    if DECIMAL_TEXT.fullmatch(core) is None:
        raise NotADecimal(special=SPECIAL_TEXT.fullmatch(core) is not None)
    try:
        return Decimal(core)
    except InvalidOperation:  # an exponent beyond what Decimal can hold at all
        raise NotADecimal() from None


def significant_digits(value: Decimal) -> int:
    """Digits from the first to the last non-zero one, counted exactly: `normalize()` would first round to
    the context's 28 digits, so 1.00000000000000000000000000001 would count as one digit."""
    digits = "".join(map(str, value.as_tuple().digits)).strip("0")
    return max(1, len(digits))


def ascii_uint(text: str, max_digits: int) -> int | None:
    """The non-negative integer `text` spells in at most `max_digits` ASCII digits, else None (`str.isdigit`
    and `int` also take "١", "²" and "1_0")."""
    if not 1 <= len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def clip(text: object, limit: int = ECHO_LIMIT) -> str:
    """`text` as an error message may repeat it: at most `limit` characters, marked when cut."""
    value = str(text)
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


def json_depth_within(value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests at most `limit` containers deep (walked without recursion)."""
    level: list[_Container] = [value] if isinstance(value, (dict, list)) else []
    for _ in range(limit):
        level = [child for container in level for child in _containers_in(container)]
    return not level


def unique_fields(pairs: list[tuple[str, _Value]]) -> dict[str, _Value]:
    """A JSON object as a dict, refused (ValueError) when it names a field twice: parsers disagree on which
    one counts (a proxy may check the first while we act on the last), so such a body has no one meaning."""
    fields = dict(pairs)
    if len(fields) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the field {clip(name)!r} appears twice")
            seen.add(name)
    return fields


def _containers_in(container: _Container) -> list[_Container]:
    items = container.values() if isinstance(container, dict) else container
    return [item for item in items if isinstance(item, (dict, list))]


def _ascii_number(pattern: str, code: str, what: str) -> Callable[[object], object]:
    compiled = re.compile(pattern)

    def check(value: object) -> object:
        if isinstance(value, str) and compiled.fullmatch(value) is None:
            raise PydanticCustomError(code, f"must be {what} in ASCII digits")
        return value

    return check


#: Query parameters: pydantic alone also reads "1_0", "+5" and " 5" as numbers (and "nan", "inf" as floats).
AsciiInt = Annotated[int, BeforeValidator(_ascii_number(r"[0-9]{1,18}", "int_parsing", "a whole number"))]
AsciiFloat = Annotated[
    float, BeforeValidator(_ascii_number(r"[0-9]{1,18}(?:\.[0-9]{1,18})?", "float_parsing", "a non-negative number"))
]


def parse_uuid(text: str) -> UUID:
    """A UUID in its canonical ASCII spelling (hex, optional hyphens); ValueError otherwise. `UUID()` reads its
    hex with `int(_, 16)`, which also takes "١", full-width digits and underscores."""
    if UUID_TEXT.fullmatch(text) is None:
        raise ValueError("not a UUID")
    return UUID(text)
