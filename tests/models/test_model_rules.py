"""The rules the generated models follow, one behaviour per test."""

from __future__ import annotations

import typing
from decimal import Decimal

import pytest

from pymedplum import _json
from pymedplum._fhirmodel import FHIRValidationError
from pymedplum.fhir import (
    Bundle,
    Coverage,
    Element,
    Extension,
    HumanName,
    Meta,
    Observation,
    Parameters,
    Patient,
    Project,
    ProjectMembership,
    Quantity,
    StructureMap,
    Task,
    UserConfiguration,
)
from pymedplum.helpers import fhir_json_bytes, parse_resource, to_fhir_json


def _error_paths(excinfo: pytest.ExceptionInfo[FHIRValidationError]) -> list[str]:
    return [str(e["loc"][0]) for e in excinfo.value.errors()]


# 1. Names -----------------------------------------------------------------------------


def test_snake_case_and_fhir_names_are_both_accepted() -> None:
    assert Patient(birth_date="1985-01-15").birth_date == Patient(birthDate="1985-01-15").birth_date  # type: ignore[call-arg]


def test_output_uses_fhir_json_names() -> None:
    assert to_fhir_json(Patient(birth_date="1985-01-15", active=True)) == {
        "resourceType": "Patient",
        "birthDate": "1985-01-15",
        "active": True,
    }


def test_python_keywords_get_a_trailing_underscore() -> None:
    coverage = Coverage.model_validate(
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": "Patient/1"},
            "payor": [{"reference": "Organization/1"}],
            "class": [{"type": {"text": "group"}, "value": "GRP1"}],
        }
    )
    assert coverage.class_ is not None and coverage.class_[0].value == "GRP1"
    assert "class" in to_fhir_json(coverage)
    assert "for_" in Task.__annotations__
    assert "import_" in StructureMap.__annotations__


def test_resource_type_defaults_to_the_class_type() -> None:
    assert Patient().resource_type == "Patient"


def test_a_mismatching_resource_type_is_an_error() -> None:
    with pytest.raises(FHIRValidationError, match="Input should be 'Patient'"):
        Patient.model_validate({"resourceType": "Observation"})


# 2. Choice types ----------------------------------------------------------------------


def test_choice_alternatives_are_one_attribute_per_type() -> None:
    observation = Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "t"},
            "valueQuantity": {"value": 1.5, "unit": "kg"},
        }
    )
    assert observation.value_quantity is not None
    assert observation.value_quantity.unit == "kg"
    assert observation.value_string is None


def test_two_alternatives_of_one_choice_are_an_error() -> None:
    with pytest.raises(FHIRValidationError, match=r"Observation.value\[x\] takes one type"):
        Observation(status="final", code={"text": "t"}, value_string="a", value_boolean=True)  # type: ignore[arg-type]


def test_a_primitive_alternative_with_its_extension_counts_once() -> None:
    extension = Extension.model_validate(
        {"url": "http://x", "valueString": "a", "_valueString": {"id": "1"}}
    )
    assert extension.value_string_ext is not None and extension.value_string_ext.id == "1"


# 3. Primitive extensions ---------------------------------------------------------------


def test_primitive_extensions_are_typed_and_written_back() -> None:
    data = {
        "resourceType": "Patient",
        "birthDate": "1974-12-25",
        "_birthDate": {
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                    "valueDateTime": "1974-12-25T14:35:45-05:00",
                }
            ]
        },
        "name": [{"given": ["Jim", "Bob"], "_given": [None, {"id": "g2"}]}],
    }
    patient = Patient.model_validate(data)
    assert isinstance(patient.birth_date_ext, Element)
    assert patient.birth_date_ext.extension is not None
    assert patient.birth_date_ext.extension[0].value_date_time == "1974-12-25T14:35:45-05:00"
    assert to_fhir_json(patient) == data


def test_a_malformed_primitive_extension_is_an_error() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Patient.model_validate({"resourceType": "Patient", "birthDate": "1974", "_birthDate": "x"})
    assert _error_paths(raised) == ["Patient._birthDate"]


# 4. Decimals ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1.50", "2", "12500.00", "0.001", "-3.0", "66.899999999999991"])
def test_decimal_text_survives_a_round_trip(text: str) -> None:
    raw = (
        '{"resourceType":"Observation","status":"final","code":{"text":"t"},'
        f'"valueQuantity":{{"value":{text}}}}}'
    )
    observation = Observation.model_validate_json(raw)
    assert observation.value_quantity is not None
    assert str(
        observation.value_quantity.value
    ) == text or observation.value_quantity.value == Decimal(text)
    assert f'"value":{text}'.encode() in fhir_json_bytes(observation)
    assert f'"value":{text}' in observation.model_dump_json()


def test_python_numbers_become_exact_decimals() -> None:
    assert Quantity(value=0.1).value == Decimal("0.1")  # type: ignore[arg-type]
    assert Quantity(value=2).value == Decimal(2)  # type: ignore[arg-type]


def test_a_decimal_is_not_a_string_or_a_boolean() -> None:
    for bad in ("185", True):
        with pytest.raises(FHIRValidationError, match="decimal"):
            Quantity.model_validate({"value": bad})


# 5. Primitive formats ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        (
            "birthDate",
            ["2020", "2020-02", "2020-02-29"],
            ["2020-13", "20-01-01", "2020-01-01T00:00:00Z"],
        ),
        ("id", ["abc-1.2", "A" * 64], ["a b", "A" * 65, "é"]),
    ],
)
def test_formats_follow_the_spec_regular_expressions(
    field: str, good: list[str], bad: list[str]
) -> None:
    for value in good:
        Patient.model_validate({"resourceType": "Patient", field: value})
    for value in bad:
        with pytest.raises(FHIRValidationError, match="not a valid FHIR"):
            Patient.model_validate({"resourceType": "Patient", field: value})


@pytest.mark.parametrize(
    "text", ["2015-02-07T13:28:17+00:00", "2015-02-07T13:28:17.239+02:00", "2015-02-07T13:28:17Z"]
)
def test_instants_and_date_times_are_never_rewritten(text: str) -> None:
    meta = Meta(last_updated=text)
    assert meta.last_updated == text
    assert to_fhir_json(meta) == {"lastUpdated": text}


def test_time_and_instant_formats_are_checked() -> None:
    with pytest.raises(FHIRValidationError, match="not a valid FHIR instant"):
        Meta(last_updated="2015-02-07")
    Meta(last_updated="2015-02-07T13:28:17Z")


# 6. JSON types are strict --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"active": "true"},
        {"active": 1},
        {"multipleBirthInteger": "2"},
        {"multipleBirthInteger": True},
        {"name": {"family": "X"}},
        {"birthDate": ""},
        {"birthDate": None},
        {"name": [{"family": ""}]},
        {"name": []},
    ],
)
def test_json_types_are_strict(data: dict[str, object]) -> None:
    with pytest.raises(FHIRValidationError):
        Patient.model_validate({"resourceType": "Patient", **data})


# 7. Cardinality ------------------------------------------------------------------------


def test_required_elements_are_required() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Observation.model_validate({"resourceType": "Observation"})
    assert sorted(_error_paths(raised)) == ["Observation.code", "Observation.status"]


def test_repeating_elements_are_lists() -> None:
    HumanName.model_rebuild()
    hint = typing.get_type_hints(HumanName, include_extras=False)["given"]
    assert typing.get_origin(typing.get_args(hint)[0]) is list


# 8. Required bindings ------------------------------------------------------------------


def test_required_bindings_are_literal_types() -> None:
    Patient.model_rebuild()  # binds the names the annotations use (done on first validation)
    hint = typing.get_type_hints(Patient)["gender"]
    literal = typing.get_args(hint)[0]
    assert typing.get_origin(literal) is typing.Literal
    assert set(typing.get_args(literal)) == {"male", "female", "other", "unknown"}


def test_codes_outside_a_required_binding_are_rejected() -> None:
    with pytest.raises(FHIRValidationError, match="'male', 'female', 'other' or 'unknown'"):
        Patient.model_validate({"resourceType": "Patient", "gender": "M"})


# 9. Polymorphic resources --------------------------------------------------------------


def test_bundle_entries_contained_and_parameters_are_typed() -> None:
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "Patient",
                        "contained": [{"resourceType": "Organization", "id": "o"}],
                    }
                },
                {
                    "resource": {
                        "resourceType": "Parameters",
                        "parameter": [
                            {
                                "name": "p",
                                "resource": {
                                    "resourceType": "Observation",
                                    "status": "final",
                                    "code": {"text": "t"},
                                },
                            }
                        ],
                    }
                },
            ],
        }
    )
    assert bundle.entry is not None
    patient = bundle.entry[0].resource
    assert isinstance(patient, Patient)
    assert patient.contained is not None and type(patient.contained[0]).__name__ == "Organization"
    parameters = bundle.entry[1].resource
    assert isinstance(parameters, Parameters) and parameters.parameter is not None
    assert isinstance(parameters.parameter[0].resource, Observation)


def test_invalid_nested_resources_are_located() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Bundle.model_validate(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "gender": "x"}}],
            }
        )
    assert _error_paths(raised) == ["Bundle.entry[0].resource.gender"]


def test_unknown_resource_types_are_rejected() -> None:
    with pytest.raises(FHIRValidationError, match="Unknown resourceType 'Nope'"):
        Bundle.model_validate(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Nope"}}],
            }
        )


# 10. Medplum ---------------------------------------------------------------------------


def test_medplum_resources_and_meta_fields_come_from_the_definitions() -> None:
    import pymedplum.fhir.project as project_module

    assert project_module.__file__ is not None
    with open(project_module.__file__) as source:
        assert "profiles-medplum.json" in source.readline()
    membership = ProjectMembership.model_validate(
        {
            "resourceType": "ProjectMembership",
            "project": {"reference": "Project/1"},
            "user": {"reference": "User/1"},
            "profile": {"reference": "Practitioner/1"},
        }
    )
    assert membership.project.reference == "Project/1"
    meta = Meta.model_validate(
        {
            "project": "p1",
            "author": {"reference": "Practitioner/1"},
            "account": {"reference": "Organization/1"},
            "accounts": [{"reference": "Organization/2"}],
            "compartment": [{"reference": "Patient/1"}],
            "onBehalfOf": {"reference": "Practitioner/2"},
        }
    )
    assert meta.on_behalf_of is not None and meta.on_behalf_of.reference == "Practitioner/2"
    assert Project.model_validate({"resourceType": "Project", "name": "x"}).name == "x"


def test_an_element_redefined_by_a_definition_keeps_its_own_type() -> None:
    # Medplum's UserConfiguration.option.id is a required code; Element.id is an optional
    # string.
    option = {"id": "theme", "valueString": "dark"}
    config = UserConfiguration.model_validate(
        {"resourceType": "UserConfiguration", "option": [option]}
    )
    assert config.option is not None and config.option[0].id == "theme"
    for bad, message in (
        ({"valueString": "dark"}, "Field required"),
        ({**option, "id": "a  b"}, "code"),
    ):
        with pytest.raises(FHIRValidationError, match=message) as raised:
            UserConfiguration.model_validate({"resourceType": "UserConfiguration", "option": [bad]})
        assert _error_paths(raised) == ["UserConfiguration.option[0].id"]


# 11. Unknown elements ------------------------------------------------------------------


def test_an_unknown_element_is_rejected_by_name() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Patient.model_validate({"resourceType": "Patient", "birthdate": "2000"})
    assert _error_paths(raised) == ["Patient.birthdate"]
    assert "Unknown FHIR element" in str(raised.value)


def test_the_constructor_rejects_an_unknown_element_by_name() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Patient(gendr="male")
    assert _error_paths(raised) == ["Patient.gendr"]
    assert "Unknown FHIR element" in str(raised.value)


def test_the_constructor_rejects_an_unknown_element_in_a_nested_element() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Patient(name=[{"famly": "Smith"}])
    assert _error_paths(raised) == ["Patient.name[0].famly"]


def test_json_validation_rejects_an_unknown_element() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Patient.model_validate_json(b'{"resourceType": "Patient", "gendr": "male"}')
    assert _error_paths(raised) == ["Patient.gendr"]


_MISSPELT = {"resourceType": "Patient", "gendr": "male"}


@pytest.mark.parametrize(
    ("model", "data", "path"),
    [
        (
            Bundle,
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _MISSPELT}]},
            "Bundle.entry[0].resource.gendr",
        ),
        (
            Patient,
            {"resourceType": "Patient", "contained": [_MISSPELT]},
            "Patient.contained[0].gendr",
        ),
        (
            Parameters,
            {"resourceType": "Parameters", "parameter": [{"name": "p", "resource": _MISSPELT}]},
            "Parameters.parameter[0].resource.gendr",
        ),
    ],
    ids=["bundle-entry", "contained", "parameters"],
)
def test_an_unknown_element_in_a_nested_resource_is_rejected(
    model: type[Bundle | Patient | Parameters], data: dict[str, object], path: str
) -> None:
    with pytest.raises(FHIRValidationError) as raised:
        model.model_validate(data)
    assert _error_paths(raised) == [path]
    with pytest.raises(FHIRValidationError) as raised:
        model(**{k: v for k, v in data.items() if k != "resourceType"})
    assert _error_paths(raised) == [path]


def test_server_data_keeps_unknown_elements_and_writes_them_back() -> None:
    data = {
        "resourceType": "Bundle",
        "type": "searchset",
        "futureElement": {"a": 1},
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "newField": [1, 2],
                    "name": [{"family": "F", "_new": "x"}],
                }
            },
            {"resource": {"resourceType": "FutureResource", "id": "1", "thing": True}},
        ],
    }
    bundle = Bundle.from_server(_json.dumps(data))
    assert bundle.model_extra == {"futureElement": {"a": 1}}
    assert bundle.entry is not None and isinstance(bundle.entry[0].resource, Patient)
    assert to_fhir_json(bundle) == data


# 12. Errors name FHIR paths -------------------------------------------------------------


def test_errors_name_the_fhir_path() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Observation.model_validate(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "t"},
                "component": [
                    {"code": {"text": "c"}},
                    {"code": {"text": "c"}, "valueQuantity": {"comparator": "~"}},
                ],
            }
        )
    assert _error_paths(raised) == ["Observation.component[1].valueQuantity.comparator"]


def test_errors_do_not_echo_whole_resources() -> None:
    with pytest.raises(FHIRValidationError) as raised:
        Observation.model_validate({"resourceType": "Observation", "note": [{"text": "secret"}]})
    assert "secret" not in str(raised.value)


def test_parse_resource_picks_the_model_by_resource_type() -> None:
    assert isinstance(parse_resource('{"resourceType": "Patient"}'), Patient)
    with pytest.raises(ValueError, match="unknown resourceType"):
        parse_resource({"resourceType": "Nope"})


def test_server_data_is_still_checked() -> None:
    with pytest.raises(FHIRValidationError, match="not a valid FHIR dateTime"):
        Patient.from_server({"resourceType": "Patient", "deceasedDateTime": "02/01/2020"})
    with pytest.raises(FHIRValidationError, match="not a valid FHIR string"):
        Patient.from_server({"resourceType": "Patient", "name": [{"family": "a\u000bb"}]})


def test_models_have_a_json_schema() -> None:
    # Used by FastAPI and friends: polymorphic resources are described, not fatal.
    schema = Bundle.model_json_schema()
    assert schema["title"] == "Bundle"
    assert "resourceType" in schema["properties"]
