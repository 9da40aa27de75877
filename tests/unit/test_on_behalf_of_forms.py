"""On-behalf-of forms: what each way of naming the acting membership puts on the wire.

A bare id becomes `ProjectMembership/<id>` (Medplum reads a bare value as a profile
reference and answers 403); a ProjectMembership resource becomes `ProjectMembership/<id>`;
a profile reference goes through. The per-call kwarg, the context manager and the client
default follow the same rules, and an empty or malformed value raises ValueError before
anything is sent (the per-call "" keeps its meaning: no header for that call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pymedplum._obo import OBO_HEADER, PROFILE_TYPES, membership_reference
from pymedplum.fhir import ProjectMembership, Reference

from .conftest import Driver, FakeMedplum, header

MEMBERSHIP_ID = "7b65b01b-f883-492f-b7f1-7ba7bd9bc0d4"
AS_REFERENCE = f"ProjectMembership/{MEMBERSHIP_ID}"
MEMBERSHIP_DICT = {"resourceType": "ProjectMembership", "id": MEMBERSHIP_ID}


def membership_model() -> ProjectMembership:
    return ProjectMembership.model_validate(
        {
            "resourceType": "ProjectMembership",
            "id": MEMBERSHIP_ID,
            "project": {"reference": "Project/p"},
            "user": {"reference": "User/u"},
            "profile": {"reference": "Practitioner/x"},
        }
    )


def sent(fake: FakeMedplum) -> str | None:
    return header(fake.api_requests[-1], OBO_HEADER)


FORMS: list[tuple[str, Callable[[], Any], str]] = [
    ("bare id", lambda: MEMBERSHIP_ID, AS_REFERENCE),
    ("reference", lambda: AS_REFERENCE, AS_REFERENCE),
    ("membership dict", lambda: MEMBERSHIP_DICT, AS_REFERENCE),
    ("membership model", membership_model, AS_REFERENCE),
    ("Reference dict", lambda: {"reference": AS_REFERENCE}, AS_REFERENCE),
    ("Reference model", lambda: Reference(reference=AS_REFERENCE), AS_REFERENCE),
    ("profile", lambda: "Practitioner/634c624f", "Practitioner/634c624f"),
]
FORM_IDS = [name for name, _, _ in FORMS]


@pytest.mark.parametrize(("name", "make_value", "expected"), FORMS, ids=FORM_IDS)
def test_per_call_kwarg_sends_the_normalised_form(
    make: Callable[..., Driver], fake: FakeMedplum, name: str, make_value: Any, expected: str
) -> None:
    make().read_resource("Patient", "1", on_behalf_of=make_value())
    assert sent(fake) == expected


@pytest.mark.parametrize(("name", "make_value", "expected"), FORMS, ids=FORM_IDS)
def test_context_manager_sends_the_normalised_form(
    make: Callable[..., Driver], fake: FakeMedplum, name: str, make_value: Any, expected: str
) -> None:
    api = make()
    with api.client.on_behalf_of(make_value()):
        api.read_resource("Patient", "1")
    assert sent(fake) == expected


@pytest.mark.parametrize(("name", "make_value", "expected"), FORMS, ids=FORM_IDS)
def test_client_default_sends_the_normalised_form(
    make: Callable[..., Driver], fake: FakeMedplum, name: str, make_value: Any, expected: str
) -> None:
    api = make(default_on_behalf_of=make_value())
    assert api.client.default_on_behalf_of == expected
    api.read_resource("Patient", "1")
    assert sent(fake) == expected


@pytest.mark.parametrize("profile_type", sorted(PROFILE_TYPES))
def test_every_membership_profile_type_goes_through(profile_type: str) -> None:
    assert membership_reference(f"{profile_type}/abc-1") == f"{profile_type}/abc-1"


def test_the_profile_types_are_those_a_project_membership_can_reference() -> None:
    # ProjectMembership.profile: Reference(Bot | ClientApplication | Patient | Practitioner |
    # RelatedPerson) in Medplum's definitions.
    from pymedplum.fhir import ProjectMembership as PM

    assert "profile" in PM.model_fields
    assert {"Bot", "ClientApplication", "Patient", "Practitioner", "RelatedPerson"} == set(
        PROFILE_TYPES
    )


def test_normalising_is_idempotent() -> None:
    for _, make_value, expected in FORMS:
        assert membership_reference(membership_reference(make_value())) == expected


MALFORMED = [
    "Organization/abc",  # not a membership, not a profile type
    "ProjectMembership/",  # no id
    "ProjectMembership/a/b",
    "Practitioner/",
    "/abc",
    "has space",
    " ",
    "a" * 65,  # longer than a FHIR id
    "ProjectMembership/..",
    "ProjectMembership/abc\r\nX-Injected: 1",
    "abc\n",
    "https://medplum.example/fhir/R4/ProjectMembership/abc",
    {"resourceType": "Patient", "id": "abc"},  # a profile resource, not its reference
    {"resourceType": "ProjectMembership"},  # never saved: no id
    {"resourceType": "ProjectMembership", "id": "bad id"},
    {"display": "no reference"},
]


@pytest.mark.parametrize("value", MALFORMED, ids=repr)
def test_malformed_values_raise_before_anything_is_sent(
    make: Callable[..., Driver], fake: FakeMedplum, value: Any
) -> None:
    api = make()
    with pytest.raises(ValueError, match="on_behalf_of"):
        api.read_resource("Patient", "1", on_behalf_of=value)
    with pytest.raises(ValueError, match="on_behalf_of"):
        api.client.on_behalf_of(value)
    with pytest.raises(ValueError, match="default_on_behalf_of"):
        make(default_on_behalf_of=value)
    assert fake.requests == []  # not even the token request


def test_an_empty_default_is_refused_at_construction(fake: FakeMedplum) -> None:
    with pytest.raises(ValueError, match="default_on_behalf_of must not be empty"):
        fake.sync_client(default_on_behalf_of="")
    with pytest.raises(ValueError, match="default_on_behalf_of must not be empty"):
        fake.async_client(default_on_behalf_of="")


def test_an_empty_context_manager_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make()
    with pytest.raises(ValueError, match="must not be empty"):
        api.client.on_behalf_of("")
    assert fake.requests == []


def test_a_none_context_acts_as_the_client_inside_its_block(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make(default_on_behalf_of=MEMBERSHIP_ID)
    with api.client.on_behalf_of(None):
        api.read_resource("Patient", "1")
        assert sent(fake) is None
    api.read_resource("Patient", "1")
    assert sent(fake) == AS_REFERENCE


def test_the_per_call_empty_string_still_clears(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make(default_on_behalf_of=MEMBERSHIP_ID)
    with api.client.on_behalf_of("ProjectMembership/other"):
        api.read_resource("Patient", "1", on_behalf_of="")
    assert sent(fake) is None


def test_a_value_of_another_type_is_a_type_error(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    api = make()
    with pytest.raises(TypeError, match="on_behalf_of"):
        api.read_resource("Patient", "1", on_behalf_of=42)
    assert fake.requests == []


def test_the_error_names_what_is_wrong_and_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as caught:
        membership_reference("Organization/abc")
    message = str(caught.value)
    assert "'Organization/abc'" in message
    assert "ProjectMembership/<id>" in message and "Practitioner/<id>" in message
    with pytest.raises(ValueError, match="Patient/<id>"):
        membership_reference({"resourceType": "Patient", "id": "abc"})
