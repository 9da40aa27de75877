"""Asynchronous jobs without I/O: which AsyncJob a caller means, and when polling stops.

Medplum answers a `Prefer: respond-async` request with 202 and an OperationOutcome whose
`issue[0].diagnostics` (and the `Content-Location` header) is a status URL:
`<base>/fhir/R4/job/<id>/status`, or `<base>/fhir/R4/bulkdata/export/<id>` for `$export`.
Both name an AsyncJob resource. The client polls the status URL (after checking that it is
on its own origin); Medplum answers with the AsyncJob itself, or, in older versions and for
`$export`, with an empty 202 or an export manifest, in which case the client reads the
AsyncJob to report the job's state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from pymedplum._convert import resource_to_dict
from pymedplum._core import _check_id
from pymedplum._security import Origin, require_same_origin

__all__ = [
    "TERMINAL_STATUSES",
    "JobRef",
    "JobPoll",
    "job_ref",
    "check_polling",
    "async_job_poll",
    "next_poll_delay",
]

#: AsyncJob.status values after which a job no longer changes.
TERMINAL_STATUSES = frozenset({"completed", "error", "cancelled"})
#: Bounds on the wait between two polls, whatever a server's `Retry-After` says.
MIN_POLL_DELAY_SECONDS = 0.1
MAX_POLL_DELAY_SECONDS = 300.0

_STATUS_PATH = re.compile(
    r"/(?:job/(?P<job>[^/]+)/status|bulkdata/export/(?P<export>[^/]+)|AsyncJob/(?P<read>[^/]+))/?\Z"
)


@dataclass(frozen=True, slots=True)
class JobRef:
    """An AsyncJob: its id, and the status URL to poll."""

    id: str
    status_url: str


def _from_url(url: str, origin: Origin) -> JobRef:
    require_same_origin(url, origin, "the async job URL")
    match = _STATUS_PATH.search(urlsplit(url).path)
    if match is None:
        raise ValueError("job: the URL is not a Medplum async job status URL")
    found = match.group("job") or match.group("export") or match.group("read")
    return JobRef(_check_id(found, "job id"), url)


def _status_url(outcome: Mapping[str, Any]) -> str | None:
    for issue in outcome.get("issue") or ():
        diagnostics = issue.get("diagnostics") if isinstance(issue, Mapping) else None
        if isinstance(diagnostics, str) and "://" in diagnostics:
            return diagnostics
    return None


def job_ref(job: str | Mapping[str, Any] | BaseModel, origin: Origin, fhir_base_url: str) -> JobRef:
    """The AsyncJob a caller means.

    `job` is a job id, `AsyncJob/<id>`, a status URL (it must be on the client's origin,
    else UnsafeRedirectError), the 202 OperationOutcome (dict or model) that started the
    job, or the AsyncJob itself.
    """
    if isinstance(job, BaseModel):
        job = resource_to_dict(job)
    if isinstance(job, Mapping):
        resource_type = job.get("resourceType")
        if resource_type == "AsyncJob" and isinstance(job.get("id"), str):
            job = job["id"]
        elif resource_type == "OperationOutcome":
            url = _status_url(job)
            if url is None:
                raise ValueError("job: the OperationOutcome carries no async job status URL")
            return _from_url(url, origin)
        else:
            raise ValueError("job: expected an AsyncJob or the OperationOutcome of a 202 answer")
    if not isinstance(job, str):
        raise TypeError(f"job: expected a str, a dict or a model, got {type(job).__name__}")
    if "://" in job:
        return _from_url(job, origin)
    found = _check_id(job.removeprefix("AsyncJob/"), "job id")
    return JobRef(found, f"{fhir_base_url}job/{found}/status")


def is_async_job(data: Any) -> bool:
    """Whether a status answer is the AsyncJob itself (Medplum 5) rather than empty."""
    return isinstance(data, dict) and data.get("resourceType") == "AsyncJob"


def check_polling(poll_interval: float, timeout: float | None) -> None:
    """Refuse a poll interval or timeout that would spin or never start."""
    if not poll_interval > 0:
        raise ValueError("poll_interval must be > 0 seconds")
    if timeout is not None and not timeout >= 0:
        raise ValueError("timeout must be >= 0 seconds or None")


@dataclass(frozen=True, slots=True)
class JobPoll:
    """What one status poll found: the job finished (with its `result`), or still running.

    `status` names the job's state for messages; `server_delay` is the server's
    `Retry-After` (seconds) and `progress` its `X-Progress` text, when it sent them.
    """

    done: bool
    result: Any = None
    status: str | None = None
    server_delay: float | None = None
    progress: str | None = None


def async_job_poll(job: Any) -> JobPoll:
    """The poll of an AsyncJob: done once its status is final."""
    status = job.get("status") if isinstance(job, dict) else None
    return JobPoll(status in TERMINAL_STATUSES, job, status if isinstance(status, str) else None)


def next_poll_delay(
    poll: JobPoll, poll_interval: float, remaining: float | None, timeout: float | None
) -> float:
    """Seconds to wait before the next poll; TimeoutError when no time is left.

    The server's `Retry-After` replaces `poll_interval` (kept within 0.1 s and 300 s, so a
    server can neither make the client spin nor park it for hours); the wait never passes
    the deadline (`remaining` seconds, None for none).
    """
    delay = poll_interval
    if poll.server_delay is not None:
        delay = min(max(poll.server_delay, MIN_POLL_DELAY_SECONDS), MAX_POLL_DELAY_SECONDS)
    if remaining is not None:
        if remaining <= 0:
            raise TimeoutError(
                f"the async job did not finish within {timeout} s (last status: {poll.status!r})"
            )
        delay = min(delay, remaining)
    return delay
