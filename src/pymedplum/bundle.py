"""`FHIRBundle`: a thin view over a Bundle dict for iteration, typing and entry checks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from pymedplum._convert import dict_to_model
from pymedplum.exceptions import BundleEntryError

__all__ = ["FHIRBundle", "BundleEntryResult", "BatchCreateResult", "model_resource_type"]

M = TypeVar("M", bound=BaseModel)


def model_resource_type(model: type[BaseModel]) -> str:
    """The FHIR resource type a model class stands for.

    Read from the model's `resourceType`/`resource_type` field default when it has one
    (our models and fhir.resources'), else the class name.
    """
    for name in ("resource_type", "resourceType"):
        info = model.model_fields.get(name)
        if info is not None and isinstance(info.default, str):
            return info.default
    getter = getattr(model, "get_resource_type", None)
    if callable(getter):
        try:
            value = getter()
            if isinstance(value, str):
                return value
        except TypeError:
            pass
    return model.__name__


@dataclass(frozen=True, slots=True)
class BundleEntryResult:
    """One entry of a batch or transaction response.

    Attributes:
        index: the entry's position in the bundle.
        status_code: the entry's HTTP status (from `response.status`), or None.
        ok: whether the status is 2xx.
        resource_id: from `response.location` (history suffix removed), else `resource.id`.
        resource: the entry's resource, when the server returned one.
        outcome: the entry's OperationOutcome (`response.outcome`), when there is one.
    """

    index: int
    status_code: int | None
    ok: bool
    resource_id: str | None
    resource: dict[str, Any] | None
    outcome: dict[str, Any] | None

    def __repr__(self) -> str:
        return f"<BundleEntryResult #{self.index} {self.status_code}>"


def _is_outcome(resource: object) -> bool:
    return isinstance(resource, Mapping) and resource.get("resourceType") == "OperationOutcome"


def _entry_result(index: int, entry: Mapping[str, Any]) -> BundleEntryResult:
    response = entry.get("response") or {}
    status_text = str(response.get("status", "")).strip()
    try:
        status: int | None = int(status_text.split(" ", 1)[0])
    except ValueError:
        status = None
    resource = entry.get("resource")
    resource_id = None
    location = response.get("location")
    if isinstance(location, str) and location:
        path = location.split("?", 1)[0].split("/_history/", 1)[0].rstrip("/")
        resource_id = path.rsplit("/", 1)[-1] or None
    if resource_id is None and isinstance(resource, Mapping):
        resource_id = resource.get("id")
    outcome = response.get("outcome")
    if outcome is None and _is_outcome(resource):
        outcome = resource
    return BundleEntryResult(
        index=index,
        status_code=status,
        ok=status is not None and 200 <= status < 300,
        resource_id=resource_id,
        resource=dict(resource) if isinstance(resource, Mapping) else None,
        outcome=dict(outcome) if isinstance(outcome, Mapping) else None,
    )


class FHIRBundle(Generic[M]):
    """A Bundle with helpers. Iterating yields each entry's resource.

    With a model (`search_resources(..., return_bundle=True, as_fhir=Patient)`),
    iteration and `get_resources()` yield that model for entries of its resource type
    and skip the others (for example `_include`d resources); without one they yield dicts.

    Example:
        bundle = client.search_resources("Patient", {"family": "Smith"}, return_bundle=True)
        for patient in bundle:
            print(patient["id"])
        patients = bundle.get_resources_typed(Patient)
    """

    __slots__ = ("data", "model")

    def __init__(self, data: Mapping[str, Any], model: type[M] | None = None) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(f"FHIRBundle expects a Bundle dict, got {type(data).__name__}")
        self.data: dict[str, Any] = dict(data)
        self.model = model

    @property
    def total(self) -> int | None:
        """`Bundle.total`, when the server computed it."""
        total = self.data.get("total")
        return total if isinstance(total, int) else None

    @property
    def bundle_type(self) -> str | None:
        """`Bundle.type` (`searchset`, `batch-response`, ...)."""
        value = self.data.get("type")
        return value if isinstance(value, str) else None

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The raw `entry` list."""
        entries = self.data.get("entry")
        return list(entries) if isinstance(entries, list) else []

    def link(self, relation: str) -> str | None:
        """The URL of the link with this relation (`next`, `self`, ...), or None."""
        for link in self.data.get("link") or ():
            if isinstance(link, Mapping) and link.get("relation") == relation:
                url = link.get("url")
                return url if isinstance(url, str) else None
        return None

    @property
    def next_url(self) -> str | None:
        """The `next` page link, or None on the last page."""
        return self.link("next")

    def _raw_resources(self) -> Iterator[dict[str, Any]]:
        for entry in self.entries:
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if isinstance(resource, dict):
                yield resource

    @overload
    def get_resources(self, max_resources: int | None = None) -> list[Any]: ...
    @overload
    def get_resources(self, max_resources: int | None = None, *, model: type[M]) -> list[M]: ...
    def get_resources(
        self, max_resources: int | None = None, *, model: type[M] | None = None
    ) -> list[Any]:
        """Entry resources (dicts, or the bundle's model); entries without one are skipped.

        `max_resources` refuses a bundle larger than expected (ValueError).
        """
        raw = list(self._raw_resources())
        if max_resources is not None and len(raw) > max_resources:
            raise ValueError(
                f"bundle has {len(raw)} resources, exceeding max_resources={max_resources}"
            )
        target = model or self.model
        if target is None:
            return raw
        wanted = model_resource_type(target)
        return [dict_to_model(target, r) for r in raw if r.get("resourceType") == wanted]

    def get_resources_typed(self, model: type[M]) -> list[M]:
        """The entries whose resource type is `model`'s, as `model` instances."""
        return self.get_resources(model=model)

    def __iter__(self) -> Iterator[M]:
        return iter(self.get_resources())

    def __len__(self) -> int:
        """How many resources iteration yields (of the bundle's model's type, if it has one)."""
        if self.model is None:
            return sum(1 for _ in self._raw_resources())
        wanted = model_resource_type(self.model)
        return sum(1 for r in self._raw_resources() if r.get("resourceType") == wanted)

    def entry_results(self) -> list[BundleEntryResult]:
        """One result per entry of a batch/transaction response, failures included."""
        return [_entry_result(i, e) for i, e in enumerate(self.entries) if isinstance(e, Mapping)]

    def failures(self) -> list[BundleEntryResult]:
        """The entries with a non-2xx status."""
        return [r for r in self.entry_results() if not r.ok]

    def partition(self) -> tuple[list[BundleEntryResult], list[BundleEntryResult]]:
        """(successes, failures)."""
        results = self.entry_results()
        return [r for r in results if r.ok], [r for r in results if not r.ok]

    def raise_for_entry_errors(self) -> None:
        """Raise BundleEntryError when any entry failed (successful entries stay committed)."""
        failed = self.failures()
        if failed:
            raise BundleEntryError(failed)

    def to_dict(self) -> dict[str, Any]:
        """The Bundle as a dict."""
        return self.data

    def __repr__(self) -> str:
        entries = len(self.entries)
        return f"<FHIRBundle type={self.bundle_type} entries={entries} total={self.total}>"


@dataclass(frozen=True, slots=True)
class BatchCreateResult:
    """What `conditional_create_batch` did, entry by entry.

    Every input entry is in exactly one list; each result's `index` is its position in
    the `entries` the caller passed (across chunks).

    Attributes:
        created: 201: a new resource was created.
        existed: 200: a resource already matched the query; nothing was created.
        failed: any other status (or no answer for the entry); collected, never raised.
    """

    created: list[BundleEntryResult]
    existed: list[BundleEntryResult]
    failed: list[BundleEntryResult]

    @property
    def ok(self) -> bool:
        """True when no entry failed."""
        return not self.failed

    def __repr__(self) -> str:
        return (
            f"<BatchCreateResult created={len(self.created)} existed={len(self.existed)} "
            f"failed={len(self.failed)}>"
        )
