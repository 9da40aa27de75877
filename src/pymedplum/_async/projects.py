"""Projects: accounts on resources, ProjectMembership access, inviting users.

These are admin calls: they act as the client itself. The ambient `client.on_behalf_of(...)`
value and `default_on_behalf_of` never apply to them (Medplum answers 403 to admin work on
behalf of a restricted member); an explicit `on_behalf_of=` is still sent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from pydantic import BaseModel

from pymedplum import _accounts, _core, _obo, project_membership
from pymedplum._async._base import AsyncClientBase
from pymedplum._core import _merge_headers
from pymedplum.exceptions import OperationOutcomeError
from pymedplum.project_membership import AccessEntry, MergeResult

if TYPE_CHECKING:
    from pymedplum._async.client import AsyncMedplumClient

_MEMBERSHIP: Final = "ProjectMembership"


class AsyncProjectMethods(AsyncClientBase):
    """Projects: accounts on resources, ProjectMembership access, inviting users."""

    # ------------------------------------------------------------ accounts

    async def set_accounts(
        self,
        resource_ref: str,
        account_refs: str | Sequence[str],
        *,
        propagate: bool = False,
        prefer_async: bool = False,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Set a resource's `meta.accounts` with Medplum's `$set-accounts` operation.

        Example:
            await client.set_accounts("Patient/123", ["Organization/a", "Organization/b"],
                                      propagate=True)

        `account_refs` replaces the resource's accounts (one reference or several).
        `propagate=True` also updates the resources in its compartment; `prefer_async=True`
        (only together with `propagate`) asks the server to run that as a job and answer
        at once. Returns the Parameters with `resourcesUpdated`, or, for a job, the 202
        OperationOutcome whose `issue[0].diagnostics` is the status URL: pass it to
        `wait_for_async_job`. Needs project-admin rights (403 otherwise), so it acts as the
        client: only an explicit `on_behalf_of=` is sent, never the ambient or default one.
        """
        resource_type, resource_id = _accounts.resource_path(resource_ref)
        accounts = _accounts.account_list(account_refs)
        background = prefer_async and propagate
        headers = _merge_headers(
            None,
            Content_Type=_core.FHIR_JSON,
            Prefer="respond-async" if background else None,
        )
        url = self._resource_url(resource_type, resource_id, "$set-accounts")
        body = _accounts.set_accounts_parameters(accounts, propagate)
        # Setting the same accounts twice converges, so a replay is safe; a job is not
        # replayed (a second job would run beside the first).
        call = self._call("POST", url, headers, body, replay_safe=not background)
        acting = _obo.admin_on_behalf_of(on_behalf_of)
        return await self._json(call, acting)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ ProjectMembership.access

    async def _write_access(
        self,
        membership_id: str,
        change: Callable[[dict[str, Any]], None],
        ids: frozenset[str],
        force: bool,
        max_retries: int,
        on_behalf_of: str | None,
    ) -> MergeResult:
        """Read, apply `change`, write back under If-Match; re-read and retry on 412.

        An admin call: the read and the write act as the client unless `on_behalf_of` is given.
        """
        member = project_membership.membership_id(membership_id)

        def mutate(membership: dict[str, Any]) -> dict[str, Any]:
            change(membership)
            return membership

        # update_with_retry lives on the client class these groups of methods are mixed into.
        client = cast("AsyncMedplumClient", self)
        result = await client.update_with_retry(
            _MEMBERSHIP,
            member,
            mutate,
            max_retries=max_retries,
            force=force,
            on_behalf_of=_obo.admin_on_behalf_of(on_behalf_of),
        )
        return project_membership.merge_result(
            result.wrote, result.version_id, result.resource, ids
        )

    async def merge_project_membership_access(
        self,
        membership_id: str,
        *,
        managed_access: Sequence[AccessEntry],
        managed_policy_ids: Collection[str],
        force: bool = False,
        max_retries: int = 1,
        on_behalf_of: str | None = None,
    ) -> MergeResult:
        """Make the managed slice of `ProjectMembership.access` equal `managed_access`.

        Example:
            result = await client.merge_project_membership_access(
                "alice-membership-id",
                managed_access=[
                    make_project_membership_access(
                        "AccessPolicy/practice-policy",
                        {"organization": "Organization/practice-a"},
                    ),
                ],
                managed_policy_ids={"practice-policy"},
            )

        Entries whose AccessPolicy id is in `managed_policy_ids` are replaced by
        `managed_access` (which may only use those policies; `[]` removes them all);
        every other entry is kept. One read, then one PUT guarded by If-Match, skipped when
        nothing changes (unless `force`); a 412 (a concurrent writer) re-reads and retries
        up to `max_retries` times, then raises PreconditionFailedError.

        An admin call: it acts as the client (the ambient and default on-behalf-of do not
        apply); pass `on_behalf_of=` to send one explicitly.
        """
        ids = project_membership.managed_ids(managed_policy_ids)
        entries = [project_membership.entry_dict(e) for e in managed_access]
        project_membership.validate_managed_access(entries, ids)
        return await self._write_access(
            membership_id,
            lambda m: project_membership.merge_into(m, entries, ids),
            ids,
            force,
            max_retries,
            on_behalf_of,
        )

    async def add_project_membership_access_entry(
        self,
        membership_id: str,
        entry: AccessEntry,
        *,
        managed_policy_ids: Collection[str],
        force: bool = False,
        max_retries: int = 1,
        on_behalf_of: str | None = None,
    ) -> MergeResult:
        """Append one access entry to the managed slice, unless an equal one is there.

        Example:
            await client.add_project_membership_access_entry(
                membership_id,
                make_project_membership_access(
                    "AccessPolicy/practice-policy", {"organization": "Organization/d"}
                ),
                managed_policy_ids={"practice-policy"},
            )

        Same contract as `merge_project_membership_access`: one If-Match PUT (none when
        nothing changes), retried on 412 against the fresh state, so concurrent changes
        by other writers are kept. An admin call: it acts as the client.
        """
        ids = project_membership.managed_ids(managed_policy_ids)
        new = project_membership.entry_dict(entry)
        project_membership.validate_managed_access([new], ids)
        return await self._write_access(
            membership_id,
            lambda m: project_membership.add_into(m, new, ids),
            ids,
            force,
            max_retries,
            on_behalf_of,
        )

    async def remove_project_membership_access_entry(
        self,
        membership_id: str,
        entry: AccessEntry,
        *,
        managed_policy_ids: Collection[str],
        force: bool = False,
        max_retries: int = 1,
        on_behalf_of: str | None = None,
    ) -> MergeResult:
        """Remove the managed access entries equal to `entry` (no PUT when there are none).

        Example:
            await client.remove_project_membership_access_entry(
                membership_id,
                make_project_membership_access(
                    "AccessPolicy/practice-policy", {"organization": "Organization/c"}
                ),
                managed_policy_ids={"practice-policy"},
            )

        Only the managed slice is searched; the other entries keep their places. An admin
        call: it acts as the client.
        """
        ids = project_membership.managed_ids(managed_policy_ids)
        old = project_membership.entry_dict(entry)
        project_membership.validate_managed_access([old], ids)
        return await self._write_access(
            membership_id,
            lambda m: project_membership.remove_from(m, old, ids),
            ids,
            force,
            max_retries,
            on_behalf_of,
        )

    # ------------------------------------------------------------ admin

    async def invite_user(
        self,
        project_id: str,
        resource_type: Literal["Patient", "Practitioner", "RelatedPerson"],
        first_name: str,
        last_name: str,
        email: str | None = None,
        *,
        external_id: str | None = None,
        password: str | None = None,
        send_email: bool | None = None,
        admin: bool | None = None,
        access_policy: str | Mapping[str, Any] | BaseModel | None = None,
        membership: Mapping[str, Any] | None = None,
        upsert: bool | None = None,
        scope: str | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Invite a user to a project (`POST admin/projects/{project_id}/invite`).

        Example:
            membership = await client.invite_user(
                "YOUR_PROJECT_ID", "Practitioner", "Alice", "Smith",
                email="alice@example.com", send_email=False,
            )
            membership_id = membership["id"]

        Medplum finds or creates the User and the profile (`resource_type`), then creates
        the ProjectMembership and returns it. `membership` is a template for it (`access`,
        `accessPolicy`, `admin`, ...); `upsert=True` updates an existing membership instead
        of failing with 409. Unset options are left to the server (it emails the user
        unless `send_email=False`). Needs project-admin rights, so it acts as the client:
        the ambient and default on-behalf-of do not apply (an explicit `on_behalf_of=` does).

        Raises OperationOutcomeError when the server answers 200 with an OperationOutcome
        (it does when the invitation email could not be sent: the user and membership
        exist, only the email failed).
        """
        body = project_membership.invite_body(
            resource_type=resource_type,
            first_name=first_name,
            last_name=last_name,
            email=email,
            external_id=external_id,
            password=password,
            send_email=send_email,
            admin=admin,
            access_policy=access_policy,
            membership=membership,
            upsert=upsert,
            scope=scope,
        )
        path = f"admin/projects/{_core._check_id(project_id, 'project_id')}/invite"
        headers = _merge_headers(None, Content_Type="application/json")
        call = self._call("POST", self._url(path), headers, body)
        result = await self._json(call, _obo.admin_on_behalf_of(on_behalf_of))
        if not isinstance(result, dict) or result.get("resourceType") != _MEMBERSHIP:
            outcome = result if isinstance(result, dict) else None
            if outcome is not None and outcome.get("resourceType") != "OperationOutcome":
                outcome = None
            raise OperationOutcomeError(
                "invite_user: the server answered 200 without a ProjectMembership (for "
                "example, the invitation email could not be sent); the user may have been "
                "invited: search ProjectMembership before retrying",
                status_code=200,
                outcome=outcome,
                method="POST",
                path_template="/admin/projects/{id}/invite",
            )
        return result
