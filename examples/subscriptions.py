"""Follow a patient's observations live with client.subscribe() (docs/subscriptions.md).

Reads the server and credentials from the environment (as examples/quickstart.py does):

    MEDPLUM_BASE_URL, MEDPLUM_CLIENT_ID, MEDPLUM_CLIENT_SECRET

Creates a demo Patient, subscribes to `Observation?subject=Patient/<id>`, and records a few
heart rates from another task while the subscription prints each change as it arrives.
Needs `pip install 'pymedplum[subscriptions]'` and a project with the
`websocket-subscriptions` feature. Prints no token and no secret.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

from pymedplum import AsyncMedplumClient
from pymedplum.fhir import Observation

HEART_RATES = (72, 75, 71)


def heart_rate(patient_id: str, bpm: int) -> Observation:
    return Observation.model_validate(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": bpm, "unit": "/min"},
        }
    )


async def record(client: AsyncMedplumClient, patient_id: str) -> None:
    """Another part of the system: records heart rates, then corrects the first one."""
    first = None
    for bpm in HEART_RATES:
        created = await client.create_resource(heart_rate(patient_id, bpm))
        first = first or created
    assert first is not None
    first["status"] = "amended"
    await client.update_resource(first)


async def follow(env: Mapping[str, str]) -> int:
    async with AsyncMedplumClient(
        env["MEDPLUM_BASE_URL"],
        client_id=env["MEDPLUM_CLIENT_ID"],
        client_secret=env["MEDPLUM_CLIENT_SECRET"],
    ) as client:
        patient = await client.create_resource(
            {"resourceType": "Patient", "name": [{"given": ["Live"], "family": "Demo"}]}
        )
        criteria = f"Observation?subject=Patient/{patient['id']}"
        expected = len(HEART_RATES) + 1  # three creates and one update
        async with client.subscribe(criteria, as_fhir=Observation) as events:
            print(f"Subscribed to {criteria} (Subscription/{events.subscription_id})")
            writer = asyncio.create_task(record(client, patient["id"]))
            seen = 0
            async for event in events:
                obs = event.resource
                value = obs.value_quantity.value if obs.value_quantity else None
                print(
                    f"  {event.source:<12} Observation/{event.resource_id} "
                    f"status={obs.status} value={value}"
                )
                seen += 1
                if seen == expected:
                    break
            await writer
        print("Closed: the stream deleted its Subscription.")
    return 0


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    missing = [
        k
        for k in ("MEDPLUM_BASE_URL", "MEDPLUM_CLIENT_ID", "MEDPLUM_CLIENT_SECRET")
        if not env.get(k)
    ]
    if missing:
        print(f"set {', '.join(missing)} (see the docstring)", file=sys.stderr)
        return 1
    return asyncio.run(follow(env))


if __name__ == "__main__":
    raise SystemExit(main())
