"""Error mapping and the safe-to-log contract of every exception."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from pymedplum import (
    AuthenticationError,
    AuthorizationError,
    BadRequestError,
    BundleEntryError,
    ConflictError,
    FHIRBundle,
    GoneError,
    MedplumError,
    NotFoundError,
    OperationOutcomeError,
    PreconditionFailedError,
    RateLimitError,
    ServerError,
    ValidationError,
)

from .conftest import Driver, FakeMedplum


def outcome(code: str, text: str, expression: list[str] | None = None) -> dict[str, object]:
    issue: dict[str, object] = {
        "severity": "error",
        "code": code,
        "details": {"text": text},
        "diagnostics": text,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, AuthorizationError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, GoneError),
        (412, PreconditionFailedError),
        (429, RateLimitError),
        (500, ServerError),
        (418, OperationOutcomeError),
    ],
)
def test_status_maps_to_exception(
    make: Callable[..., Driver], fake: FakeMedplum, status: int, expected: type[Exception]
) -> None:
    replies = [httpx.Response(status, json=outcome("x", "y"))] * 4
    fake.script("GET", "/fhir/R4/Patient/1", *replies)
    api = make(client_id=None, client_secret=None, access_token="t")
    with pytest.raises(expected) as caught:
        api.read_resource("Patient", "1")
    assert type(caught.value) is expected
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert isinstance(caught.value, MedplumError)


def test_gone_is_a_not_found() -> None:
    assert issubclass(GoneError, NotFoundError)
    assert issubclass(ValidationError, BadRequestError)


def test_400_without_outcome_is_bad_request(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(400, text="nope"))
    with pytest.raises(BadRequestError) as caught:
        make().read_resource("Patient", "1")
    assert type(caught.value) is BadRequestError


def test_message_names_path_and_expression_but_no_phi(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    phi = 'Invalid additional property "John Smith 1980-05-01"'
    reply = httpx.Response(400, json=outcome("structure", phi, ["Patient.name"]))
    fake.script("PUT", "/fhir/R4/Patient/secret-id-123", reply)
    with pytest.raises(ValidationError) as caught:
        make().update_resource({"resourceType": "Patient", "id": "secret-id-123"})
    exc = caught.value
    text = str(exc) + repr(exc) + str(exc.sanitize_for_logging())
    assert "PUT /fhir/R4/Patient/{id}" in str(exc)
    assert "structure at Patient.name" in str(exc)
    assert "John Smith" not in text and "secret-id-123" not in text and "tok-1" not in text
    assert exc.outcome is not None and exc.outcome["issue"][0]["diagnostics"] == phi
    assert exc.response is not None and exc.response.status_code == 400
    assert "John" not in repr(exc.response)


def test_no_exception_reaches_the_bearer_token(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/Patient/1", httpx.Response(403, json=outcome("forbidden", "F")))
    with pytest.raises(AuthorizationError) as caught:
        make().read_resource("Patient", "1")
    seen: set[int] = set()

    def walk(value: object, depth: int = 0) -> None:
        if id(value) in seen or depth > 6:
            return
        seen.add(id(value))
        assert not isinstance(value, httpx.Request | httpx.Response)
        if isinstance(value, str):
            assert "tok-1" not in value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k, depth + 1)
                walk(v, depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, depth + 1)
        elif hasattr(value, "__dict__") or hasattr(value, "__slots__"):
            for name in list(getattr(value, "__dict__", {})) + list(
                getattr(value, "__slots__", ())
            ):
                walk(getattr(value, name, None), depth + 1)

    walk(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_network_error_has_no_chained_httpx_exception(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum import NetworkError

    fake.script("POST", "/fhir/R4/Patient", httpx.ReadError("reset"))
    with pytest.raises(NetworkError) as caught:
        make().create_resource({"resourceType": "Patient"})
    assert caught.value.__context__ is None  # the httpx error holds the request and its token


def test_bundle_entry_errors() -> None:
    response = FHIRBundle(
        {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [
                {"response": {"status": "201 Created", "location": "Patient/p1/_history/v1"}},
                {
                    "response": {
                        "status": "400 Bad Request",
                        "outcome": outcome("structure", "Jane Doe", ["Patient.x"]),
                    }
                },
            ],
        }
    )
    ok, failed = response.partition()
    assert [r.resource_id for r in ok] == ["p1"]
    assert [(r.index, r.status_code) for r in failed] == [(1, 400)]
    with pytest.raises(BundleEntryError) as caught:
        response.raise_for_entry_errors()
    assert "Jane" not in str(caught.value) and "#1: 400" in str(caught.value)
