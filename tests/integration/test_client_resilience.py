"""Tokens, retries and hooks of both clients, driven by the local server's fault controls.

Retry waits are recorded instead of slept (`no_sleep`), so nothing here waits for real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from pymedplum import NetworkError, RateLimitError, ServerError
from pymedplum.hooks import PreparedRequest, RequestEvent
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

PATIENT = {"resourceType": "Patient", "name": [{"family": "Retry"}]}


def statuses(medplum: LocalMedplumServer) -> list[int | None]:
    return [r["status"] for r in medplum.fhir_requests()]


# ---- tokens ------------------------------------------------------------------------------------


def test_expired_token_is_refreshed_once_and_the_request_replayed(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    created = client.create_resource(PATIENT)
    medplum.expire_tokens()
    assert client.read_resource("Patient", created["id"])["id"] == created["id"]
    assert statuses(medplum) == [201, 401, 200]
    assert medplum.token_stats()["token_requests"] == 2


def test_a_second_401_is_not_replayed_again(client: Driver, medplum: LocalMedplumServer) -> None:
    from pymedplum import AuthenticationError

    client.search_resources("Patient", {"family": "x"})
    medplum.fail_next(401, count=2, path_prefix="/fhir/R4/Patient")
    with pytest.raises(AuthenticationError):
        client.search_resources("Patient", {"family": "x"})
    assert statuses(medplum) == [200, 401, 401]
    assert medplum.token_stats()["token_requests"] == 2


def test_token_is_refreshed_before_it_expires(client: Driver, medplum: LocalMedplumServer) -> None:
    """A 60 s token is refreshed in its last 6 s (a tenth of its lifetime): the client's
    clock is moved 55 s on instead of sleeping, and the server never answers 401."""
    medplum.set_token_lifetime(60)
    client.search_resources("Patient", {"family": "x"})
    client.client._clock = lambda: time.time() + 55  # type: ignore[method-assign]
    client.search_resources("Patient", {"family": "x"})
    assert statuses(medplum) == [200, 200]
    assert medplum.token_stats()["token_requests"] == 2


# ---- retries -----------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_waited_then_retried(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.rate_limit_next(retry_after=3, path_prefix="/fhir/R4/Patient")
    client.search_resources("Patient", {"family": "x"})
    assert no_sleep == [3.0]
    assert statuses(medplum) == [429, 200]


def test_429_with_retry_after_http_date(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    medplum.rate_limit_next(retry_after=when, path_prefix="/fhir/R4/Patient")
    client.search_resources("Patient", {"family": "x"})
    assert len(no_sleep) == 1 and 15 <= no_sleep[0] <= 20
    assert statuses(medplum) == [429, 200]


def test_429_with_only_medplums_ratelimit_header(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    """Medplum sends `RateLimit: ..."fhirInteractions";r=0;t=60` and no Retry-After."""
    medplum.rate_limit_next(path_prefix="/fhir/R4/Patient")
    client.create_resource(PATIENT)  # even a plain POST: a 429 processed nothing
    assert no_sleep == [60.0]
    assert statuses(medplum) == [429, 201]


def test_persistent_429_raises_rate_limit_error(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.rate_limit_next(count=None, retry_after=1, path_prefix="/fhir/R4/Patient")
    with pytest.raises(RateLimitError) as caught:
        client.search_resources("Patient", {"family": "x"})
    assert caught.value.retry_after == 1.0
    assert statuses(medplum) == [429] * 4
    assert no_sleep == [1.0] * 3


def test_503_on_a_get_is_retried_with_backoff(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.fail_next(503, count=2, method="GET")
    client.search_resources("Patient", {"family": "x"})
    assert statuses(medplum) == [503, 503, 200]
    assert len(no_sleep) == 2 and all(0 < d <= 8 for d in no_sleep)


def test_503_on_a_plain_post_is_not_replayed(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.fail_next(503, method="POST", path_prefix="/fhir/R4/Patient")
    with pytest.raises(ServerError) as caught:
        client.create_resource(PATIENT)
    assert caught.value.possibly_committed is True
    assert "may have been committed" in str(caught.value)
    assert statuses(medplum) == [503]
    assert no_sleep == []


def test_post_is_not_replayed_after_a_connection_dropped_after_processing(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    medplum.drop_next(after=True, method="POST", path_prefix="/fhir/R4/Patient")
    with pytest.raises(NetworkError) as caught:
        client.create_resource(PATIENT)
    assert caught.value.possibly_committed is True
    assert "may have been committed" in str(caught.value)
    posts = [r for r in medplum.fhir_requests() if r["method"] == "POST"]
    assert len(posts) == 1  # sent once, never replayed
    stored = client.search_resources("Patient", {"family": "Retry"})
    assert len(stored["entry"]) == 1  # and the server holds exactly one


def test_conditional_create_is_replayed_after_a_drop_and_creates_once(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    mrn = {**PATIENT, "identifier": [{"system": "urn:oid:9", "value": "1"}]}
    medplum.drop_next(after=True, method="POST", path_prefix="/fhir/R4/Patient")
    client.create_resource_if_none_exist(mrn, "identifier=urn:oid:9|1")
    # processed (201) and dropped, then the replay found what the first attempt made (200)
    assert statuses(medplum) == [201, 200]
    assert medplum.fhir_requests()[0]["fault"] is not None
    assert len(client.search_resources("Patient", {"identifier": "urn:oid:9|1"})["entry"]) == 1


def test_get_is_retried_after_a_dropped_connection(
    client: Driver, medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    created = client.create_resource(PATIENT)
    medplum.drop_next(after=True, method="GET")
    assert client.read_resource("Patient", created["id"])["id"] == created["id"]
    assert statuses(medplum) == [201, 200, 200]  # the dropped GET was answered, then lost
    assert [r["fault"] is not None for r in medplum.fhir_requests()] == [False, True, False]
    assert len(no_sleep) == 1


# ---- hooks -------------------------------------------------------------------------------------


def test_before_request_sees_no_credentials_and_can_add_a_header(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    seen: list[PreparedRequest] = []
    alice = medplum.practitioners["alice"].membership

    def before(request: PreparedRequest) -> PreparedRequest:
        seen.append(request)
        headers = {**request.headers, "X-Trace": "t-1", "Authorization": "Bearer stolen"}
        return request.replace(headers=headers)

    client = make_client(before_request=before, default_on_behalf_of=alice)
    client.search_resources("Patient", {"family": "x"})
    (request,) = seen
    names = {k.lower() for k in request.headers}
    assert "authorization" not in names and "x-medplum-on-behalf-of" not in names
    (logged,) = medplum.fhir_requests()
    assert logged["auth_scheme"] == "Bearer" and logged["status"] == 200  # not the hook's
    assert logged["on_behalf_of"] == alice


def test_on_request_complete_fires_once_with_every_attempt(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer, no_sleep: list[float]
) -> None:
    events: list[RequestEvent] = []
    bob = medplum.practitioners["bob"].membership
    client = make_client(on_request_complete=events.append)
    created = client.create_resource(PATIENT)
    medplum.rate_limit_next(retry_after=2, method="GET")
    medplum.expire_tokens()
    client.read_resource("Patient", created["id"], on_behalf_of=bob)
    assert len(events) == 2
    create, read = events
    assert create.action == "create" and [a.status_code for a in create.attempts] == [201]
    assert read.action == "read" and read.resource_id == created["id"]
    assert [a.status_code for a in read.attempts] == [429, 401, 200]
    assert [a.on_behalf_of for a in read.attempts] == [bob] * 3
    assert [a.retry_delay_seconds for a in read.attempts] == [2.0, 0.0, None]
    assert read.path_template == "/fhir/R4/Patient/{id}" and read.outcome == "success"
    non_phi: dict[str, Any] = read.to_non_phi_dict()
    assert created["id"] not in str(non_phi) and bob not in str(non_phi)
    assert statuses(medplum) == [201, 429, 401, 200]


def test_on_request_complete_reports_the_failure(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer
) -> None:
    from pymedplum import NotFoundError

    events: list[RequestEvent] = []
    client = make_client(on_request_complete=events.append)
    with pytest.raises(NotFoundError):
        client.read_resource("Patient", "missing")
    (event,) = events
    assert event.outcome == "error" and event.final_status_code == 404
    assert isinstance(event.final_exception, NotFoundError)


def test_a_failing_hook_never_fails_the_call(
    make_client: Callable[..., Driver], medplum: LocalMedplumServer, caplog: Any
) -> None:
    def broken(event: RequestEvent) -> None:
        raise RuntimeError("audit sink down")

    client = make_client(on_request_complete=broken)
    with caplog.at_level("WARNING", logger="pymedplum.hooks"):
        assert client.create_resource(PATIENT)["id"]
    assert any(r.name == "pymedplum.hooks" for r in caplog.records)
