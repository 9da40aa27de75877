"""A typo in a typed search is a short type error, under mypy --strict and under pyright.

Each checker runs once, cold, on small user scripts in a temporary folder (no project
configuration, no cache), as a user's editor or CI would run it. Each script holds one
mistake; its error must fit in five lines and name what is wrong.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = """\
from pymedplum import AsyncMedplumClient, MedplumClient
from pymedplum.fhir import Observation, Patient

client = MedplumClient(base_url="https://api.medplum.com/")
"""

# script name -> (body, words the error must name)
SCRIPTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "misspelt_key": (
        'client.search(Patient, {"familly": "Smith"})\n',
        ("PatientSearchParams", "familly"),
    ),
    "key_of_another_type": (
        'client.search(Patient, {"code": "8867-4"})\n',
        ("PatientSearchParams", "code"),
    ),
    "misspelt_key_async": (
        "async def main(aclient: AsyncMedplumClient) -> None:\n"
        '    await aclient.search(Observation, {"cod": "8867-4"})\n',
        ("ObservationSearchParams", "cod"),
    ),
    "misspelt_resource_type": (
        "from pymedplum.fhir import Patinet\n\n"
        'client.search(Patinet, {"family": "Smith"})\n',
        ("Patinet",),
    ),
}

MAX_LINES = 5


def write_scripts(folder: Path) -> list[Path]:
    paths = []
    for name, (body, _) in SCRIPTS.items():
        path = folder / f"{name}.py"
        path.write_text(HEADER + body, encoding="utf-8")
        paths.append(path)
    return paths


def diagnostics_by_script(output: str, start: re.Pattern[str]) -> dict[str, list[str]]:
    """Each script's diagnostic lines: a line naming `script.py:` and its continuations."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in output.splitlines():
        match = start.match(line)
        if match:
            current = match.group(1)
            found.setdefault(current, []).append(line)
        elif current is not None and line[:1].isspace():  # pyright indents with NBSPs too
            found[current].append(line)
        else:
            current = None
    return found


def check(found: dict[str, list[str]], checker: str) -> None:
    assert set(found) == set(SCRIPTS), f"{checker} reported on {sorted(found)}"
    for name, (_, words) in SCRIPTS.items():
        lines = found[name]
        text = "\n".join(lines)
        assert len(lines) <= MAX_LINES, f"{checker}, {name}: {len(lines)} lines\n{text}"
        for word in words:
            assert word in text, f"{checker}, {name}: {word!r} not named\n{text}"


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_scripts(tmp_path_factory.mktemp("user_scripts"))


def test_mypy_strict_names_the_typed_dict_and_the_key_in_at_most_five_lines(
    scripts: list[Path],
) -> None:
    folder = scripts[0].parent
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(folder / ".mypy_cache")]
        + [p.name for p in scripts],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    check(diagnostics_by_script(result.stdout, re.compile(r"(\w+)\.py:\d+: ")), "mypy")


def test_pyright_names_the_typed_dict_and_the_key_in_at_most_five_lines(
    scripts: list[Path],
) -> None:
    folder = scripts[0].parent
    pyright = Path(sys.executable).parent / "pyright"
    result = subprocess.run(
        [str(pyright), "--pythonpath", sys.executable] + [p.name for p in scripts],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    start = re.compile(r"  \S*?(\w+)\.py:\d+:\d+ - error")
    check(diagnostics_by_script(result.stdout, start), "pyright")
