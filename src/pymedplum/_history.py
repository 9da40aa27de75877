"""History, conditional writes and references: request building and input checks (no I/O).

The shells in `_async/history.py` (and its generated sync twin) only send what is built here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel

from pymedplum import _core
from pymedplum._convert import resource_to_dict
from pymedplum._security import require_same_origin

if TYPE_CHECKING:
    from pymedplum._core import BaseClient, Call, Query, Resource

__all__ = [
    "ReferenceTarget",
    "conditional_criteria",
    "reference_target",
    "build_history",
    "build_conditional_update",
    "build_conditional_patch",
    "build_conditional_delete",
]

# Search parameters that shape a result but select nothing: criteria made only of these
# would match every resource of the type.
RESULT_PARAMETERS = frozenset(
    {
        "_count",
        "_offset",
        "_sort",
        "_total",
        "_summary",
        "_elements",
        "_include",
        "_revinclude",
        "_include:iterate",
        "_revinclude:iterate",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_at",
        "_since",
        "_cursor",
        "_fields",
    }
)


_TYPE_PREFIX = re.compile(r"[A-Z][A-Za-z]{0,63}\Z")


def _shown(value: str) -> str:
    """A reference or criterion for an error message: short ones whole, long ones cut."""
    return repr(value) if len(value) <= 70 else repr(value[:67] + "...")


def conditional_criteria(
    query: str | Query, core: BaseClient, resource_type: str, what: str
) -> str:
    """The query string of a conditional write, checked to select something.

    `query` is a search query string (`identifier=http://mrn|123`; a leading `?`, a leading
    `<resource_type>?` and a same-origin URL's query are accepted) or parameters as for
    `search_resources`. Refused: no criteria at all, or only result parameters such as
    `_count` (the server would then match every resource of the type), an empty value, and
    a `#` (the rest of the query would be dropped as a URL fragment).
    """
    if isinstance(query, str):
        text = query.strip()
        if _core._ABSOLUTE_URL.match(text):
            require_same_origin(text, core._origin, f"{what} URL")
            text = urlsplit(text).query
        else:
            head, sep, rest = text.partition("?")
            if sep and _TYPE_PREFIX.match(head):
                if head != resource_type:
                    raise ValueError(
                        f"{what}: the criteria name {head}, but the resource is a {resource_type}"
                    )
                text = rest
        text = text.lstrip("?")
        if "#" in text:
            raise ValueError(f"{what}: '#' in the criteria must be percent-encoded (%23)")
    elif isinstance(query, Mapping | list | tuple):
        text = _core.encode_query(query)
    else:
        raise TypeError(
            f"{what}: criteria must be a query string, a mapping or (name, value) pairs, "
            f"not {type(query).__name__}"
        )
    pairs = parse_qsl(text, keep_blank_values=True)
    empty = sorted({name for name, value in pairs if not value.strip()})
    if empty:
        raise ValueError(f"{what}: search parameter(s) {', '.join(empty)} have no value")
    if not any(name not in RESULT_PARAMETERS for name, _ in pairs):
        raise ValueError(
            f"{what} needs search criteria that select the resource "
            "(for example identifier=<system>|<value>): without them the server would "
            f"match every {resource_type}"
        )
    return text


# ---------------------------------------------------------------- references


@dataclass(frozen=True, slots=True)
class ReferenceTarget:
    """Where a reference points: a resource, or one version of it."""

    resource_type: str
    resource_id: str
    version_id: str | None = None


def _reference_parts(reference: object) -> tuple[str, str | None]:
    """(reference string, Reference.type) of a string, a Reference dict or a model."""
    if isinstance(reference, str):
        return reference, None
    if isinstance(reference, Mapping):
        ref, rtype = reference.get("reference"), reference.get("type")
        if "resourceType" in reference and ref is None:
            raise TypeError(
                f"read_reference expects a Reference, got a {reference.get('resourceType')} "
                "resource: use read_resource"
            )
    elif isinstance(reference, BaseModel):
        ref, rtype = getattr(reference, "reference", None), getattr(reference, "type", None)
        if ref is None and getattr(reference, "resource_type", None):
            raise TypeError(
                f"read_reference expects a Reference, got a {type(reference).__name__} "
                "resource: use read_resource"
            )
    else:
        raise TypeError(
            "read_reference expects a Reference (dict or model) or a 'Type/id' string, "
            f"not {type(reference).__name__}"
        )
    if ref is None:
        raise ValueError(
            "the Reference has no 'reference' (a logical reference by identifier or a "
            "display only): search by its identifier instead"
        )
    if not isinstance(ref, str):
        raise TypeError(f"Reference.reference must be a string, not {type(ref).__name__}")
    return ref, rtype if isinstance(rtype, str) else None


def reference_target(reference: object, core: BaseClient) -> ReferenceTarget:
    """Parse what `read_reference` was given into the resource (and version) to read.

    Accepted: `Type/id`, `Type/id/_history/vid`, and an absolute URL of the client's own
    FHIR base. Refused with ValueError: contained (`#id`) and `urn:` references, Medplum's
    `system` actor, anything malformed, and a `Reference.type` that disagrees with the
    reference; an absolute URL on another origin raises UnsafeRedirectError.
    """
    text, declared_type = _reference_parts(reference)
    ref = text.strip()
    if not ref:
        raise ValueError("the reference is empty")
    if ref.startswith("#"):
        raise ValueError(
            f"{_shown(ref)} is a contained reference: the resource is in the `contained` "
            "list of the resource that refers to it, not on the server"
        )
    if ref.lower().startswith(("urn:uuid:", "urn:oid:")):
        raise ValueError(
            f"{_shown(ref)} is a placeholder valid only inside a transaction Bundle; "
            "read the created resource by the id in the transaction response"
        )
    if ref == "system":
        raise ValueError("'system' names Medplum's system actor, not a resource to read")
    if _core._ABSOLUTE_URL.match(ref):
        require_same_origin(ref, core._origin, "the reference")
        parts = urlsplit(ref)
        if parts.query or parts.fragment:
            raise ValueError(f"{_shown(ref)} is not a reference to one resource")
        prefix = core._fhir_prefix
        if not parts.path.startswith(prefix):
            raise ValueError(f"{_shown(ref)} is outside the client's FHIR base {prefix}")
        ref = parts.path[len(prefix) :]
    segments = ref.split("/")
    if len(segments) == 2:
        rtype, rid, version = segments[0], segments[1], None
    elif len(segments) == 4 and segments[2] == "_history":
        rtype, rid, version = segments[0], segments[1], segments[3]
    else:
        raise ValueError(
            f"{_shown(text)} is not a reference of the form 'Type/id' "
            "(or 'Type/id/_history/versionId')"
        )
    try:
        _core._check_type(rtype)
        _core._check_id(rid, "the reference's id")
        if version is not None:
            _core._check_id(version, "the reference's version id")
    except ValueError as exc:
        raise ValueError(f"{_shown(text)} is not a valid reference: {exc}") from None
    if declared_type is not None and declared_type != rtype:
        raise ValueError(f"the Reference's type is {declared_type!r} but it points at a {rtype}")
    return ReferenceTarget(rtype, rid, version)


# ---------------------------------------------------------------- requests


def build_history(
    core: BaseClient, resource_type: str, resource_id: str, headers: Mapping[str, str] | None
) -> Call:
    """`GET [base]/Type/id/_history`."""
    parts = (_core._check_id(resource_id, "resource_id"), "_history")
    return core._build_read(resource_type, parts, headers)


def build_conditional_update(
    core: BaseClient,
    resource: Resource,
    criteria: str | Query,
    headers: Mapping[str, str] | None,
    accounts: str | Sequence[str] | None,
) -> Call:
    """`PUT [base]/Type?criteria` with the resource (the caller's object is not changed)."""
    body = resource_to_dict(resource)
    rtype = body.get("resourceType")
    if not isinstance(rtype, str):
        raise ValueError("upsert_resource: the resource has no resourceType")
    text = conditional_criteria(criteria, core, rtype, "upsert_resource")
    _core._stamp_accounts(body, accounts)
    sdk_headers = _core._merge_headers(headers, Content_Type=_core.FHIR_JSON)
    return core._call("PUT", core._resource_url(rtype) + "?" + text, sdk_headers, body)


def build_conditional_patch(
    core: BaseClient,
    resource_type: str,
    criteria: str | Query,
    operations: Sequence[Mapping[str, Any]],
    headers: Mapping[str, str] | None,
) -> Call:
    """`PATCH [base]/Type?criteria` with JSON Patch operations (never replayed)."""
    if isinstance(operations, Mapping | str | bytes):
        raise TypeError("conditional_patch expects a list of JSON Patch operations")
    url = core._resource_url(resource_type)  # checks the type before the criteria
    text = conditional_criteria(criteria, core, resource_type, "conditional_patch")
    ops = [resource_to_dict(op) for op in operations]
    sdk_headers = _core._merge_headers(headers, Content_Type=_core.JSON_PATCH)
    return core._call("PATCH", url + "?" + text, sdk_headers, ops)


def build_conditional_delete(
    core: BaseClient,
    resource_type: str,
    criteria: str | Query,
    headers: Mapping[str, str] | None,
) -> Call:
    """`DELETE [base]/Type?criteria`."""
    url = core._resource_url(resource_type)
    text = conditional_criteria(criteria, core, resource_type, "conditional_delete")
    return _core.Call("DELETE", url + "?" + text, _core._merge_headers(headers))
