"""Conversions between what users hand the client and what goes on the wire.

Writes accept a dict or any Pydantic model (ours or another library's); reads return a
dict or, with `as_fhir=Model`, an instance of that model class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

__all__ = ["resource_to_dict", "dict_to_model"]


def resource_to_dict(resource: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """A resource as a FHIR JSON object (camelCase keys, no nulls, decimals exact)."""
    if isinstance(resource, BaseModel):
        to_fhir = getattr(resource, "to_fhir_dict", None)
        if to_fhir is not None:  # our generated models
            result: dict[str, Any] = to_fhir()
            return result
        # Other libraries' models (fhir.resources and friends): their JSON mode.
        return resource.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(resource, Mapping):
        return dict(resource)
    raise TypeError(
        f"expected a FHIR resource as a dict or a Pydantic model, got {type(resource).__name__}"
    )


def dict_to_model(model: type[M], data: Any) -> M:
    """Validate server data into `model`.

    Our models are validated leniently (elements newer than our definitions are kept, not
    rejected); any other Pydantic model class gets its own default validation.
    """
    from_server = getattr(model, "from_server", None)
    if from_server is not None:
        result: M = from_server(data)
        return result
    return model.model_validate(data)
