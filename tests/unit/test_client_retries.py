"""Retries through the client: 429 delays, ambiguous failures, never replaying a plain POST."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from pymedplum import MAX_RETRY_DELAY_SECONDS, NetworkError, RateLimitError, ServerError

from .conftest import Driver, FakeMedplum

PATIENT = "/fhir/R4/Patient"
OK = {"resourceType": "Patient", "id": "1"}


def r429(**headers: str) -> httpx.Response:
    return httpx.Response(429, headers=headers, json={"resourceType": "OperationOutcome"})


def test_429_retry_after_seconds_is_waited_then_retried(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", r429(**{"Retry-After": "2"}), httpx.Response(200, json=OK))
    assert make().read_resource("Patient", "1") == OK
    assert sleeps == [2.0]
    assert len(fake.api_requests) == 2


def test_429_retry_after_http_date(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.script("GET", PATIENT + "/1", r429(**{"Retry-After": when}), httpx.Response(200, json=OK))
    make().read_resource("Patient", "1")
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 30


def test_429_delay_capped_by_max_retry_delay(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script(
        "GET", PATIENT + "/1", r429(**{"Retry-After": "3600"}), httpx.Response(200, json=OK)
    )
    make().read_resource("Patient", "1")
    assert sleeps == [MAX_RETRY_DELAY_SECONDS]


def test_429_medplum_rate_limit_header_is_read(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    limited = r429(RateLimit='"requests";r=59920;t=60, "fhirInteractions";r=0;t=45')
    fake.script("GET", PATIENT + "/1", limited, httpx.Response(200, json=OK))
    make().read_resource("Patient", "1")
    assert sleeps == [45.0]


def test_429_retries_even_a_plain_post(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("POST", PATIENT, r429(**{"Retry-After": "1"}))
    created = make().create_resource({"resourceType": "Patient"})
    assert created["id"] == "new-id"
    assert len(fake.api_requests) == 2


def test_persistent_429_raises_rate_limit_error_with_retry_after(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", *[r429(**{"Retry-After": "5"}) for _ in range(4)])
    with pytest.raises(RateLimitError) as caught:
        make().read_resource("Patient", "1")
    assert caught.value.retry_after == 5.0
    assert sleeps == [5.0, 5.0, 5.0]
    assert len(fake.api_requests) == 4


def test_backoff_without_server_hint_grows(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", *[httpx.Response(503) for _ in range(3)])
    make().read_resource("Patient", "1")
    assert len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0 and 1.0 <= sleeps[2] <= 2.0


def r503(**headers: str) -> httpx.Response:
    return httpx.Response(503, headers=headers, json={"resourceType": "OperationOutcome"})


def test_503_retry_after_seconds_is_waited_on_a_read(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", r503(**{"Retry-After": "7"}), httpx.Response(200, json=OK))
    assert make().read_resource("Patient", "1") == OK
    assert sleeps == [7.0]
    assert len(fake.api_requests) == 2


def test_503_retry_after_is_waited_on_a_conditional_create(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("POST", PATIENT, r503(**{"Retry-After": "7"}))
    make().create_resource_if_none_exist({"resourceType": "Patient"}, "identifier=mrn|1")
    assert sleeps == [7.0]
    assert len(fake.api_requests) == 2


def test_503_delay_capped_by_max_retry_delay(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", r503(**{"Retry-After": "600"}))
    make().read_resource("Patient", "1")
    assert sleeps == [MAX_RETRY_DELAY_SECONDS]


def test_503_retry_after_http_date_in_the_past_is_retried_at_once(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    # Without reading the date, the wait would be a backoff of at least 0.25 s.
    when = format_datetime(datetime.now(UTC) - timedelta(minutes=5), usegmt=True)
    fake.script("GET", PATIENT + "/1", r503(**{"Retry-After": when}))
    make().read_resource("Patient", "1")
    assert sleeps == []  # a zero delay is not slept
    assert len(fake.api_requests) == 2


def test_503_retry_after_http_date_far_ahead_is_capped(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    fake.script("GET", PATIENT + "/1", r503(**{"Retry-After": when}))
    make().read_resource("Patient", "1")
    assert sleeps == [MAX_RETRY_DELAY_SECONDS]


def test_503_medplum_rate_limit_header_is_read(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", r503(RateLimit='"fhirInteractions";r=0;t=12'))
    make().read_resource("Patient", "1")
    assert sleeps == [12.0]


def test_persistent_503_waits_its_retry_after_each_time_then_raises(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", PATIENT + "/1", *[r503(**{"Retry-After": "7"}) for _ in range(4)])
    with pytest.raises(ServerError):
        make().read_resource("Patient", "1")
    assert sleeps == [7.0, 7.0, 7.0]
    assert len(fake.api_requests) == 4


@pytest.mark.parametrize("status", [502, 504])
@pytest.mark.parametrize("retry_after", ["7", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_502_and_504_back_off_whatever_their_retry_after(
    make: Callable[..., Driver],
    fake: FakeMedplum,
    sleeps: list[float],
    status: int,
    retry_after: str,
) -> None:
    # Documented (docs/reliability.md): only a 429 and a 503 carry the server's delay.
    reply = httpx.Response(status, headers={"Retry-After": retry_after})
    fake.script("GET", PATIENT + "/1", reply)
    make().read_resource("Patient", "1")
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5


@pytest.mark.parametrize("status", [502, 503, 504])
def test_plain_post_never_replayed_after_ambiguous_status_with_retry_after(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float], status: int
) -> None:
    # A server's delay says when to come back, not that the write did not happen.
    fake.script("POST", PATIENT, httpx.Response(status, headers={"Retry-After": "1"}))
    with pytest.raises(ServerError) as caught:
        make().create_resource({"resourceType": "Patient"})
    assert len(fake.api_requests) == 1
    assert sleeps == []
    assert caught.value.possibly_committed is True


@pytest.mark.parametrize("status", [502, 503, 504])
def test_ambiguous_status_is_retried_for_a_read(
    make: Callable[..., Driver], fake: FakeMedplum, status: int
) -> None:
    fake.script("GET", PATIENT + "/1", httpx.Response(status))
    assert make().read_resource("Patient", "1")["id"] == "1"
    assert len(fake.api_requests) == 2


@pytest.mark.parametrize("status", [502, 503, 504])
def test_plain_post_never_replayed_after_ambiguous_status(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float], status: int
) -> None:
    fake.script("POST", PATIENT, httpx.Response(status))
    with pytest.raises(ServerError) as caught:
        make().create_resource({"resourceType": "Patient"})
    assert len(fake.api_requests) == 1
    assert sleeps == []
    assert caught.value.possibly_committed is True
    assert "may have been committed" in str(caught.value)


def test_plain_post_never_replayed_after_connection_lost_mid_request(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("POST", PATIENT, httpx.RemoteProtocolError("Server disconnected"))
    with pytest.raises(NetworkError) as caught:
        make().create_resource({"resourceType": "Patient"})
    assert len(fake.api_requests) == 1
    assert caught.value.possibly_committed is True
    assert "may have been committed" in str(caught.value)


def test_read_timeout_on_post_is_not_replayed(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", PATIENT, httpx.ReadTimeout("timed out"))
    with pytest.raises(NetworkError):
        make().create_resource({"resourceType": "Patient"})
    assert len(fake.api_requests) == 1


def test_connect_failure_is_retried_even_for_post(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", PATIENT, httpx.ConnectError("refused"))
    assert make().create_resource({"resourceType": "Patient"})["id"] == "new-id"
    assert len(fake.api_requests) == 2


def test_connect_failures_exhausted_say_nothing_was_sent(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", PATIENT + "/1", *[httpx.ConnectError("refused") for _ in range(4)])
    with pytest.raises(NetworkError) as caught:
        make().read_resource("Patient", "1")
    assert caught.value.possibly_committed is False
    assert len(fake.api_requests) == 4


def test_conditional_create_is_replayed_after_503(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("POST", PATIENT, httpx.Response(503))
    make().create_resource_if_none_exist({"resourceType": "Patient"}, "identifier=mrn|1")
    assert len(fake.api_requests) == 2
    assert all(r.headers["if-none-exist"] == "identifier=mrn|1" for r in fake.api_requests)


@pytest.mark.parametrize("name", ["If-None-Exist", "if-none-exist"])
def test_a_raw_post_with_if_none_exist_is_replayed_after_503_in_any_spelling(
    make: Callable[..., Driver], fake: FakeMedplum, name: str
) -> None:
    fake.script("POST", PATIENT, httpx.Response(503))
    make().post("fhir/R4/Patient", {"resourceType": "Patient"}, headers={name: "identifier=a|1"})
    assert len(fake.api_requests) == 2


def test_update_put_is_replayed_after_lost_connection(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("PUT", PATIENT + "/1", httpx.ReadError("reset"))
    make().update_resource({"resourceType": "Patient", "id": "1"})
    assert len(fake.api_requests) == 2


def test_patch_not_replayed_after_503(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("PATCH", PATIENT + "/1", httpx.Response(503))
    with pytest.raises(ServerError):
        make().patch_resource("Patient", "1", [{"op": "add", "path": "/active", "value": True}])
    assert len(fake.api_requests) == 1


def test_graphql_query_replayed_but_mutation_not(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "POST", "/fhir/R4/$graphql", httpx.Response(503), httpx.Response(200, json={"data": {}})
    )
    api = make()
    assert api.execute_graphql("{ PatientList { id } }") == {"data": {}}
    assert len(fake.api_requests) == 2
    fake.script("POST", "/fhir/R4/$graphql", httpx.Response(503))
    with pytest.raises(ServerError):
        api.execute_graphql("mutation { PatientCreate(res: {}) { id } }")
    assert len(fake.api_requests) == 3


def test_500_is_not_retried(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    fake.script("GET", PATIENT + "/1", httpx.Response(500))
    with pytest.raises(ServerError) as caught:
        make().read_resource("Patient", "1")
    assert caught.value.possibly_committed is False
    assert len(fake.api_requests) == 1
