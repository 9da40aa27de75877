"""Read-only views of Medplum's own `meta` elements on every model (no I/O).

`patient.medplum_accounts` instead of digging through `patient.meta.accounts` and the
deprecated `meta.account`; the same for the author, the project and the compartments.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["MedplumMeta"]


def _reference(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = getattr(value, "reference", None)
    elif isinstance(value, dict):
        value = value.get("reference")
    return value if isinstance(value, str) and value else None


class MedplumMeta:
    """Properties over `meta` (a model or a dict); a model without `meta` gives None or []."""

    __slots__ = ()

    def _meta_element(self, name: str) -> Any:
        meta = getattr(self, "meta", None)
        if isinstance(meta, dict):
            return meta.get(name)
        return getattr(meta, name, None) if meta is not None else None

    @property
    def medplum_accounts(self) -> list[str]:
        """Every account reference: `meta.account` (deprecated) first, then `meta.accounts`."""
        from pymedplum.helpers import extract_account_references

        return extract_account_references(getattr(self, "meta", None))

    @property
    def medplum_account(self) -> str | None:
        """The first account reference, or None."""
        accounts = self.medplum_accounts
        return accounts[0] if accounts else None

    @property
    def medplum_author(self) -> str | None:
        """`meta.author.reference`: who last wrote the resource, or None."""
        return _reference(self._meta_element("author"))

    @property
    def medplum_project(self) -> str | None:
        """`meta.project`: the id of the Medplum project the resource belongs to, or None."""
        project = self._meta_element("project")
        return project if isinstance(project, str) else None

    @property
    def medplum_compartment(self) -> list[dict[str, Any]] | None:
        """`meta.compartment` as a list of Reference dicts (the access-control
        compartments Medplum assigned), or None."""
        compartment = self._meta_element("compartment")
        if not isinstance(compartment, list):
            return None
        return [
            c.model_dump(by_alias=True, exclude_none=True)
            if isinstance(c, BaseModel)
            else dict(c)
            for c in compartment
            if isinstance(c, BaseModel | dict)
        ]
