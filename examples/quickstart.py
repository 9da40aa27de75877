"""pymedplum quickstart: the examples of the client design and On-Behalf-Of pages, run for real.

Reads the server and credentials from the environment:

    MEDPLUM_BASE_URL       e.g. https://api.medplum.com/ (or the local test server)
    MEDPLUM_CLIENT_ID      a ClientApplication of a project admin (OBO needs an admin)
    MEDPLUM_CLIENT_SECRET
    MEDPLUM_OBO_MEMBERSHIPS  optional: two or more ProjectMembership/<id>, comma-separated;
                             by default the project's Practitioner memberships are used

`make demo` starts a local Medplum server and runs this file against it. It creates a few
demo Patients and prints what each step did; it never prints a token.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx

from pymedplum import AsyncMedplumClient, DecimalFloat, MedplumClient, PreconditionFailedError
from pymedplum.fhir import Patient
from pymedplum.hooks import RequestEvent


class DemoError(RuntimeError):
    """A step did not do what the documentation says it does."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise DemoError(what)


def step(title: str) -> None:
    print(f"\n== {title}")


def say(text: str) -> None:
    print(f"   {text}")


class SentAs:
    """An `on_request_complete` hook remembering which membership each call acted as."""

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, event: RequestEvent) -> None:
        self.last = event.on_behalf_of  # what went on the wire, per the audit event

    def shown(self) -> str:
        return self.last or "(no X-Medplum-On-Behalf-Of header)"


def settings(env: Mapping[str, str]) -> dict[str, str]:
    missing = [
        name
        for name in ("MEDPLUM_BASE_URL", "MEDPLUM_CLIENT_ID", "MEDPLUM_CLIENT_SECRET")
        if not env.get(name)
    ]
    if missing:
        raise DemoError("set " + ", ".join(missing))
    return {
        "base_url": env["MEDPLUM_BASE_URL"],
        "client_id": env["MEDPLUM_CLIENT_ID"],
        "client_secret": env["MEDPLUM_CLIENT_SECRET"],
    }


def memberships(client: MedplumClient, env: Mapping[str, str]) -> list[str]:
    """Two or more memberships to act as: from the environment, or the project's users."""
    given = [m.strip() for m in env.get("MEDPLUM_OBO_MEMBERSHIPS", "").split(",") if m.strip()]
    if given:
        return given
    found = client.search_resources("ProjectMembership", {"_count": 50})
    return sorted(
        f"ProjectMembership/{entry['resource']['id']}"
        for entry in found.get("entry", [])
        if str(entry["resource"].get("profile", {}).get("reference", "")).startswith(
            "Practitioner/"
        )
    )


# ---- client-design.md ----------------------------------------------------------------------------


def crud(client: MedplumClient) -> Patient:
    step("create_resource: from a dict and from a model")
    patient_dict = {"resourceType": "Patient", "name": [{"given": ["John"], "family": "Dict"}]}
    created_from_dict = client.create_resource(patient_dict)
    say(f"from a dict  -> Patient/{created_from_dict['id']} (a {type(created_from_dict).__name__})")
    patient_model = Patient(name=[{"given": ["Jane"], "family": "Model"}])
    created_from_model = client.create_resource(patient_model)
    say(f"from a model -> Patient/{created_from_model['id']}")

    step("read_resource: a dict by default, a model with as_fhir=Patient")
    as_dict = client.read_resource("Patient", created_from_model["id"])
    say(f'patient_dict["name"][0]["family"] = {as_dict["name"][0]["family"]!r}')
    model = client.read_resource("Patient", created_from_model["id"], as_fhir=Patient)
    say(f"patient_model.name[0].family  = {model.name[0].family!r} ({type(model).__name__})")
    check(model.name[0].family == "Model", "as_fhir=Patient returns the model")

    step("update_resource: If-Match from meta.versionId by default")
    model.active = False
    updated = client.update_resource(model, as_fhir=Patient)  # default: If-Match on
    say(f"version {model.meta.version_id} -> {updated.meta.version_id}, active={updated.active}")
    try:
        client.update_resource(model)  # `model` still carries the old version: stale
        raise DemoError("a stale If-Match must fail")
    except PreconditionFailedError as exc:
        say(f"stale version          -> {type(exc).__name__} (HTTP {exc.status_code})")
    client.update_resource(model, if_match=False)  # opt out
    say("if_match=False         -> written without a guard")
    current = client.read_resource("Patient", model.id)
    client.update_resource(current, if_match=f'W/"{current["meta"]["versionId"]}"')  # custom
    say("if_match='W/\"<ver>\"'   -> written with the given ETag")

    return model


def exact_decimals(config: dict[str, str], patient_id: str) -> None:
    step("exact decimals: the SDK sends 1.50 as written; Medplum stores a JavaScript number")
    bodies: list[bytes] = []

    def record_body(request: httpx.Request) -> None:  # what goes on the wire, byte for byte
        if request.method == "POST" and request.url.path.endswith("/Observation"):
            bodies.append(request.content)

    with (
        httpx.Client(event_hooks={"request": [record_body]}) as http,
        MedplumClient(**config, http_client=http) as client,
    ):
        observation = client.create_resource(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "body weight"},
                "subject": {"reference": f"Patient/{patient_id}"},
                "valueQuantity": {"value": Decimal("1.50"), "unit": "kg"},
            }
        )
    check(bool(bodies) and b'"value":1.50' in bodies[-1], "the request carries the text 1.50")
    say('request body: "valueQuantity":{"value":1.50,...}  (the SDK writes the text 1.50)')
    stored = observation["valueQuantity"]["value"]
    say(f"the server answered {stored}: Medplum stores decimals as JavaScript numbers, which")
    say("drop the trailing zero (the same number; FHIR itself would keep the text 1.50)")
    say(f"the dict holds a float that keeps the server's text ({stored.text!r}): == 1.5, and")
    say("json.dumps works; written back through the SDK it is sent as that text")
    check(
        isinstance(stored, DecimalFloat)
        and stored == 1.5
        and stored.as_decimal() == Decimal("1.5"),
        "the same number, exact",
    )


def search(client: MedplumClient) -> None:
    client.create_resource(
        {"resourceType": "Patient", "name": [{"family": "Smith"}], "birthDate": "1980-02-03"}
    )
    step("search_resources(..., return_bundle=True) and get_resources_typed")
    bundle = client.search_resources("Patient", {"family": "Smith"}, return_bundle=True)
    for resource_dict in bundle:
        say(f"dict:  Patient/{resource_dict['id']}")
    patients = bundle.get_resources_typed(Patient)
    for p in patients:
        say(f"typed: birth_date={p.birth_date}")
    check(len(patients) >= 1, "the search finds the Smith just created")


# ---- on-behalf-of.md -----------------------------------------------------------------------------


def on_behalf_of(client: MedplumClient, sent: SentAs, patient_id: str, acting: list[str]) -> None:
    a, b = acting[0], acting[1]

    step("OBO 1: per-call kwarg (wins over everything)")
    client.read_resource("Patient", patient_id, on_behalf_of=a)
    say(f"read as {sent.shown()}")
    check(sent.last == a, "the kwarg is sent")

    step("OBO 2: context manager (ambient for a block)")
    with client.on_behalf_of(b):
        client.read_resource("Patient", patient_id)
        say(f"read   as {sent.shown()}")
        client.search_resources("Observation", {"subject": f"Patient/{patient_id}"})
        say(f"search as {sent.shown()}")
        check(sent.last == b, "the context manager applies to every call in its block")
        client.read_resource("Patient", patient_id, on_behalf_of="")
        say(f'on_behalf_of="" in the block: {sent.shown()}')
        check(sent.last is None, "an empty string clears the ambient value")
    client.read_resource("Patient", patient_id)
    say(f"after the block: {sent.shown()}")

    step("OBO: writes are stamped with meta.onBehalfOf")
    stamped = client.create_resource(
        {"resourceType": "Patient", "name": [{"family": "Stamped"}]}, on_behalf_of=a
    )
    say(f"meta.onBehalfOf = {stamped['meta'].get('onBehalfOf', {}).get('reference')}")

    step("OBO threads: ThreadPoolExecutor.submit does not copy the context (the caveat)")
    with client.on_behalf_of(a), ThreadPoolExecutor() as pool:
        pool.submit(client.read_resource, "Patient", patient_id).result()
    say(f"caveat: plain submit        -> {sent.shown()}")
    say("the worker thread did not see the block's OBO, as documented; the three fixes:")
    check(sent.last is None, "plain submit loses the OBO, as documented")
    with client.on_behalf_of(a):
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor() as pool:
            pool.submit(ctx.run, client.read_resource, "Patient", patient_id).result()
    say(f"Option B copy_context().run -> {sent.shown()}")
    check(sent.last == a, "copy_context propagates the OBO")
    with ThreadPoolExecutor() as pool:
        pool.submit(client.read_resource, "Patient", patient_id, on_behalf_of=b).result()
    say(f"Option C explicit kwarg     -> {sent.shown()}")
    check(sent.last == b, "an explicit kwarg needs no propagation")

    async def ok_async() -> None:
        async with client.on_behalf_of(a):
            await asyncio.to_thread(client.read_resource, "Patient", patient_id)

    asyncio.run(ok_async())
    say(f"Option A asyncio.to_thread  -> {sent.shown()}")
    check(sent.last == a, "asyncio.to_thread copies the context")


def client_default(config: dict[str, str], patient_id: str, acting: str) -> None:
    step("OBO 3: client default (baseline for the client's lifetime)")
    sent = SentAs()
    with MedplumClient(**config, default_on_behalf_of=acting, on_request_complete=sent) as client:
        client.read_resource("Patient", patient_id)
        say(f"read as {sent.shown()}")
        check(sent.last == acting, "the client default is sent")
        client.read_resource("Patient", patient_id, on_behalf_of="")
        say(f'on_behalf_of="" -> {sent.shown()}')
        check(sent.last is None, "an empty string clears the default for one call")


def async_isolation(config: dict[str, str], patient_id: str, acting: list[str]) -> None:
    step("OBO async: gathered tasks each see only their own context")
    events: list[RequestEvent] = []

    async def act_as(client: AsyncMedplumClient, membership: str) -> dict[str, Any]:
        async with client.on_behalf_of(membership):
            await asyncio.sleep(0)  # let the other task run in between
            return await client.read_resource("Patient", patient_id)

    async def main() -> None:
        async with AsyncMedplumClient(**config, on_request_complete=events.append) as client:
            a, b = await asyncio.gather(act_as(client, acting[0]), act_as(client, acting[1]))
            check(a["id"] == b["id"] == patient_id, "both tasks read the patient")

    asyncio.run(main())
    sent = sorted(str(event.on_behalf_of) for event in events)
    for membership in sent:
        say(f"a task read as {membership}")
    check(sent == sorted(acting[:2]), "each task sent its own OBO")


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        config = settings(env)
        sent = SentAs()
        print(f"pymedplum quickstart against {config['base_url']}")
        with MedplumClient(**config, on_request_complete=sent) as client:
            patient = crud(client)
            exact_decimals(config, str(patient.id))
            search(client)
            acting = memberships(client, env)
            if len(acting) < 2:
                print("\n(no two ProjectMemberships to act as: skipping the OBO examples)")
                return 0
            on_behalf_of(client, sent, str(patient.id), acting)
        client_default(config, str(patient.id), acting[0])
        async_isolation(config, str(patient.id), acting)
    except DemoError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
        return 1
    print("\nAll quickstart steps behaved as documented.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
