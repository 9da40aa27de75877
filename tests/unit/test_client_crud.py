"""CRUD, search, bundles, GraphQL and low-level calls: what goes on the wire, what comes back."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from pymedplum import FHIRBundle, MissingVersionIdError, PreconditionFailedError

from .conftest import Driver, FakeMedplum, header, query


class PatientModel(BaseModel):
    """A stand-in for any Pydantic model (ours or another library's)."""

    model_config = ConfigDict(populate_by_name=True)
    resourceType: str = "Patient"  # noqa: N815 - FHIR's name
    id: str | None = None
    active: bool | None = None


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_create_from_dict(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    created = make().create_resource({"resourceType": "Patient", "active": True})
    sent = fake.api_requests[0]
    assert sent.method == "POST" and sent.url.path == "/fhir/R4/Patient"
    assert sent.headers["content-type"] == "application/fhir+json"
    assert body(sent) == {"resourceType": "Patient", "active": True}
    assert created["id"] == "new-id"


def test_create_from_model_returns_model(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    created = make().create_resource(PatientModel(active=False), as_fhir=PatientModel)
    assert body(fake.api_requests[0]) == {"resourceType": "Patient", "active": False}
    assert isinstance(created, PatientModel) and created.id == "new-id"


def test_create_from_fhir_resources_model(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    from fhir.resources.patient import Patient

    make().create_resource(Patient(active=True, birthDate="1980-05-01"))
    assert body(fake.api_requests[0]) == {
        "resourceType": "Patient",
        "active": True,
        "birthDate": "1980-05-01",
    }


def test_decimals_travel_exactly(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": Decimal("1.50")}}
    created = make().create_resource(obs)
    assert b'"value":1.50' in fake.api_requests[0].content
    assert created["valueQuantity"]["value"] == Decimal("1.50")
    assert str(created["valueQuantity"]["value"]) == "1.50"


def test_accounts_set_meta_without_touching_the_callers_dict(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    resource = {"resourceType": "Patient", "meta": {"tag": [{"code": "x"}]}}
    make().create_resource(resource, accounts=["Organization/a", "Organization/b"])
    assert body(fake.api_requests[0])["meta"] == {
        "tag": [{"code": "x"}],
        "accounts": [{"reference": "Organization/a"}, {"reference": "Organization/b"}],
    }
    assert resource["meta"] == {"tag": [{"code": "x"}]}


def test_read_returns_dict_or_model(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make()
    assert api.read_resource("Patient", "7")["id"] == "7"
    model = api.read_resource("Patient", "7", as_fhir=PatientModel)
    assert isinstance(model, PatientModel) and model.id == "7"
    assert fake.api_requests[0].headers["accept"] == "application/fhir+json"


def test_vread_path(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().vread_resource("Patient", "7", "3")
    assert fake.api_requests[0].url.path == "/fhir/R4/Patient/7/_history/3"


def test_extra_headers_are_sent(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().read_resource("Patient", "7", headers={"X-Request-Id": "r1"})
    assert header(fake.api_requests[0], "x-request-id") == "r1"


VERSIONED = {"resourceType": "Patient", "id": "7", "meta": {"versionId": "v5"}}
UNVERSIONED = {"resourceType": "Patient", "id": "7"}


@pytest.mark.parametrize(
    ("resource", "if_match", "expected"),
    [
        (VERSIONED, True, 'W/"v5"'),
        (UNVERSIONED, True, None),
        (VERSIONED, False, None),
        (VERSIONED, 'W/"9"', 'W/"9"'),
        (VERSIONED, "required", 'W/"v5"'),
    ],
)
def test_update_if_match(
    make: Callable[..., Driver],
    fake: FakeMedplum,
    resource: dict[str, Any],
    if_match: bool | str,
    expected: str | None,
) -> None:
    make().update_resource(resource, if_match=if_match)
    sent = fake.api_requests[0]
    assert sent.method == "PUT" and sent.url.path == "/fhir/R4/Patient/7"
    assert header(sent, "if-match") == expected


def test_update_sends_if_match_by_default(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().update_resource(VERSIONED)
    assert fake.api_requests[0].headers.get_list("if-match") == ['W/"v5"']


def test_update_of_a_model_sends_if_match_by_default(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum.fhir import Patient

    make().update_resource(Patient.model_validate(VERSIONED))
    assert fake.api_requests[0].headers.get_list("if-match") == ['W/"v5"']


def test_update_without_a_version_sends_no_if_match_by_default(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    make().update_resource(UNVERSIONED)
    assert header(fake.api_requests[0], "if-match") is None


def test_update_required_without_version_refuses(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(MissingVersionIdError):
        make().update_resource(UNVERSIONED, if_match="required")
    assert fake.requests == []


def test_update_explicit_header_wins(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().update_resource(VERSIONED, headers={"if-match": 'W/"x"'})
    assert fake.api_requests[0].headers.get_list("if-match") == ['W/"x"']


def test_update_if_match_of_another_type_is_a_type_error(make: Callable[..., Driver]) -> None:
    with pytest.raises(TypeError):
        make().update_resource(VERSIONED, if_match=None)  # type: ignore[arg-type]


def test_update_needs_an_id(make: Callable[..., Driver]) -> None:
    with pytest.raises(ValueError):
        make().update_resource({"resourceType": "Patient"})


def test_update_with_retry_rereads_after_412(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "GET",
        "/fhir/R4/Patient/7",
        httpx.Response(200, json={**VERSIONED, "meta": {"versionId": "v1"}}),
        httpx.Response(200, json={**VERSIONED, "meta": {"versionId": "v2"}}),
    )
    fake.script("PUT", "/fhir/R4/Patient/7", httpx.Response(412))

    def deactivate(patient: dict[str, Any]) -> None:
        patient["active"] = False

    result = make().update_with_retry("Patient", "7", deactivate)
    puts = [r for r in fake.api_requests if r.method == "PUT"]
    assert [r.headers["if-match"] for r in puts] == ['W/"v1"', 'W/"v2"']
    assert result.wrote and result.resource["active"] is False


def test_update_with_retry_gives_up_after_max_retries(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PUT", "/fhir/R4/Patient/7", httpx.Response(412), httpx.Response(412))
    with pytest.raises(PreconditionFailedError):
        make().update_with_retry("Patient", "7", lambda p: {**p, "active": True}, max_retries=1)
    assert len([r for r in fake.api_requests if r.method == "PUT"]) == 2


def test_update_with_retry_skips_a_no_op(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    result = make().update_with_retry("Patient", "7", lambda p: None)
    assert not result.wrote and result.version_id == "1"
    assert [r.method for r in fake.api_requests] == ["GET"]


def test_update_with_retry_refuses_an_id_change(make: Callable[..., Driver]) -> None:
    with pytest.raises(ValueError):
        make().update_with_retry("Patient", "7", lambda p: {**p, "id": "8"})


def test_patch(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    ops = [{"op": "replace", "path": "/active", "value": False}]
    make().patch_resource("Patient", "7", ops, if_match='W/"3"')
    sent = fake.api_requests[0]
    assert sent.method == "PATCH" and sent.headers["content-type"] == "application/json-patch+json"
    assert body(sent) == ops and sent.headers["if-match"] == 'W/"3"'


def test_delete_returns_none(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    assert make().delete_resource("Patient", "7") is None
    assert fake.api_requests[0].method == "DELETE"


def test_search_query_encoding(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().search_resources(
        "Patient", {"birthdate": ["ge1990-01-01", "le2000-12-31"], "active": True, "x": None}
    )
    assert query(fake.api_requests[0]) == {
        "birthdate": ["ge1990-01-01", "le2000-12-31"],
        "active": ["true"],
    }


def test_search_accepts_a_list_of_pairs(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().search_resources("Patient", [("name", "a"), ("name", "b")])
    assert query(fake.api_requests[0]) == {"name": ["a", "b"]}


SEARCHSET = {
    "resourceType": "Bundle",
    "type": "searchset",
    "total": 2,
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "1"}, "search": {"mode": "match"}},
        {"resource": {"resourceType": "Organization", "id": "o"}, "search": {"mode": "include"}},
    ],
}


def test_search_return_bundle(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", "/fhir/R4/Patient", httpx.Response(200, json=SEARCHSET))
    bundle = make().search_resources("Patient", return_bundle=True)
    assert isinstance(bundle, FHIRBundle) and bundle.total == 2
    assert [r["id"] for r in bundle] == ["1", "o"]
    typed = bundle.get_resources_typed(PatientModel)
    assert [p.id for p in typed] == ["1"]


OBSERVATIONS_WITH_SUBJECTS = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"text": "t"},
                "subject": {"reference": "Patient/p1"},
            },
            "search": {"mode": "match"},
        },
        {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "include"}},
    ],
}


@pytest.mark.parametrize("typed", [True, False], ids=["typed-bundle", "dict-bundle"])
def test_included_resources_are_read_by_type_from_a_search_bundle(
    make: Callable[..., Driver], fake: FakeMedplum, typed: bool
) -> None:
    from pymedplum.fhir import Observation, Patient

    fake.script("GET", "/fhir/R4/Observation", httpx.Response(200, json=OBSERVATIONS_WITH_SUBJECTS))
    bundle = make().search_resources(
        "Observation",
        {"_include": "Observation:subject"},
        return_bundle=True,
        as_fhir=Observation if typed else None,
    )
    included = bundle.get_resources_typed(Patient)
    assert [type(p) for p in included] == [Patient] and [p.id for p in included] == ["p1"]


def test_a_typed_search_bundle_iterates_its_model_only(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum.fhir import Observation

    fake.script("GET", "/fhir/R4/Observation", httpx.Response(200, json=OBSERVATIONS_WITH_SUBJECTS))
    bundle = make().search_resources(
        "Observation", {"_include": "Observation:subject"}, return_bundle=True, as_fhir=Observation
    )
    assert [(type(o), o.id) for o in bundle] == [(Observation, "o1")]
    assert len(bundle) == 1


def test_search_one(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", "/fhir/R4/Patient", httpx.Response(200, json=SEARCHSET))
    api = make()
    assert api.search_one("Patient", {"identifier": "mrn|1", "_count": 50}) == {
        "resourceType": "Patient",
        "id": "1",
    }
    assert query(fake.api_requests[0]) == {"identifier": ["mrn|1"], "_count": ["1"]}
    assert api.search_one("Patient") is None


def test_search_with_options_maps_names(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make()
    api.search_with_options(
        "Observation",
        {"patient": "Patient/1"},
        summary="count",
        elements=["id", "code"],
        total="accurate",
        count=50,
        offset=100,
        sort=["-date", "code"],
        include="Observation:patient",
        revinclude_iterate=["A:b", "C:d"],
    )
    assert query(fake.api_requests[0]) == {
        "patient": ["Patient/1"],
        "_summary": ["count"],
        "_elements": ["id,code"],
        "_total": ["accurate"],
        "_count": ["50"],
        "_offset": ["100"],
        "_sort": ["-date,code"],
        "_include": ["Observation:patient"],
        "_revinclude:iterate": ["A:b", "C:d"],
    }
    assert api.client.searchWithOptions == api.client.search_with_options


def test_search_resource_pages_follows_next(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    pages = [
        {
            "resourceType": "Bundle",
            "entry": [{"resource": {"resourceType": "Patient", "id": str(i)}}],
            "link": [
                {"relation": "next", "url": f"https://medplum.test/fhir/R4/Patient?_offset={i + 1}"}
            ],
        }
        for i in range(2)
    ] + [
        {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "2"}}]}
    ]
    fake.script("GET", "/fhir/R4/Patient", *[httpx.Response(200, json=p) for p in pages])
    models = make().search_resource_pages("Patient", {"name": "x"}, as_fhir=PatientModel)
    assert [m.id for m in models] == ["0", "1", "2"]
    assert [r.url.query for r in fake.api_requests] == [b"name=x", b"_offset=1", b"_offset=2"]


def test_batch_and_transaction_set_type_and_never_mutate_input(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient"},
            }
        ],
    }
    api = make()
    api.execute_batch(bundle, accounts="Organization/a")
    api.execute_transaction(bundle)
    batch, transaction = (body(r) for r in fake.api_requests)
    assert batch["type"] == "batch" and transaction["type"] == "transaction"
    assert batch["entry"][0]["resource"]["meta"]["accounts"] == [{"reference": "Organization/a"}]
    assert "type" not in bundle and "meta" not in bundle["entry"][0]["resource"]
    assert all(r.url.path == "/fhir/R4/" for r in fake.api_requests)


def test_graphql_body(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make().execute_graphql("query Q($id: ID!) { Patient(id: $id) { id } }", {"id": "1"})
    sent = fake.api_requests[0]
    assert sent.url.path == "/fhir/R4/$graphql"
    assert body(sent) == {
        "query": "query Q($id: ID!) { Patient(id: $id) { id } }",
        "variables": {"id": "1"},
    }


def test_low_level_methods(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    api = make()
    assert api.get("fhir/R4/Patient/1")["id"] == "1"
    api.post("/fhir/R4/Patient", {"resourceType": "Patient"}, params={"_pretty": "true"})
    api.put("fhir/R4/Patient/1", {"resourceType": "Patient", "id": "1"})
    assert api.delete("fhir/R4/Patient/1") is None
    assert [(r.method, r.url.path) for r in fake.api_requests] == [
        ("GET", "/fhir/R4/Patient/1"),
        ("POST", "/fhir/R4/Patient"),
        ("PUT", "/fhir/R4/Patient/1"),
        ("DELETE", "/fhir/R4/Patient/1"),
    ]
    assert fake.api_requests[1].url.query == b"_pretty=true"


def test_custom_fhir_url_path(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    make(fhir_url_path="/fhir/R4B").read_resource("Patient", "1")
    assert fake.api_requests[0].url.path == "/fhir/R4B/Patient/1"


def test_a_typed_bundle_counts_what_it_yields() -> None:
    from pymedplum import FHIRBundle
    from pymedplum.fhir import Patient

    bundle = FHIRBundle(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "1"}},
                {"resource": {"resourceType": "Organization", "id": "2"}},
            ],
        },
        Patient,
    )
    assert len(bundle) == len(list(bundle)) == 1
    assert len(FHIRBundle(bundle.data)) == 2
