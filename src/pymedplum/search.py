"""Typed search: each resource model names the TypedDict of its search parameters.

```python
from pymedplum.fhir import Patient

bundle = client.search(Patient, {"family": "Smith", "birthdate": "ge1990"})
for patient in bundle:          # Patient models
    print(patient.birth_date)
```

Every generated resource model derives from `Searchable[Model, ModelSearchParams]`, so a
type checker reads the parameters' TypedDict off the class you pass: a misspelt key is
one short error that names it (`Extra key "familly" for TypedDict "PatientSearchParams"`)
and no overloads are needed. The TypedDicts (`PatientSearchParams`, ...) and the value
types are importable from here for your own annotations.

A value is a string (prefixes included: `"ge2020-01-01"`), a number, a boolean, a date or
datetime, or a list of those (the parameter is repeated: AND). Modifiers are keys of their
own (`"name:exact"`). Chains (`subject:Patient.name`), `_has` and your project's own
SearchParameters go in `extra_query` as (name, value) pairs.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:
    from pymedplum._generated.search_params import *  # noqa: F403 (the TypedDicts)
    from pymedplum._generated.search_params import (
        ResourceType as ResourceType,
    )
    from pymedplum._generated.search_params import (
        SearchPairs as SearchPairs,
    )
    from pymedplum._generated.search_params import (
        SearchScalar as SearchScalar,
    )
    from pymedplum._generated.search_params import (
        SearchValue as SearchValue,
    )

__all__ = ["Searchable", "SearchTarget", "SearchQuery", "search_arguments"]

M_co = TypeVar("M_co", covariant=True)
P_contra = TypeVar("P_contra", contravariant=True)
PS = ParamSpec("PS")

SearchQuery: TypeAlias = "Mapping[str, SearchValue] | SearchPairs"
"""Any search parameters: a dict (any key) or (name, value) pairs, for the string form."""


class Searchable(Generic[M_co, P_contra]):
    """The base of every resource model: `M_co` is the model, `P_contra` its search TypedDict.

    It adds nothing at run time. For type checkers it declares what follows the model in
    `client.search(Model, ...)`: the parameters' TypedDict, `extra_query` and
    `on_behalf_of`.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @classmethod
        def _search_arguments(
            cls,
            query: P_contra = ...,
            /,
            *,
            extra_query: SearchQuery | None = None,
            on_behalf_of: str | None = None,
        ) -> M_co: ...


class SearchTarget(Protocol[PS, M_co]):
    """A searchable model class, as the typed search methods see it.

    Its `_search_arguments` signature (from `Searchable`) becomes the signature of the
    rest of the call, so the checker checks the query against the model's TypedDict.
    """

    def _search_arguments(self, *args: PS.args, **kwargs: PS.kwargs) -> M_co: ...


def search_arguments(
    query: Mapping[str, Any] | None = None,
    /,
    *,
    extra_query: SearchQuery | None = None,
    on_behalf_of: str | None = None,
) -> tuple[list[tuple[str, Any]] | Mapping[str, Any] | None, str | None]:
    """The run-time twin of `Searchable._search_arguments`: (query, on_behalf_of).

    `extra_query` pairs follow the typed parameters.
    """
    if query is not None and not isinstance(query, Mapping):
        raise TypeError(
            f"query must be a dict of search parameters, got {type(query).__name__}; "
            "pass (name, value) pairs as extra_query="
        )
    if extra_query is None:
        return query, on_behalf_of
    extra = list(extra_query.items()) if isinstance(extra_query, Mapping) else list(extra_query)
    typed = list(query.items()) if query else []
    return typed + extra, on_behalf_of


def _import_lazily(name: str) -> Any:
    # The generated TypedDicts and value types, loaded on first use.
    if name.startswith("_"):
        raise AttributeError(f"module 'pymedplum.search' has no attribute {name!r}")
    generated = importlib.import_module("pymedplum._generated.search_params")
    try:
        value = getattr(generated, name)
    except AttributeError:
        raise AttributeError(f"module 'pymedplum.search' has no attribute {name!r}") from None
    globals()[name] = value
    return value


if not TYPE_CHECKING:
    # Hidden from type checkers, which see the TYPE_CHECKING imports instead.
    __getattr__ = _import_lazily
