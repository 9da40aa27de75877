# Generated from src/pymedplum/_async/jobs.py by codegen/unasync.py: run `make generate`.
"""Asynchronous jobs: status and waiting (bulk export, long operations)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from pymedplum import _backend, _bulk, _core, _jobs
from pymedplum._core import Call
from pymedplum._sync._base import ClientBase


class JobMethods(ClientBase):
    """Asynchronous jobs: status and waiting (bulk export, long operations)."""

    def get_async_job_status(
        self,
        job: str | Mapping[str, Any] | BaseModel,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """The AsyncJob behind `job`, as it is now (`status`: accepted, active, completed, ...).

        Example:
            started = client.set_accounts(
                "Patient/123", "Organization/a", propagate=True, prefer_async=True
            )
            job = client.get_async_job_status(started)
            if job["status"] == "completed":
                print(job["output"])

        `job` is the 202 OperationOutcome that started it (dict or model), its status URL,
        a job id or `AsyncJob/<id>`. The status URL is polled (a URL on another origin
        raises UnsafeRedirectError: the client never sends its token elsewhere); when it
        answers without the job (an empty 202, an `$export` manifest), the AsyncJob is read.
        """
        ref = _jobs.job_ref(job, self._origin, self.fhir_base_url)
        return self._job_status(ref, on_behalf_of)

    def _job_status(self, ref: _jobs.JobRef, on_behalf_of: str | None) -> dict[str, Any]:
        """Poll the status URL; read the AsyncJob when the answer is not the job itself."""
        answer = self._json(
            Call("GET", ref.status_url, _core._merge_headers(None)), on_behalf_of, empty=None
        )
        if _jobs.is_async_job(answer):
            return answer  # type: ignore[no-any-return]
        call = self._build_read("AsyncJob", (ref.id,), None)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def wait_for_async_job(
        self,
        job: str | Mapping[str, Any] | BaseModel,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Poll the AsyncJob every `poll_interval` seconds until it is completed, error or cancelled.

        Example:
            job = client.wait_for_async_job(started, timeout=60)
            print(job["status"])  # "completed"

        Returns the final AsyncJob (check `status`: a failed job is returned, not raised).
        Raises TimeoutError when `timeout` seconds pass first (None waits indefinitely).
        Every poll acts as the same membership (resolved at the first).
        """  # noqa: E501
        _jobs.check_polling(poll_interval, timeout)
        ref = _jobs.job_ref(job, self._origin, self.fhir_base_url)
        acting = self._obo.resolve(on_behalf_of) or ""
        return self._poll_job(ref, acting, poll_interval, timeout)  # type: ignore[no-any-return]

    def _poll_job(
        self,
        ref: _jobs.JobRef,
        acting: str,
        poll_interval: float,
        timeout: float | None,
        *,
        export: bool = False,
        on_wait: Callable[[_jobs.JobPoll], None] | None = None,
    ) -> Any:
        """Poll until the job is done; its result (the final AsyncJob, or with `export` the
        bulk data manifest). `on_wait` sees every unfinished poll."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            if export:
                call = Call("GET", ref.status_url, _core._merge_headers({"Accept": "*/*"}))
                poll = _bulk.export_poll(self._send(call, acting))
            else:
                poll = _jobs.async_job_poll(self._job_status(ref, acting))
            if poll.done:
                return poll.result
            if on_wait is not None:
                on_wait(poll)
            remaining = None if deadline is None else deadline - self._clock()
            delay = _jobs.next_poll_delay(poll, poll_interval, remaining, timeout)
            _backend.sync_sleep(delay)
