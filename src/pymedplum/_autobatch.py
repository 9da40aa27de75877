"""Auto-batching of reads, for `AsyncMedplumClient(auto_batch_ms=...)` only.

Reads issued within the window (`read_resource`, `vread_resource`) go out as one FHIR
batch Bundle (`POST [base]` with `type: batch`, one `GET Type/id` entry per read), and
each caller gets its own entry's resource or its own exception. The rules:

- Only reads with the same resolved on-behalf-of share a batch (the batch request carries
  one `X-Medplum-On-Behalf-Of`); the hooks are the client's, the same for every read.
  A read with its own `headers=` is sent alone (batch entries cannot carry headers).
- A window that ends with one read sends it as a plain GET: no batch of one.
- At most MAX_ENTRIES reads per batch: a full batch goes out at once, and the next read
  opens the next one.
- The batch request goes through the client's one send loop: token, hooks, retries (a
  429 or 503 on the batch is retried as a whole; it is a read, so replay is safe). If it
  fails anyway, every read in it raises that error.
- An entry's `response.status` and `response.outcome` become the exception a direct read
  would raise (404 NotFoundError, 410 GoneError, ...: the same mapping). An entry whose
  status a direct read would retry (429 when the FHIR quota runs out mid-batch, 503, ...)
  is read again on its own as a plain GET, with the usual retries.
- Each read fires its own `on_request_complete` event, in its caller's task, as a direct
  read does; the batch request fires none of its own (see docs/auto_batching.md).

No-I/O helpers first; `ReadBatcher` (asyncio) last. The sync client has no auto-batching:
a blocking call cannot wait for other calls to join it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pymedplum import _hooks, _json, _retry
from pymedplum._core import (
    FHIR_JSON,
    Call,
    CallState,
    _merge_headers,
    describe_path,
    error_from_status,
    make_event,
    parse_json,
)
from pymedplum.exceptions import MedplumError
from pymedplum.hooks import RequestAttempt

if TYPE_CHECKING:
    from pymedplum._async._base import AsyncClientBase
    from pymedplum._core import BaseClient

__all__ = [
    "MAX_ENTRIES",
    "MAX_WINDOW_MS",
    "ReadBatcher",
    "batch_call",
    "is_batchable",
    "read_entries",
]

#: The most reads in one batch Bundle. Medplum has no entry limit for a batch, but its
#: body limit (`maxJsonSize`, 1 MB by default) and its processing (entries one after the
#: other, so the last read waits for all the others) call for bounded batches: 100 read
#: entries are under 20 kB, and their answers under a few MB.
MAX_ENTRIES = 100
#: The longest window accepted, in milliseconds: longer only delays every read.
MAX_WINDOW_MS = 1000.0

_READ_HEADERS = _merge_headers(None)


def check_window(auto_batch_ms: float) -> float:
    """The window in seconds; ValueError unless 0 < ms <= MAX_WINDOW_MS."""
    if isinstance(auto_batch_ms, bool) or not isinstance(auto_batch_ms, int | float):
        raise TypeError(f"auto_batch_ms must be a number of milliseconds, got {auto_batch_ms!r}")
    if not math.isfinite(auto_batch_ms) or not 0 < auto_batch_ms <= MAX_WINDOW_MS:
        raise ValueError(
            f"auto_batch_ms must be above 0 and at most {MAX_WINDOW_MS:g} (0 or None: off), "
            f"got {auto_batch_ms!r}"
        )
    return auto_batch_ms / 1000


def is_batchable(call: Call, fhir_base_url: str) -> bool:
    """A read that can travel as a batch entry: a GET under the FHIR base, with no query
    and no headers of the caller's own."""
    return (
        call.method == "GET"
        and call.credentials
        and call.headers == _READ_HEADERS
        and call.url.startswith(fhir_base_url)
        and "?" not in call.url
    )


def batch_call(core: BaseClient, reads: Sequence[Call]) -> Call:
    """The batch Bundle carrying `reads` (each a batchable GET), to `POST [base]`.

    Replay-safe, unlike a batch of writes: every entry is a read.
    """
    base = core.fhir_base_url
    body = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": read.url[len(base) :]}} for read in reads],
    }
    headers = _merge_headers(None, Content_Type=FHIR_JSON)
    return core._call("POST", base, headers, body, replay_safe=True)


def _status_of(entry: Any) -> int | None:
    """An entry's `response.status` as a number (`"404"`, `"404 Not Found"`), or None."""
    response = entry.get("response") if isinstance(entry, Mapping) else None
    status = response.get("status") if isinstance(response, Mapping) else None
    head = status.split(" ", 1)[0] if isinstance(status, str) else ""
    return int(head) if head.isdigit() and len(head) == 3 else None


@dataclass(frozen=True, slots=True)
class EntryResult:
    """What one read gets from its batch entry: its resource, its error, or `again`
    (a status a direct read would retry: it is read again on its own)."""

    status: int | None
    resource: dict[str, Any] | None = None
    error: MedplumError | None = None
    again: bool = False


def read_entries(core: BaseClient, reads: Sequence[Call], bundle: Any) -> list[EntryResult]:
    """Each read's result from the batch-response, in order.

    A response that is not a `batch-response` Bundle with one entry per read fails every
    read (MedplumError): matching entries to reads by guesswork could hand a caller
    another caller's resource.
    """
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    if (
        not isinstance(bundle, Mapping)
        or bundle.get("resourceType") != "Bundle"
        or not isinstance(entries, list)
        or len(entries) != len(reads)
    ):
        error = MedplumError(
            f"auto-batch: the server did not answer a batch-response with {len(reads)} entries"
        )
        return [EntryResult(None, error=error) for _ in reads]
    return [_entry_result(core, read, entry) for read, entry in zip(reads, entries, strict=True)]


def _entry_result(core: BaseClient, read: Call, entry: Any) -> EntryResult:
    template = describe_path("GET", urlsplit(read.url).path, core._fhir_prefix).template
    status = _status_of(entry)
    if status is None:
        error = MedplumError(f"auto-batch: a batch entry has no response status | GET {template}")
        return EntryResult(None, error=error)
    if 200 <= status < 300:
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            error = MedplumError(f"auto-batch: HTTP {status} without a resource | GET {template}")
            return EntryResult(status, error=error)
        return EntryResult(status, resource=resource)
    if _retry.is_retried_status(status, replay_safe=True):
        return EntryResult(status, again=True)
    outcome = (entry.get("response") or {}).get("outcome")
    content = _json.dumps(outcome) if isinstance(outcome, Mapping) else b""
    return EntryResult(status, error=error_from_status(status, {}, content, "GET", template))


class _BatchState(CallState):
    """The batch request's call state: its attempts go into each read's own event, and it
    fires no event of its own."""

    __slots__ = ()

    def event(self) -> None:
        return None


@dataclass(slots=True, eq=False)
class _Waiting:
    """One read waiting for its batch."""

    call: Call
    future: asyncio.Future[_Answer]


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a batch hands back to one waiting read."""

    result: EntryResult | None  # None: send it alone (a plain GET)
    attempts: tuple[RequestAttempt, ...] = ()
    batch_size: int = 0
    failure: BaseException | None = None  # the batch request failed as a whole


class ReadBatcher:
    """Gathers the reads of one AsyncMedplumClient into batch Bundles (see the module)."""

    def __init__(self, client: AsyncClientBase, auto_batch_ms: float) -> None:
        self._client = client
        self._window = check_window(auto_batch_ms)
        self._queues: dict[str, list[_Waiting]] = {}  # by acting membership ("" for none)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._reading = 0  # batchable reads not finished yet
        self._idle = asyncio.Event()
        self._idle.set()

    async def read(self, call: Call, on_behalf_of: str | None) -> Any:
        """The read's JSON: from its batch entry, or from a plain GET when it goes alone."""
        client = self._client
        if not is_batchable(call, client.fhir_base_url):
            return await client._json(call, on_behalf_of)
        acting = client._obo.resolve(on_behalf_of) or ""
        self._reading += 1
        self._idle.clear()
        try:
            return await self._batched(call, acting)
        finally:
            self._reading -= 1
            if not self._reading:
                self._idle.set()

    async def _batched(self, call: Call, acting: str) -> Any:
        client = self._client
        started_at = datetime.now(UTC)
        waiting = _Waiting(call, asyncio.get_running_loop().create_future())
        self._enqueue(acting, waiting)
        try:
            answer = await waiting.future
        except BaseException as exc:  # cancelled while waiting: its event says so
            await self._report(call, started_at, _Answer(None), exc)
            raise
        if answer.result is None and answer.failure is None:
            return await client._json(call, acting)  # alone: a plain GET, its own event
        if answer.result is not None and answer.result.again:
            return await client._json(call, acting)  # a status a direct read would retry
        error = answer.failure or (answer.result.error if answer.result else None)
        await self._report(call, started_at, answer, error)
        if error is not None:
            raise error
        assert answer.result is not None
        return answer.result.resource

    async def drain(self) -> None:
        """Send every gathered read now; return when every read has its answer (a lone
        read sent as a plain GET included)."""
        for acting in list(self._queues):
            self._flush(acting)
        while self._sending:
            await asyncio.wait(list(self._sending))
        await self._idle.wait()

    # ------------------------------------------------------------ gathering

    def _enqueue(self, acting: str, waiting: _Waiting) -> None:
        queue = self._queues.setdefault(acting, [])
        queue.append(waiting)
        if len(queue) >= MAX_ENTRIES:
            self._flush(acting)  # full: waiting longer gains nothing
        elif len(queue) == 1:
            loop = asyncio.get_running_loop()
            self._timers[acting] = loop.call_later(self._window, self._flush, acting)

    def _flush(self, acting: str) -> None:
        timer = self._timers.pop(acting, None)
        if timer is not None:
            timer.cancel()
        reads = [w for w in self._queues.pop(acting, []) if not w.future.done()]
        if len(reads) == 1:
            reads[0].future.set_result(_Answer(None))  # no batch of one
        elif reads:
            task = asyncio.ensure_future(self._send(acting, reads))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    # ------------------------------------------------------------ sending

    async def _send(self, acting: str, reads: list[_Waiting]) -> None:
        client = self._client
        calls = [w.call for w in reads]
        call = batch_call(client, calls)
        state = _BatchState(client, call, client._obo.resolve(acting))
        try:
            async with client._exchange(call, acting, state=state) as (response, _):
                bundle = parse_json(response)
        except BaseException as exc:
            attempts = tuple(state.attempts or ())
            for waiting in reads:
                if not waiting.future.done():
                    waiting.future.set_result(_Answer(None, attempts, len(reads), failure=exc))
            if not isinstance(exc, Exception):
                raise
            return
        attempts = tuple(state.attempts or ())
        for waiting, result in zip(reads, read_entries(client, calls, bundle), strict=True):
            if not waiting.future.done():
                waiting.future.set_result(_Answer(result, attempts, len(reads)))

    async def _report(
        self, call: Call, started_at: datetime, answer: _Answer, error: BaseException | None
    ) -> None:
        """Fire the read's own on_request_complete event, in the caller's task."""
        client = self._client
        hook = client._on_request_complete
        if hook is None:
            return
        attempts = answer.attempts
        if answer.result is not None:
            status = answer.result.status
        else:
            status = attempts[-1].status_code if attempts else None
        batch_size = answer.batch_size or None
        event = make_event(client, call, started_at, attempts, status, error, batch_size)
        await _hooks.run_complete_async(hook, event)
