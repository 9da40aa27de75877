"""Model benchmarks: parse and serialize against orjson/json (the floor) and fhir.resources
(R4B models), all measured in this run; import time and memory in fresh processes.

The data: the official FHIR R4 examples (installed by `make install`) that are instances of
clinical and administrative resources, with our hand-written Medplum resources; and the
largest Synthea-like patient bundle made by tests/support/synthetic.py."""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

import orjson

from bench._timing import (
    best_of,
    compile_sources,
    fresh_process,
    fresh_process_cpu,
    fresh_process_output,
    ms,
    us,
)
from pymedplum import _json, fhir
from tests.shared_data import known_invalid_examples, medplum_example_files, official_example_files
from tests.support import synthetic

Row = tuple[str, str, str, str]


def _fhir_resources_model(resource_type: str) -> Any:
    import importlib

    try:
        module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
        return getattr(module, resource_type)
    except (ImportError, AttributeError):
        return None


# Definitions rather than data: left out of the per-resource figures, as are the multi-megabyte
# Bundles of definitions (a per-resource average is about resources as a client sees them).
_DEFINITIONAL = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "ExampleScenario",
        "GraphDefinition",
        "ImplementationGuide",
        "MessageDefinition",
        "NamingSystem",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "ValueSet",
    }
)
_LARGEST_EXAMPLE = 1_000_000  # bytes


def _examples() -> list[tuple[bytes, dict[str, Any]]]:
    invalid = known_invalid_examples()
    files = [
        p
        for p in official_example_files()
        if p.name not in invalid and p.stat().st_size <= _LARGEST_EXAMPLE
    ] + medplum_example_files()
    examples = [(p.read_bytes(), _json.loads(p.read_bytes())) for p in files]
    if not examples:
        raise SystemExit("no examples: run `make install` (it installs the official examples)")
    return [(raw, data) for raw, data in examples if data["resourceType"] not in _DEFINITIONAL]


def per_resource() -> list[Row]:
    """Parse and serialize every example once per round; per-resource averages."""
    examples = _examples()
    ours = [(raw, fhir.resource_class(data["resourceType"])) for raw, data in examples]
    dicts = [(data, fhir.resource_class(data["resourceType"])) for _, data in examples]
    for raw, model in ours:  # build every schema before timing
        model.model_validate_json(raw)
    models = [model.model_validate(data) for data, model in dicts]
    n = len(examples)

    def parse_bytes() -> None:
        for raw, model in ours:
            model.model_validate_json(raw)

    def parse_dict() -> None:
        for data, model in dicts:
            model.model_validate(data)

    def dump() -> None:
        for model in models:
            model.to_fhir_json()

    raws = [raw for raw, _ in examples]
    floor_parse = best_of(lambda: [orjson.loads(r) for r in raws]) / n
    json_parse = best_of(lambda: [json.loads(r) for r in raws]) / n
    plain = [orjson.loads(r) for r in raws]
    floor_dump = best_of(lambda: [orjson.dumps(d) for d in plain]) / n
    ours_bytes = best_of(parse_bytes) / n
    ours_dict = best_of(parse_dict) / n
    ours_dump = best_of(dump) / n

    # fhir.resources, on the examples its R4B models accept (same subset for both sides).
    theirs: list[tuple[bytes, Any, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for raw, data in examples:
            model = _fhir_resources_model(data["resourceType"])
            if model is None:
                continue
            try:
                theirs.append((raw, model, model.model_validate_json(raw)))
            except Exception:
                continue
        m = len(theirs)
        fr_parse = (
            best_of(lambda: [model.model_validate_json(raw) for raw, model, _ in theirs], 3) / m
        )
        fr_dump = (
            best_of(lambda: [obj.model_dump_json(by_alias=True) for _, _, obj in theirs], 3) / m
        )
    subset = {raw for raw, _, _ in theirs}
    ours_subset = [(raw, model) for raw, model in ours if raw in subset]
    ours_subset_parse = (
        best_of(lambda: [model.model_validate_json(raw) for raw, model in ours_subset]) / m
    )

    return [
        (
            f"parse from JSON bytes, per resource ({n} examples)",
            us(ours_bytes),
            f"{ours_bytes / floor_parse:.1f}x orjson.loads ({us(floor_parse)}), "
            f"{ours_bytes / json_parse:.1f}x json.loads",
            "",
        ),
        (
            "parse from dict, per resource",
            us(ours_dict),
            f"{ours_dict / floor_parse:.1f}x orjson.loads",
            "",
        ),
        (
            "serialize to JSON bytes, per resource",
            us(ours_dump),
            f"{ours_dump / floor_dump:.1f}x orjson.dumps ({us(floor_dump)})",
            f"fhir.resources {us(fr_dump)}",
        ),
        (
            f"parse, the {m} examples fhir.resources (R4B) accepts",
            us(ours_subset_parse),
            f"{fr_parse / ours_subset_parse:.1f}x faster than fhir.resources",
            f"fhir.resources {us(fr_parse)}",
        ),
    ]


def synthea_bundle() -> list[Row]:
    raw = synthetic.bundle_bytes("large")
    fhir.Bundle.model_validate_json(raw)
    floor = best_of(lambda: orjson.loads(raw))
    ours = best_of(lambda: fhir.Bundle.model_validate_json(raw))
    bundle = fhir.Bundle.model_validate_json(raw)
    plain = orjson.loads(raw)
    floor_dump = best_of(lambda: orjson.dumps(plain))
    ours_dump = best_of(lambda: bundle.to_fhir_json())
    from fhir.resources.R4B.bundle import Bundle as TheirBundle

    theirs_parse = best_of(lambda: TheirBundle.model_validate_json(raw), 3)
    theirs_obj = TheirBundle.model_validate_json(raw)
    theirs_dump = best_of(lambda: theirs_obj.model_dump_json(by_alias=True), 3)
    size = f"{len(raw) / 1e6:.1f} MB"
    return [
        (
            f"Synthea-like patient bundle ({size}), typed and validated parse",
            ms(ours),
            f"{ours / floor:.1f}x orjson.loads ({ms(floor)}); "
            f"{theirs_parse / ours:.1f}x faster than fhir.resources",
            f"fhir.resources {ms(theirs_parse)}",
        ),
        (
            "Synthea-like patient bundle, serialize",
            ms(ours_dump),
            f"{ours_dump / floor_dump:.1f}x orjson.dumps ({ms(floor_dump)}); "
            f"{theirs_dump / ours_dump:.1f}x faster than fhir.resources",
            f"fhir.resources {ms(theirs_dump)}",
        ),
    ]


def json_dicts() -> list[Row]:
    """What the client does with every response body: JSON to a dict whose decimals keep
    their text (DecimalFloat), and back; against orjson and the stdlib, in this run."""
    raw = synthetic.bundle_bytes("large")
    raws = [raw for raw, _ in _examples()]
    n = len(raws)
    ours = best_of(lambda: _json.loads(raw))
    floor = best_of(lambda: orjson.loads(raw))
    stdlib = best_of(lambda: json.loads(raw))
    ours_each = best_of(lambda: [_json.loads(r) for r in raws]) / n
    floor_each = best_of(lambda: [orjson.loads(r) for r in raws]) / n
    stdlib_each = best_of(lambda: [json.loads(r) for r in raws]) / n
    data = _json.loads(raw)
    plain = orjson.loads(raw)
    ours_dump = best_of(lambda: _json.dumps(data))
    floor_dump = best_of(lambda: orjson.dumps(plain))
    size = f"{len(raw) / 1e6:.1f} MB"
    return [
        (
            f"Synthea bundle ({size}) to a dict, decimals keeping their text",
            ms(ours),
            f"{ours / floor:.2f}x orjson.loads ({ms(floor)}), {ours / stdlib:.2f}x json.loads",
            "",
        ),
        (
            f"one example resource to a dict ({n} examples)",
            us(ours_each),
            f"{ours_each / floor_each:.2f}x orjson.loads ({us(floor_each)}), "
            f"{ours_each / stdlib_each:.2f}x json.loads",
            "",
        ),
        (
            "the Synthea dict written back, decimal text exact",
            ms(ours_dump),
            f"{ours_dump / floor_dump:.2f}x orjson.dumps of plain floats ({ms(floor_dump)})",
            "",
        ),
    ]


_IMPORT_ALL = (
    "import importlib, pymedplum.fhir as f\n"
    "for m in sorted(set(f._MODULES.values())): importlib.import_module('pymedplum.fhir.' + m)\n"
)
_BUILD_ALL = (
    "import pymedplum.fhir as f\nfor t in f.RESOURCE_TYPES: f.resource_class(t).model_rebuild()\n"
)
# Resident memory now, in kB (ru_maxrss would include the parent's peak from before exec).
_RSS = (
    "print(next(int(line.split()[1]) for line in open('/proc/self/status')"
    " if line.startswith('VmRSS:')))"
)


def imports() -> list[Row]:
    compile_sources()
    empty = fresh_process("pass")
    pydantic = fresh_process("import pydantic, pydantic.fields")
    patient = fresh_process("from pymedplum.fhir import Patient")
    first_use = fresh_process("from pymedplum.fhir import Patient\nPatient(name=[{'family': 'F'}])")
    everything = fresh_process(_IMPORT_ALL, repeat=3)
    theirs = fresh_process("from fhir.resources.R4B.patient import Patient", repeat=3)
    rss_base = int(fresh_process_output("import pydantic\n" + _RSS))
    rss_all = int(fresh_process_output(_IMPORT_ALL + _RSS))
    built = fresh_process(_BUILD_ALL, repeat=1)
    rss_built = int(fresh_process_output(_BUILD_ALL + _RSS))
    modules = len(set(fhir._MODULES.values()))
    return [
        (
            "`from pymedplum.fhir import Patient` (fresh process)",
            ms(patient),
            f"`python -c pass` {ms(empty)}, `import pydantic` {ms(pydantic)}",
            f"fhir.resources Patient {ms(theirs)}",
        ),
        ("... and the first Patient validated (loads what it refers to)", ms(first_use), "", ""),
        (f"import all {modules} model modules (fresh process)", ms(everything), "", ""),
        (
            "RSS after importing all models",
            f"{rss_all / 1024:.0f} MB",
            f"python + pydantic alone {rss_base / 1024:.0f} MB",
            "",
        ),
        ("build the validators of every resource type (fresh process)", ms(built), "", ""),
        ("RSS with every resource validator built", f"{rss_built / 1024:.0f} MB", "", ""),
    ]


# The targets of issue 9: (what, ours, baseline, baseline's name, the ratio not to exceed).
Target = tuple[str, float, float, str, float]

_FR_IMPORT_ALL = (
    "import importlib, pkgutil, fhir.resources.R4B as p\n"
    "for m in pkgutil.iter_modules(p.__path__):\n"
    "    if not m.name.startswith(('tests', 'fhirtypes')):\n"
    "        importlib.import_module('fhir.resources.R4B.' + m.name)\n"
)


def targets() -> tuple[list[Target], int]:
    """Each target as a ratio of CPU times measured in this run (fresh processes for the cold
    ones, the package byte-compiled first as an installed wheel is), and the RSS in kB with
    every resource validator built (target: at most 150 MB).

    The orjson.dumps baseline moves with where its dict lies in memory: 1.0 ms for one
    loaded into a fresh process, 2-12 ms for one loaded after the models were built, in
    runs of the same day; the serialize ratio is the least stable row."""
    import tempfile
    from pathlib import Path

    cpu = time.process_time
    compile_sources()
    raw = synthetic.bundle_bytes("large")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.json"
        path.write_bytes(raw)
        read = f"open({str(path)!r}, 'rb').read()"
        cold_ours = fresh_process_cpu(
            f"from pymedplum.fhir import Bundle\nBundle.model_validate_json({read})"
        )
        cold_theirs = fresh_process_cpu(
            f"from fhir.resources.R4B.bundle import Bundle\nBundle.model_validate_json({read})"
        )
    built = fresh_process_cpu(_BUILD_ALL, repeat=3)
    theirs_all = fresh_process_cpu(_FR_IMPORT_ALL, repeat=3)
    rss_built = int(fresh_process_output(_BUILD_ALL + _RSS))
    patient = fresh_process_cpu("from pymedplum.fhir import Patient", repeat=9)
    pydantic = fresh_process_cpu("import pydantic, pydantic.fields", repeat=9)

    fhir.Bundle.model_validate_json(raw)
    parse = best_of(lambda: fhir.Bundle.model_validate_json(raw), 15, clock=cpu)
    loads = best_of(lambda: orjson.loads(raw), 15, clock=cpu)
    bundle = fhir.Bundle.model_validate_json(raw)
    plain = orjson.loads(raw)
    dump = best_of(bundle.to_fhir_json, 15, clock=cpu)
    dumps = best_of(lambda: orjson.dumps(plain), 15, clock=cpu)

    examples = [(r, fhir.resource_class(d["resourceType"])) for r, d in _examples()]
    for example, model in examples:
        model.model_validate_json(example)
    n = len(examples)
    each = best_of(lambda: [m.model_validate_json(r) for r, m in examples], 5, clock=cpu) / n
    each_floor = best_of(lambda: [orjson.loads(r) for r, _ in examples], 5, clock=cpu) / n
    size = f"{len(raw) / 1e6:.1f} MB"
    return [
        (
            f"import + first typed parse of the Synthea bundle ({size}), fresh process",
            cold_ours,
            cold_theirs,
            "fhir.resources, the same",
            0.35,
        ),
        (
            "every resource type's validator built, fresh process",
            built,
            theirs_all,
            "fhir.resources importing all its models",
            0.5,
        ),
        ("steady typed, validated parse of the bundle", parse, loads, "orjson.loads", 4.5),
        ("serialize the bundle", dump, dumps, "orjson.dumps", 6.0),
        (
            f"parse per resource, average of {n} official examples",
            each,
            each_floor,
            "orjson.loads",
            8.0,
        ),
        ("`from pymedplum.fhir import Patient`", patient, pydantic, "`import pydantic`", 1.5),
    ], rss_built
