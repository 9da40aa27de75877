"""Load the definitions, build the IR and render every generated file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from codegen import ir
from codegen.definitions import Definitions
from codegen.models import ModelBuilder
from codegen.render import render_model
from codegen.search import build_searches
from codegen.valuesets import ValueSetExpander


def build_model(definitions: Definitions) -> ir.Model:
    builder = ModelBuilder(
        definitions.structure_definitions, ValueSetExpander(definitions.terminology)
    )
    modules = builder.modules()
    resource_types = tuple(
        sorted(c.resource_type for m in modules for c in m.classes if c.resource_type)
    )
    return ir.Model(
        package=definitions.package,
        modules=modules,
        primitives=builder.primitives(),
        resource_types=resource_types,
        searches=build_searches(definitions.search_parameters, resource_types),
    )


def build_files(repo_root: Path) -> dict[str, str]:
    files = render_model(build_model(Definitions()))
    # The sync client, generated from the async one (codegen/unasync.py), once it exists.
    if importlib.util.find_spec("codegen.unasync") is not None:
        from codegen import unasync

        files.update(unasync.render(repo_root))
    return files
