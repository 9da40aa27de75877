"""Bulk export against a scripted Medplum: kickoff, polling (Retry-After, X-Progress, timeout),
origins, NDJSON lines, progress and the resume state. End to end: tests/integration."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from pymedplum import (
    AuthenticationError,
    InsecureTransportError,
    MedplumError,
    OperationOutcomeError,
    UnsafeRedirectError,
    _backend,
    _bulk,
)
from pymedplum.bulk import STATE_FILE, BulkExportProgress

from .conftest import BASE, Driver, FakeMedplum, header, query

STATUS = "/fhir/R4/bulkdata/export/exp-1"
STATUS_URL = BASE + STATUS.lstrip("/")
PATIENTS = "/storage/bin-1/v1"
OBSERVATIONS = "/storage/bin-2/v1"
PATIENT_LINES = [
    {"resourceType": "Patient", "id": f"p{i}", "meta": {"versionId": "1"}} for i in range(3)
]
OBSERVATION_LINES = [
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}}
]


def accepted(location: str = STATUS_URL) -> httpx.Response:
    """Medplum's kickoff answer: 202, the status URL in Content-Location and diagnostics."""
    outcome = {
        "resourceType": "OperationOutcome",
        "id": "accepted",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": location}],
    }
    return httpx.Response(202, json=outcome, headers={"Content-Location": location})


def manifest(
    *outputs: tuple[str, str], requires_token: bool = False, base: str = BASE
) -> httpx.Response:
    body = {
        "transactionTime": "2026-01-02T03:04:05.678Z",
        "request": BASE + "fhir/R4/$export",
        "requiresAccessToken": requires_token,
        "output": [{"type": t, "url": base + p.lstrip("/") + "?Signature=s"} for t, p in outputs],
        "error": [],
        "deleted": [],
    }
    return httpx.Response(200, json=body)


def ndjson(lines: list[dict[str, Any]], trailing_newline: bool = True) -> bytes:
    text = "\n".join(json.dumps(line) for line in lines)
    return (text + ("\n" if trailing_newline else "")).encode()


def script_export(fake: FakeMedplum, *, polls: list[httpx.Response] | None = None) -> None:
    """A system export of Patients and Observations that completes after `polls`."""
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script(
        "GET",
        STATUS,
        *(polls or []),
        manifest(("Patient", PATIENTS), ("Observation", OBSERVATIONS)),
    )
    fake.script("GET", PATIENTS, httpx.Response(200, content=ndjson(PATIENT_LINES)))
    fake.script("GET", OBSERVATIONS, httpx.Response(200, content=ndjson(OBSERVATION_LINES)))


def paths(fake: FakeMedplum) -> list[str]:
    return [r.url.path for r in fake.api_requests]


# ---------------------------------------------------------------- kickoff


def test_kickoff_sends_type_and_since_as_medplum_reads_them(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_export(fake)
    since = datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    make().bulk_export(["Patient", "Observation"], since=since)
    kickoff = fake.api_requests[0]
    # One comma-separated _type (Medplum reads only the first); _since in UTC with ms.
    assert query(kickoff) == {
        "_type": ["Patient,Observation"],
        "_since": ["2026-01-01T10:00:00.250Z"],
    }
    assert header(kickoff, "prefer") == "respond-async"


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({}, "/fhir/R4/$export"),
        ({"level": "patient"}, "/fhir/R4/Patient/$export"),
        ({"group_id": "g-1"}, "/fhir/R4/Group/g-1/$export"),
        ({"level": "group", "group_id": "Group/g-1"}, "/fhir/R4/Group/g-1/$export"),
    ],
)
def test_kickoff_path_follows_the_level(
    make: Callable[..., Driver], fake: FakeMedplum, kwargs: dict[str, Any], path: str
) -> None:
    fake.script("GET", path, accepted())
    fake.script("GET", STATUS, manifest())
    export = make().bulk_export(**kwargs)
    assert paths(fake)[0] == path
    assert export.files == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"types": ["Patient", "Patinet"]},
        {"types": []},
        {"since": datetime(2026, 1, 1)},  # naive: its zone would be a guess
        {"since": "2026-01-01"},
        {"level": "group"},
        {"level": "patient", "group_id": "g-1"},
        {"poll_interval": 0},
    ],
)
def test_bad_arguments_are_refused_before_any_request(
    make: Callable[..., Driver], fake: FakeMedplum, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValueError):
        make().bulk_export(**kwargs)
    assert fake.api_requests == []


def test_a_status_url_on_another_origin_is_never_polled(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script(
        "GET", "/fhir/R4/$export", accepted("https://evil.example/fhir/R4/bulkdata/export/x")
    )
    with pytest.raises(UnsafeRedirectError) as caught:
        make().bulk_export()
    assert paths(fake) == ["/fhir/R4/$export"]
    assert "bulkdata" not in str(caught.value)  # the message names the origin only


def test_the_status_url_is_read_from_diagnostics_without_content_location(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    response = accepted()
    del response.headers["content-location"]
    fake.script("GET", "/fhir/R4/$export", response)
    fake.script("GET", STATUS, manifest())
    make().bulk_export()
    assert paths(fake) == ["/fhir/R4/$export", STATUS]


# ---------------------------------------------------------------- polling


def test_polling_honours_retry_after_and_reports_x_progress(
    make: Callable[..., Driver], fake: FakeMedplum, sleeps: list[float]
) -> None:
    running = [
        httpx.Response(202, headers={"Retry-After": "7", "X-Progress": "Patient: 40%"}),
        httpx.Response(202),  # Medplum's own: empty, no headers -> poll_interval
    ]
    script_export(fake, polls=running)
    events: list[BulkExportProgress] = []
    export = make().bulk_export(poll_interval=2.0, on_progress=events.append)
    assert sleeps == [7.0, 2.0]
    assert [(e.phase, e.message) for e in events] == [
        ("waiting", "Patient: 40%"),
        ("waiting", None),
    ]
    assert [f.resource_type for f in export.files] == ["Patient", "Observation"]
    assert export.transaction_time == "2026-01-02T03:04:05.678Z"


def test_a_huge_retry_after_is_capped_and_the_timeout_still_holds(
    make: Callable[..., Driver], fake: FakeMedplum, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        now[0] += seconds

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    monkeypatch.setattr(_backend, "sync_sleep", sleep)
    monkeypatch.setattr(_backend, "async_sleep", async_sleep)
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, *[httpx.Response(202, headers={"Retry-After": "86400"})] * 5)
    driver = make()
    driver.client._clock = lambda: now[0]  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        driver.bulk_export(timeout=500)
    assert waited == [300.0, 200.0]  # capped at 300 s, then cut to the deadline


def test_a_cancelled_export_raises_not_found(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum import NotFoundError

    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, httpx.Response(404, json={"resourceType": "OperationOutcome"}))
    with pytest.raises(NotFoundError):
        make().bulk_export()


def test_an_output_url_on_another_origin_is_refused_before_download(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    body = {"transactionTime": "t", "output": [{"type": "Patient", "url": "https://cdn.example/x"}]}
    fake.script("GET", STATUS, httpx.Response(200, json=body))
    with pytest.raises(UnsafeRedirectError):
        make().bulk_export()
    assert paths(fake) == ["/fhir/R4/$export", STATUS]


# ---------------------------------------------------------------- reading


def test_resources_stream_every_file_as_dicts(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_export(fake)
    driver = make()
    export = driver.bulk_export()
    resources = driver.run(export.resources())
    assert [r["id"] for r in resources] == ["p0", "p1", "p2", "o1"]
    storage = [r for r in fake.api_requests if r.url.path.startswith("/storage/")]
    assert [header(r, "accept") for r in storage] == ["application/fhir+ndjson"] * 2


# ---------------------------------------------------------------- credentials of downloads

STORAGE = "https://storage.medplum.test/"
MEMBER = "ProjectMembership/m-1"


def script_storage_export(fake: FakeMedplum, *, requires_token: bool, base: str) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script(
        "GET", STATUS, manifest(("Patient", PATIENTS), requires_token=requires_token, base=base)
    )
    fake.script("GET", PATIENTS, httpx.Response(200, content=ndjson(PATIENT_LINES)))


def downloads(fake: FakeMedplum) -> list[httpx.Request]:
    return [r for r in fake.api_requests if r.url.path == PATIENTS]


def test_presigned_files_on_another_origin_are_fetched_without_any_credential(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    events: list[Any] = []
    prepared: list[Any] = []
    script_storage_export(fake, requires_token=False, base=STORAGE)
    driver = make(
        default_on_behalf_of=MEMBER,
        before_request=prepared.append,
        on_request_complete=events.append,
    )
    driver.client._http.cookies.set("session", "secret-cookie")
    export = driver.bulk_export()
    assert [r["id"] for r in driver.run(export.resources())] == ["p0", "p1", "p2"]
    (download,) = downloads(fake)
    assert download.url.host == "storage.medplum.test"
    for name in ("authorization", "x-medplum-on-behalf-of", "cookie"):
        assert header(download, name) is None, name
    kickoff = fake.api_requests[0]  # the API calls still carry all of them
    assert header(kickoff, "authorization") == "Bearer tok-1"
    assert header(kickoff, "x-medplum-on-behalf-of") == MEMBER
    # The hooks still see the download, and its event names the storage origin, no query.
    assert [p.url.split("?")[0] for p in prepared][-1] == STORAGE + PATIENTS.lstrip("/")
    event = events[-1]
    assert event.origin == "https://storage.medplum.test:443"
    assert event.path == PATIENTS and event.query_params is None
    assert event.on_behalf_of is None and event.outcome == "success"


def test_files_that_require_the_token_get_it_and_the_membership(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_storage_export(fake, requires_token=True, base=BASE)
    driver = make(default_on_behalf_of=MEMBER)
    driver.run(driver.bulk_export().resources())
    (download,) = downloads(fake)
    assert header(download, "authorization") == "Bearer tok-1"
    assert header(download, "x-medplum-on-behalf-of") == MEMBER


def test_files_that_require_the_token_must_be_on_the_clients_origin(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_storage_export(fake, requires_token=True, base=STORAGE)
    with pytest.raises(UnsafeRedirectError):
        make().bulk_export()
    assert downloads(fake) == []


@pytest.mark.parametrize(
    "base",
    [
        "http://storage.medplum.test/",  # plain http, not loopback
        "https://user:pw@storage.medplum.test/",  # httpx would send it as Basic auth
        "ftp://storage.medplum.test/",
    ],
)
def test_an_unsafe_presigned_url_is_refused_before_any_download(
    make: Callable[..., Driver], fake: FakeMedplum, base: str
) -> None:
    script_storage_export(fake, requires_token=False, base=base)
    with pytest.raises(InsecureTransportError) as caught:
        make().bulk_export()
    assert "Signature" not in str(caught.value) and "pw" not in str(caught.value)
    assert downloads(fake) == []


def test_plain_http_storage_is_allowed_on_loopback_or_with_allow_insecure_http(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_storage_export(fake, requires_token=False, base="http://127.0.0.1:9/")
    driver = make()
    assert len(driver.run(driver.bulk_export().resources())) == 3
    script_storage_export(fake, requires_token=False, base="http://storage.medplum.test/")
    driver = make(allow_insecure_http=True)
    assert len(driver.run(driver.bulk_export().resources())) == 3


def test_a_presigned_download_never_follows_a_redirect_nor_refreshes_a_token(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS), base=STORAGE))
    moved = httpx.Response(302, headers={"Location": "https://elsewhere.test/x"})
    fake.script("GET", PATIENTS, moved, httpx.Response(401))
    driver = make()
    export = driver.bulk_export()
    with pytest.raises(OperationOutcomeError, match="redirected"):
        driver.run(export.resources())
    with pytest.raises(AuthenticationError):
        driver.run(export.resources())
    assert len(fake.token_requests) == 1  # the 401 of storage asked for no new token
    assert [r.url.host for r in fake.api_requests].count("elsewhere.test") == 0


def test_a_hook_cannot_add_credentials_to_a_presigned_download_or_move_it(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum.hooks import PreparedRequest

    def meddle(request: PreparedRequest) -> PreparedRequest:
        if "storage" not in request.url:
            return request
        return request.replace(
            headers={**request.headers, "Authorization": "Bearer stolen", "X-Trace": "1"}
        )

    script_storage_export(fake, requires_token=False, base=STORAGE)
    driver = make(before_request=meddle)
    driver.run(driver.bulk_export().resources())
    (download,) = downloads(fake)
    assert header(download, "authorization") is None
    assert header(download, "x-trace") == "1"  # the rest of the change is kept


def test_resources_of_one_type_as_models(make: Callable[..., Driver], fake: FakeMedplum) -> None:
    from pymedplum.fhir import Observation, Patient

    script_export(fake)
    driver = make()
    export = driver.bulk_export()
    patients = driver.run(export.resources(as_fhir=Patient))
    assert [type(p) for p in patients] == [Patient] * 3
    assert PATIENTS in paths(fake) and OBSERVATIONS not in paths(fake)  # only Patient's file
    script_export(fake)  # the files again, for a second read
    typed = driver.run(export.resources(typed=True))
    assert [type(r) for r in typed] == [Patient, Patient, Patient, Observation]


def test_a_bad_line_names_the_file_and_line_not_its_content(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS)))
    body = ndjson(PATIENT_LINES[:1]) + b'{"resourceType": "Patient", "name": "SECRET-PHI"\n'
    fake.script("GET", PATIENTS, httpx.Response(200, content=body))
    driver = make()
    export = driver.bulk_export()
    with pytest.raises(MedplumError, match=r"line 2 of Patient\.000\.ndjson") as caught:
        driver.run(export.resources())
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_lines_are_cut_at_newlines_whatever_the_chunking(chunk: int) -> None:
    data = ndjson(PATIENT_LINES, trailing_newline=False) + b"\n\n" + ndjson(OBSERVATION_LINES)
    splitter = _bulk.LineSplitter()
    lines = []
    for start in range(0, len(data), chunk):
        lines += splitter.feed(data[start : start + chunk])
    lines += splitter.end()
    assert [json.loads(line) for line in lines] == PATIENT_LINES + OBSERVATION_LINES


def test_a_line_longer_than_the_limit_is_refused() -> None:
    splitter = _bulk.LineSplitter(max_line_bytes=10)
    splitter.feed(b"0123456789")
    with pytest.raises(MedplumError, match="longer than 10 bytes"):
        splitter.feed(b"x")


def test_progress_counts_files_bytes_and_resources(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    script_export(fake)
    events: list[BulkExportProgress] = []
    driver = make()
    export = driver.bulk_export(on_progress=events.append)
    driver.run(export.resources())
    total = len(ndjson(PATIENT_LINES)) + len(ndjson(OBSERVATION_LINES))
    last = events[-1]
    assert (last.phase, last.files_total, last.files_done) == ("file_done", 2, 2)
    assert (last.bytes_done, last.resources_done) == (total, 4)
    started = [e for e in events if e.phase == "file_started"]
    assert [e.file.resource_type for e in started if e.file] == ["Patient", "Observation"]
    assert started[0].file_bytes_total == len(ndjson(PATIENT_LINES))


# ---------------------------------------------------------------- files and resume


def test_download_writes_the_files_and_records_them(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    script_export(fake)
    driver = make()
    written = driver.run(driver.bulk_export().download(tmp_path))
    assert [p.name for p in written] == ["Patient.000.ndjson", "Observation.000.ndjson"]
    assert written[0].read_bytes() == ndjson(PATIENT_LINES)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    entry = state["files"]["Patient.000.ndjson"]
    assert entry["bytes"] == len(ndjson(PATIENT_LINES))
    assert entry["sha256"] == hashlib.sha256(ndjson(PATIENT_LINES)).hexdigest()
    assert state["status_url"] == STATUS_URL
    assert "Signature" not in json.dumps(state)  # presigned URLs are not kept on disk


def test_a_second_download_skips_intact_files_and_refetches_damaged_ones(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    script_export(fake)
    driver = make()
    export = driver.bulk_export()
    driver.run(export.download(tmp_path))
    (tmp_path / "Observation.000.ndjson").write_bytes(b"damaged")
    fake.requests.clear()
    fake.script("GET", OBSERVATIONS, httpx.Response(200, content=ndjson(OBSERVATION_LINES)))
    events: list[BulkExportProgress] = []
    export._on_progress = events.append
    driver.run(export.download(tmp_path))
    assert paths(fake) == [OBSERVATIONS]
    assert (tmp_path / "Observation.000.ndjson").read_bytes() == ndjson(OBSERVATION_LINES)
    assert [e.phase for e in events if e.phase != "file_progress"][:1] == ["file_skipped"]


def test_a_failed_download_leaves_no_partial_file_and_no_record(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS)))
    fake.script("GET", PATIENTS, httpx.Response(500, json={"resourceType": "OperationOutcome"}))
    driver = make()
    with pytest.raises(MedplumError):
        driver.run(driver.bulk_export().download(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]
    assert json.loads((tmp_path / STATE_FILE).read_text())["files"] == {}


def test_a_directory_of_another_export_is_refused(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    script_export(fake)
    driver = make()
    driver.run(driver.bulk_export().download(tmp_path))
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["transaction_time"] = "2025-01-01T00:00:00.000Z"
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS), ("Observation", OBSERVATIONS)))
    with pytest.raises(MedplumError, match="another export"):
        driver.run(driver.bulk_export().download(tmp_path))


def test_resume_polls_the_recorded_export_and_fetches_only_what_is_missing(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    fake.script("GET", "/fhir/R4/$export", accepted())
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS), ("Observation", OBSERVATIONS)))
    fake.script("GET", PATIENTS, httpx.Response(200, content=ndjson(PATIENT_LINES)))
    fake.script("GET", OBSERVATIONS, httpx.Response(500, json={"resourceType": "OperationOutcome"}))
    driver = make()
    with pytest.raises(MedplumError):
        driver.run(driver.bulk_export().download(tmp_path))
    fake.requests.clear()
    fake.script("GET", STATUS, manifest(("Patient", PATIENTS), ("Observation", OBSERVATIONS)))
    fake.script("GET", OBSERVATIONS, httpx.Response(200, content=ndjson(OBSERVATION_LINES)))
    resumed = driver.resume_bulk_export(tmp_path)
    driver.run(resumed.download(tmp_path))
    assert paths(fake) == [STATUS, OBSERVATIONS]


def test_resume_refuses_a_directory_without_state(
    make: Callable[..., Driver], fake: FakeMedplum, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        make().resume_bulk_export(tmp_path)
    assert fake.api_requests == []


def test_since_text_is_utc_with_milliseconds() -> None:
    assert _bulk.since_text(datetime(2026, 5, 1, tzinfo=UTC)) == "2026-05-01T00:00:00.000Z"
    assert _bulk.since_text("2026-05-01T00:00:00+02:00") == "2026-05-01T00:00:00+02:00"


def test_each_file_read_is_one_audit_event_even_when_the_reader_stops_early(
    make: Callable[..., Driver], fake: FakeMedplum
) -> None:
    from pymedplum import RequestEvent

    events: list[RequestEvent] = []
    script_export(fake)
    driver = make(on_request_complete=events.append)
    export = driver.bulk_export()
    events.clear()
    if driver.is_async:

        async def first() -> Any:
            iterator = export.resources()
            try:
                return await iterator.__anext__()
            finally:
                await iterator.aclose()

        resource = driver.run(first())
    else:
        iterator = export.resources()
        resource = next(iterator)
        iterator.close()
    assert resource["id"] == "p0"
    assert [(e.path, e.final_status_code, e.final_exception) for e in events] == [
        (PATIENTS, 200, None)
    ]


def _download_through_callers_client(
    fake: FakeMedplum, flavour: str, set_up: Callable[[Any], None], **http_options: Any
) -> httpx.Request:
    """Export through a caller's own httpx client (`set_up` runs on it once the SDK client
    holds it); the one storage download it made."""
    from pymedplum import AsyncMedplumClient, MedplumClient

    script_storage_export(fake, requires_token=False, base=STORAGE)
    transport = httpx.MockTransport(fake.handle)
    kw: dict[str, Any] = {"client_id": "cid", "client_secret": "secret"}
    http: Any
    if flavour == "sync":
        http = httpx.Client(transport=transport, **http_options)
        client: Any = MedplumClient(BASE, http_client=http, **kw)
    else:
        http = httpx.AsyncClient(transport=transport, **http_options)
        client = AsyncMedplumClient(BASE, http_client=http, **kw)
    set_up(http)
    driver = Driver(client)
    try:
        driver.run(driver.bulk_export().resources())
    finally:
        driver.close()
    (download,) = downloads(fake)
    return download


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_auth_of_a_callers_httpx_client_is_not_sent_to_storage(
    fake: FakeMedplum, flavour: str
) -> None:
    gateway = httpx.BasicAuth("gateway", "key")
    download = _download_through_callers_client(fake, flavour, lambda http: None, auth=gateway)
    assert header(download, "authorization") is None


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(
    ("name", "value"),
    [("Authorization", "Bearer gateway-key"), ("X-Medplum-On-Behalf-Of", "ProjectMembership/x")],
)
def test_default_headers_of_a_callers_httpx_client_are_not_sent_to_storage(
    fake: FakeMedplum, flavour: str, name: str, value: str
) -> None:
    # Not `auth=` (test above): headers the httpx client adds to every request it builds,
    # set after construction, which refuses an on-behalf-of header among them.
    def add_header(http: Any) -> None:
        http.headers[name] = value

    download = _download_through_callers_client(fake, flavour, add_header)
    assert header(download, name) is None
