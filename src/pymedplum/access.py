"""`pymedplum.access`: the ProjectMembership.access helpers under the module name other SDKs use.

The same functions as `pymedplum.project_membership` (and the top-level `pymedplum`):
building entries (`make_project_membership_access`), reading them
(`get_project_membership_access_policy_id`, `..._parameter`), normalizing them
(`normalize_access_entry`, `normalize_access_policy_id`, `normalize_access_policy_reference`)
and the pure steps of a merge (`partition_access`, `build_merged_access`,
`merged_equals_remote`, `validate_managed_access`, `MergeResult`). The client methods that
write memberships are `merge_project_membership_access` and its add/remove siblings.
"""

from __future__ import annotations

from pymedplum.project_membership import (
    MergeResult,
    build_merged_access,
    get_project_membership_access_parameter,
    get_project_membership_access_policy_id,
    make_project_membership_access,
    merged_equals_remote,
    normalize_access_entry,
    normalize_access_policy_id,
    normalize_access_policy_reference,
    partition_access,
    validate_managed_access,
)

__all__ = [
    "MergeResult",
    "build_merged_access",
    "get_project_membership_access_parameter",
    "get_project_membership_access_policy_id",
    "make_project_membership_access",
    "merged_equals_remote",
    "normalize_access_entry",
    "normalize_access_policy_id",
    "normalize_access_policy_reference",
    "partition_access",
    "validate_managed_access",
]
