"""A real Celery worker pool on a Redis broker: 4 worker processes, 200 tasks, each a fresh
client with `default_on_behalf_of` (docs/on_behalf_of.md), sharing tokens and the RateLimit
budget through Redis (pymedplum.redis), against the local Medplum server enforcing a small
FHIR quota.

What it shows:
- one token request in total (the server counts them);
- every request carries its own task's on-behalf-of (the server's request log);
- no 429 storm, precisely: not one 429. Medplum reports the units left (`r`) on every
  answer; with `reserve=WORKERS - 1`, the budget counts the quota as spent once `r <= 3`, and
  every process that hears of it (through Redis, or from its own answer) waits for the reset.
  Each process runs one task at a time, so at most one request per other process can still
  be on its way when the quota runs low, and the reserve covers them.

Measured on the 2-core machine (429s per quota window, 5 windows): no budget 4 (every process
collects its own), per-process budgets 3, Redis budget with no reserve 2-3 (the requests in
flight when the last unit went), Redis budget with the reserve 0. This test fails without a
budget (`PYMEDPLUM_TEST_BUDGET=none` in the fleet fixture).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is not installed: pip install -e '.[dev]'")
from celery import Celery  # noqa: E402

from pymedplum import MedplumClient  # noqa: E402
from pymedplum.testing.local_server import LocalMedplumServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
TASKS = 200
MEMBERS = 50
QUOTA_POINTS = 40  # a read costs 1: 200 reads need 5 windows
QUOTA_WINDOW_SECONDS = 2


@pytest.fixture
def budget() -> dict[str, str]:
    """The fleet's budget: Redis, keeping WORKERS - 1 units in hand (see the test)."""
    return {"PYMEDPLUM_TEST_BUDGET": "redis", "PYMEDPLUM_TEST_RESERVE": str(WORKERS - 1)}


@pytest.fixture
def fleet(medplum: LocalMedplumServer, redis_url: str, budget: dict[str, str]) -> Iterator[str]:
    """A Celery worker (prefork, WORKERS processes) on the Redis broker; its queue name."""
    queue = f"pymedplum-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYMEDPLUM_TEST_REDIS_URL": redis_url,
        "PYMEDPLUM_TEST_BASE_URL": medplum.base_url,
        "PYMEDPLUM_TEST_CLIENT_ID": medplum.admin_client.client_id,
        "PYMEDPLUM_TEST_CLIENT_SECRET": medplum.admin_client.client_secret,
        "PYMEDPLUM_TEST_QUEUE": queue,
        **budget,
    }
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "tests.workers.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(WORKERS), "--queues", queue,
            "--hostname", f"{queue}@localhost", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "--loglevel", "WARNING",
        ],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield queue
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: the pool's children end with it
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def members_and_patients(medplum: LocalMedplumServer) -> tuple[list[str], list[str]]:
    creds = medplum.admin_client
    with MedplumClient(
        medplum.base_url, client_id=creds.client_id, client_secret=creds.client_secret
    ) as admin:
        members = [
            "ProjectMembership/"
            + admin.invite_user(medplum.project_id, "Practitioner", "Worker", f"M{i}",
                                email=f"m{i}@example.com", send_email=False)["id"]
            for i in range(MEMBERS)
        ]  # fmt: skip
        bundle = admin.execute_batch(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "resource": {"resourceType": "Patient", "name": [{"family": f"T{i}"}]},
                        "request": {"method": "POST", "url": "Patient"},
                    }
                    for i in range(TASKS)
                ],
            }
        )
    patients = [e["resource"]["id"] for e in bundle["entry"]]
    assert len(patients) == TASKS
    return members, patients


def test_a_celery_pool_logs_in_once_keeps_each_tasks_obo_and_waits_out_the_quota_together(
    medplum: LocalMedplumServer, redis_url: str, fleet: str
) -> None:
    members, patients = members_and_patients(medplum)
    acting = {patients[i]: members[i % MEMBERS] for i in range(TASKS)}
    medplum.set_fhir_quota(QUOTA_POINTS, window_seconds=QUOTA_WINDOW_SECONDS)
    medplum._call("POST", "/__test__/tokens", {"reset_counters": True})
    medplum.clear_requests()

    sender = Celery("pymedplum_test", broker=redis_url, backend=redis_url)
    results = [
        sender.send_task(
            "pymedplum_test.read_patient", args=[i, acting[patients[i]], patients[i]], queue=fleet
        )
        for i in range(TASKS)
    ]
    done: list[dict[str, Any]] = [r.get(timeout=240) for r in results]

    # Every task read its own Patient, in WORKERS processes.
    assert [d["id"] for d in done] == patients
    assert len({d["pid"] for d in done}) == WORKERS

    # One token request for the whole fleet.
    assert medplum.token_requests == 1

    # Every request carried its own task's on-behalf-of, and Medplum acted as it.
    log = medplum.fhir_requests()
    reads = [r for r in log if r["method"] == "GET"]
    assert {r["path"].rsplit("/", 1)[1] for r in reads} == set(patients)
    for entry in reads:
        expected = acting[entry["path"].rsplit("/", 1)[1]]
        assert entry["on_behalf_of"] == expected
        if entry["status"] == 200:
            assert entry["acting_membership"] == expected
    for d, patient_id in zip(done, patients, strict=True):
        assert {a["on_behalf_of"] for a in d["attempts"]} == {acting[patient_id]}

    # No storm: not one request refused; processes waited on the shared budget instead.
    refused = collections.Counter(r["quota_window"] for r in reads if r["status"] == 429)
    windows = medplum.fhir_quota()["windows"]
    waits = [a["rate_limit_wait"] for d in done for a in d["attempts"] if a["rate_limit_wait"]]
    print(
        f"\n{TASKS} tasks, {WORKERS} processes: {len(reads)} reads, {windows} quota windows, "
        f"429s per window {dict(refused)}, {len(waits)} budget waits"
    )
    assert windows >= TASKS // QUOTA_POINTS
    assert not refused, refused
    assert len(reads) == TASKS  # nothing was sent twice
    assert waits, "no process waited on the shared budget"
