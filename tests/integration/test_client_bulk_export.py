"""Bulk export end to end on the local Medplum server, with both clients: system, Patient
and Group exports with `_type`/`_since`, resources as dicts and models, raw NDJSON, Parquet
(row counts, a DuckDB query), resuming after a failure, and flat memory over 100,000
resources."""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pymedplum import MedplumClient, ServerError, UnsafeRedirectError
from pymedplum.bulk import STATE_FILE, BulkExportProgress
from pymedplum.fhir import Observation, Patient
from pymedplum.testing.local_server import LocalMedplumServer
from tests.integration.conftest_clients import Driver

pq = pytest.importorskip("pyarrow.parquet")


def seed(client: Driver, patients: int = 3) -> dict[str, list[str]]:
    """Patients, each with one Observation (decimal 1.50), and a Practitioner; their ids."""
    ids: dict[str, list[str]] = {"Patient": [], "Observation": [], "Practitioner": []}
    for i in range(patients):
        patient = client.create_resource(
            {"resourceType": "Patient", "name": [{"family": f"Bulk{i}"}], "gender": "female"}
        )
        ids["Patient"].append(patient["id"])
        observation = client.create_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "weight"},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "valueQuantity": {"value": 61.25, "unit": "kg"},
            }
        )
        ids["Observation"].append(observation["id"])
    ids["Practitioner"].append(client.create_resource({"resourceType": "Practitioner"})["id"])
    return ids


def ids_by_type(resources: list[Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for resource in resources:
        found.setdefault(resource["resourceType"], []).append(resource["id"])
    return found


def storage_requests(server: LocalMedplumServer) -> list[dict[str, Any]]:
    return [r for r in server.requests() if r["path"].startswith("/storage/")]


def test_system_export_of_some_types_yields_every_resource(client: Driver) -> None:
    ids = seed(client)
    export = client.bulk_export(["Patient", "Observation"], poll_interval=0.05)
    found = ids_by_type(client.run(export.resources()))
    assert sorted(found) == ["Observation", "Patient"]
    assert sorted(found["Patient"]) == sorted(ids["Patient"])
    assert sorted(found["Observation"]) == sorted(ids["Observation"])


def test_resources_as_models(client: Driver) -> None:
    ids = seed(client, patients=2)
    export = client.bulk_export(["Patient", "Observation"], poll_interval=0.05)
    patients = client.run(export.resources(as_fhir=Patient))
    assert sorted(p.id for p in patients) == sorted(ids["Patient"])
    typed = client.run(export.resources(typed=True))
    assert {type(r) for r in typed} == {Patient, Observation}
    weights = [o.value_quantity.value for o in typed if isinstance(o, Observation)]
    assert [str(w) for w in weights] == ["61.25", "61.25"]


def test_since_leaves_out_older_resources(client: Driver, medplum: LocalMedplumServer) -> None:
    seed(client, patients=2)
    time.sleep(0.01)
    since = datetime.now(UTC)
    time.sleep(0.01)
    newer = client.create_resource({"resourceType": "Patient", "name": [{"family": "New"}]})
    export = client.bulk_export("Patient", since=since, poll_interval=0.05)
    assert [r["id"] for r in client.run(export.resources())] == [newer["id"]]
    kickoff = next(r for r in medplum.requests() if r["path"].endswith("$export"))
    assert kickoff["query"]["_since"] == [
        since.strftime("%Y-%m-%dT%H:%M:%S.") + f"{since.microsecond // 1000:03d}Z"
    ]


def test_group_export_covers_its_members_only(client: Driver) -> None:
    ids = seed(client, patients=3)
    member = ids["Patient"][0]
    group = client.create_resource(
        {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{member}"}}],
        }
    )
    export = client.bulk_export(
        ["Patient", "Observation"], group_id=group["id"], poll_interval=0.05
    )
    found = ids_by_type(client.run(export.resources()))
    assert found["Patient"] == [member]
    assert found["Observation"] == [ids["Observation"][0]]


def test_patient_export_leaves_out_resources_outside_patient_compartments(client: Driver) -> None:
    ids = seed(client, patients=2)
    export = client.bulk_export(level="patient", poll_interval=0.05)
    found = ids_by_type(client.run(export.resources()))
    assert "Practitioner" not in found
    assert sorted(found["Patient"]) == sorted(ids["Patient"])


def test_parquet_rows_equal_the_exported_resources_and_duckdb_reads_them(
    client: Driver, tmp_path: Path
) -> None:
    seed(client, patients=4)
    export = client.bulk_export(["Patient", "Observation", "Practitioner"], poll_interval=0.05)
    counts = {t: len(v) for t, v in ids_by_type(client.run(export.resources())).items()}
    tables = client.run(export.to_parquet(tmp_path))
    assert sorted(tables) == ["Observation", "Patient", "Practitioner"]
    assert {t: pq.ParquetFile(p).metadata.num_rows for t, p in tables.items()} == counts
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(
        f"SELECT gender, count(*) FROM '{tables['Patient']}' GROUP BY gender"
    ).fetchall()
    assert rows == [("female", 4)]
    weight = "CAST(valueQuantity->>'$.value' AS DECIMAL(10, 2))"
    weights = duckdb.sql(f"SELECT sum({weight}) FROM '{tables['Observation']}'").fetchall()
    assert str(weights[0][0]) == "245.00"


def test_the_duckdb_example_of_the_docs_runs_on_an_export(
    client: Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("duckdb")
    patient = client.create_resource({"resourceType": "Patient", "gender": "male"})
    loinc = {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]}
    client.create_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": loinc,
            "subject": {"reference": f"Patient/{patient['id']}"},
            "valueQuantity": {"value": 80.5, "unit": "kg"},
        }
    )
    export = client.bulk_export(["Patient", "Observation"], poll_interval=0.05)
    client.run(export.to_parquet(tmp_path / "out"))
    docs = (Path(__file__).parents[2] / "docs" / "bulk_export.md").read_text()
    blocks = [b.split("```")[0] for b in docs.split("```python\n")[1:]]
    (example,) = [b for b in blocks if "duckdb.sql" in b]
    monkeypatch.chdir(tmp_path)
    results: list[Any] = []
    code = example.replace("duckdb.sql(", "results.append(duckdb.sql(").replace(
        ".show()", ".fetchall())"
    )
    exec(code, {"results": results})
    assert results == [[("male", 1)], [(patient["id"], None, Decimal("80.50"))]]


def test_download_writes_the_raw_ndjson(client: Driver, tmp_path: Path) -> None:
    ids = seed(client, patients=2)
    export = client.bulk_export("Patient", poll_interval=0.05)
    (path,) = client.run(export.download(tmp_path))
    assert path == tmp_path / "Patient.000.ndjson"
    lines = path.read_bytes().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(ids["Patient"])
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["files"]["Patient.000.ndjson"]["bytes"] == path.stat().st_size


def test_a_resumed_download_fetches_only_the_files_not_finished(
    client: Driver, medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    seed(client, patients=2)
    export = client.bulk_export(["Patient", "Observation", "Practitioner"], poll_interval=0.05)
    broken = export.files[1]
    path = "/storage/" + broken.url.split("/storage/")[1].split("?")[0]
    medplum.fail_next(500, method="GET", path_prefix=path)
    with pytest.raises(ServerError):
        client.run(export.download(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("*.ndjson")) == [export.files[0].name]
    medplum.clear_requests()

    resumed = client.resume_bulk_export(tmp_path, poll_interval=0.05)
    events: list[BulkExportProgress] = []
    resumed._on_progress = events.append
    written = client.run(resumed.download(tmp_path))
    fetched = storage_requests(medplum)
    assert len(fetched) == 2  # the failed file and the one never reached; not the first
    assert export.files[0].url.split("?")[0] not in {r["path"] for r in fetched}
    assert [e.file.name for e in events if e.phase == "file_skipped" and e.file] == [
        export.files[0].name
    ]
    assert [p.name for p in written] == [f.name for f in export.files]


def test_a_resumed_parquet_export_skips_finished_types(
    client: Driver, medplum: LocalMedplumServer, tmp_path: Path
) -> None:
    seed(client, patients=2)
    export = client.bulk_export(["Patient", "Observation"], poll_interval=0.05)
    client.run(export.to_parquet(tmp_path))
    medplum.clear_requests()
    again = client.resume_bulk_export(tmp_path, poll_interval=0.05)
    client.run(again.to_parquet(tmp_path))
    assert storage_requests(medplum) == []


def test_every_export_request_acts_as_one_membership(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    seed(client, patients=1)
    alice = medplum.practitioners["alice"].membership
    export = client.bulk_export("Patient", poll_interval=0.05, on_behalf_of=alice)
    client.run(export.resources())
    sent = [r for r in medplum.requests() if "export" in r["path"]]
    assert len(sent) >= 2  # the kickoff and the polls
    assert {r["on_behalf_of"] for r in sent} == {alice}
    # The presigned downloads (requiresAccessToken: false) carry no identity at all.
    downloads = storage_requests(medplum)
    assert downloads and {r["on_behalf_of"] for r in downloads} == {None}


# ---------------------------------------------------------------- where files are fetched from


def test_presigned_files_on_another_origin_are_fetched_without_credentials(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    ids = seed(client)
    storage = medplum.set_storage(separate_origin=True)["storage_base_url"]
    api_host = medplum.base_url.removeprefix("http://")
    assert not storage.startswith(medplum.base_url)  # another port: another origin
    client.client._http.cookies.set("session", "from-the-api")
    alice = medplum.practitioners["alice"].membership
    export = client.bulk_export(["Patient"], poll_interval=0.05, on_behalf_of=alice)
    assert all(f.url.startswith(storage) for f in export.files)
    assert ids_by_type(client.run(export.resources())) == {"Patient": ids["Patient"]}
    downloads = storage_requests(medplum)
    assert downloads and all(r["host"] != api_host for r in downloads)
    for sent in downloads:
        assert (sent["authorization"], sent["on_behalf_of"], sent["cookie"]) == (False, None, False)
    kickoff = next(r for r in medplum.requests() if r["path"].endswith("$export"))
    assert (kickoff["authorization"], kickoff["on_behalf_of"], kickoff["cookie"]) == (
        True,
        alice,
        True,
    )


def test_files_that_require_the_token_are_fetched_with_it_from_the_api_origin(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    seed(client, patients=1)
    medplum.set_storage(requires_access_token=True)
    alice = medplum.practitioners["alice"].membership
    export = client.bulk_export("Patient", poll_interval=0.05, on_behalf_of=alice)
    assert export.manifest.requires_access_token
    assert len(client.run(export.resources())) == 1
    downloads = storage_requests(medplum)
    assert downloads and all(r["authorization"] and r["on_behalf_of"] == alice for r in downloads)


def test_files_that_require_the_token_on_another_origin_are_refused(
    client: Driver, medplum: LocalMedplumServer
) -> None:
    seed(client, patients=1)
    medplum.set_storage(separate_origin=True, requires_access_token=True)
    with pytest.raises(UnsafeRedirectError):
        client.bulk_export("Patient", poll_interval=0.05)
    assert storage_requests(medplum) == []


def test_streaming_100000_resources_keeps_memory_flat(medplum: LocalMedplumServer) -> None:
    medplum.generate_patients(100_000)
    creds = medplum.admin_client
    with MedplumClient(
        medplum.base_url + "/", client_id=creds.client_id, client_secret=creds.client_secret
    ) as client:
        export = client.bulk_export("Patient", poll_interval=0.05)
        events: list[BulkExportProgress] = []
        export._on_progress = events.append
        gc.collect()
        tracemalloc.start()
        try:
            count = 0
            for resource in export.resources():
                count += resource["resourceType"] == "Patient"
                events.clear()  # the events themselves are not what is measured
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 100_000
    size = 100_000 * 150  # each generated line is about 200 bytes
    assert peak < 4 * 1024 * 1024 < size // 3, f"peak {peak} bytes"
