"""History, conditional writes, references and rate-limit status."""

from __future__ import annotations

import collections.abc
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _history, _ratelimit
from pymedplum._async._base import AsyncClientBase
from pymedplum._core import Query, Resource
from pymedplum.bundle import FHIRBundle, model_resource_type

if TYPE_CHECKING:
    from pymedplum._generated.search_params import ResourceType
    from pymedplum._ratelimit import RateLimitStatus

M = TypeVar("M", bound=BaseModel)

# Model classes that stand for any resource type (no check against the reference's type).
_ANY_RESOURCE = frozenset({"Resource", "DomainResource"})


class AsyncHistoryMethods(AsyncClientBase):
    """History, conditional writes, references and rate-limit status."""

    # ------------------------------------------------------------ history

    @overload
    async def read_history(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        return_bundle: Literal[False] = False,
        as_fhir: type[M] | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def read_history(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        return_bundle: Literal[True],
        as_fhir: type[M] | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> FHIRBundle[Any]: ...
    async def read_history(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        return_bundle: bool = False,
        as_fhir: type[M] | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | FHIRBundle[Any]:
        """Read a resource's history: a `history` Bundle of its versions, newest first.

        Returns the Bundle dict, or with `return_bundle=True` a FHIRBundle (typed by
        `as_fhir`). A delete is an entry without a resource (`response.status` 410).
        Medplum returns at most the 100 newest versions in one page; follow further
        pages, when a server sends them, with `read_history_pages`.

            history = await client.read_history("Patient", "123")
            versions = [e["resource"]["meta"]["versionId"] for e in history["entry"]
                        if "resource" in e]

        Raises NotFoundError when the resource never existed.
        """
        call = _history.build_history(self, resource_type, resource_id, headers)
        bundle = await self._json(call, on_behalf_of)
        return FHIRBundle(bundle, as_fhir) if return_bundle else bundle

    def read_history_pages(
        self,
        resource_type: ResourceType,
        resource_id: str,
        as_fhir: type[M] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
        prefetch: bool = True,
    ) -> collections.abc.AsyncIterator[Any]:
        """Every version of a resource, newest first, following the history's `next` links.

        Yields each version as a dict, or as an `as_fhir` model. Deletes have no version to
        yield and are skipped (see them with `read_history`). A `next` link on another
        origin raises UnsafeRedirectError; the acting membership is resolved once, at the
        first page, for every page. `prefetch` (default) fetches the next page while you
        work through the current one; `prefetch=False` fetches each page when it is asked for.
        """
        call = _history.build_history(self, resource_type, resource_id, headers)
        return self._pages(call, on_behalf_of, as_fhir, prefetch=prefetch)

    # ------------------------------------------------------------ conditional writes

    @overload
    async def upsert_resource(
        self,
        resource: Resource,
        search_params: str | Query,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def upsert_resource(
        self,
        resource: Resource,
        search_params: str | Query,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def upsert_resource(
        self,
        resource: Resource,
        search_params: str | Query,
        *,
        headers: Mapping[str, str] | None = None,
        accounts: str | Sequence[str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Update the resource matching `search_params`, or create it: one conditional PUT.

        `PUT [base]/Type?search_params`, as @medplum/core's `upsertResource`: no match
        creates the resource (201), one match is replaced by it (200; an `id` in the
        resource must then be that match's), several raise PreconditionFailedError (412).
        `search_params` is a query string (`"identifier=http://mrn|123"`) or parameters as
        for `search_resources`; criteria that select nothing (none, or only `_count` and
        the like) are refused with ValueError, since the server would match every
        resource of the type. The request is safe to replay after an ambiguous failure.

            mrn = {"system": "http://mrn", "value": "123"}
            patient = await client.upsert_resource(
                {"resourceType": "Patient", "identifier": [mrn]}, "identifier=http://mrn|123"
            )
        """
        call = _history.build_conditional_update(self, resource, search_params, headers, accounts)
        # An empty answer (304 Not Modified) stands, as in @medplum/core, for the resource sent.
        return await self._json(call, on_behalf_of, as_fhir, empty=call.json_body)  # type: ignore[no-any-return]

    @overload
    async def conditional_patch(
        self,
        resource_type: ResourceType,
        search_params: str | Query,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def conditional_patch(
        self,
        resource_type: ResourceType,
        search_params: str | Query,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def conditional_patch(
        self,
        resource_type: ResourceType,
        search_params: str | Query,
        operations: Sequence[Mapping[str, Any]],
        *,
        headers: Mapping[str, str] | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Apply JSON Patch operations to the one resource matching `search_params`.

        `PATCH [base]/Type?search_params`: no match raises NotFoundError, several raise
        PreconditionFailedError. Criteria are checked as for `upsert_resource`. A PATCH is
        never replayed after a failure that may have applied it.

            await client.conditional_patch(
                "Patient", {"identifier": "http://mrn|123"},
                [{"op": "replace", "path": "/active", "value": False}],
            )
        """
        call = _history.build_conditional_patch(
            self, resource_type, search_params, operations, headers
        )
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    async def conditional_delete(
        self,
        resource_type: ResourceType,
        search_params: str | Query,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> None:
        """Delete the resource matching `search_params`, if there is one.

        `DELETE [base]/Type?search_params`: no match is not an error (nothing is deleted),
        several raise PreconditionFailedError and delete nothing. Criteria are checked as
        for `upsert_resource`.

            await client.conditional_delete("Patient", "identifier=http://mrn|123")
        """
        call = _history.build_conditional_delete(self, resource_type, search_params, headers)
        await self._send(call, on_behalf_of)

    # ------------------------------------------------------------ references

    @overload
    async def read_reference(
        self,
        reference: str | Mapping[str, Any] | BaseModel,
        as_fhir: None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def read_reference(
        self,
        reference: str | Mapping[str, Any] | BaseModel,
        as_fhir: type[M],
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def read_reference(
        self,
        reference: str | Mapping[str, Any] | BaseModel,
        as_fhir: type[M] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Read the resource a Reference points at: a dict, or an `as_fhir` model.

        `reference` is a Reference (dict or model, its `reference` is used) or a string:
        `Patient/123`, `Patient/123/_history/2` (that version is read) or an absolute
        URL under the client's own FHIR base. Refused before any request: contained
        (`#id`) and `urn:uuid:` references, logical references without `reference`,
        malformed ones, a `Reference.type` or an `as_fhir` model of another resource type
        (ValueError), and a URL on another origin (UnsafeRedirectError).

            observation = await client.read_resource("Observation", "456")
            patient = await client.read_reference(observation["subject"], Patient)
        """
        target = _history.reference_target(reference, self)
        if as_fhir is not None:
            wanted = model_resource_type(as_fhir)
            if wanted not in _ANY_RESOURCE and wanted != target.resource_type:
                raise ValueError(
                    f"the reference points at a {target.resource_type}, "
                    f"but as_fhir is {as_fhir.__name__}"
                )
        parts: tuple[str, ...] = (target.resource_id,)
        if target.version_id is not None:
            parts = (target.resource_id, "_history", target.version_id)
        call = self._build_read(target.resource_type, parts, headers)
        return await self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ rate limits

    def rate_limit_status(self) -> RateLimitStatus | None:
        """The rate limits Medplum reported with the last response (None before any).

        Medplum's `RateLimit` header (`"requests";r=59999;t=60, "fhirInteractions";r=49894;t=60`)
        parsed into a RateLimitStatus: each policy's units remaining and seconds to reset,
        and when it was seen. No request is sent. Slow down when few units remain: once
        a limit is exhausted, Medplum answers 429 until it resets.

            status = client.rate_limit_status()
            quota = status.fhir_interactions if status else None
            if quota is not None and quota.remaining < 100:
                ...  # wait quota.reset_seconds
        """
        return _ratelimit.status_from(self._last_rate_limit)
