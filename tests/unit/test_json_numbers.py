"""Dicts from the client hold JSON-native numbers; the decimal text read goes back exactly.

A number with a fraction or an exponent is a `DecimalFloat`: a float (`== 7.2`,
`json.dumps` works) that carries its text, which every JSON body the SDK writes keeps.
Models keep `Decimal`, made from that text.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from pymedplum import DecimalFloat, OperationOutcomeError, _json, parameters_to_dict
from pymedplum.fhir import Observation, Patient, Quantity

from .conftest import Driver, FakeMedplum

TEXTS = ["7.2", "1.50", "12500.00", "66.899999999999991", "1E-7", "-0.0", "2.5e+3"]

OBSERVATION_JSON = (
    '{"resourceType":"Observation","id":"o1","meta":{"versionId":"1"},"status":"final",'
    '"code":{"text":"weight"},"valueQuantity":{"value":7.2,"unit":"kg"},"component":['
    + ",".join(
        f'{{"code":{{"text":"c{i}"}},"valueQuantity":{{"value":{text}}}}}'
        for i, text in enumerate(TEXTS)
    )
    + '],"extension":[{"url":"http://example.com/count","valueInteger":3}]}'
)


def serve_observation(fake: FakeMedplum) -> None:
    fake.script(
        "GET",
        "/fhir/R4/Observation/o1",
        httpx.Response(
            200,
            content=OBSERVATION_JSON.encode(),
            headers={"content-type": "application/fhir+json"},
        ),
    )


def component_values(resource: dict[str, Any]) -> list[Any]:
    return [c["valueQuantity"]["value"] for c in resource["component"]]


def test_a_read_dict_holds_what_json_loads_gives(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve_observation(fake)
    read = make().read_resource("Observation", "o1")
    value = read["valueQuantity"]["value"]
    assert value == 7.2 and isinstance(value, float)
    assert component_values(read) == component_values(json.loads(OBSERVATION_JSON))
    assert all(isinstance(v, float) for v in component_values(read))
    count = read["extension"][0]["valueInteger"]
    assert count == 3 and type(count) is int  # integers stay int
    assert json.loads(json.dumps(read)) == json.loads(OBSERVATION_JSON)


def test_writing_a_read_dict_back_sends_the_text_as_read(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    serve_observation(fake)
    api = make()
    read = api.read_resource("Observation", "o1")
    api.update_resource(read)
    api.create_resource(read)
    api.execute_batch(
        {
            "resourceType": "Bundle",
            "entry": [{"resource": read, "request": {"method": "POST", "url": "Observation"}}],
        }
    )
    api.post("fhir/R4/Observation", json=read)
    sent = [r for r in fake.api_requests if r.method in ("PUT", "POST")]
    assert len(sent) == 4
    for request in sent:
        for text in TEXTS:
            assert f'"value":{text}}}'.encode() in request.content
    assert _json.dumps(read) == OBSERVATION_JSON.encode()


def test_arithmetic_gives_a_plain_float_written_as_its_shortest_repr() -> None:
    value = _json.loads(b"[1.50]")[0]
    doubled = value * 2
    assert type(doubled) is float and doubled == 3.0
    assert _json.dumps([value, doubled, value + 0]) == b"[1.50,3.0,1.5]"


def test_decimal_float_keeps_its_text_through_copy_and_pickle() -> None:
    value = _json.loads(b'{"v": 12500.00}')["v"]
    assert type(value) is DecimalFloat and value.text == "12500.00"
    assert str(value) == repr(value) == "12500.00" and f"{value}" == "12500.00"
    assert value.as_decimal() == Decimal("12500.00") and str(value.as_decimal()) == "12500.00"
    for copied in (
        copy.copy(value),
        copy.deepcopy({"v": value})["v"],
        pickle.loads(pickle.dumps(value)),
    ):
        assert type(copied) is DecimalFloat and copied.text == "12500.00"
    assert hash(value) == hash(12500.0) and {value: 1}[12500.0] == 1


def test_decimal_float_is_built_only_from_json_numbers() -> None:
    assert DecimalFloat("1.50").text == "1.50"
    assert DecimalFloat(Decimal("1.50")).text == "1.50"
    assert DecimalFloat(0.1).text == "0.1" and DecimalFloat(3).text == "3"
    for bad in ("1_000.5", " 1.5", "nan", "0x10", "1.", ".5"):
        with pytest.raises(ValueError):
            DecimalFloat(bad)
    for non_finite in (float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(ValueError):
            DecimalFloat(non_finite)
    with pytest.raises(TypeError):
        DecimalFloat(True)


@pytest.mark.parametrize("text", TEXTS)
def test_a_model_validated_from_a_read_dict_holds_the_decimal_of_the_text(text: str) -> None:
    data = _json.loads(
        '{"resourceType":"Observation","status":"final","code":{"text":"w"},'
        f'"valueQuantity":{{"value":{text}}}}}'
    )
    for model in (Observation.model_validate(data), Observation.from_server(data)):
        assert model.value_quantity is not None
        assert model.value_quantity.value == Decimal(text)
        assert str(model.value_quantity.value) == str(Decimal(text))
        if "e" not in text.lower():  # a Decimal does not remember how an exponent was written
            assert f'"value":{text}}}'.encode() in model.to_fhir_json()
    assert Quantity(value=DecimalFloat(text)).value == Decimal(text)


def test_as_fhir_gives_decimals_of_the_text(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    serve_observation(fake)
    model = make().read_resource("Observation", "o1", as_fhir=Observation)
    values = [c.value_quantity.value for c in model.component or () if c.value_quantity]
    assert values == [Decimal(t) for t in TEXTS]
    assert [str(v) for v in values[:4]] == ["7.2", "1.50", "12500.00", "66.899999999999991"]


def test_unknown_elements_kept_by_a_model_keep_their_text() -> None:
    data = _json.loads(
        b'{"resourceType":"Observation","status":"final","code":{"text":"w"},"future":{"v":2.50}}'
    )
    model = Observation.from_server(data)
    assert b'"future":{"v":2.50}' in model.to_fhir_json()
    assert '"future":{"v":2.50}' in model.model_dump_json()


@pytest.mark.parametrize(
    "text", ["\u0000fhir-decimal:1.5", "\u0000fhir-decimal:", 'a \\" \u0000 "b"']
)
def test_unknown_text_that_looks_like_the_decimal_mark_is_written_back_as_text(text: str) -> None:
    # The serializer marks decimals with a NUL-prefixed string; only strings an unknown
    # element keeps can hold a NUL (FHIR strings cannot), and they are written unchanged.
    quoted = orjson.dumps(text)
    raw = b'{"resourceType":"Patient","future":' + quoted + b',"n":[1.50,' + quoted + b"]}"
    model = Patient.from_server(raw)
    written = model.to_fhir_json()
    assert orjson.loads(written)["future"] == text
    assert orjson.loads(written)["n"][1] == text
    assert b'"n":[1.50,' in written
    assert orjson.loads(model.model_dump_json())["future"] == text


def test_every_parsed_answer_holds_json_numbers(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "extension": [{"url": "u", "valueDecimal": 0.50}],
            }
        ],
    }
    raw_outcome = json.dumps(outcome).replace("0.5", "0.50").encode()
    fake.script("GET", "/fhir/R4/Patient/x", httpx.Response(422, content=raw_outcome))
    fake.script(
        "POST",
        "/fhir/R4/Bot/b1/$execute",
        httpx.Response(
            200, content=b'{"score": 0.90}', headers={"content-type": "application/json"}
        ),
    )
    fake.script(
        "POST",
        "/fhir/R4/Observation/$stats",
        httpx.Response(
            200,
            content=b'{"resourceType":"Parameters","parameter":[{"name":"mean","valueDecimal":4.10}]}',
        ),
    )
    fake.script(
        "GET",
        "/fhir/R4/Observation",
        httpx.Response(
            200,
            content=b'{"resourceType":"Bundle","type":"searchset","entry":[{"resource":'
            b'{"resourceType":"Observation","valueQuantity":{"value":7.20}}}]}',
        ),
    )
    api = make()
    (found,) = list(api.search_resources("Observation", return_bundle=True))
    assert found["valueQuantity"]["value"] == 7.2 and str(found["valueQuantity"]["value"]) == "7.20"
    with pytest.raises(OperationOutcomeError) as caught:
        api.read_resource("Patient", "x")
    for holder in (caught.value.outcome, caught.value.response.json()):  # type: ignore[union-attr]
        assert holder is not None
        number = holder["issue"][0]["extension"][0]["valueDecimal"]
        assert number == 0.5 and isinstance(number, float) and str(number) == "0.50"
    answer = api.execute_bot("b1", {})
    assert answer == {"score": 0.9} and json.dumps(answer) == '{"score": 0.9}'
    result = api.execute_operation("Observation", "stats")
    mean = parameters_to_dict(result)["mean"]
    assert mean == 4.1 and str(mean) == "4.10"


# ------------------------------------------------------------ NaN and infinities


NON_FINITE = [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("-Infinity")]


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
def test_nan_and_infinity_in_a_resource_are_refused_before_sending(
    make: Callable[..., Driver], fake: FakeMedplum, bad: Any
) -> None:
    api = make()
    observation = {"resourceType": "Observation", "valueQuantity": {"value": bad}}
    with pytest.raises(
        ValueError, match=r"^Observation\.valueQuantity\.value: .* not a JSON number"
    ):
        api.create_resource(observation)
    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation}]}
    with pytest.raises(ValueError, match=r"^Bundle\.entry\[0\]\.resource\.valueQuantity\.value: "):
        api.execute_transaction(bundle)
    assert fake.api_requests == []


@pytest.mark.parametrize(
    "send",
    [
        lambda api: api.execute_bot("b1", {"scores": [1.0, float("nan")]}),
        lambda api: api.execute_operation(
            "Patient",
            "match",
            params={
                "resourceType": "Parameters",
                "parameter": [{"name": "x", "valueDecimal": float("inf")}],
            },
        ),
        lambda api: api.post("fhir/R4/Patient/$x", json={"a": {"b": float("-inf")}}),
        lambda api: api.execute_graphql("{ x }", {"limit": float("nan")}),
        lambda api: api.patch_resource(
            "Patient", "1", [{"op": "add", "path": "/x", "value": float("nan")}]
        ),
    ],
    ids=["bot input", "parameters", "post", "graphql variables", "patch"],
)
def test_nan_anywhere_in_any_body_is_refused_naming_where(
    make: Callable[..., Driver], fake: FakeMedplum, send: Callable[[Driver], Any]
) -> None:
    with pytest.raises(
        ValueError, match=r"(\$|Parameters)[.\[].*: (nan|inf|-inf) is not a JSON number"
    ):
        send(make())
    assert fake.api_requests == []


def test_nan_in_a_query_is_refused(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    with pytest.raises(ValueError, match="'value-quantity': nan"):
        make().search_resources("Observation", {"value-quantity": float("nan")})
    assert fake.api_requests == []
