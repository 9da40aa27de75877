"""Type names for annotating code that calls the client.

`PatchOperation` (one JSON Patch operation for `patch_resource`), `SummaryMode` and
`TotalMode` (the values of `search_with_options(summary=..., total=...)`), `QueryTypes` (the
shapes a search query can take) and `UpdateResult` (what `update_with_retry` returns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

from pymedplum._core import UpdateResult

__all__ = ["PatchOperation", "QueryTypes", "SummaryMode", "TotalMode", "UpdateResult"]

#: `_summary` values (FHIR search): `"count"` returns only the total.
SummaryMode = Literal["true", "text", "data", "count", "false"]

#: `_total` values (FHIR search): how the server computes `Bundle.total`.
TotalMode = Literal["none", "estimate", "accurate"]

#: A search query: a dict (a list value repeats the parameter) or (name, value) pairs.
QueryTypes = Mapping[str, Any] | Sequence[tuple[str, Any]]


class PatchOperation(TypedDict):
    """One JSON Patch operation (RFC 6902), as `patch_resource` sends it.

    `op` is `add`, `remove`, `replace`, `copy`, `move` or `test`; `path` is a JSON Pointer
    (`/name/0/family`); `value` is needed by `add`, `replace` and `test`; `from` (a Python
    keyword: use the dict form `{"op": "move", "from": ..., "path": ...}`) by `copy`/`move`.
    """

    op: Literal["add", "remove", "replace", "copy", "move", "test"]
    path: str
    value: NotRequired[Any]
