"""FHIR JSON in and out: plain Python numbers for the caller, exact decimal text on the wire.

FHIR gives decimals a precision: `1.50` is not `1.5`. A parsed document holds what
`json.loads` gives (dict, list, str, int, float, bool, None), except that every number
with a fraction or an exponent is a `DecimalFloat`: a real float (`== 1.5` holds,
`json.dumps` works) that remembers the text it was read from. `dumps` writes that text
back unchanged, and a `decimal.Decimal` from its digits (an orjson fragment), so a value
read as `12500.00` goes back as `12500.00`. Arithmetic gives plain floats, written as
Python's shortest repr. The models keep `Decimal`, made from the same text.

`dumps` refuses what JSON cannot carry, naming where it is: NaN and infinities (orjson
would write `null`), lone surrogates (not Unicode), and nesting deeper than orjson's 254
levels.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

import msgspec
import orjson

__all__ = ["DecimalFloat", "dumps", "loads", "decimal_text", "MAX_DEPTH"]

#: The deepest nesting `dumps` writes (orjson's own limit).
MAX_DEPTH = 254

_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class DecimalFloat(float):
    """A float that keeps the JSON text it was read from: `1.50` is `1.5`, written as `1.50`.

    What the client's dicts hold for every JSON number with a fraction or an exponent:
    a float in every way (`value == 1.5`, `isinstance(value, float)`, `json.dumps`), whose
    `text` the SDK writes back exactly. `str()` and `repr()` show that text. Arithmetic
    returns a plain float. Build one from JSON number text, a Decimal, an int or a float:

        >>> DecimalFloat("12500.00"), DecimalFloat("12500.00") == 12500
        (12500.00, True)
    """

    __slots__ = ("_text",)
    _text: str

    def __new__(cls, value: str | Decimal | int | float) -> DecimalFloat:
        text = _number_text(value)
        self = float.__new__(cls, text)
        self._text = text
        return self

    @property
    def text(self) -> str:
        """The number exactly as written in JSON (`"1.50"`, `"1E-7"`)."""
        return self._text

    def as_decimal(self) -> Decimal:
        """The exact `Decimal` of the text (`Decimal("1.50")`)."""
        return Decimal(self._text)

    def __repr__(self) -> str:
        return self._text

    __str__ = __repr__

    def __reduce__(self) -> tuple[type[DecimalFloat], tuple[str]]:
        return (DecimalFloat, (self._text,))

    def __copy__(self) -> DecimalFloat:
        return self

    def __deepcopy__(self, memo: Any) -> DecimalFloat:
        return self


def _number_text(value: object) -> str:
    if isinstance(value, DecimalFloat):
        return value.text
    if isinstance(value, str):
        if not _JSON_NUMBER.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not a JSON number")
        return value
    if isinstance(value, bool):
        raise TypeError("a bool is not a decimal")
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a JSON number")
        return repr(value)
    raise TypeError(f"DecimalFloat takes JSON number text, not {type(value).__name__}")


_new_float = float.__new__


def _parse_float(text: str) -> DecimalFloat:
    # The parser's hook: `text` is already JSON number syntax, so no check.
    value: DecimalFloat = _new_float(DecimalFloat, text)
    value._text = text
    return value


# msgspec parses as fast as jiter and orjson, and hands each float's text to a hook.
_DECODER = msgspec.json.Decoder(float_hook=_parse_float)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON as `json.loads` does, except that decimals are `DecimalFloat`s.

    Raises ValueError (never with the document's content in the message) for anything
    that is not strict JSON in UTF-8: NaN, a lone surrogate escape, invalid UTF-8,
    nesting deeper than the interpreter's recursion limit.
    """
    try:
        return _DECODER.decode(data)
    except UnicodeEncodeError as exc:  # str input holding a lone surrogate
        code = ord(exc.object[exc.start])
        raise ValueError(f"JSON text holds a lone surrogate (U+{code:04X})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None


def decimal_text(value: Decimal) -> str:
    """The JSON text of a decimal: `1.50` stays `1.50`, `2` stays `2`.

    A Decimal read from `0.0000001` and from `1E-7` is the same value; positional notation
    is chosen for negative exponents, because that is how FHIR data writes them. A positive
    exponent (`1E+3`, only ever read from exponent notation) is kept as written.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a valid FHIR decimal")
    text = str(value)
    if "E" not in text:  # positional already (most decimals): the same as format(value, "f")
        return text
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return str(value)
    return format(value, "f")


def _default(value: Any) -> Any:
    if isinstance(value, DecimalFloat):
        return orjson.Fragment(value._text.encode())
    if isinstance(value, Decimal):
        return orjson.Fragment(decimal_text(value).encode())
    # Models reach here only when handed to dumps() directly.
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump(mode="python", by_alias=True, exclude_none=True)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any, *, indent: bool = False) -> bytes:
    """Serialize to JSON bytes, decimals written exactly as read.

    Raises ValueError naming the path (`Observation.valueQuantity.value`) of a NaN or an
    infinity, a lone surrogate, or nesting deeper than MAX_DEPTH; TypeError for a value
    JSON cannot hold.
    """
    option = orjson.OPT_INDENT_2 if indent else 0
    try:
        data = orjson.dumps(value, default=_default, option=option)
    except orjson.JSONEncodeError as exc:
        reason = str(exc)
        raise _explain(value, reason) from None
    if _may_hold_null(data):  # orjson writes NaN and infinities as null: look for them
        problem = _find_problem(value)
        if problem is not None:
            raise problem
    return data


_AFTER_A_VALUE = frozenset(b",]}\n")


def _may_hold_null(data: bytes) -> bool:
    # A null value is followed by `,`, `]`, `}`, (indented) a line break, or the end. A
    # string holding such text only costs a needless search. One pass over the bytes.
    at = data.find(b"null")
    while at != -1:
        end = at + 4
        if end == len(data) or data[end] in _AFTER_A_VALUE:
            return True
        at = data.find(b"null", end)
    return False


# ---------------------------------------------------------------- locating bad values


def _root_name(value: Any) -> str:
    if isinstance(value, dict):
        resource_type = value.get("resourceType")
        if isinstance(resource_type, str) and resource_type.isidentifier():
            return resource_type
    return "$"


def _path_text(parts: tuple[str | int, ...], root: str) -> str:
    text = root
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text if len(text) <= 160 else text[:77] + "..." + text[-80:]


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, float):
        if isinstance(value, DecimalFloat) or math.isfinite(value):
            return None
        return f"{value} is not a JSON number (FHIR has no NaN or infinity)"
    if isinstance(value, Decimal) and not value.is_finite():
        return f"{value} is not a JSON number (FHIR has no NaN or infinity)"
    if isinstance(value, str):
        return _surrogate_problem(value)
    return None


def _surrogate_problem(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"the text holds a lone surrogate (U+{code:04X}), which is not valid Unicode"
    return None


def _find_problem(value: Any) -> ValueError | TypeError | None:
    """The first value JSON cannot carry, as the error to raise; None when all is well.

    Iterative, so that a structure nested too deeply for recursion is still described.
    """
    root = _root_name(value)
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, parts = stack.pop()
        if len(parts) > MAX_DEPTH:
            return ValueError(
                f"{_path_text(parts[:6], root)}...: nested more than {MAX_DEPTH} levels deep"
            )
        if isinstance(item, dict):
            children: list[tuple[Any, tuple[str | int, ...]]] = []
            for key, child in item.items():
                if not isinstance(key, str):
                    return TypeError(
                        f"{_path_text(parts, root)}: a key of type {type(key).__name__} "
                        "is not a JSON object key (keys are strings)"
                    )
                key_problem = _surrogate_problem(key)
                if key_problem is not None:
                    return ValueError(f"{_path_text(parts, root)}: a key: {key_problem}")
                children.append((child, (*parts, key)))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend((child, (*parts, i)) for i, child in reversed(list(enumerate(item))))
        else:
            problem = _scalar_problem(item)
            if problem is not None:
                return ValueError(f"{_path_text(parts, root)}: {problem}")
            if not isinstance(item, _PLAIN_SCALARS):
                try:
                    orjson.dumps(item, default=_default)
                except (orjson.JSONEncodeError, RecursionError):
                    return TypeError(
                        f"{_path_text(parts, root)}: a {type(item).__name__} cannot be "
                        "written as JSON"
                    )
    return None


_PLAIN_SCALARS = (str, int, float, Decimal, type(None))


def _explain(value: Any, reason: str) -> ValueError | TypeError:
    problem = _find_problem(value)
    if problem is not None:
        return problem
    if "not JSON serializable" in reason or "not serializable" in reason:
        return TypeError(reason)
    return ValueError(f"cannot write JSON: {reason}")
