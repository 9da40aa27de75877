"""Expand the value sets of required bindings into their codes, from the vendored
definitions alone. A value set that cannot be enumerated from them (a filter, a code
system that is not included in full, an external terminology such as MIME types or
currencies) has no expansion, and its elements stay plain `code`s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Larger value sets would make unreadable Literal types; none of R4's required ones is.
MAX_LITERAL_CODES = 1000


class ValueSetExpander:
    def __init__(self, terminology: dict[str, dict[str, Any]]) -> None:
        self._terminology = terminology
        self._cache: dict[str, tuple[str, ...] | None] = {}

    def codes(self, canonical: str) -> tuple[str, ...] | None:
        """The codes of a value set in definition order, or None if not enumerable."""
        url = canonical.split("|", 1)[0]
        if url not in self._cache:
            self._cache[url] = None  # guards against cyclic imports
            codes = self._expand(url)
            if codes is not None and not 0 < len(codes) <= MAX_LITERAL_CODES:
                codes = None
            self._cache[url] = codes
        return self._cache[url]

    def name(self, canonical: str) -> str | None:
        value_set = self._terminology.get(f"ValueSet:{canonical.split('|', 1)[0]}")
        return value_set.get("name") if value_set else None

    def _expand(self, url: str) -> tuple[str, ...] | None:
        value_set = self._terminology.get(f"ValueSet:{url}")
        if value_set is None:
            return None
        compose = value_set.get("compose")
        if compose is None:
            expansion = value_set.get("expansion", {}).get("contains")
            return tuple(_dedupe(_nested_codes(expansion))) if expansion else None
        codes: list[str] = []
        for include in compose.get("include", []):
            part = self._include(include)
            if part is None:
                return None
            codes.extend(part)
        excluded: set[str] = set()
        for exclude in compose.get("exclude", []):
            part = self._include(exclude)
            if part is None:
                return None
            excluded.update(part)
        return tuple(code for code in _dedupe(codes) if code not in excluded)

    def _include(self, include: dict[str, Any]) -> list[str] | None:
        if include.get("filter"):
            return None
        from_system: list[str] | None = None
        if "concept" in include:
            from_system = [concept["code"] for concept in include["concept"]]
        elif "system" in include:
            code_system = self._terminology.get(f"CodeSystem:{include['system']}")
            if code_system is None or code_system.get("content") != "complete":
                return None
            from_system = list(_nested_codes(code_system.get("concept", [])))
        imported: list[str] | None = None
        for value_set_url in include.get("valueSet", []):
            codes = self.codes(value_set_url)
            if codes is None:
                return None
            # Several value sets in one include intersect (FHIR ValueSet.compose rules).
            imported = list(codes) if imported is None else [c for c in imported if c in codes]
        if from_system is not None and imported is not None:
            return [code for code in from_system if code in imported]
        return from_system if from_system is not None else imported


def _nested_codes(concepts: list[dict[str, Any]]) -> Iterator[str]:
    for concept in concepts:
        if "code" in concept:
            yield concept["code"]
        yield from _nested_codes(concept.get("concept", []) + concept.get("contains", []))


def _dedupe(codes: Iterator[str] | list[str]) -> list[str]:
    return list(dict.fromkeys(codes))
