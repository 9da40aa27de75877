"""Account assignments without I/O: the `$set-accounts` request.

Medplum keeps a resource's tenants in `meta.accounts` (a list of References). Reading them
is `pymedplum.helpers` (`get_resource_accounts`, `resource_has_account`); writing them is
`accounts=` on create/update or the `$set-accounts` operation built here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pymedplum._core import _check_id, _check_type

__all__ = [
    "account_list",
    "resource_path",
    "set_accounts_parameters",
]


def account_list(account_refs: str | Sequence[str]) -> list[str]:
    """Account references as a list; each must be a non-empty `Type/id` string."""
    refs = [account_refs] if isinstance(account_refs, str) else list(account_refs)
    for ref in refs:
        if not isinstance(ref, str) or "/" not in ref.strip("/"):
            shown = ref if isinstance(ref, str) and len(ref) <= 80 else type(ref).__name__
            raise ValueError(f"account_refs: {shown!r} is not a reference like 'Organization/id'")
    return refs


def resource_path(resource_ref: str) -> tuple[str, str]:
    """`(type, id)` of a `"Patient/123"` reference, both checked."""
    if not isinstance(resource_ref, str) or resource_ref.count("/") != 1:
        raise ValueError("resource_ref must be a reference like 'Patient/123'")
    resource_type, resource_id = resource_ref.split("/")
    return _check_type(resource_type), _check_id(resource_id, "resource_ref id")


def set_accounts_parameters(accounts: Sequence[str], propagate: bool) -> dict[str, Any]:
    """The Parameters body of `$set-accounts`: one `accounts` entry per reference."""
    parameter: list[dict[str, Any]] = [
        {"name": "accounts", "valueReference": {"reference": ref}} for ref in accounts
    ]
    if propagate:
        parameter.append({"name": "propagate", "valueBoolean": True})
    return {"resourceType": "Parameters", "parameter": parameter}
