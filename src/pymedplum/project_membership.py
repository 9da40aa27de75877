"""ProjectMembership.access: building, inspecting and merging parameterized AccessPolicy entries.

An access entry binds a membership to an AccessPolicy with parameter values:

    {"policy": {"reference": "AccessPolicy/practice-policy"},
     "parameter": [{"name": "organization",
                    "valueReference": {"reference": "Organization/practice-a"}}]}

The entries whose policy is one of the caller's `managed_policy_ids` form the *managed
slice*; the client methods (`merge_project_membership_access`, `add_...`, `remove_...`)
rewrite only that slice and leave every other entry as it was. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel

from pymedplum import _json
from pymedplum._convert import resource_to_dict
from pymedplum._core import _check_id

__all__ = [
    "MergeResult",
    "make_project_membership_access",
    "normalize_access_policy_reference",
    "normalize_access_policy_id",
    "get_project_membership_access_policy_id",
    "get_project_membership_access_parameter",
    "partition_access",
    "build_merged_access",
    "merged_equals_remote",
    "normalize_access_entry",
    "validate_managed_access",
]

AccessEntry = Mapping[str, Any] | BaseModel
_TYPED_REFERENCE = re.compile(r"[A-Z][A-Za-z]{0,63}/[A-Za-z0-9\-.]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a ProjectMembership access write did.

    Attributes:
        updated: whether a PUT was sent (False: the list was already as desired).
        version_id: `meta.versionId` after the call.
        managed_count: entries in the managed slice afterwards.
        untouched_count: entries outside it, left as they were.
    """

    updated: bool
    version_id: str | None
    managed_count: int
    untouched_count: int


# ---------------------------------------------------------------- references


def _reference_string(value: str | Mapping[str, Any] | BaseModel, what: str) -> str:
    if isinstance(value, BaseModel):
        value = resource_to_dict(value)
    if isinstance(value, Mapping):
        reference = value.get("reference")
        if not isinstance(reference, str) or not reference:
            raise ValueError(f"{what}: the Reference has no 'reference'")
        return reference
    if isinstance(value, str) and value:
        return value
    raise ValueError(f"{what}: expected a non-empty str, a Reference or a dict")


def normalize_access_policy_id(policy: str | Mapping[str, Any] | BaseModel) -> str:
    """The bare AccessPolicy id of `"abc"`, `"AccessPolicy/abc"`, a Reference or a dict.

    >>> normalize_access_policy_id({"reference": "AccessPolicy/abc"})
    'abc'
    """
    reference = _reference_string(policy, "policy")
    if "/" in reference:
        resource_type, _, policy_id = reference.partition("/")
        if resource_type != "AccessPolicy":
            raise ValueError(f"policy: {reference!r} is not an AccessPolicy reference")
    else:
        policy_id = reference
    return _check_id(policy_id, "policy")


def normalize_access_policy_reference(
    policy: str | Mapping[str, Any] | BaseModel,
) -> dict[str, str]:
    """`{"reference": "AccessPolicy/<id>"}` for any of the shapes `normalize_access_policy_id` takes."""  # noqa: E501
    return {"reference": f"AccessPolicy/{normalize_access_policy_id(policy)}"}


def _parameter(name: str, value: str | Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    if not isinstance(name, str) or not name:
        raise ValueError("parameters: every name must be a non-empty str")
    if isinstance(value, str):
        if _TYPED_REFERENCE.match(value):
            return {"name": name, "valueReference": {"reference": value}}
        if not value:
            raise ValueError(f"parameters[{name!r}]: the value is empty")
        return {"name": name, "valueString": value}
    reference = _reference_string(value, f"parameters[{name!r}]")
    return {"name": name, "valueReference": {"reference": reference}}


def make_project_membership_access(
    policy: str | Mapping[str, Any] | BaseModel,
    parameters: Mapping[str, str | Mapping[str, Any] | BaseModel],
) -> dict[str, Any]:
    """One `ProjectMembership.access` entry.

    `policy` is an AccessPolicy id, `"AccessPolicy/<id>"`, a Reference or a dict. Each
    parameter value that reads `Type/id` (or is a Reference) becomes a `valueReference`;
    any other string a `valueString`.

        >>> make_project_membership_access(
        ...     "AccessPolicy/practice-policy", {"organization": "Organization/org-a"})
        {'policy': {'reference': 'AccessPolicy/practice-policy'}, 'parameter': [{'name': 'organization', 'valueReference': {'reference': 'Organization/org-a'}}]}
    """  # noqa: E501
    if not isinstance(parameters, Mapping):
        raise ValueError("parameters must be a mapping of name -> value")
    entry: dict[str, Any] = {"policy": normalize_access_policy_reference(policy)}
    if parameters:
        entry["parameter"] = [_parameter(name, value) for name, value in parameters.items()]
    return entry


# ---------------------------------------------------------------- inspecting entries


def entry_dict(entry: AccessEntry) -> dict[str, Any]:
    if isinstance(entry, BaseModel | Mapping):
        return resource_to_dict(entry)
    raise TypeError(f"an access entry must be a dict or a model, not {type(entry).__name__}")


def normalize_access_entry(entry: AccessEntry) -> dict[str, Any]:
    """An access entry (a dict or a `ProjectMembershipAccess` model) as a FHIR JSON dict.

    A fresh deep copy with camelCase keys and no nulls: changing it never changes `entry`.
    Raises TypeError for a value JSON cannot hold (a set, an object), or for a non-entry.

    >>> normalize_access_entry({"policy": {"reference": "AccessPolicy/p"}})
    {'policy': {'reference': 'AccessPolicy/p'}}
    """
    result: dict[str, Any] = _json.loads(_json.dumps(entry_dict(entry)))
    return result


def get_project_membership_access_policy_id(entry: AccessEntry) -> str | None:
    """The bare AccessPolicy id of an access entry, or None when the entry is malformed."""
    try:
        policy = entry_dict(entry).get("policy")
        return normalize_access_policy_id(policy) if policy is not None else None
    except (TypeError, ValueError):
        return None


def get_project_membership_access_parameter(entry: AccessEntry, name: str) -> dict[str, Any] | None:
    """The parameter named `name` of an access entry (dict or model), or None."""
    try:
        parameters = entry_dict(entry).get("parameter")
    except TypeError:
        return None
    for parameter in parameters if isinstance(parameters, list) else ():
        if isinstance(parameter, Mapping) and parameter.get("name") == name:
            return dict(parameter)
    return None


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, default=_json._default, option=orjson.OPT_SORT_KEYS)


def merged_equals_remote(
    merged: Sequence[AccessEntry] | None, remote: Sequence[AccessEntry] | None
) -> bool:
    """Whether two access lists are equal as canonical JSON (key order ignored)."""
    left = [entry_dict(e) for e in merged or ()]
    right = [entry_dict(e) for e in remote or ()]
    return _canonical(left) == _canonical(right)


def managed_ids(managed_policy_ids: Collection[str]) -> frozenset[str]:
    """The managed AccessPolicy ids as bare ids; an empty set is refused."""
    if isinstance(managed_policy_ids, str):
        raise TypeError("managed_policy_ids must be a set of ids, not a single str")
    ids = frozenset(normalize_access_policy_id(p) for p in managed_policy_ids)
    if not ids:
        raise ValueError(
            "managed_policy_ids is empty: the helper could never clean up the entries it writes"
        )
    return ids


def partition_access(
    current: Iterable[AccessEntry] | None, managed_policy_ids: Collection[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split an access list into `(managed, untouched)`, each in its original order.

    Malformed entries (no readable AccessPolicy) are untouched.
    """
    ids = managed_ids(managed_policy_ids)
    managed: list[dict[str, Any]] = []
    untouched: list[dict[str, Any]] = []
    for entry in current or ():
        data = entry_dict(entry)
        (managed if get_project_membership_access_policy_id(data) in ids else untouched).append(
            data
        )
    return managed, untouched


def build_merged_access(
    untouched: Iterable[AccessEntry], managed_access: Iterable[AccessEntry]
) -> list[dict[str, Any]]:
    """The untouched entries (original order), then the managed ones (caller's order)."""
    return [entry_dict(e) for e in untouched] + [entry_dict(e) for e in managed_access]


def validate_managed_access(
    managed_access: Iterable[AccessEntry], managed_policy_ids: Collection[str]
) -> None:
    """Refuse an entry whose policy is not managed: a later merge could never remove it."""
    ids = managed_ids(managed_policy_ids)
    for index, entry in enumerate(managed_access):
        policy_id = get_project_membership_access_policy_id(entry)
        if policy_id is None:
            raise ValueError(f"managed_access[{index}]: the entry has no AccessPolicy reference")
        if policy_id not in ids:
            raise ValueError(
                f"managed_access[{index}]: AccessPolicy/{policy_id} is not in managed_policy_ids"
            )


# ---------------------------------------------------------------- what the client methods write


def membership_id(value: str) -> str:
    """A ProjectMembership id from `abc` or `ProjectMembership/abc`."""
    if not isinstance(value, str):
        raise ValueError("membership_id must be a str")
    if "/" in value:
        resource_type, _, value = value.partition("/")
        if resource_type != "ProjectMembership":
            raise ValueError("membership_id: expected 'ProjectMembership/<id>' or a bare id")
    return _check_id(value, "membership_id")


def _access_of(membership: Mapping[str, Any]) -> list[dict[str, Any]]:
    access = membership.get("access")
    return [entry_dict(e) for e in access] if isinstance(access, list) else []


def _set_access(membership: dict[str, Any], access: list[dict[str, Any]]) -> None:
    # An absent list stays absent when nothing is written into it: no spurious change.
    if access or "access" in membership:
        membership["access"] = access


def merge_into(
    membership: dict[str, Any], managed_access: Sequence[dict[str, Any]], ids: frozenset[str]
) -> None:
    """Replace the managed slice of `membership.access` by `managed_access` (in place)."""
    _, untouched = partition_access(_access_of(membership), ids)
    _set_access(membership, build_merged_access(untouched, managed_access))


def add_into(membership: dict[str, Any], entry: dict[str, Any], ids: frozenset[str]) -> None:
    """Append `entry` unless an equal one is already in the managed slice (in place)."""
    access = _access_of(membership)
    managed, _ = partition_access(access, ids)
    key = _canonical(entry)
    if not any(_canonical(e) == key for e in managed):
        _set_access(membership, [*access, entry])


def remove_from(membership: dict[str, Any], entry: dict[str, Any], ids: frozenset[str]) -> None:
    """Drop the managed entries equal to `entry`; others keep their places (in place)."""
    key = _canonical(entry)
    kept = [
        e
        for e in _access_of(membership)
        if not (get_project_membership_access_policy_id(e) in ids and _canonical(e) == key)
    ]
    _set_access(membership, kept)


def merge_result(
    wrote: bool, version_id: str | None, membership: Mapping[str, Any], ids: frozenset[str]
) -> MergeResult:
    """The MergeResult of a write (or of a skipped one) from the membership's final state."""
    managed, untouched = partition_access(_access_of(membership), ids)
    return MergeResult(wrote, version_id, len(managed), len(untouched))


# ---------------------------------------------------------------- inviting users

INVITE_RESOURCE_TYPES = frozenset({"Patient", "Practitioner", "RelatedPerson"})


def invite_body(
    *,
    resource_type: str,
    first_name: str,
    last_name: str,
    email: str | None,
    external_id: str | None,
    password: str | None,
    send_email: bool | None,
    admin: bool | None,
    access_policy: str | Mapping[str, Any] | BaseModel | None,
    membership: Mapping[str, Any] | None,
    upsert: bool | None,
    scope: str | None,
) -> dict[str, Any]:
    """The JSON body of `POST admin/projects/{id}/invite` (Medplum's InviteRequest)."""
    if resource_type not in INVITE_RESOURCE_TYPES:
        raise ValueError("resource_type must be 'Patient', 'Practitioner' or 'RelatedPerson'")
    if not first_name or not last_name:
        raise ValueError("first_name and last_name are required")
    if not email and not external_id:
        raise ValueError("invite_user needs an email or an external_id")
    body: dict[str, Any] = {
        "resourceType": resource_type,
        "firstName": first_name,
        "lastName": last_name,
    }
    optional: dict[str, Any] = {
        "email": email,
        "externalId": external_id,
        "password": password,
        "sendEmail": send_email,
        "admin": admin,
        "upsert": upsert,
        "scope": scope,
        "membership": dict(membership) if membership is not None else None,
    }
    if access_policy is not None:
        optional["accessPolicy"] = normalize_access_policy_reference(access_policy)
    body.update((k, v) for k, v in optional.items() if v is not None)
    return body
