"""Build a FHIR transaction entry by entry, check it against Medplum's limits, read results.

    tx = TransactionBuilder()
    patient = tx.create({"resourceType": "Patient", "name": [{"family": "Smith"}]})
    tx.create({
        "resourceType": "Observation", "status": "final", "code": {"text": "BP"},
        "subject": {"reference": patient},            # "urn:uuid:...", rewritten by the server
    })
    result = client.execute_transaction_builder(tx)
    # the same: tx.results(client.execute_transaction(tx.build()))
    result.raise_for_entry_errors()
    result.reference(patient)                          # "Patient/<the new id>"

Medplum does not roll a transaction back when an entry fails (the entries before it stay
committed): read every entry's result, and compensate for partial commits.

Limits, from Medplum's batch processor (`packages/fhir-router/src/batch.ts`) and server
defaults (`packages/server/src/config/utils.ts`), checked by `build()` before anything
is sent (override them with `TransactionLimits` for a server configured otherwise):
- at least one entry;
- at most 50 update (PUT) entries;
- at most 8 entries in all when any entry is conditional (a create with `ifNoneExist`,
  or a conditional update or delete), which Medplum runs with serializable isolation;
- a body of at most 50 MiB (`maxBatchSize`).
Placeholders must be `urn:uuid:` followed by a lowercase UUID: Medplum rewrites only
references of that form, so any other would be stored as written.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from pymedplum import _core, _json
from pymedplum._convert import resource_to_dict
from pymedplum.bundle import BundleEntryResult, FHIRBundle
from pymedplum.exceptions import BundleEntryError

__all__ = [
    "TransactionBuilder",
    "TransactionLimits",
    "TransactionResult",
    "MEDPLUM_LIMITS",
    "new_placeholder",
]

# Medplum's pattern for a local bundle reference (batch.ts `localBundleReference`).
_PLACEHOLDER = re.compile(
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
)
_URN_UUID = re.compile(r"^urn:uuid:", re.IGNORECASE)

Method = Literal["POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True, slots=True)
class TransactionLimits:
    """The limits `TransactionBuilder.build()` checks (None: not checked).

    Attributes:
        max_updates: update (PUT) entries in one transaction.
        max_conditional_entries: entries in a transaction holding a conditional entry.
        max_bytes: the JSON body's size in bytes.
    """

    max_updates: int | None = 50
    max_conditional_entries: int | None = 8
    max_bytes: int | None = 50 * 1024 * 1024


#: Medplum's limits (fhir-router `maxUpdates`, `maxSerializableTransactionEntries`, and the
#: server's default `maxBatchSize` of 50mb).
MEDPLUM_LIMITS = TransactionLimits()


def new_placeholder() -> str:
    """A fresh `urn:uuid:` placeholder in the form Medplum rewrites."""
    return f"urn:uuid:{uuid.uuid4()}"


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    resource_type: str
    method: Method
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    conditional: bool

    def to_fhir(self) -> dict[str, Any]:
        request: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.if_none_exist is not None:
            request["ifNoneExist"] = self.if_none_exist
        if self.if_match is not None:
            request["ifMatch"] = self.if_match
        entry: dict[str, Any] = {}
        if self.full_url is not None:
            entry["fullUrl"] = self.full_url
        if self.resource is not None:
            entry["resource"] = self.resource
        entry["request"] = request
        return entry


def _query_text(query: str | _core.Query, what: str) -> str:
    if isinstance(query, str):
        text = query.strip().lstrip("?")
        if text.lower().startswith(("http://", "https://", "/")):
            raise ValueError(f"{what}: give the search query only (`identifier=sys|val`)")
    else:
        text = _core.encode_query(query)
    if not text:
        raise ValueError(f"{what} must be a non-empty search query")
    return text


def _references(value: Any) -> Iterator[str]:
    """Every `reference` string inside a resource (Reference.reference), at any depth.

    Iterative: a structure nested deeper than recursion allows is left for the JSON
    writer to refuse with a clear error.
    """
    stack: list[tuple[object, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        if key == "reference" and isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((None, child) for child in reversed(item))


class TransactionBuilder:
    """A FHIR transaction assembled entry by entry, with `urn:uuid` placeholders.

    Each add method returns the key of its entry: the placeholder of a create or upsert
    (put it in another entry's `{"reference": ...}`), or `Type/id` for an update, patch
    or delete. `results()` (or the client's `execute_transaction_builder`) gives each
    entry's result back by that key. The builder copies every resource it is given.
    """

    __slots__ = ("_entries", "_keys", "limits")

    def __init__(self, *, limits: TransactionLimits = MEDPLUM_LIMITS) -> None:
        self._entries: list[_Entry] = []
        self._keys: dict[str, int] = {}
        self.limits = limits

    # -- adding entries

    def _add(self, entry: _Entry) -> str:
        if entry.key in self._keys:
            raise ValueError(f"the transaction already has an entry for {entry.key}")
        self._keys[entry.key] = len(self._entries)
        self._entries.append(entry)
        return entry.key

    @staticmethod
    def _resource(resource: Mapping[str, Any] | BaseModel, what: str) -> tuple[dict[str, Any], str]:
        body = resource_to_dict(resource)
        rtype = body.get("resourceType")
        if not isinstance(rtype, str):
            raise ValueError(f"{what}: the resource has no resourceType")
        return body, _core._check_type(rtype)

    @staticmethod
    def _placeholder(full_url: str | None) -> str:
        if full_url is None:
            return new_placeholder()
        if not isinstance(full_url, str) or not _PLACEHOLDER.match(full_url):
            raise ValueError(
                "full_url must be 'urn:uuid:' and a lowercase UUID (Medplum rewrites no "
                "other form); leave it out to get one"
            )
        return full_url

    def create(
        self,
        resource: Mapping[str, Any] | BaseModel,
        *,
        if_none_exist: str | _core.Query | None = None,
        full_url: str | None = None,
    ) -> str:
        """Add a create (POST); return its placeholder (`urn:uuid:...`).

        `if_none_exist` makes it conditional: no resource is created when one matches.
        """
        body, rtype = self._resource(resource, "create")
        body.pop("id", None)  # the server assigns the id of a created resource
        criteria = (
            _query_text(if_none_exist, "if_none_exist") if if_none_exist is not None else None
        )
        placeholder = self._placeholder(full_url)
        return self._add(
            _Entry(
                placeholder,
                rtype,
                "POST",
                rtype,
                body,
                placeholder,
                criteria,
                None,
                criteria is not None,
            )
        )

    def update(
        self, resource: Mapping[str, Any] | BaseModel, *, if_match: bool | str = True
    ) -> str:
        """Add an update (PUT) of a resource with an id; return `Type/id`.

        `if_match=True` guards it with the resource's `meta.versionId` when it has one
        (`"required"` refuses a resource without one; False: no guard; a str is sent).
        """
        body, rtype = self._resource(resource, "update")
        rid = body.get("id")
        if not isinstance(rid, str):
            raise ValueError("update: the resource needs an id (use upsert for a search)")
        _core._check_id(rid, f"{rtype}.id")
        guard = _core.if_match_value(body, if_match, None)
        key = f"{rtype}/{rid}"
        return self._add(_Entry(key, rtype, "PUT", key, body, None, None, guard, False))

    def upsert(
        self,
        resource: Mapping[str, Any] | BaseModel,
        query: str | _core.Query,
        *,
        full_url: str | None = None,
    ) -> str:
        """Add a conditional update (`PUT Type?query`): update the match, or create; return
        its placeholder. Several matches fail the entry (412)."""
        body, rtype = self._resource(resource, "upsert")
        criteria = _query_text(query, "query")
        placeholder = self._placeholder(full_url)
        url = f"{rtype}?{criteria}"
        return self._add(
            _Entry(placeholder, rtype, "PUT", url, body, placeholder, None, None, True)
        )

    def patch(
        self,
        resource_type: str,
        resource_id: str,
        operations: Sequence[Mapping[str, Any]],
        *,
        if_match: str | None = None,
    ) -> str:
        """Add a JSON Patch (sent as a Binary, as FHIR transactions carry patches); return
        `Type/id`."""
        rtype = _core._check_type(resource_type)
        rid = _core._check_id(resource_id, "resource_id")
        if isinstance(operations, Mapping | str | bytes) or not operations:
            raise ValueError("patch expects a non-empty list of JSON Patch operations")
        ops = [resource_to_dict(op) for op in operations]
        binary = {
            "resourceType": "Binary",
            "contentType": _core.JSON_PATCH,
            "data": base64.b64encode(_json.dumps(ops)).decode("ascii"),
        }
        key = f"{rtype}/{rid}"
        return self._add(_Entry(key, rtype, "PATCH", key, binary, None, None, if_match, False))

    def delete(self, resource_type: str, resource_id: str) -> str:
        """Add a delete; return `Type/id`."""
        rtype = _core._check_type(resource_type)
        rid = _core._check_id(resource_id, "resource_id")
        key = f"{rtype}/{rid}"
        return self._add(_Entry(key, rtype, "DELETE", key, None, None, None, None, False))

    # -- reading the builder

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def keys(self) -> list[str]:
        """The entries' keys, in order."""
        return [e.key for e in self._entries]

    def __repr__(self) -> str:
        return f"<TransactionBuilder entries={len(self._entries)}>"

    # -- checking and building

    def _check_references(self) -> None:
        placeholders = {e.full_url for e in self._entries if e.full_url is not None}
        for index, entry in enumerate(self._entries):
            for reference in _references(entry.resource):
                if not _URN_UUID.match(reference):
                    continue
                if reference not in placeholders:
                    where = f"entry #{index} ({entry.resource_type})"
                    if not _PLACEHOLDER.match(reference):
                        raise ValueError(
                            f"{where} references a urn:uuid Medplum would not rewrite "
                            "(it must be a lowercase UUID)"
                        )
                    raise ValueError(
                        f"{where} references a placeholder that no entry of this "
                        "transaction defines"
                    )

    def _check_limits(self, size: int) -> None:
        limits = self.limits
        count = len(self._entries)
        updates = sum(1 for e in self._entries if e.method == "PUT")
        conditional = any(e.conditional for e in self._entries)
        if limits.max_updates is not None and updates > limits.max_updates:
            raise ValueError(
                f"the transaction has {updates} update entries; Medplum allows at most "
                f"{limits.max_updates}: split it"
            )
        if (
            conditional
            and limits.max_conditional_entries is not None
            and count > limits.max_conditional_entries
        ):
            raise ValueError(
                f"the transaction has a conditional entry and {count} entries; Medplum "
                f"allows at most {limits.max_conditional_entries} then: split it"
            )
        if limits.max_bytes is not None and size > limits.max_bytes:
            raise ValueError(
                f"the transaction is {size} bytes; Medplum accepts at most {limits.max_bytes}"
            )

    def build(self) -> dict[str, Any]:
        """The transaction Bundle, after checking references and limits (ValueError).

        Each call returns a new dict; the builder can be sent again (a retry reuses the
        same placeholders).
        """
        if not self._entries:
            raise ValueError("the transaction has no entries (Medplum refuses an empty one)")
        self._check_references()
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [e.to_fhir() for e in self._entries],
        }
        self._check_limits(len(_json.dumps(bundle)))
        return bundle

    def results(self, response: Mapping[str, Any] | FHIRBundle[Any]) -> TransactionResult:
        """Each entry's result in a transaction-response, by key."""
        return TransactionResult(self, response)


def _no_answer(index: int) -> BundleEntryResult:
    return BundleEntryResult(index, None, False, None, None, None)


class TransactionResult:
    """A transaction-response read entry by entry, by the keys the builder returned.

    Example:
        result = client.execute_transaction_builder(tx)
        result[patient].status_code        # 201
        result.reference(patient)          # "Patient/<id>"
        result.raise_for_entry_errors()    # BundleEntryError: the rest stayed committed
    """

    __slots__ = ("bundle", "_results", "_keys", "_types")

    def __init__(
        self, builder: TransactionBuilder, response: Mapping[str, Any] | FHIRBundle[Any]
    ) -> None:
        self.bundle = response if isinstance(response, FHIRBundle) else FHIRBundle(response)
        answered = self.bundle.entry_results()
        count = len(builder)
        # An entry the response does not answer is a failure, never dropped silently.
        self._results = [answered[i] if i < len(answered) else _no_answer(i) for i in range(count)]
        self._keys = {key: index for index, key in enumerate(builder.keys)}
        self._types = [e.resource_type for e in builder._entries]

    def __getitem__(self, key: str) -> BundleEntryResult:
        index = self._keys.get(key)
        if index is None:
            raise KeyError("no entry of this transaction has that key")
        return self._results[index]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def reference(self, key: str) -> str | None:
        """`Type/id` of the resource the entry created or changed, or None if it failed."""
        result = self[key]
        if not result.ok or result.resource_id is None:
            return None
        return f"{self._types[result.index]}/{result.resource_id}"

    def resource(self, key: str) -> dict[str, Any] | None:
        """The resource the server returned for the entry, if any."""
        return self[key].resource

    def entry_results(self) -> list[BundleEntryResult]:
        """One result per entry, in the order the entries were added."""
        return list(self._results)

    def failures(self) -> list[BundleEntryResult]:
        """The entries that did not succeed (no answer counts as a failure)."""
        return [r for r in self._results if not r.ok]

    @property
    def ok(self) -> bool:
        """True when every entry succeeded."""
        return not self.failures()

    def raise_for_entry_errors(self) -> None:
        """Raise BundleEntryError when an entry failed (the successful ones stay committed)."""
        failed = self.failures()
        if failed:
            raise BundleEntryError(failed)

    def __repr__(self) -> str:
        return f"<TransactionResult entries={len(self._results)} failed={len(self.failures())}>"
