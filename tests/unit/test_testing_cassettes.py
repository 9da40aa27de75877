"""The cassette scrubber of pymedplum.testing: what it removes, what it keeps.

The end-to-end check (record against the local server, scan the YAML, replay) is in
tests/integration/test_pytest_plugin.py; these pin each rule, and run the scrubber over every
exchange recorded from a real Medplum (tests/data/cassettes).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pymedplum import _json
from pymedplum.testing.cassettes import (
    REDACTED,
    scrub_body,
    scrub_json,
    scrub_query,
    scrub_request,
    scrub_response,
)
from tests.shared_data import CASSETTES

vcr_request = pytest.importorskip("vcr.request")

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def test_a_patients_names_birth_date_identifiers_address_and_telecom_are_replaced() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"use": "official", "family": "Smith", "given": ["Ann", "B"], "prefix": ["Dr"]}],
        "birthDate": "1987-06-05",
        "identifier": [{"system": "urn:mrn", "value": "MRN-1"}],
        "telecom": [{"system": "phone", "value": "555-0100", "use": "home"}],
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}],
        "gender": "female",
    }
    assert scrub_json(patient) == {
        "resourceType": "Patient",
        "id": "p1",
        "name": [
            {"use": "official", "family": REDACTED, "given": [REDACTED] * 2, "prefix": [REDACTED]}
        ],
        "birthDate": "1900-01-01",
        "identifier": [{"system": "urn:mrn", "value": REDACTED}],
        "telecom": [{"system": "phone", "value": REDACTED, "use": "home"}],
        "address": [{"line": [REDACTED], "city": REDACTED, "postalCode": REDACTED}],
        "gender": "female",
    }


def test_a_birth_date_keeps_its_precision_so_it_stays_a_valid_date() -> None:
    dates = ("1987", "1987-06", "1987-06-05")
    scrubbed = [scrub_json({"birthDate": d})["birthDate"] for d in dates]
    assert scrubbed == ["1900", "1900-01", "1900-01-01"]


def test_phi_is_found_at_any_depth_bundles_contained_and_contacts() -> None:
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Patient",
                    "contact": [{"name": {"family": "Kin"}, "telecom": [{"value": "k@x.org"}]}],
                    "contained": [{"resourceType": "RelatedPerson", "name": [{"text": "Bo"}]}],
                }
            }
        ],
    }
    text = _json.dumps(scrub_json(bundle)).decode()
    assert "Kin" not in text and "k@x.org" not in text and "Bo" not in text


def test_a_references_display_goes_but_a_codings_display_stays() -> None:
    observation = {
        "subject": {"reference": "Patient/1", "display": "Ann Smith"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "1", "display": "Weight"}]},
    }
    scrubbed = scrub_json(observation)
    assert scrubbed["subject"] == {"reference": "Patient/1", "display": REDACTED}
    assert scrubbed["code"]["coding"][0]["display"] == "Weight"


def test_names_that_are_not_a_persons_stay() -> None:
    data = {
        "resourceType": "Parameters",
        "parameter": [{"name": "expiration", "valueDateTime": "2026-01-01T00:00:00Z"}],
        "contained": [{"resourceType": "Organization", "name": "Acme Clinic"}],
    }
    assert scrub_json(data) == data


def test_narrative_and_diagnostics_are_replaced() -> None:
    scrubbed = scrub_json(
        {
            "text": {"status": "generated", "div": "<div>Ann Smith</div>"},
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad 'Smith'"}],
        }
    )
    assert "Smith" not in _json.dumps(scrubbed).decode()
    assert scrubbed["text"]["status"] == "generated"
    assert scrubbed["issue"][0]["code"] == "invalid"


def test_credentials_in_json_and_any_jwt_are_replaced() -> None:
    scrubbed = scrub_json(
        {
            "access_token": "opaque-token",
            "refresh_token": "r",
            "resourceType": "ClientApplication",
            "secret": "s3cret",
            "parameter": [{"name": "token", "valueString": JWT}],
        }
    )
    assert scrubbed["access_token"] == scrubbed["refresh_token"] == scrubbed["secret"] == REDACTED
    assert scrubbed["parameter"] == [{"name": "token", "valueString": REDACTED}]


def test_decimals_keep_their_text() -> None:
    body = b'{"resourceType":"Observation","valueQuantity":{"value":1.50}}'
    assert scrub_body(body, "application/fhir+json") == body


def test_a_json_patch_value_is_scrubbed_as_the_element_its_path_names() -> None:
    patch = [
        {"op": "replace", "path": "/name/0/family", "value": "Smith"},
        {"op": "add", "path": "/telecom/-", "value": {"system": "phone", "value": "555"}},
        {"op": "replace", "path": "/birthDate", "value": "1987-06-05"},
        {"op": "replace", "path": "/active", "value": True},
    ]
    assert [op["value"] for op in scrub_json(patch)] == [
        REDACTED,
        {"system": "phone", "value": REDACTED},
        "1900-01-01",
        True,
    ]


def test_ndjson_is_scrubbed_line_by_line() -> None:
    line = b'{"resourceType":"Patient","name":[{"family":"A"}]}\n'
    body = line + line.replace(b'"A"', b'"B"')
    scrubbed = scrub_body(body, "application/fhir+ndjson")
    assert isinstance(scrubbed, bytes)
    assert scrubbed.count(b"REDACTED") == 2 and scrubbed.endswith(b"\n")


def test_a_token_request_loses_its_secrets_and_keeps_the_rest() -> None:
    body = "grant_type=client_credentials&client_id=abc&client_secret=s3cret&client_assertion=xyz"
    scrubbed = scrub_body(body, "application/x-www-form-urlencoded")
    assert scrubbed == (
        "grant_type=client_credentials&client_id=abc&client_secret=REDACTED"
        "&client_assertion=REDACTED"
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("family=Smith&_count=10", "family=REDACTED&_count=10"),
        ("name:exact=Ann&gender=female", "name:exact=REDACTED&gender=female"),
        ("subject:Patient.name=Smith&code=1234-5", "subject:Patient.name=REDACTED&code=1234-5"),
        ("birthdate=ge1990-01-01", "birthdate=REDACTED"),
        ("identifier=urn:mrn|42", "identifier=REDACTED"),
        ("_filter=name eq Smith", "_filter=REDACTED"),
        ("status=final&_count=5", "status=final&_count=5"),
        ("X-Amz-Signature=abc&Expires=1", "X-Amz-Signature=REDACTED&Expires=1"),
    ],
)
def test_person_naming_search_parameters_and_url_credentials_lose_their_values(
    query: str, expected: str
) -> None:
    assert scrub_query(query) == expected


def test_next_links_inside_a_bundle_are_scrubbed() -> None:
    bundle = {
        "link": [{"relation": "next", "url": "https://m.example/fhir/R4/Patient?family=Smith"}]
    }
    assert scrub_json(bundle)["link"][0]["url"] == (
        "https://m.example/fhir/R4/Patient?family=REDACTED"
    )


def test_the_request_filter_replaces_credentials_and_leaves_the_original_alone() -> None:
    request = vcr_request.Request(
        "GET",
        "https://m.example/fhir/R4/Patient?family=Smith",
        None,
        {"Authorization": "Bearer abc", "Cookie": "c=1", "Accept": "application/fhir+json"},
    )
    scrubbed = scrub_request(request)
    assert scrubbed.headers["Authorization"] == scrubbed.headers["Cookie"] == REDACTED
    assert scrubbed.headers["Accept"] == "application/fhir+json"
    assert scrubbed.uri.endswith("family=REDACTED")
    assert request.headers["Authorization"] == "Bearer abc"


def test_the_response_filter_drops_set_cookie_and_fixes_content_length() -> None:
    body = b'{"resourceType":"Patient","name":[{"family":"Smith"}]}'
    response = {
        "status": {"code": 200, "message": "OK"},
        "headers": {"Set-Cookie": ["s=1"], "Content-Length": [str(len(body))]},
        "body": {"string": body},
    }
    scrubbed = scrub_response(response)
    assert "Set-Cookie" not in scrubbed["headers"]
    assert scrubbed["headers"]["Content-Length"] == [str(len(scrubbed["body"]["string"]))]
    assert b"Smith" not in scrubbed["body"]["string"] and b"Smith" in body


def _values_under(data: Any, keys: frozenset[str]) -> list[Any]:
    found: list[Any] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key in keys:
                found.append(value)
            found.extend(_values_under(value, keys))
    elif isinstance(data, list):
        for item in data:
            found.extend(_values_under(item, keys))
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("name", sorted(p.name for p in CASSETTES.glob("*.yaml")))
def test_every_exchange_recorded_from_real_medplum_scrubs_clean(name: str) -> None:
    """Names, birth dates and identifier values are gone from every recorded body, which
    still parses as JSON when it did before; no JWT is left."""
    data = yaml.safe_load((CASSETTES / name).read_text())
    for interaction in data["interactions"]:
        response = scrub_response(interaction["response"])
        body = response["body"]["string"]
        text = body.decode() if isinstance(body, bytes) else body
        assert "eyJ" not in text or "." not in text.split("eyJ", 1)[1][:200]
        try:
            parsed = _json.loads(text) if text.strip()[:1] in ("{", "[") else None
        except ValueError:
            continue  # not JSON to begin with
        for name_value in _values_under(parsed, frozenset({"family", "given"})):
            assert set(_strings(name_value)) <= {REDACTED}
        for birth_date in _values_under(parsed, frozenset({"birthDate"})):
            assert str(birth_date).startswith("1900")
        for identifier in _values_under(parsed, frozenset({"identifier"})):
            for item in identifier if isinstance(identifier, list) else [identifier]:
                assert item.get("value") in (None, REDACTED)
