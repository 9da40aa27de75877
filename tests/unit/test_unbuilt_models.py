"""Helpers that read a model's fields work before that model was ever validated.

A generated field's alias is in its annotation's metadata, which pydantic reads only when
the model is built (on its first validation); each check runs in a fresh interpreter, where
nothing has been built yet.
"""

from __future__ import annotations

import subprocess
import sys

from tests.shared_data import REPO_ROOT


def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_set_extension_knows_every_value_x_of_an_unbuilt_extension() -> None:
    code = (
        "from pymedplum.extensions import set_extension\n"
        "element = {}\n"
        "set_extension(element, 'https://x/weight', valueQuantity={'value': 1})\n"
        "set_extension(element, 'https://x/code', value_codeable_concept={'text': 'a'})\n"
        "print(sorted(k for e in element['extension'] for k in e if k != 'url'))\n"
    )
    assert _fresh(code) == "['valueCodeableConcept', 'valueQuantity']"


def test_parquet_columns_of_an_unbuilt_model_carry_fhir_names() -> None:
    code = (
        "from pymedplum._parquet import columns_for\n"
        "names = [c.name for c in columns_for('Observation')]\n"
        "print('valueQuantity' in names, 'value_quantity' in names)\n"
    )
    assert _fresh(code) == "True False"


def test_json_names_of_an_unbuilt_model_are_its_fhir_names() -> None:
    code = (
        "from pymedplum.helpers import _json_names\n"
        "from pymedplum.fhir import Observation\n"
        "names = _json_names(Observation)\n"
        "print(names.get('valueQuantity'), names.get('effectiveTiming'))\n"
    )
    assert _fresh(code) == "value_quantity effective_timing"
