"""Operations, Parameters helpers, terminology, clone/expunge, $validate, $everything."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from pymedplum import (
    InvalidResponseError,
    MedplumError,
    NotFoundError,
    ServerError,
    UnsafeRedirectError,
    _json,
    dict_to_parameters,
    get_parameter,
    get_parameter_resource,
    parameters_to_dict,
)
from pymedplum.fhir import Bundle, Parameters, Patient
from pymedplum.parameters import get_parameters

from .conftest import Driver, FakeMedplum, query

FHIR = "/fhir/R4/"


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def params(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(entries)}


# ---------------------------------------------------------------- Parameters helpers


def test_dict_to_parameters_types_each_value() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    built = dict_to_parameters(
        {
            "s": "x",
            "b": True,
            "i": 3,
            "big": 2**40,
            "d": Decimal("1.50"),
            "f": 0.1,
            "day": date(2024, 1, 2),
            "at": when,
            "skip": None,
            "many": ["a", "b"],
        }
    )
    assert built["parameter"] == [
        {"name": "s", "valueString": "x"},
        {"name": "b", "valueBoolean": True},
        {"name": "i", "valueInteger": 3},
        {"name": "big", "valueDecimal": 2**40},
        {"name": "d", "valueDecimal": 1.5},
        {"name": "f", "valueDecimal": 0.1},
        {"name": "day", "valueDate": "2024-01-02"},
        {"name": "at", "valueDateTime": "2024-01-02T03:04:05+00:00"},
        {"name": "many", "valueString": "a"},
        {"name": "many", "valueString": "b"},
    ]
    # JSON-native numbers that keep their decimal text on the wire.
    json.dumps(built)
    assert b'"valueDecimal":1.50' in _json.dumps(built)
    assert b'"valueDecimal":0.1}' in _json.dumps(built)


def test_parameters_refuse_nan_and_parts_nested_too_deeply() -> None:
    with pytest.raises(ValueError, match="'x': nan is not a FHIR decimal"):
        dict_to_parameters({"x": float("nan")})
    with pytest.raises(ValueError, match="'x': -Infinity is not a FHIR decimal"):
        dict_to_parameters({"x": Decimal("-Infinity")})
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(1000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(ValueError, match="nested more than 100 levels of parts deep"):
        dict_to_parameters({"x": deep})


def test_dict_to_parameters_recognizes_datatypes_and_resources() -> None:
    built = dict_to_parameters(
        {
            "coding": {"system": "http://loinc.org", "code": "8867-4"},
            "ref": {"reference": "Patient/1"},
            "concept": {"coding": [{"code": "a"}], "text": "A"},
            "resource": {"resourceType": "Patient", "active": True},
            "model": Patient(active=False),
        }
    )
    keys = [next(k for k in p if k != "name") for p in built["parameter"]]
    assert keys == ["valueCoding", "valueReference", "valueCodeableConcept", "resource", "resource"]
    assert built["parameter"][4]["resource"] == {"resourceType": "Patient", "active": False}


def test_a_plain_nested_dict_becomes_parts_and_reads_back_the_same() -> None:
    value = {"match": {"equivalence": "equal", "weight": 2}}
    built = dict_to_parameters(value)
    assert built["parameter"] == [
        {
            "name": "match",
            "part": [
                {"name": "equivalence", "valueString": "equal"},
                {"name": "weight", "valueInteger": 2},
            ],
        }
    ]
    assert parameters_to_dict(built) == value


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        dict_to_parameters({"at": datetime(2024, 1, 2, 3, 4)})


def test_an_unknown_value_type_is_refused_not_stringified() -> None:
    with pytest.raises(TypeError, match="'x'"):
        dict_to_parameters({"x": object()})


def test_parameters_to_dict_groups_repeated_names() -> None:
    answer = params(
        {"name": "result", "valueBoolean": True},
        {"name": "match", "part": [{"name": "concept", "valueCoding": {"code": "a"}}]},
        {"name": "match", "part": [{"name": "concept", "valueCoding": {"code": "b"}}]},
        {"name": "resource", "resource": {"resourceType": "Patient"}},
    )
    assert parameters_to_dict(answer) == {
        "result": True,
        "match": [{"concept": {"code": "a"}}, {"concept": {"code": "b"}}],
        "resource": {"resourceType": "Patient"},
    }


def test_get_parameter_helpers() -> None:
    answer = params(
        {"name": "display", "valueString": "Heart rate"},
        {"name": "display", "valueString": "HR"},
        {"name": "out"},
        {"name": "out", "resource": {"resourceType": "Bundle"}},
    )
    assert get_parameter(answer, "display") == "Heart rate"
    assert get_parameters(answer, "display") == ["Heart rate", "HR"]
    assert get_parameter(answer, "missing") is None
    assert get_parameter_resource(answer, "out") == {"resourceType": "Bundle"}


def test_parameter_helpers_read_models() -> None:
    model = Parameters.model_validate(params({"name": "result", "valueBoolean": False}))
    assert parameters_to_dict(model) == {"result": False}


def test_parameter_helpers_refuse_another_resource() -> None:
    with pytest.raises(ValueError, match="Bundle"):
        parameters_to_dict({"resourceType": "Bundle"})


# ---------------------------------------------------------------- execute_operation


def test_instance_operation_get(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "GET", FHIR + "Patient/p1/$everything", httpx.Response(200, json={"resourceType": "Bundle"})
    )
    result = make().execute_operation("Patient", "$everything", resource_id="p1", method="GET")
    assert result == {"resourceType": "Bundle"}
    assert fake.api_requests[0].url.path == FHIR + "Patient/p1/$everything"


def test_type_operation_post_sends_body_as_is(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    sent = params({"name": "resource", "resource": {"resourceType": "Patient"}})
    fake.script(
        "POST", FHIR + "Patient/$match", httpx.Response(200, json={"resourceType": "Bundle"})
    )
    make().execute_operation("Patient", "match", params=sent)
    request = fake.api_requests[0]
    assert body(request) == sent
    assert request.headers["content-type"] == "application/fhir+json"


def test_system_operation(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST", FHIR + "$reindex", httpx.Response(200, json={"resourceType": "OperationOutcome"})
    )
    make().execute_operation(None, "reindex")
    request = fake.api_requests[0]
    assert request.url.path == FHIR + "$reindex" and request.content == b""


def test_wrap_params_builds_parameters(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Patient/$op", httpx.Response(200, json={}))
    make().execute_operation("Patient", "op", params={"count": 10, "only": True}, wrap_params=True)
    assert body(fake.api_requests[0]) == params(
        {"name": "count", "valueInteger": 10}, {"name": "only", "valueBoolean": True}
    )


def test_get_params_become_the_query(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", FHIR + "CodeSystem/$lookup", httpx.Response(200, json={}))
    make().execute_operation(
        "CodeSystem",
        "lookup",
        params={"code": "8867-4", "system": "http://loinc.org"},
        method="GET",
    )
    assert query(fake.api_requests[0]) == {"code": ["8867-4"], "system": ["http://loinc.org"]}


def test_get_with_parameters_resource_uses_primitives(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", FHIR + "ValueSet/$expand", httpx.Response(200, json={}))
    sent = params({"name": "url", "valueUri": "http://x/vs"}, {"name": "count", "valueInteger": 2})
    make().execute_operation("ValueSet", "expand", params=sent, method="GET")
    assert query(fake.api_requests[0]) == {"url": ["http://x/vs"], "count": ["2"]}


def test_get_refuses_a_complex_parameter(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    sent = params({"name": "coding", "valueCoding": {"code": "a"}})
    with pytest.raises(ValueError, match="POST"):
        make().execute_operation("ValueSet", "validate-code", params=sent, method="GET")
    assert fake.api_requests == []


@pytest.mark.parametrize("name", ["", "$", "a/b", "../x", "x?y=1"])
def test_bad_operation_names_are_refused(make: Callable[..., Driver], name: str) -> None:
    with pytest.raises(ValueError, match="operation"):
        make().execute_operation("Patient", name)


def test_as_fhir_parses_a_direct_answer(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "GET",
        FHIR + "Patient/p1/$everything",
        httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"}),
    )
    bundle = make().execute_operation("Patient", "everything", "p1", method="GET", as_fhir=Bundle)
    assert isinstance(bundle, Bundle) and bundle.type == "searchset"


def test_as_fhir_refuses_a_wrapped_answer(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Patient/$op", httpx.Response(200, json=params()))
    with pytest.raises(MedplumError, match="Parameters, not a Bundle"):
        make().execute_operation("Patient", "op", as_fhir=Bundle)


def test_a_post_operation_is_not_replayed_after_a_502(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", FHIR + "Patient/$op", httpx.Response(502), httpx.Response(200, json={}))
    with pytest.raises(ServerError) as caught:
        make().execute_operation("Patient", "op", params={"a": 1})
    assert caught.value.possibly_committed
    assert len(fake.api_requests) == 1


# ---------------------------------------------------------------- terminology


def test_expand_valueset_sends_parameters(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST", FHIR + "ValueSet/$expand", httpx.Response(200, json={"resourceType": "ValueSet"})
    )
    make().expand_valueset(
        valueset_url="http://x/vs",
        filter="fin",
        count=5,
        offset=0,
        active_only=False,
        property=["a", "b"],
    )
    assert body(fake.api_requests[0])["parameter"] == [
        {"name": "url", "valueUri": "http://x/vs"},
        {"name": "filter", "valueString": "fin"},
        {"name": "offset", "valueInteger": 0},
        {"name": "count", "valueInteger": 5},
        {"name": "activeOnly", "valueBoolean": False},
        {"name": "property", "valueString": "a"},
        {"name": "property", "valueString": "b"},
    ]


def test_expand_by_id_is_instance_level(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "ValueSet/vs1/$expand", httpx.Response(200, json={}))
    make().expand_valueset(valueset_id="vs1")
    assert body(fake.api_requests[0]) == params()


def test_terminology_reads_are_replayed_after_a_503(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script(
        "POST", FHIR + "CodeSystem/$lookup", httpx.Response(503), httpx.Response(200, json=params())
    )
    make().lookup_concept(code="a", system="http://x/cs")
    assert len(fake.api_requests) == 2 and len(sleeps) == 1


def test_lookup_with_a_coding(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "CodeSystem/$lookup", httpx.Response(200, json=params()))
    make().lookup_concept(coding={"system": "http://x", "code": "a"}, property=["parent"])
    assert body(fake.api_requests[0])["parameter"] == [
        {"name": "coding", "valueCoding": {"system": "http://x", "code": "a"}},
        {"name": "property", "valueCode": "parent"},
    ]


def test_translate_names_the_fhir_parameters(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", FHIR + "ConceptMap/$translate", httpx.Response(200, json=params()))
    make().translate_concept(
        code="final",
        system="http://s",
        conceptmap_url="http://cm",
        target_system="http://t",
        reverse=False,
    )
    names = [p["name"] for p in body(fake.api_requests[0])["parameter"]]
    assert names == ["url", "code", "system", "targetsystem", "reverse"]


def test_validate_codes(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "ValueSet/$validate-code", httpx.Response(200, json=params()))
    fake.script("POST", FHIR + "CodeSystem/cs1/$validate-code", httpx.Response(200, json=params()))
    driver = make()
    driver.validate_valueset_code(valueset_url="http://vs", code="a", system="http://s")
    driver.validate_codesystem_code(codesystem_id="cs1", code="a")
    first, second = fake.api_requests
    assert [p["name"] for p in body(first)["parameter"]] == ["url", "code", "system"]
    assert body(second)["parameter"] == [{"name": "code", "valueCode": "a"}]


@pytest.mark.parametrize(
    ("method", "kwargs", "message"),
    [
        ("expand_valueset", {}, "valueset_url or valueset_id"),
        ("expand_valueset", {"valueset_url": "u", "valueset_id": "i"}, "only one"),
        ("expand_valueset", {"valueset_url": "u", "count": -1}, "non-negative"),
        ("lookup_concept", {}, "code or a coding"),
        ("lookup_concept", {"code": "a", "coding": {"code": "a"}}, "not both"),
        ("translate_concept", {"conceptmap_url": "u"}, "needs a code"),
        ("validate_valueset_code", {"valueset_url": "u"}, "needs a code"),
        ("validate_codesystem_code", {"code": "a"}, "codesystem_url or codesystem_id"),
    ],
)
def test_terminology_inputs_are_checked_before_sending(
    make: Callable[..., Driver],
    fake: FakeMedplum,
    method: str,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        getattr(make(), method)(**kwargs)
    assert fake.api_requests == []


# ---------------------------------------------------------------- clone, expunge, validate


def test_clone_and_expunge(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script(
        "POST",
        FHIR + "Project/p1/$clone",
        httpx.Response(201, json={"resourceType": "Project", "id": "p2"}),
    )
    fake.script("POST", FHIR + "Patient/x/$expunge", httpx.Response(200, json={}))
    driver = make()
    assert driver.clone_resource("Project", "p1", {"name": "copy"})["id"] == "p2"
    assert driver.expunge_resource("Patient", "x", everything=True) is None
    clone, expunge = fake.api_requests
    assert body(clone) == {"name": "copy"}
    assert query(expunge) == {"everything": ["true"]} and expunge.content == b""


def test_expunge_is_not_replayed(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("POST", FHIR + "Patient/x/$expunge", httpx.Response(504), httpx.Response(200))
    with pytest.raises(ServerError):
        make().expunge_resource("Patient", "x")
    assert len(fake.api_requests) == 1


def test_validate_resource_returns_the_outcome_valid_or_not(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    ok = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational"}],
    }
    bad = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
    fake.script(
        "POST",
        FHIR + "Patient/$validate",
        httpx.Response(200, json=ok),
        httpx.Response(400, json=bad),
    )
    driver = make()
    assert driver.validate_resource(Patient(active=True)) == ok
    assert driver.validate_resource({"resourceType": "Patient", "gender": "x"}) == bad
    assert body(fake.api_requests[0]) == {"resourceType": "Patient", "active": True}


def test_validate_resource_raises_other_errors(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "POST",
        FHIR + "Patient/$validate",
        httpx.Response(404, json={"resourceType": "OperationOutcome"}),
    )
    with pytest.raises(NotFoundError):
        make().validate_resource({"resourceType": "Patient"})


# ---------------------------------------------------------------- $everything


def page(entries: list[str], next_url: str | None = None) -> httpx.Response:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": i}} for i in entries],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return httpx.Response(200, json=bundle)


def test_everything_follows_every_page(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    path = FHIR + "Patient/p1/$everything"
    fake.script(
        "GET",
        path,
        page(["a", "b"], f"https://medplum.test{path}?_count=2&_offset=2"),
        page(["c"]),
    )
    bundle = make().read_patient_everything("p1", count=2, types=["Observation", "Condition"])
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["a", "b", "c"]
    assert "link" not in bundle
    first, second = fake.api_requests
    assert query(first) == {"_type": ["Observation,Condition"], "_count": ["2"]}
    assert query(second) == {"_count": ["2"], "_offset": ["2"]}


def test_everything_as_model(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", FHIR + "Patient/p1/$everything", page(["a"]))
    bundle = make().read_patient_everything("p1", as_fhir=Bundle)
    assert isinstance(bundle, Bundle) and len(bundle.entry or []) == 1


def test_everything_refuses_a_foreign_next_link(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", FHIR + "Patient/p1/$everything", page(["a"], "https://evil.test/fhir/R4/x"))
    with pytest.raises(UnsafeRedirectError):
        make().read_patient_everything("p1")
    assert len(fake.api_requests) == 1


def test_everything_stops_on_a_repeating_next_link(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    path = FHIR + "Patient/p1/$everything"
    loop = f"https://medplum.test{path}"
    fake.script("GET", path, page(["a"], loop), page(["a"], loop))
    with pytest.raises(InvalidResponseError, match="leads back to a page already read"):
        make().read_patient_everything("p1")
