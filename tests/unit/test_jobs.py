"""Async jobs: which AsyncJob is read, polling until a final status, timeouts, origins."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from pymedplum import UnsafeRedirectError, _backend

from .conftest import BASE, Driver, FakeMedplum, header

JOB = "/fhir/R4/AsyncJob/job-1"
STATUS = "/fhir/R4/job/job-1/status"
STATUS_URL = BASE + STATUS.lstrip("/")
ACCEPTED = {
    "resourceType": "OperationOutcome",
    "id": "accepted",
    "issue": [{"severity": "information", "code": "informational", "diagnostics": STATUS_URL}],
}


def job(status: str) -> httpx.Response:
    """A status answer as Medplum 5 gives it: the AsyncJob (202 until it is final)."""
    code = 200 if status in ("completed", "error", "cancelled") else 202
    return httpx.Response(code, json={"resourceType": "AsyncJob", "id": "job-1", "status": status})


def empty_202() -> httpx.Response:
    """Older Medplum (and the local server) while a job runs: 202 with no body."""
    return httpx.Response(202)


@pytest.mark.parametrize(
    "reference",
    [
        ACCEPTED,
        STATUS_URL,
        "job-1",
        "AsyncJob/job-1",
        {"resourceType": "AsyncJob", "id": "job-1", "status": "active"},
    ],
)
def test_status_polls_the_status_url(
    make: Callable[..., Driver], fake: FakeMedplum, reference: Any
) -> None:
    fake.script("GET", STATUS, job("active"))
    assert make().get_async_job_status(reference)["status"] == "active"
    assert [r.url.path for r in fake.api_requests] == [STATUS]


def test_an_empty_202_falls_back_to_reading_the_job(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", STATUS, empty_202())
    fake.script("GET", JOB, job("active"))
    assert make().get_async_job_status(ACCEPTED)["status"] == "active"
    assert [r.url.path for r in fake.api_requests] == [STATUS, JOB]


def test_an_export_manifest_falls_back_to_reading_the_job(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    export = "/fhir/R4/bulkdata/export/job-1"
    manifest = {"transactionTime": "2026-01-01T00:00:00Z", "output": [], "error": []}
    fake.script("GET", export, httpx.Response(200, json=manifest))
    fake.script("GET", JOB, job("completed"))
    assert make().get_async_job_status(BASE + export.lstrip("/"))["status"] == "completed"
    assert [r.url.path for r in fake.api_requests] == [export, JOB]


def test_status_accepts_an_operation_outcome_model(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum.fhir import OperationOutcome

    fake.script("GET", STATUS, job("completed"))
    outcome = OperationOutcome.model_validate(ACCEPTED)
    assert make().get_async_job_status(outcome)["status"] == "completed"


def test_a_status_url_on_another_origin_is_refused_unsent(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    with pytest.raises(UnsafeRedirectError) as caught:
        make().get_async_job_status("https://evil.example/fhir/R4/job/job-1/status")
    assert fake.api_requests == []
    assert "job-1" not in str(caught.value)


@pytest.mark.parametrize(
    "reference",
    [
        {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "no url here"}]},
        {"resourceType": "Patient", "id": "1"},
        BASE + "fhir/R4/Patient/1",
    ],
)
def test_things_that_name_no_job_are_refused(
    make: Callable[..., Driver], fake: FakeMedplum, reference: Any
) -> None:
    with pytest.raises(ValueError):
        make().get_async_job_status(reference)
    assert fake.api_requests == []


def test_wait_polls_until_a_final_status(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", STATUS, job("accepted"), empty_202(), job("completed"))
    fake.script("GET", JOB, job("active"))
    final = make().wait_for_async_job(ACCEPTED, poll_interval=2.5)
    assert final["status"] == "completed"
    assert sleeps == [2.5, 2.5]
    assert [r.url.path for r in fake.api_requests] == [STATUS, STATUS, JOB, STATUS]


@pytest.mark.parametrize("status", ["error", "cancelled"])
def test_wait_returns_a_failed_job(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float], status: str
) -> None:
    fake.script("GET", STATUS, job(status))
    assert make().wait_for_async_job("job-1")["status"] == status
    assert sleeps == []


def test_wait_times_out(
    make: Callable[..., Driver], fake: FakeMedplum, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    monkeypatch.setattr(_backend, "sync_sleep", sleep)
    monkeypatch.setattr(_backend, "async_sleep", async_sleep)
    fake.script("GET", STATUS, *[job("active")] * 10)
    driver = make()
    driver.client._clock = lambda: now[0]  # type: ignore[method-assign]
    with pytest.raises(TimeoutError, match="'active'"):
        driver.wait_for_async_job("job-1", poll_interval=2.0, timeout=5.0)
    # Polls at 0, 2 and 4 s; the last wait is cut to the second left.
    assert waited == [2.0, 2.0, 1.0]
    assert len(fake.api_requests) == 4


@pytest.mark.parametrize(("interval", "timeout"), [(0, None), (-1, None), (1, -1)])
def test_wait_refuses_bad_timing(
    make: Callable[..., Driver], fake: FakeMedplum, interval: float, timeout: float | None
) -> None:
    with pytest.raises(ValueError):
        make().wait_for_async_job("job-1", poll_interval=interval, timeout=timeout)
    assert fake.api_requests == []


def test_wait_polls_as_one_membership(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    fake.script("GET", STATUS, job("active"), job("completed"))
    make().wait_for_async_job("job-1", on_behalf_of="ProjectMembership/pm-9")
    assert [header(r, "x-medplum-on-behalf-of") for r in fake.api_requests] == [
        "ProjectMembership/pm-9",
        "ProjectMembership/pm-9",
    ]
