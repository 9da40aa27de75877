"""Helpers for FHIR data as dicts or models: serialization, parsing by resourceType."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from pymedplum import _json

if TYPE_CHECKING:
    from pymedplum._fhirmodel import FHIRModel

__all__ = ["to_fhir_json", "fhir_json_bytes", "parse_resource"]


def to_fhir_json(model: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """A model as a FHIR JSON object: camelCase keys, no `None`s.

    Decimals stay `decimal.Decimal` so that `1.50` is not turned into `1.5`; write the dict
    with `fhir_json_bytes` (or hand it to the client) to keep them exact on the wire.

        >>> to_fhir_json(Patient(birth_date="1990-01-01", active=True))
        {'resourceType': 'Patient', 'active': True, 'birthDate': '1990-01-01'}
    """
    from pymedplum._convert import resource_to_dict

    return resource_to_dict(model)


def fhir_json_bytes(resource: BaseModel | Mapping[str, Any], *, indent: bool = False) -> bytes:
    """FHIR JSON bytes for a model or a dict, with decimals written exactly."""
    data = to_fhir_json(resource) if isinstance(resource, BaseModel) else resource
    return _json.dumps(data, indent=indent)


def parse_resource(
    data: Mapping[str, Any] | str | bytes | bytearray, *, lenient: bool = False
) -> FHIRModel:
    """Parse any resource into the model its `resourceType` names.

    `data` is a dict or JSON text/bytes (decimals keep their digits). Validation is strict:
    an unknown element is an error. With `lenient=True`, as for data read from a server,
    elements newer than our definitions are kept instead.

        >>> parse_resource(b'{"resourceType": "Patient", "gender": "female"}')
        Patient(resource_type='Patient', ..., gender='female', ...)
    """
    from pymedplum import fhir

    if isinstance(data, (str, bytes, bytearray)):
        data = _json.loads(data)
    if not isinstance(data, Mapping):
        raise TypeError(f"a FHIR resource must be a JSON object, not {type(data).__name__}")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str):
        raise ValueError("the data has no resourceType: it is not a FHIR resource")
    model: type[FHIRModel] | None = fhir.resource_class(resource_type)
    if model is None:
        raise ValueError(f"unknown resourceType {resource_type!r} (not in {fhir.DEFINITIONS})")
    return model.from_server(dict(data)) if lenient else model.model_validate(dict(data))
