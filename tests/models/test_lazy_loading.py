"""Importing the package loads no model; importing a model loads only what it needs."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.shared_data import REPO_ROOT


def _loaded_after(code: str) -> list[str]:
    script = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('pymedplum'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def _models(modules: list[str]) -> set[str]:
    return {
        m.rsplit(".", 1)[1]
        for m in modules
        if m.startswith("pymedplum.fhir.") and not m.endswith("_primitives")
    }


def test_import_pymedplum_loads_no_model_module() -> None:
    assert _models(_loaded_after("import pymedplum")) == set()
    assert "pymedplum.fhir" not in _loaded_after("import pymedplum")


def test_importing_patient_loads_only_patient_and_its_bases() -> None:
    assert _models(_loaded_after("from pymedplum.fhir import Patient")) == {
        "patient",
        "domainresource",
        "resource",
        "backboneelement",
        "element",
    }


def test_validating_patient_loads_what_patient_refers_to_but_not_other_resources() -> None:
    loaded = _models(
        _loaded_after("from pymedplum.fhir import Patient\nPatient(name=[{'family': 'F'}])")
    )
    assert {"humanname", "extension", "meta"} <= loaded
    assert "observation" not in loaded and "bundle" not in loaded


def test_first_validations_racing_in_threads_all_succeed() -> None:
    code = (
        "import threading\n"
        "from pymedplum import fhir\n"
        "types = ['Patient', 'Observation', 'Encounter', 'Condition', 'Claim',"
        " 'ExplanationOfBenefit', 'MedicationRequest', 'Procedure']\n"
        "barrier = threading.Barrier(len(types))\n"
        "errors = []\n"
        "def first(t):\n"
        "    cls = fhir.resource_class(t)\n"
        "    barrier.wait()\n"
        "    try:\n"
        "        cls.model_json_schema()\n"
        "    except Exception as e:\n"
        "        errors.append(repr(e))\n"
        "threads = [threading.Thread(target=first, args=(t,)) for t in types]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print('ERRORS', errors)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip().endswith("ERRORS []"), result.stdout + result.stderr


def _output_of(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return result.stdout.strip().splitlines()[-1]


def test_a_first_validation_completes_the_datatypes_it_reaches_for_later_models_to_share() -> None:
    # Completed datatypes are reused, not rebuilt, by every model built after them (their
    # validators shared by pydantic-core); backbone elements are built inside their resource.
    code = (
        "from pymedplum import fhir\n"
        "fhir.Patient(name=[{'family': 'F'}])\n"
        "names = ['Extension', 'HumanName', 'Period', 'Identifier', 'Reference', 'Meta',"
        " 'Patient', 'PatientContact', 'Observation']\n"
        "print(','.join(n for n in names if getattr(fhir, n).__pydantic_complete__))"
    )
    assert _output_of(code).split(",") == [
        "Extension",
        "HumanName",
        "Period",
        "Identifier",
        "Reference",
        "Meta",
        "Patient",
    ]


def test_subclasses_defined_in_functions_validate_one_after_another() -> None:
    # Not in their module's namespace, and each with other bases: the second one must not
    # find the caller's module taken as bound by the first.
    code = (
        "from pymedplum import fhir\n"
        "def patient():\n"
        "    class MyPatient(fhir.Patient):\n"
        "        pass\n"
        "    return MyPatient(name=[{'family': 'F'}])\n"
        "def observation():\n"
        "    class MyObservation(fhir.Observation):\n"
        "        pass\n"
        "    quantity = {'value': 1.5}\n"
        "    return MyObservation(status='final', code={'text': 't'}, valueQuantity=quantity)\n"
        "print(patient().name[0].family, observation().value_quantity.value)"
    )
    assert _output_of(code) == "F 1.5"
