"""Resources to Parquet, one file per resource type (pyarrow: `pip install 'pymedplum[parquet]'`).

The layout (docs/bulk_export.md explains the choice):
- one row per resource;
- one column per top-level element of the type's definition (choice types expanded:
  `valueQuantity`, `valueString`, ...), so a type's schema is the same in every export;
- primitive elements as typed columns: string-like as UTF-8, boolean as bool, integer
  types as int64, decimal as its exact JSON text (`"1.50"`, never a float);
- every other element (complex types, backbone elements, lists, `contained`) as a JSON
  column holding the element's FHIR JSON text exactly (Parquet's JSON logical type, so
  DuckDB reads it as JSON); decimals inside keep their digits;
- `meta_versionId` and `meta_lastUpdated` (a UTC timestamp) copied out of `meta` for
  queries; `meta` itself stays whole;
- `_extra`: a JSON object of whatever has no column (primitive extensions such as
  `_birthDate`, elements newer than our definitions), so no data is dropped.
`resource_from_row` rebuilds the original resource from a row.
"""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pymedplum import _json

__all__ = [
    "Column",
    "columns_for",
    "require_pyarrow",
    "ParquetTypeWriter",
    "resource_from_row",
    "DERIVED_COLUMNS",
    "EXTRA_COLUMN",
]

ColumnKind = Literal["string", "bool", "int", "decimal", "json"]

#: The JSON object of elements without a column of their own.
EXTRA_COLUMN = "_extra"
#: Columns copied out of `meta` (not part of the resource when it is rebuilt).
DERIVED_COLUMNS = ("meta_versionId", "meta_lastUpdated")
#: Rows buffered before they are written as one row group.
BATCH_ROWS = 10_000

_BOOLEAN = {"FhirBoolean", "bool"}
_INTEGER = {"FhirInteger", "FhirPositiveInt", "FhirUnsignedInt", "int"}
_DECIMAL = {"FhirDecimal"}


@dataclass(frozen=True, slots=True)
class Column:
    """One column: the element's JSON name and how its values are stored."""

    name: str
    kind: ColumnKind


def require_pyarrow() -> Any:
    """The pyarrow module, or an ImportError saying how to install it."""
    try:  # imported by name: pyarrow ships no type information
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ImportError(
            "writing Parquet needs pyarrow: pip install 'pymedplum[parquet]'"
        ) from None
    return pyarrow


def _annotation_type(text: str) -> str:
    """The type in a generated field's annotation text: `Annotated[Opt[FhirInteger],
    Field(...)]` -> `Opt[FhirInteger]` (the Field metadata dropped); other text as it is."""
    text = " ".join(text.split())
    if not text.startswith("Annotated["):
        return text
    depth = 0
    for index, char in enumerate(text[len("Annotated[") :], start=len("Annotated[")):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0:
            return text[len("Annotated[") : index].strip()
    return text


def _kind(annotation: str) -> ColumnKind:
    """The column kind of a model field's annotation text (`Opt[FhirBoolean]`, ...)."""
    text = _annotation_type(annotation).replace(" ", "")
    while text.startswith("Opt["):
        text = text[4:-1]
    if text.startswith("Literal["):
        return "string"
    if text in _BOOLEAN:
        return "bool"
    if text in _INTEGER:
        return "int"
    if text in _DECIMAL:
        return "decimal"
    if text.startswith("Fhir") or text == "str":
        return "string"
    return "json"


@functools.cache
def columns_for(resource_type: str) -> tuple[Column, ...]:
    """The columns of a resource type, from its model's fields (its definition).

    An unknown type gets the columns every resource has (`resourceType`, `id`, `meta`);
    its other elements go to `_extra`.
    """
    from pymedplum._fhirmodel import model_fields_of
    from pymedplum.fhir import resource_class

    model = resource_class(resource_type)
    if model is None:
        return (Column("resourceType", "string"), Column("id", "string"), Column("meta", "json"))
    annotations: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            annotations[name] = annotation if isinstance(annotation, str) else repr(annotation)
    columns = []
    for name, info in model_fields_of(model).items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else name
        if alias.startswith("_"):  # a primitive's extensions: kept in _extra
            continue
        kind: ColumnKind = "string" if alias == "resourceType" else _kind(annotations[name])
        columns.append(Column(alias, kind))
    return tuple(columns)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _arrow_type(pa: Any, kind: ColumnKind) -> Any:
    if kind == "bool":
        return pa.bool_()
    if kind == "int":
        return pa.int64()
    if kind == "json":
        json_type = getattr(pa, "json_", None)  # pyarrow >= 19: Parquet's JSON logical type
        return json_type(pa.utf8()) if json_type is not None else pa.utf8()
    return pa.utf8()


class ParquetTypeWriter:
    """Writes the resources of one type to a Parquet file, in row groups of BATCH_ROWS.

    The file is written beside `path` under a temporary name and moved into place by
    `close()`; `abort()` removes it. Memory holds one batch of rows at most.
    """

    def __init__(self, path: Path, resource_type: str, batch_rows: int = BATCH_ROWS) -> None:
        pa = require_pyarrow()
        self._pa = pa
        self.path = path
        self.resource_type = resource_type
        self.columns = columns_for(resource_type)
        self._known = {c.name for c in self.columns}
        fields = [pa.field(c.name, _arrow_type(pa, c.kind)) for c in self.columns]
        fields.insert(2, pa.field("meta_versionId", pa.utf8()))
        fields.insert(3, pa.field("meta_lastUpdated", pa.timestamp("us", tz="UTC")))
        fields.append(pa.field(EXTRA_COLUMN, _arrow_type(pa, "json")))
        self.schema = pa.schema(fields)
        self._batch_rows = batch_rows
        self._values: dict[str, list[Any]] = {f.name: [] for f in fields}
        self.rows = 0
        fd, self._temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        self._writer = pa.parquet.ParquetWriter(self._temp, self.schema, compression="zstd")

    def add(self, resource: Mapping[str, Any]) -> None:
        """Add one resource (a dict parsed with exact decimals)."""
        values = self._values
        extra = {k: v for k, v in resource.items() if k not in self._known}
        for column in self.columns:
            value = resource.get(column.name)
            if value is not None:
                value = _cell(column.kind, value)
                if value is _MISMATCH:  # not what the definition says: kept whole in _extra
                    extra[column.name] = resource[column.name]
                    value = None
            values[column.name].append(value)
        meta = resource.get("meta")
        meta = meta if isinstance(meta, Mapping) else {}
        version = meta.get("versionId")
        values["meta_versionId"].append(version if isinstance(version, str) else None)
        values["meta_lastUpdated"].append(_instant(meta.get("lastUpdated")))
        values[EXTRA_COLUMN].append(_json.dumps(extra).decode() if extra else None)
        self.rows += 1
        if len(values["resourceType"]) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        pa = self._pa
        if not self._values["resourceType"]:
            return
        arrays = []
        for item in self.schema:
            arrays.append(pa.array(self._values[item.name], type=item.type))
            self._values[item.name] = []
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema))

    def close(self) -> int:
        """Write the last rows and move the file into place; the number of rows."""
        self._flush()
        self._writer.close()
        os.replace(self._temp, self.path)
        return self.rows

    def abort(self) -> None:
        """After a failure: close and remove the partial file."""
        try:
            self._writer.close()
        finally:
            if os.path.exists(self._temp):
                os.unlink(self._temp)


_MISMATCH = object()


def _cell(kind: ColumnKind, value: Any) -> Any:
    """A value as its column stores it, or _MISMATCH when its JSON type is not the
    definition's (such a value goes to `_extra` unchanged)."""
    if kind == "json":
        return _json.dumps(value).decode()
    if kind == "string":
        return value if isinstance(value, str) else _MISMATCH
    if kind == "bool":
        return value if isinstance(value, bool) else _MISMATCH
    if isinstance(value, bool):
        return _MISMATCH
    if kind == "int":
        return value if isinstance(value, int) else _MISMATCH
    if isinstance(value, Decimal | int | float):  # decimal: its exact digits, as written
        return _json.dumps(value).decode()
    return _MISMATCH


def resource_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The resource a Parquet row holds (as `pyarrow.Table.to_pylist()` gives rows):
    JSON columns parsed (decimals exact), `_extra` merged back, derived columns left out."""
    resource: dict[str, Any] = {}
    for name, value in row.items():
        if value is None or name in DERIVED_COLUMNS:
            continue
        if name == EXTRA_COLUMN:
            resource.update(_json.loads(value))
        else:
            resource[name] = value
    parsed = _json_text_columns(resource.get("resourceType"))
    for name, value in list(resource.items()):
        if name in parsed and isinstance(value, str):
            resource[name] = _json.loads(value)
    return resource


@functools.cache
def _json_text_columns(resource_type: Any) -> frozenset[str]:
    """The columns that hold JSON text: the JSON columns and exact decimals."""
    if not isinstance(resource_type, str):
        return frozenset()
    return frozenset(c.name for c in columns_for(resource_type) if c.kind in ("json", "decimal"))
