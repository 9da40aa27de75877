"""FHIR JSON in and out, with decimals kept exactly as written.

FHIR gives decimals a precision: 1.50 is not 1.5. Python's float loses that, so every
JSON number with a fraction or an exponent is read as a `decimal.Decimal` (jiter's
decimal mode keeps the text) and written back from that Decimal's digits (an orjson
fragment), never through a float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jiter
import orjson

__all__ = ["dumps", "loads", "decimal_text"]


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON, returning decimals as `Decimal` with their text intact."""
    if isinstance(data, str):
        data = data.encode()
    return jiter.from_json(bytes(data), float_mode="decimal", cache_mode="keys")


def decimal_text(value: Decimal) -> str:
    """The JSON text of a decimal: `1.50` stays `1.50`, `2` stays `2`.

    A Decimal read from `0.0000001` and from `1E-7` is the same value; positional notation
    is chosen for negative exponents, because that is how FHIR data writes them. A positive
    exponent (`1E+3`, only ever read from exponent notation) is kept as written.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a valid FHIR decimal")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return str(value)
    return format(value, "f")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(decimal_text(value).encode())
    # Models reach here only when handed to dumps() directly.
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="python", by_alias=True, exclude_none=True)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, indent: bool = False) -> bytes:
    """Serialize to JSON bytes; decimals are written from their exact digits."""
    option = orjson.OPT_INDENT_2 if indent else 0
    return orjson.dumps(value, default=_default, option=option)
