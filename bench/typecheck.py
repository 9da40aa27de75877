"""Cold type-checker runs on a small user script, against a script that uses only httpx
and pydantic, measured in the same run (the target: mypy within 2x of that baseline).

Each run starts in a fresh temporary folder with no cache and no project configuration,
as a user's first `mypy --strict` or `pyright` would. Times are CPU seconds of the checker
process (user + system), which the other jobs of a shared machine disturb less than wall
time; the best of several runs is kept.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

Row = tuple[str, str, str, str]

BASELINE = """\
import httpx
from pydantic import BaseModel


class Patient(BaseModel):
    id: str
    family: str | None = None


with httpx.Client(base_url="https://api.medplum.com/fhir/R4/") as http:
    patient = Patient.model_validate(http.get("Patient/123").json())
"""

USER_SCRIPT = """\
from pymedplum import MedplumClient
from pymedplum.fhir import Patient

with MedplumClient(base_url="https://api.medplum.com/") as client:
    for patient in client.search(Patient, {"family": "Smith", "_count": 50}):
        print(patient.birth_date)
"""


def _cpu_seconds(command: list[str], script: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "script.py").write_text(script, encoding="utf-8")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(
            [*command, "script.py"], cwd=folder, capture_output=True, text=True, check=False
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed on the benchmark script:\n{result.stdout}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best_cpu(command: list[str], script: str, repeat: int) -> float:
    return min(_cpu_seconds(command, script) for _ in range(repeat))


def checkers() -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "mypy --strict": [sys.executable, "-m", "mypy", "--strict", "--cache-dir", os.devnull],
        "pyright": [str(bin_dir / "pyright"), "--pythonpath", sys.executable],
    }


def rows(repeat: int = 3) -> list[Row]:
    table: list[Row] = []
    for name, command in checkers().items():
        baseline = best_cpu(command, BASELINE, repeat)
        ours = best_cpu(command, USER_SCRIPT, repeat)
        target = "; target 2x" if name.startswith("mypy") else ""
        table.append(
            (
                f"cold `{name}` of a 5-line user script (CPU)",
                f"{ours:.1f} s",
                f"{ours / baseline:.2f}x the httpx + pydantic script ({baseline:.1f} s){target}",
                "",
            )
        )
    return table
