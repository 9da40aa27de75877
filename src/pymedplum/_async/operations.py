"""FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _core, _obo, _operations
from pymedplum._async._base import AsyncClientBase
from pymedplum._convert import resource_to_dict
from pymedplum._core import FHIR_JSON, Call, Query, Resource, _merge_headers
from pymedplum.exceptions import MedplumError, ValidationError

if TYPE_CHECKING:
    from pymedplum._generated.search_params import ResourceType

M = TypeVar("M", bound=BaseModel)


class AsyncOperationMethods(AsyncClientBase):
    """FHIR operations: $-operations, terminology, clone, expunge, $validate, $everything."""

    # ------------------------------------------------------------ any operation

    @overload
    async def execute_operation(
        self,
        resource_type: ResourceType | None,
        operation: str,
        resource_id: str | None = None,
        params: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        method: Literal["GET", "POST"] = "POST",
        wrap_params: bool = False,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> Any: ...
    @overload
    async def execute_operation(
        self,
        resource_type: ResourceType | None,
        operation: str,
        resource_id: str | None = None,
        params: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        method: Literal["GET", "POST"] = "POST",
        wrap_params: bool = False,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def execute_operation(
        self,
        resource_type: ResourceType | None,
        operation: str,
        resource_id: str | None = None,
        params: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        method: Literal["GET", "POST"] = "POST",
        wrap_params: bool = False,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """Run a FHIR operation: system (`resource_type=None`), type or instance level.

        Example:
            bundle = await client.execute_operation("Patient", "everything", resource_id="123")
            found = await client.execute_operation(
                "CodeSystem", "lookup", params={"system": "http://loinc.org", "code": "8867-4"},
                method="GET",
            )

        `operation` is the name with or without `$`. With POST, `params` is the body (a
        Parameters resource, any resource or model, or a dict sent as it is; with
        `wrap_params=True` a plain dict becomes a Parameters resource, see
        `dict_to_parameters`). With GET, `params` (a dict, pairs, or a Parameters resource
        of primitive values) becomes the query. Returns the parsed response (None for an
        empty body). `as_fhir` parses a directly returned resource of that model's type;
        any other answer (for example a Parameters wrapping it) raises MedplumError.
        A POST is not replayed after an ambiguous failure: it may have acted.
        """
        call = _operations.build_operation(
            self,
            resource_type,
            operation,
            resource_id,
            params,
            headers=headers,
            method=method,
            wrap_params=wrap_params,
        )
        # Inside the call, so that an answer as_fhir cannot read fails its audit event too.
        select = functools.partial(_operations.check_direct_result, as_fhir=as_fhir)
        return await self._json(call, on_behalf_of, empty=None, select=select)

    async def _read_only_operation(
        self,
        resource_type: str,
        operation: str,
        resource_id: str | None,
        params: dict[str, Any],
        on_behalf_of: str | None,
    ) -> dict[str, Any]:
        """POST a Parameters input to an operation that changes nothing (safe to replay)."""
        call = _operations.build_operation(
            self, resource_type, operation, resource_id, params, read_only=True
        )
        return await self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ terminology

    async def expand_valueset(
        self,
        valueset_url: str | None = None,
        valueset_id: str | None = None,
        filter: str | None = None,
        offset: int | None = None,
        count: int | None = None,
        include_designations: bool | None = None,
        active_only: bool | None = None,
        exclude_nested: bool | None = None,
        exclude_not_for_ui: bool | None = None,
        exclude_post_coordinated: bool | None = None,
        display_language: str | None = None,
        property: Sequence[str] | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Expand a ValueSet (`$expand`) by canonical URL or id; return the expanded ValueSet.

        Example:
            vs = await client.expand_valueset(
                valueset_url="http://hl7.org/fhir/ValueSet/observation-status", filter="fin"
            )
            codes = [c["code"] for c in vs["expansion"].get("contains", [])]
        """
        params = _operations.expand_parameters(
            valueset_url=valueset_url,
            valueset_id=valueset_id,
            filter=filter,
            offset=offset,
            count=count,
            include_designations=include_designations,
            active_only=active_only,
            exclude_nested=exclude_nested,
            exclude_not_for_ui=exclude_not_for_ui,
            exclude_post_coordinated=exclude_post_coordinated,
            display_language=display_language,
            property=property,
        )
        return await self._read_only_operation(
            "ValueSet", "expand", valueset_id, params, on_behalf_of
        )

    async def lookup_concept(
        self,
        code: str | None = None,
        system: str | None = None,
        codesystem_id: str | None = None,
        version: str | None = None,
        coding: Mapping[str, Any] | BaseModel | None = None,
        date: str | None = None,
        display_language: str | None = None,
        property: Sequence[str] | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Look a code up in a CodeSystem (`$lookup`); return the Parameters answer.

        Example:
            found = await client.lookup_concept(code="8867-4", system="http://loinc.org")
            display = get_parameter(found, "display")
        """
        params = _operations.lookup_parameters(
            code=code,
            system=system,
            version=version,
            coding=coding,
            date=date,
            display_language=display_language,
            property=property,
        )
        return await self._read_only_operation(
            "CodeSystem", "lookup", codesystem_id, params, on_behalf_of
        )

    async def translate_concept(
        self,
        code: str | None = None,
        system: str | None = None,
        conceptmap_url: str | None = None,
        conceptmap_id: str | None = None,
        version: str | None = None,
        source: str | None = None,
        target: str | None = None,
        coding: Mapping[str, Any] | BaseModel | None = None,
        codeable_concept: Mapping[str, Any] | BaseModel | None = None,
        target_system: str | None = None,
        reverse: bool | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Translate a code with a ConceptMap (`$translate`); return the Parameters answer.

        `version` is the ConceptMap's version; `target_system` the code system to map to.
        """
        params = _operations.translate_parameters(
            code=code,
            system=system,
            conceptmap_url=conceptmap_url,
            conceptmap_id=conceptmap_id,
            version=version,
            source=source,
            target=target,
            coding=coding,
            codeable_concept=codeable_concept,
            target_system=target_system,
            reverse=reverse,
        )
        return await self._read_only_operation(
            "ConceptMap", "translate", conceptmap_id, params, on_behalf_of
        )

    async def validate_valueset_code(
        self,
        valueset_url: str | None = None,
        valueset_id: str | None = None,
        code: str | None = None,
        system: str | None = None,
        coding: Mapping[str, Any] | BaseModel | None = None,
        codeable_concept: Mapping[str, Any] | BaseModel | None = None,
        display: str | None = None,
        abstract: bool | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Check a code against a ValueSet (`$validate-code`); return the Parameters answer.

        Example:
            answer = await client.validate_valueset_code(
                valueset_url="http://hl7.org/fhir/ValueSet/observation-status",
                coding={"system": "http://hl7.org/fhir/observation-status", "code": "final"},
            )
            is_valid = get_parameter(answer, "result")
        """
        params = _operations.valueset_validate_parameters(
            valueset_url=valueset_url,
            valueset_id=valueset_id,
            code=code,
            system=system,
            coding=coding,
            codeable_concept=codeable_concept,
            display=display,
            abstract=abstract,
        )
        return await self._read_only_operation(
            "ValueSet", "validate-code", valueset_id, params, on_behalf_of
        )

    async def validate_codesystem_code(
        self,
        codesystem_url: str | None = None,
        codesystem_id: str | None = None,
        code: str | None = None,
        coding: Mapping[str, Any] | BaseModel | None = None,
        version: str | None = None,
        display: str | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Check that a CodeSystem defines a code (`$validate-code`); return the Parameters.

        Example:
            answer = await client.validate_codesystem_code(
                codesystem_url="http://loinc.org", code="8867-4"
            )
            is_valid = get_parameter(answer, "result")
        """
        params = _operations.codesystem_validate_parameters(
            codesystem_url=codesystem_url,
            codesystem_id=codesystem_id,
            code=code,
            coding=coding,
            version=version,
            display=display,
        )
        return await self._read_only_operation(
            "CodeSystem", "validate-code", codesystem_id, params, on_behalf_of
        )

    # ------------------------------------------------------------ resource operations

    async def clone_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        params: Mapping[str, Any] | BaseModel | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Run `$clone` on a resource; return the server's answer (the clone).

        Medplum implements `$clone` for Projects (`Project/{id}/$clone`, with optional
        Parameters such as `name` or `resourceTypes` in `params`); another type answers
        404 (NotFoundError) unless your server defines the operation.
        """
        call = _operations.build_operation(self, resource_type, "clone", resource_id, params)
        return await self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    async def expunge_resource(
        self,
        resource_type: ResourceType,
        resource_id: str,
        everything: bool = False,
        *,
        on_behalf_of: str | None = None,
    ) -> None:
        """Permanently delete a resource and all its history (`$expunge`); super admins only.

        Irreversible, unlike `delete_resource`. `everything=True` also expunges every resource
        in the resource's compartment (Medplum runs that as an async job for a Project). An
        admin call: it acts as the client (the ambient and default on-behalf-of do not apply).
        """
        query = "?everything=true" if everything else ""
        url = _operations.operation_url(self.fhir_base_url, resource_type, resource_id, "expunge")
        # Not replayed after an ambiguous failure: a replay could answer an error for a
        # resource the first attempt already removed.
        call = Call("POST", url + query, _merge_headers(None), None, None, False)
        await self._send(call, _obo.admin_on_behalf_of(on_behalf_of))

    async def validate_resource(
        self,
        resource: Resource,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Validate a resource on the server (`Type/$validate`); return the OperationOutcome.

        Nothing is stored. A valid resource gives an outcome whose issues are all
        informational; an invalid one gives the server's 400 outcome, returned rather than
        raised (its `diagnostics` can echo the resource's values). Other failures raise.

        Example:
            outcome = await client.validate_resource({"resourceType": "Patient", "gender": "x"})
            errors = [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]
        """
        body = resource_to_dict(resource)
        rtype = body.get("resourceType")
        if not isinstance(rtype, str):
            raise ValueError("validate_resource: the resource has no resourceType")
        url = _operations.operation_url(self.fhir_base_url, rtype, None, "validate")
        headers = _merge_headers(None, Content_Type=FHIR_JSON)
        call = self._call("POST", url, headers, body, replay_safe=True)
        try:
            outcome = await self._json(call, on_behalf_of)
        except ValidationError as exc:
            if exc.outcome is None:  # pragma: no cover - ValidationError always has one
                raise
            return exc.outcome
        if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
            raise MedplumError("$validate did not answer an OperationOutcome")
        return outcome

    @overload
    async def read_patient_everything(
        self,
        patient_id: str,
        *,
        start: str | None = None,
        end: str | None = None,
        since: str | None = None,
        types: str | Sequence[str] | None = None,
        count: int | None = None,
        as_fhir: None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]: ...
    @overload
    async def read_patient_everything(
        self,
        patient_id: str,
        *,
        start: str | None = None,
        end: str | None = None,
        since: str | None = None,
        types: str | Sequence[str] | None = None,
        count: int | None = None,
        as_fhir: type[M],
        on_behalf_of: str | None = None,
    ) -> M: ...
    async def read_patient_everything(
        self,
        patient_id: str,
        *,
        start: str | None = None,
        end: str | None = None,
        since: str | None = None,
        types: str | Sequence[str] | None = None,
        count: int | None = None,
        as_fhir: type[M] | None = None,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any] | M:
        """Everything in a patient's compartment (`Patient/{id}/$everything`), every page.

        Follows the server's `next` links (same origin only, else UnsafeRedirectError) and
        returns one Bundle with the entries of all pages in order and no paging links.
        `types` limits resource types (`_type`), `since` to changes after an instant
        (`_since`), `start`/`end` to a care date range; `count` is the page size.
        `as_fhir=Bundle` returns the Bundle model.

        Example:
            ```python
            bundle = await client.read_patient_everything("123", types=["Observation"])
            for entry in bundle["entry"]:
                print(entry["resource"]["resourceType"])
            ```
        """
        if count is not None and (isinstance(count, bool) or count < 1):
            raise ValueError(f"count must be a positive int, got {count!r}")
        query: Query = _operations.everything_query(
            start=start, end=end, since=since, types=types, count=count
        )
        call: Call | None = _operations.build_operation(
            self, "Patient", "everything", patient_id, query, method="GET"
        )
        # The acting membership is resolved once, at the first page, for every page.
        acting = self._obo.resolve(on_behalf_of) or ""
        pages: list[dict[str, Any]] = []
        seen: set[str] = set()
        while call is not None:
            seen.add(call.url)
            page = await self._json(call, acting)
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise MedplumError("$everything did not answer a Bundle")
            pages.append(page)
            call = self._build_next_page(page, seen)  # same origin, and no page twice
        return _core.as_result(_operations.merge_pages(pages), as_fhir)  # type: ignore[no-any-return]
