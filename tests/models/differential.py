"""Differential validation: pymedplum's models against Medplum's own validator.

Medplum's `validateResource` (@medplum/core, run by the local server's validate.mjs) and
our models each accept or reject the same resources: the example files given, plus
mutations of them made with a fixed seed (required elements dropped, wrong JSON types,
codes outside their value set, malformed primitives, two alternatives of a choice, unknown
elements, no-break spaces, dateTimes without a time zone, empty values...).

Where the verdicts differ, every error of the side that rejects must belong to one of the
documented CATEGORIES below (each says who rejects and why); `Report.unexplained` lists the
cases that fit none, and the test fails on them. The table is in docs/models.md.

    python -m tests.models.differential          # prints the table for the shared examples
"""

from __future__ import annotations

import copy
import json
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pymedplum import _json, fhir
from pymedplum._fhirmodel import FHIRModel, FHIRValidationError
from pymedplum._parquet import _annotation_type
from pymedplum.testing.local_server import SERVER_DIR

VALIDATOR = SERVER_DIR / "validate.mjs"
SEED = 20260701
BASES = 400  # resources drawn from the files to mutate...
PER_BASE = 8  # ...and mutations of each

JSON = dict[str, Any]

# ---------------------------------------------------------------------------------------
# What each side says


@dataclass(frozen=True)
class Problem:
    """One error of one side: where (a FHIR path), what kind, and the message."""

    path: str
    kind: str
    message: str
    value: Any = None  # the offending value, when known


@dataclass
class Case:
    label: str  # "official/x.json" or "official/x.json ~ bad-code @ Patient.gender"
    resource: JSON
    model: str  # the class the resource is validated as (its original resourceType)
    base: str = ""  # for a mutation: the label of the file it was made from
    ours: list[Problem] = field(default_factory=list)
    medplum: list[Problem] = field(default_factory=list)
    ours_ok: bool = True
    medplum_ok: bool = True


def our_problems(resource: JSON, model: str) -> list[Problem] | None:
    """Our errors (None when the model accepts the resource), in default validation."""
    cls = fhir.resource_class(model)
    assert cls is not None, model
    try:
        cls.model_validate(resource)
    except FHIRValidationError as error:
        return [
            Problem(str(e["loc"][0]), str(e["type"]), e["msg"], e.get("input"))
            for e in error.errors()
        ]
    return None


class MedplumValidation:
    """Medplum's validator running over resources in a Node process, while Python goes on
    (the two validators share the machine's cores)."""

    def __init__(self, resources: Sequence[JSON], node: list[str]) -> None:
        self._count = len(resources)
        lines = "".join(
            json.dumps(r, default=_json_default, ensure_ascii=True) + "\n" for r in resources
        )
        self._process = subprocess.Popen(
            [*node, str(VALIDATOR)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=SERVER_DIR,
        )
        self._output: list[tuple[str, str]] = []
        self._thread = threading.Thread(
            target=lambda: self._output.append(self._process.communicate(lines)), daemon=True
        )
        self._thread.start()

    def verdicts(self) -> list[tuple[bool, list[Problem]]]:
        """Each resource's verdict: (accepted, its error issues)."""
        self._thread.join()
        stdout, stderr = self._output[0]
        if self._process.returncode != 0:
            raise RuntimeError(f"validate.mjs failed:\n{stderr[-4000:]}")
        verdicts = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        if len(verdicts) != self._count:
            raise RuntimeError(f"validate.mjs answered {len(verdicts)} of {self._count}")
        return [
            (
                v["ok"],
                [
                    Problem(i["expression"], i["code"], i["text"])
                    for i in v["issues"]
                    if i["severity"] in ("error", "fatal")
                ],
            )
            for v in verdicts
        ]


def _json_default(value: Any) -> Any:
    # Decimals from jiter: JSON numbers (Medplum reads them as JavaScript numbers anyway).
    return float(value)


# ---------------------------------------------------------------------------------------
# The known categories of disagreement


@dataclass(frozen=True)
class Category:
    name: str
    rejected_by: Literal["pymedplum", "Medplum"]
    why: str
    matches: Callable[[Problem, Case], bool]


def _value_at(resource: JSON, path: str) -> Any:
    """The value at a FHIR path such as `Patient.name[0].family` or Medplum's
    `Observation.value[x].coding[0]` (None if not found)."""
    value: Any = resource
    for part in re.findall(r"[^.\[\]]+(?:\[x\])?|\[\d+\]", path)[1:]:
        if part.startswith("["):
            index = int(part[1:-1])
            value = value[index] if isinstance(value, list) and index < len(value) else None
        elif not isinstance(value, dict):
            return None
        elif part in value:
            value = value[part]
        elif part.endswith("[x]"):
            stem = part[:-3]
            keys = [
                k for k in value if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()
            ]
            value = value[keys[0]] if keys else None
        elif part[:1].isupper():  # a type name in the path (nested resources)
            continue
        else:
            return None
    return value


def _parent_value(resource: JSON, path: str) -> Any:
    return _value_at(resource, re.sub(r"(\.[^.]+|\[\d+\])$", "", path))


# Characters JavaScript's \s counts as spaces and XML Schema's \s does not.
_UNICODE_SPACE = re.compile(
    "[\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u000b\u000c\u0085]"
)
_MEDPLUM_DATE_TIME = re.compile(
    r"^(\d(\d(\d[1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2]\d|3[0-1])"
    r"(T([01]\d|2[0-3])(:[0-5]\d:([0-5]\d|60)(\.\d{1,9})?)?)?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00)?)?)?$"
)
_FORMAT_ERROR = re.compile(r"^Invalid (\w+) format$")
_CONTROL = re.compile("[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]")


def _medplum_value(problem: Problem, case: Case) -> Any:
    return _value_at(case.resource, problem.path)


CATEGORIES: tuple[Category, ...] = (
    Category(
        "code outside its required value set",
        "pymedplum",
        'A code bound to a required value set must be one of its codes (`gender: "m"`, '
        '`status: "done"`, `comparator: "="`). Medplum\'s validator does not check '
        "bindings, and real Medplum stores such codes (FACTS.md); we keep rejecting them.",
        lambda p, c: p.kind == "literal_error" and not p.path.endswith("resourceType"),
    ),
    Category(
        "two alternatives of one choice element",
        "pymedplum",
        '`value[x]` takes one type. Medplum only warns ("Conflicting choice of type '
        'properties") and stores both; we keep rejecting it.',
        lambda p, c: p.kind == "fhir_choice" and "takes one type" in p.message,
    ),
    Category(
        "empty string",
        "pymedplum",
        'FHIR JSON forbids empty strings (json.html: a value is never ""). Medplum\'s '
        "validator passes them over and real Medplum stores them; we keep rejecting them.",
        lambda p, c: p.kind in ("string_too_short", "fhir_format") and p.value == "",
    ),
    Category(
        "empty array",
        "pymedplum",
        "FHIR JSON forbids empty arrays. Medplum's validator accepts `[]` (for an optional "
        "element); we keep rejecting it.",
        lambda p, c: p.kind == "too_short" and p.value == "[...]",
    ),
    Category(
        "resource id that is not an id",
        "pymedplum",
        "A resource's `id` is of type id (`[A-Za-z0-9\\-\\.]{1,64}`). R4's snapshots label it "
        "with the FHIRPath type System.String, which Medplum's validator does not check "
        "(its server assigns ids itself); our models check it as an id.",
        lambda p, c: (
            p.kind == "fhir_format"
            and p.message == "Input is not a valid FHIR id"
            and p.path.endswith(".id")
            and isinstance(_parent_value(c.resource, p.path), dict)
            and "resourceType" in _parent_value(c.resource, p.path)
        ),
    ),
    Category(
        "control character in a code, id or uri",
        "pymedplum",
        "The specification's expressions are XML Schema expressions over XML characters, "
        "which exclude control characters (U+0007...). Medplum's JavaScript `\\S` takes them in "
        "a code or a uri (it rejects them in a string, as we do).",
        lambda p, c: (
            p.kind == "fhir_format"
            and isinstance(p.value, str)
            and _CONTROL.search(p.value) is not None
        ),
    ),
    Category(
        "element inside an empty object",
        "pymedplum",
        "An empty object (`{}`) is not FHIR (ele-1). We validate it as an object of its type, "
        "so one whose type has required elements fails on them; Medplum treats `{}` as an "
        "absent element.",
        lambda p, c: p.kind == "missing" and _parent_value(c.resource, p.path) == {},
    ),
    Category(
        "dateTime forms only Medplum's expression takes",
        "pymedplum",
        "Medplum's dateTime expression also takes an hour without minutes "
        "(`2020-01-02T10`), a zone after a date (`2020-01-02Z`) and a sign without an "
        "offset; the specification's does not, and neither do we. (A time without a zone is "
        "the one relaxation we share with Medplum.)",
        lambda p, c: (
            p.kind == "fhir_format"
            and "dateTime" in p.message
            and isinstance(p.value, str)
            and _MEDPLUM_DATE_TIME.match(p.value) is not None
        ),
    ),
    Category(
        "FHIRPath invariant",
        "Medplum",
        "Medplum evaluates the invariants of the definitions (`obs-6`, `per-1`, `ref-1`...); "
        "our models check structure, types, cardinality, formats and bindings, not FHIRPath.",
        lambda p, c: p.kind == "invariant",
    ),
    Category(
        "day that does not exist",
        "Medplum",
        "`2023-02-30` matches the specification's expression; Medplum also checks the "
        "calendar, our models only the expression.",
        lambda p, c: re.fullmatch(r"Invalid (date|dateTime|instant) value", p.message) is not None,
    ),
    Category(
        "string of spaces only",
        "Medplum",
        'The specification\'s expression for string accepts `"   "` (FHIR says a string '
        "SHOULD have non-whitespace content); Medplum rejects it, we follow the expression.",
        lambda p, c: p.message == "String must contain non-whitespace content",
    ),
    Category(
        "Unicode space where FHIR allows it",
        "Medplum",
        "In the specification's XML Schema expressions `\\s` is only space, tab, CR and LF, "
        "so a no-break space (or U+2009, U+3000...) is valid in a code, id-like or uri value. "
        "Medplum's JavaScript expressions read `\\s` as any Unicode space and reject it.",
        lambda p, c: (
            _FORMAT_ERROR.match(p.message) is not None
            and isinstance(_medplum_value(p, c), str)
            and _UNICODE_SPACE.search(_medplum_value(p, c)) is not None
        ),
    ),
    Category(
        "narrative over 1 MB",
        "Medplum",
        "FHIR limits a string to 1 MB, and Medplum applies that limit to the xhtml narrative "
        "too; the narrative is of type xhtml, which has no such limit (two official "
        "terminology examples carry larger ones).",
        lambda p, c: p.path.endswith(".text.div") and "larger than 1 MB" in p.message,
    ),
    Category(
        "more than 9 digits of a second",
        "Medplum",
        "The specification allows any number of fraction digits in a dateTime, instant or "
        "time; Medplum's expressions allow at most 9.",
        lambda p, c: (
            re.fullmatch(r"Invalid (dateTime|instant|time) format", p.message) is not None
            and isinstance(_medplum_value(p, c), str)
            and re.search(r"\.\d{10,}", _medplum_value(p, c)) is not None
        ),
    ),
    Category(
        "empty object",
        "Medplum",
        "An empty object (`{}`) is not FHIR (ele-1). Medplum treats it as an absent element "
        '("Missing required property" where the element is required, "Invalid additional '
        'property" for a choice); our models validate it as an object of its type and do not '
        "check ele-1, which would cost a Python call per object.",
        lambda p, c: (
            (
                p.message in ("Invalid empty non-primitive value", "Invalid empty value")
                or p.message == "Missing required property"
                or p.message.startswith("Invalid additional property")
            )
            and _medplum_value(p, c) == {}
        ),
    ),
    Category(
        "base64Binary with line breaks or spaces",
        "Medplum",
        "The specification's base64Binary expression allows whitespace between groups (the "
        "official Binary example wraps its data); Medplum's check does not.",
        lambda p, c: (
            p.message == "Invalid base64Binary format"
            and isinstance(_medplum_value(p, c), str)
            and re.search(r"[ \t\r\n]", _medplum_value(p, c)) is not None
        ),
    ),
)


def explain(case: Case) -> tuple[str, ...] | None:
    """The categories that explain a disagreement (every error of the rejecting side is in
    one), or None when some error fits no category."""
    problems = case.ours if not case.ours_ok else case.medplum
    side = "pymedplum" if not case.ours_ok else "Medplum"
    names: list[str] = []
    for problem in problems:
        category = next(
            (c for c in CATEGORIES if c.rejected_by == side and c.matches(problem, case)), None
        )
        if category is None:
            return None
        if category.name not in names:
            names.append(category.name)
    return tuple(names) if names else None


# ---------------------------------------------------------------------------------------
# Mutations


@dataclass(frozen=True)
class Slot:
    """What an element of a model holds."""

    json_name: str
    kind: Literal["primitive", "code", "model", "resource"]
    type_name: str  # FHIR primitive type, model class name, or "" for codes/resources
    is_list: bool
    required: bool
    codes: tuple[str, ...] = ()


_ANNOTATION = re.compile(r"^(Opt\[)?(list\[)?(.+?)\]?\]?$")
_PRIMITIVE = re.compile(r"^Fhir([A-Z]\w*)$")


@cache
def slots(cls: type[FHIRModel]) -> dict[str, Slot]:
    """The elements of a model class by JSON name, read from its generated annotations."""
    found: dict[str, Slot] = {}
    for klass in reversed(cls.__mro__):
        for attr, annotation in vars(klass).get("__annotations__", {}).items():
            if attr not in cls.model_fields or attr.endswith("_ext") or attr == "resource_type":
                continue
            info = cls.model_fields[attr]
            json_name = info.validation_alias if isinstance(info.validation_alias, str) else attr
            text = _annotation_type(str(annotation))
            optional = text.startswith("Opt[")
            inner = text[4:-1] if optional else text
            is_list = inner.startswith("list[")
            inner = inner[5:-1] if is_list else inner
            required = not optional
            if inner.startswith("Literal["):
                codes = tuple(re.findall(r"'([^']*)'|\"([^\"]*)\"", inner))
                flat = tuple(a or b for a, b in codes)
                found[json_name] = Slot(json_name, "code", "code", is_list, required, flat)
            elif match := _PRIMITIVE.match(inner):
                primitive = match.group(1)
                fhir_type = primitive[0].lower() + primitive[1:]
                found[json_name] = Slot(json_name, "primitive", fhir_type, is_list, required)
            elif inner == "AnyResource":
                found[json_name] = Slot(json_name, "resource", "", is_list, required)
            else:
                found[json_name] = Slot(json_name, "model", inner, is_list, required)
    return found


@cache
def choice_groups(cls: type[FHIRModel]) -> tuple[tuple[str, ...], ...]:
    """Each choice element of a class as its alternatives' JSON names."""
    groups = getattr(cls, "__fhir_choice_groups__", ())
    result = []
    for _, _, alternatives in groups:
        names = []
        for alternative in alternatives:
            info = cls.model_fields[alternative[0]]
            alias = info.validation_alias
            names.append(alias if isinstance(alias, str) else alternative[0])
        result.append(tuple(names))
    return tuple(result)


def _model_class(name: str) -> type[FHIRModel]:
    cls = getattr(fhir, name)
    cls.model_rebuild()
    return cls  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Spot:
    """An element present in a resource: its container, key, and what it holds."""

    path: str
    container: dict[str, Any]
    owner: type[FHIRModel]
    slot: Slot


def spots(resource: JSON) -> Iterator[Spot]:
    """Every element present in the resource and its nested resources, in document order."""
    cls = fhir.resource_class(str(resource.get("resourceType")))
    if cls is not None:
        cls.model_rebuild()
        yield from _spots_in(resource, cls, str(resource["resourceType"]))


def _spots_in(obj: dict[str, Any], cls: type[FHIRModel], path: str) -> Iterator[Spot]:
    shape = slots(cls)
    for key, value in list(obj.items()):
        slot = shape.get(key)
        if slot is None:
            continue
        spot_path = f"{path}.{key}"
        yield Spot(spot_path, obj, cls, slot)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            item_path = f"{spot_path}[{index}]" if isinstance(value, list) else spot_path
            if not isinstance(item, dict):
                continue
            if slot.kind == "model":
                yield from _spots_in(item, _model_class(slot.type_name), item_path)
            elif slot.kind == "resource":
                nested = fhir.resource_class(str(item.get("resourceType")))
                if nested is not None:
                    nested.model_rebuild()
                    yield from _spots_in(item, nested, item_path)


# Bad values per FHIR primitive type: (label, value).
BAD_FORMATS: dict[str, tuple[tuple[str, Any], ...]] = {
    "date": (
        ("month 13", "2020-13-01"),
        ("a day that does not exist", "2023-02-30"),
        ("a time", "2020-01-01T00:00:00Z"),
    ),
    "dateTime": (
        ("hour alone", "2020-01-02T10"),
        ("hour 25", "2020-01-02T25:00:00Z"),
        ("zone after a date", "2020-01-02Z"),
        ("slashes", "01/02/2020"),
        ("a day that does not exist", "2021-02-29T10:00:00Z"),
    ),
    "instant": (
        ("a date", "2020-01-02"),
        ("ten fraction digits", "2020-01-02T10:00:00.1234567890Z"),
    ),
    "time": (("hour 24", "24:00:00"), ("no seconds", "10:00")),
    "id": (("a space", "a b"), ("65 characters", "a" * 65), ("an underscore", "a_b")),
    "code": (("two spaces", "a  b"), ("leading space", " a"), ("a tab only", "\t")),
    "uri": (("a space", "urn:a b"),),
    "url": (("a space", "http://a b"),),
    "canonical": (("a space", "http://a b"),),
    "oid": (("not urn:oid", "1.2.3"),),
    "uuid": (("upper case", "urn:uuid:C757873D-EC9A-4326-A141-556F43239520"),),
    "integer": (("2**31", 2**31), ("a fraction", 1.5)),
    "positiveInt": (("zero", 0),),
    "unsignedInt": (("minus one", -1),),
    "decimal": (("a string", "1.5"),),
    "boolean": (("yes", "yes"),),
    "base64Binary": (("not base64", "@@@@"),),
    "string": (("a vertical tab", "a\u000bb"), ("spaces only", "   ")),
    "markdown": (("spaces only", "   "),),
}

# A valid value of each type that can be added as a second alternative of a choice.
SIMPLE_VALUES: dict[str, Any] = {
    "Boolean": True,
    "String": "x",
    "Integer": 1,
    "DateTime": "2020-01-02",
    "Date": "2020-01-02",
    "Code": "x",
    "Uri": "urn:x",
    "Decimal": 1.5,
    "Instant": "2020-01-02T10:00:00Z",
    "Time": "10:00:00",
    "CodeableConcept": {"text": "x"},
    "Quantity": {"value": 1},
    "Reference": {"reference": "Patient/1"},
    "Period": {"start": "2020"},
}

_WRONG_TYPES: dict[str, Any] = {"str": 1, "bool": "true", "int": "1", "float": "1.5"}
_TEXT_TYPES = ("string", "markdown", "code", "id", "uri", "url", "canonical")
_ZONED = re.compile(r"T\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _set(spot: Spot, value: Any) -> None:
    spot.container[spot.slot.json_name] = value


def _first(spot: Spot) -> Any:
    value = spot.container[spot.slot.json_name]
    return value[0] if isinstance(value, list) and value else value


def _replace_first(spot: Spot, new: Any) -> None:
    value = spot.container[spot.slot.json_name]
    if isinstance(value, list) and value:
        value[0] = new
    else:
        _set(spot, new)


Mutation = tuple[str, Callable[[JSON, random.Random], str | None]]


def _pick(resource: JSON, rng: random.Random, want: Callable[[Spot], bool]) -> Spot | None:
    found = [s for s in spots(resource) if want(s)]
    return rng.choice(found) if found else None


def _drop_required(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: s.slot.required)
    if spot is None:
        return None
    del spot.container[spot.slot.json_name]
    return spot.path


def _wrong_json_type(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: True)
    if spot is None:
        return None
    value = spot.container[spot.slot.json_name]
    if isinstance(value, list):
        _set(spot, value[0])  # a single value where an array belongs
    elif isinstance(value, dict):
        _set(spot, [value] if not spot.slot.is_list else value)
        if spot.slot.is_list:
            return None
    else:
        _set(spot, _WRONG_TYPES.get(type(value).__name__, "x"))
    return spot.path


def _bad_code(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: s.slot.kind == "code")
    if spot is None:
        return None
    _replace_first(spot, rng.choice(["m", "done", "=", "not-a-code"]))
    return spot.path


def _bad_format(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(
        resource, rng, lambda s: s.slot.kind == "primitive" and s.slot.type_name in BAD_FORMATS
    )
    if spot is None:
        return None
    label, value = rng.choice(BAD_FORMATS[spot.slot.type_name])
    _replace_first(spot, value)
    return f"{spot.path} ({spot.slot.type_name}: {label})"


def _two_choices(resource: JSON, rng: random.Random) -> str | None:
    candidates = []
    for spot in spots(resource):
        for group in choice_groups(spot.owner):
            if spot.slot.json_name in group:
                others = [
                    name
                    for name in group
                    if name != spot.slot.json_name and _choice_type(name, group) in SIMPLE_VALUES
                ]
                if others:
                    candidates.append((spot, others, group))
    if not candidates:
        return None
    spot, others, group = rng.choice(candidates)
    other = rng.choice(others)
    spot.container[other] = SIMPLE_VALUES[_choice_type(other, group)]
    return f"{spot.path} + {other}"


def _choice_type(name: str, group: tuple[str, ...]) -> str:
    stem = _common_stem(group)
    return name[len(stem) :]


def _common_stem(names: tuple[str, ...]) -> str:
    stem = names[0]
    for name in names[1:]:
        while not name.startswith(stem):
            stem = stem[:-1]
    # "valueQuantity", "valueString" -> "value"; never cut into the type name.
    while stem and stem[-1].isupper():
        stem = stem[:-1]
    return stem


def _objects(resource: JSON) -> list[tuple[str, dict[str, Any]]]:
    found = [(str(resource.get("resourceType")), resource)]
    for spot in spots(resource):
        if spot.slot.kind in ("model", "resource"):
            value = spot.container[spot.slot.json_name]
            for index, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, dict):
                    found.append((f"{spot.path}[{index}]", item))
    return found


def _unknown_element(resource: JSON, rng: random.Random) -> str | None:
    path, obj = rng.choice(_objects(resource))
    obj["fooBar"] = "x"
    return path


def _text_spot(resource: JSON, rng: random.Random, types: Iterable[str]) -> Spot | None:
    wanted = set(types)
    return _pick(
        resource,
        rng,
        lambda s: (
            s.slot.kind == "primitive" and s.slot.type_name in wanted and isinstance(_first(s), str)
        ),
    )


def _insert(text: str, char: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(text)) if len(text) > 1 else 1
    return text[:at] + char + text[at:]


def _no_break_space(resource: JSON, rng: random.Random) -> str | None:
    spot = _text_spot(resource, rng, _TEXT_TYPES)
    if spot is None:
        return None
    _replace_first(spot, _insert(_first(spot), "\u00a0", rng))
    return f"{spot.path} ({spot.slot.type_name})"


def _unicode_space_in_text(resource: JSON, rng: random.Random) -> str | None:
    spot = _text_spot(resource, rng, ("string", "markdown"))
    if spot is None:
        return None
    _replace_first(spot, _insert(_first(spot), rng.choice("\u2009\u3000\u202f"), rng))
    return f"{spot.path} ({spot.slot.type_name})"


def _control_character(resource: JSON, rng: random.Random) -> str | None:
    spot = _text_spot(resource, rng, _TEXT_TYPES)
    if spot is None:
        return None
    _replace_first(spot, _insert(_first(spot), "\u0007", rng))
    return f"{spot.path} ({spot.slot.type_name})"


def _zoneless(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(
        resource,
        rng,
        lambda s: (
            s.slot.kind == "primitive"
            and s.slot.type_name in ("dateTime", "instant")
            and isinstance(_first(s), str)
            and _ZONED.search(_first(s)) is not None
        ),
    )
    if spot is None:
        return None
    _replace_first(spot, re.sub(r"(Z|[+-]\d\d:\d\d)$", "", _first(spot)))
    return f"{spot.path} ({spot.slot.type_name})"


def _empty_string(resource: JSON, rng: random.Random) -> str | None:
    spot = _text_spot(resource, rng, (*_TEXT_TYPES, "date", "dateTime"))
    if spot is None:
        return None
    _replace_first(spot, "")
    return spot.path


def _null(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: True)
    if spot is None:
        return None
    _set(spot, None)
    return spot.path


def _empty_array(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: s.slot.is_list)
    if spot is None:
        return None
    _set(spot, [])
    return spot.path


def _empty_object(resource: JSON, rng: random.Random) -> str | None:
    spot = _pick(resource, rng, lambda s: s.slot.kind == "model")
    if spot is None:
        return None
    _replace_first(spot, {})
    return spot.path


def _no_resource_type(resource: JSON, rng: random.Random) -> str | None:
    del resource["resourceType"]
    return "resourceType"


MUTATIONS: tuple[Mutation, ...] = (
    ("drop a required element", _drop_required),
    ("wrong JSON type", _wrong_json_type),
    ("code outside its value set", _bad_code),
    ("malformed primitive", _bad_format),
    ("two alternatives of a choice", _two_choices),
    ("unknown element", _unknown_element),
    ("no-break space", _no_break_space),
    ("other Unicode space in a string", _unicode_space_in_text),
    ("control character", _control_character),
    ("dateTime/instant without a zone", _zoneless),
    ("empty string", _empty_string),
    ("null", _null),
    ("empty array", _empty_array),
    ("empty object", _empty_object),
    ("no resourceType", _no_resource_type),
)


def mutate(resource: JSON, rng: random.Random, count: int) -> list[tuple[str, JSON]]:
    """`count` mutations of a resource, each of one kind, chosen with `rng`."""
    made = []
    for _ in range(count):
        name, apply = rng.choice(MUTATIONS)
        mutated = copy.deepcopy(resource)
        where = apply(mutated, rng)
        if where is not None:
            made.append((f"{name} @ {where}", mutated))
    return made


# ---------------------------------------------------------------------------------------
# Running it


@dataclass
class Report:
    cases: list[Case] = field(default_factory=list)
    agreements: Counter[str] = field(default_factory=Counter)  # "both accept"/"both reject"
    # Disagreements by category; a case with errors of two categories counts in both.
    by_category: Counter[str] = field(default_factory=Counter)
    disagreements: int = 0
    unexplained: list[Case] = field(default_factory=list)

    def table(self) -> str:
        """The differential table, as Markdown."""
        agreed = sum(self.agreements.values())
        lines = [
            f"{len(self.cases)} resources; {agreed} agreements "
            f"({self.agreements['both accept']} accepted by both, "
            f"{self.agreements['both reject']} rejected by both); "
            f"{self.disagreements} disagreements, {len(self.unexplained)} unexplained.",
            "",
            "| disagreement | rejected by | resources | why |",
            "|---|---|---|---|",
        ]
        for category in sorted(CATEGORIES, key=lambda c: -self.by_category[c.name]):
            count = self.by_category[category.name]
            lines.append(f"| {category.name} | {category.rejected_by} | {count} | {category.why} |")
        return "\n".join(lines)

    def kinds_table(self) -> str:
        """Verdicts per kind of mutation (and for the files as they are), as Markdown."""
        rows: dict[str, Counter[str]] = {}
        for case in self.cases:
            kind = case.label.split(" ~ ", 1)[1].split(" @ ", 1)[0] if case.base else "(the files)"
            if case.ours_ok == case.medplum_ok:
                verdict = "both accept" if case.ours_ok else "both reject"
            else:
                verdict = "only Medplum accepts" if case.medplum_ok else "only we accept"
            rows.setdefault(kind, Counter())[verdict] += 1
        columns = ("both accept", "both reject", "only Medplum accepts", "only we accept")
        lines = ["| resources | " + " | ".join(columns) + " |", "|---" * 5 + "|"]
        order = ["(the files)", *(name for name, _ in MUTATIONS)]
        for kind, counts in sorted(rows.items(), key=lambda row: order.index(row[0])):
            lines.append(f"| {kind} | " + " | ".join(str(counts[c]) for c in columns) + " |")
        return "\n".join(lines)


def cases_from(files: Sequence[Path], *, bases: int, per_base: int, seed: int = SEED) -> list[Case]:
    """The example files as they are, then `per_base` mutations of each of `bases`
    resources drawn (with the seed) from the files our models accept."""
    cases: list[Case] = []
    originals: list[tuple[str, JSON]] = []
    for path in files:
        raw = path.read_bytes()
        resource = _json.loads(raw)
        label = f"{path.parent.name}/{path.name}"
        model = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(model, str) or fhir.resource_class(model) is None:
            continue
        cases.append(Case(label, resource, model))
        # Large bundles are validated, not mutated; invalid files are not mutated.
        if len(raw) < 200_000 and our_problems(resource, model) is None:
            originals.append((label, resource))
    rng = random.Random(seed)
    for label, resource in rng.sample(originals, min(bases, len(originals))):
        for what, mutated in mutate(resource, rng, per_base):
            model = str(resource["resourceType"])
            cases.append(Case(f"{label} ~ {what}", mutated, model, base=label))
    return cases


def run(cases: list[Case], node: list[str]) -> Report:
    """Both validators over every case, and the disagreements sorted into categories."""
    report = Report(cases=cases)
    medplum = MedplumValidation([c.resource for c in cases], node)
    ours = [our_problems(c.resource, c.model) for c in cases]
    for case, mine, (ok, problems) in zip(cases, ours, medplum.verdicts(), strict=True):
        case.medplum_ok, case.medplum = ok, problems
        case.ours_ok, case.ours = mine is None, mine or []
        if case.ours_ok == case.medplum_ok:
            report.agreements["both accept" if case.ours_ok else "both reject"] += 1
            continue
        report.disagreements += 1
        names = explain(case)
        if names is None:
            report.unexplained.append(case)
        else:
            report.by_category.update(names)
    return report


def describe(case: Case) -> str:
    """A disagreement, for the test's failure message."""
    return (
        f"{case.label}\n  pymedplum {'accepts' if case.ours_ok else 'rejects'}: "
        f"{[(p.path, p.kind, p.message) for p in case.ours]}\n  Medplum "
        f"{'accepts' if case.medplum_ok else 'rejects'}: "
        f"{[(p.path, p.kind, p.message) for p in case.medplum]}"
    )


def default_files() -> list[Path]:
    """The example files: the official R4 examples, ours for Medplum's resources, the
    invalid cases and the Medplum resources that lack required elements."""
    from tests.shared_data import (
        INVALID_DIR,
        MEDPLUM_PARTIAL,
        medplum_example_files,
        official_example_files,
    )

    return [
        *official_example_files(),
        *medplum_example_files(),
        *sorted(INVALID_DIR.glob("[0-9]*.json")),
        *sorted(MEDPLUM_PARTIAL.glob("*.json")),
    ]


def main(argv: list[str]) -> int:
    from pymedplum.testing.local_server import _node_command, ensure_installed

    ensure_installed()
    files = [Path(a) for a in argv] or default_files()
    report = run(cases_from(files, bases=BASES, per_base=PER_BASE), _node_command())
    print(report.table())
    print()
    print(report.kinds_table())
    for case in report.unexplained:
        print(describe(case))
    return 1 if report.unexplained else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
