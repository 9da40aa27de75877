"""Replays of real Medplum exchanges (tests/data/cassettes) through the SDK.

vcrpy serves the recorded responses; a request only matches when its method, URL
(query in any order) and the headers that carry meaning (If-Match, If-None-Exist,
X-Medplum-On-Behalf-Of) equal what was recorded, so these also check what the SDK sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pymedplum import (
    AuthenticationError,
    AuthorizationError,
    FHIRBundle,
    GoneError,
    MedplumClient,
    NotFoundError,
    PreconditionFailedError,
    ValidationError,
)
from pymedplum._auth import TokenState
from tests.shared_data import CASSETTES

vcr = pytest.importorskip("vcr")

BASE = "http://localhost:8103/"
MEANINGFUL = ("if-match", "if-none-exist", "x-medplum-on-behalf-of")


def _same_meaningful_headers(r1: Any, r2: Any) -> None:
    for name in MEANINGFUL:
        assert r1.headers.get(name) == r2.headers.get(name), name


player = vcr.VCR(
    cassette_library_dir=str(CASSETTES),
    record_mode="none",
    match_on=["method", "scheme", "host", "port", "path", "query", "headers_that_matter"],
)
player.register_matcher("headers_that_matter", _same_meaningful_headers)


def interactions(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((CASSETTES / name).read_text())
    result: list[dict[str, Any]] = data["interactions"]
    return result


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[MedplumClient]:
    with MedplumClient(BASE, access_token="SCRUBBED") as c:
        yield c


def test_token_login_is_parsed() -> None:
    with player.use_cassette("token.yaml", allow_playback_repeats=True):
        client = MedplumClient(BASE, client_id="141811de", client_secret="s")
        step = client._token.join(0, False, client._clock())
        assert step.lead and step.flight is not None
        token = client._refresh(step.flight)
    assert token == "SCRUBBED"
    assert client._token.fresh(client._clock()) == "SCRUBBED"


def test_token_wrong_secret_reply_is_an_authentication_error() -> None:
    reply = interactions("token.yaml")[2]["response"]
    state = TokenState(
        token_url=BASE + "oauth2/token",
        client_id="a",
        client_secret="b",
        access_token=None,
        cooldown=1.0,
    )
    body = reply["body"]["string"].encode()
    step = state.join(0, False, 0.0)
    assert step.flight is not None
    with pytest.raises(AuthenticationError, match="invalid_request"):
        state.finish(step.flight, reply["status"]["code"], {}, body, 0.0)


def test_crud_round_trip(client: MedplumClient) -> None:
    with player.use_cassette("crud.yaml"):
        created = client.create_resource(
            {
                "resourceType": "Patient",
                "name": [{"family": "Cassettea78606", "given": ["Ada"]}],
                "birthDate": "1980-05-01",
            }
        )
        pid = created["id"]
        read = client.read_resource("Patient", pid)
        assert read == created
        updated = client.update_resource({**read, "active": True})
        assert updated["meta"]["versionId"] != read["meta"]["versionId"]
        with pytest.raises(PreconditionFailedError) as stale:
            client.update_resource({**read, "gender": "other"})  # If-Match of the old version
        assert stale.value.issues == [{"severity": "error", "code": "processing"}]
        assert client.delete_resource("Patient", pid) is None
        with pytest.raises(GoneError):
            client.read_resource("Patient", pid)
        with pytest.raises(NotFoundError) as missing:
            client.read_resource("Patient", "9ef65abc-e33a-447b-b02a-e5f5d9276685")
        assert type(missing.value) is NotFoundError


def test_search_paging(client: MedplumClient) -> None:
    with player.use_cassette("search-paging.yaml", allow_playback_repeats=True):
        query = {"family": "Cassettea78606Page", "_count": 2, "_total": "accurate"}
        first = client.search_resources("Patient", query, return_bundle=True)
        assert first.total == 5 and len(first) == 2
        names = [p["name"][0]["given"][0] for p in client.search_resource_pages("Patient", query)]
        assert sorted(names) == ["P0", "P1", "P2", "P3", "P4"]
        counted = client.search_with_options(
            "Patient", {"family": "Cassettea78606Page"}, summary="count"
        )
        assert counted["total"] == 5 and "entry" not in counted
        with pytest.raises(ValidationError) as unknown:
            client.search_resources("Patient", {"no-such-param": "x"})
        assert "no-such-param" not in str(unknown.value)  # details text stays out of str()


def test_on_behalf_of_denials(client: MedplumClient) -> None:
    obo = "ProjectMembership/b3b7b728-c710-4ddd-8a53-03d04cc515a0"
    recorded = interactions("on-behalf-of.yaml")
    untagged, tagged = (i["response"]["body"]["string"] for i in recorded[:2])
    import json

    untagged_id, tagged_id = json.loads(untagged)["id"], json.loads(tagged)["id"]
    bodies = [json.loads(i["request"]["body"]) for i in recorded[:2]]
    with player.use_cassette("on-behalf-of.yaml"):
        client.create_resource(bodies[0])
        client.create_resource(bodies[1])
        with client.on_behalf_of(obo):
            with pytest.raises(NotFoundError):
                client.read_resource("Patient", untagged_id)
            assert client.read_resource("Patient", tagged_id)["id"] == tagged_id
            with pytest.raises(AuthorizationError):
                client.create_resource(json.loads(recorded[4]["request"]["body"]))
            created = client.create_resource(json.loads(recorded[5]["request"]["body"]))
            assert "onBehalfOf" in created["meta"]  # Medplum recorded the acting identity
            found = client.search_resources("Patient", {"family": "Cassettea78606Obo"})
            assert {e["resource"]["id"] for e in found["entry"]} <= {tagged_id, created["id"]}
            with pytest.raises(AuthorizationError):
                client.search_resources("Observation", {"_count": 1})


def test_batch_and_transaction_responses(client: MedplumClient) -> None:
    import json

    recorded = interactions("batch-transaction.yaml")
    with player.use_cassette("batch-transaction.yaml"):
        client.create_resource(json.loads(recorded[0]["request"]["body"]))
        batch = FHIRBundle(client.execute_batch(json.loads(recorded[1]["request"]["body"])))
        assert [r.status_code for r in batch.entry_results()] == [201, 200, 404]
        txn = FHIRBundle(client.execute_transaction(json.loads(recorded[2]["request"]["body"])))
        assert all(r.ok for r in txn.entry_results())
        partial = FHIRBundle(client.execute_transaction(json.loads(recorded[3]["request"]["body"])))
    ok, failed = partial.partition()
    assert ok and failed  # Medplum committed the first entry and failed the second
    assert failed[0].outcome is not None


def test_rate_limit_header_of_a_real_429_sets_the_wait(
    client: MedplumClient, sleeps: list[float]
) -> None:
    from vcr.errors import CannotOverwriteExistingCassetteException

    with player.use_cassette("rate-limit.yaml"):
        for _ in range(15):
            client.search_resources("Patient", {"_count": 1})
        assert sleeps == []
        # The 16th answer is the 429; the retry after it finds the cassette exhausted.
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.search_resources("Patient", {"_count": 1})
    assert sleeps == [60.0]  # `"fhirInteractions";r=0;t=60`, no Retry-After


def _same_obo_reading_empty_as_absent(r1: Any, r2: Any) -> None:
    # Medplum ignores an empty X-Medplum-On-Behalf-Of: recorded "" and "not sent" are the same.
    name = "x-medplum-on-behalf-of"
    assert (r1.headers.get(name) or None) == (r2.headers.get(name) or None)


def _player(*matchers: str) -> Any:
    replay = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="none",
        match_on=["method", "scheme", "host", "port", "path", "query", *matchers],
    )
    replay.register_matcher("obo", _same_obo_reading_empty_as_absent)
    return replay


RECORDED_RESTRICTED_ID = "7b65b01b-f883-492f-b7f1-7ba7bd9bc0d4"


def test_on_behalf_of_forms_reach_the_member_medplum_accepts(sleeps: list[float]) -> None:
    import json

    recorded = interactions("on-behalf-of-forms.yaml")
    patient_id = json.loads(recorded[0]["response"]["body"]["string"])["id"]
    profile = recorded[3]["request"]["headers"]["x-medplum-on-behalf-of"][0]
    unknown = recorded[4]["request"]["headers"]["x-medplum-on-behalf-of"][0]
    with _player("obo").use_cassette("on-behalf-of-forms.yaml", allow_playback_repeats=True):
        with MedplumClient(BASE, access_token="SCRUBBED") as client:
            # A bare id is sent as ProjectMembership/<id>, never as the bare value that
            # real Medplum answered 403 to.
            read = client.read_resource("Patient", patient_id, on_behalf_of=RECORDED_RESTRICTED_ID)
            assert read["id"] == patient_id
            with client.on_behalf_of(RECORDED_RESTRICTED_ID):
                assert client.read_resource("Patient", patient_id)["id"] == patient_id
            assert client.read_resource("Patient", patient_id, on_behalf_of=profile)
            with pytest.raises(NotFoundError):
                client.read_resource("Patient", patient_id, on_behalf_of=unknown)
            assert client.read_resource("Patient", patient_id, on_behalf_of="")["id"] == patient_id
        with MedplumClient(
            BASE, access_token="SCRUBBED", default_on_behalf_of=RECORDED_RESTRICTED_ID
        ) as by_default:
            assert by_default.read_resource("Patient", patient_id)["id"] == patient_id


def test_membership_access_write_under_ambient_obo_acts_as_the_client(
    sleeps: list[float],
) -> None:
    # Recorded: the admin client's GET and PUT of the membership answer 200; the same calls
    # on behalf of the restricted member answer 403. The SDK's admin calls must send none.
    with (
        _player("obo").use_cassette("membership-admin-under-obo.yaml"),
        MedplumClient(
            BASE,
            access_token="SCRUBBED",
            default_on_behalf_of=f"ProjectMembership/{RECORDED_RESTRICTED_ID}",
        ) as client,
        client.on_behalf_of(RECORDED_RESTRICTED_ID),
    ):
        result = client.merge_project_membership_access(
            RECORDED_RESTRICTED_ID,
            managed_access=[],
            managed_policy_ids={"practice-policy"},
            force=True,
        )
    assert result.updated is True
