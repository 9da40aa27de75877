"""The generator on tiny hand-made definitions: IR decisions, and the rendered module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codegen import ir
from codegen.models import ModelBuilder
from codegen.naming import attribute_name, class_name
from codegen.render import render_model
from codegen.valuesets import ValueSetExpander
from tests.codegen import tiny_definitions

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def model() -> ir.Model:
    builder = ModelBuilder(
        tiny_definitions.structure_definitions(), ValueSetExpander(tiny_definitions.terminology())
    )
    modules = builder.modules()
    return ir.Model(
        package="tiny@1",
        modules=modules,
        primitives=builder.primitives(),
        resource_types=("Widget",),
        searches=(),
    )


def _class(model: ir.Model, name: str) -> ir.ModelClass:
    return next(c for m in model.modules for c in m.classes if c.name == name)


def _fields(model: ir.Model, name: str) -> dict[str, ir.Field]:
    return {f.name: f for f in _class(model, name).fields}


def test_choice_elements_become_one_field_per_type_and_a_group(model: ir.Model) -> None:
    fields = _fields(model, "Widget")
    assert fields["size_quantity"].json_name == "sizeQuantity"
    assert fields["size_string"].annotation == "FhirString"
    (group,) = _class(model, "Widget").choice_groups
    assert group.fhir_path == "Widget.size[x]" and group.required
    assert group.alternatives == (("size_quantity",), ("size_string", "size_string_ext"))
    assert not fields["size_quantity"].required  # the group carries "required"


def test_primitives_get_an_extension_sibling(model: ir.Model) -> None:
    fields = _fields(model, "Widget")
    assert fields["made_on_ext"].json_name == "_madeOn"
    assert fields["made_on_ext"].annotation == "Element"
    tag = _fields(model, "WidgetPart")["tag_ext"]
    assert tag.is_list and tag.annotation == "Element | None"  # nulls keep arrays aligned


def test_backbone_elements_become_classes_and_content_references_reuse_them(
    model: ir.Model,
) -> None:
    part = _class(model, "WidgetPart")
    assert part.base == "BackboneElement" and part.fhir_path == "Widget.part"
    fields = {f.name: f for f in part.fields}
    assert set(fields) == {"name", "name_ext", "tag", "tag_ext", "sub"}  # id etc. inherited
    assert fields["name"].required
    assert fields["sub"].annotation == "WidgetPart" and fields["sub"].is_list


def test_required_bindings_become_literals_of_the_expanded_codes(model: ir.Model) -> None:
    assert _fields(model, "Widget")["status"].annotation == 'Literal["new", "used", "worn"]'


def test_keywords_get_a_trailing_underscore(model: ir.Model) -> None:
    fields = _fields(model, "Widget")
    assert fields["class_"].json_name == "class"
    assert fields["class_ext"].json_name == "_class"


def test_resource_ids_are_fhir_ids_and_resource_elements_are_polymorphic(model: ir.Model) -> None:
    assert _fields(model, "Resource")["id"].annotation == "FhirId"
    assert _fields(model, "Widget")["contained"].annotation == "AnyResource"


def test_modules_name_their_lazy_dependencies(model: ir.Model) -> None:
    widget = next(m for m in model.modules if m.name == "widget")
    assert widget.base_imports == (
        ("backboneelement", "BackboneElement"),
        ("resource", "AnyResource"),
        ("resource", "Resource"),
    )
    assert widget.dependencies == ("Element", "Quantity")


def test_names() -> None:
    assert attribute_name("valueBase64Binary") == "value_base64_binary"
    assert attribute_name("import") == "import_"
    assert attribute_name("copy") == "copy_"  # would shadow BaseModel.copy
    assert class_name("Claim.item.detail.subDetail") == "ClaimItemDetailSubDetail"


def test_rendered_module_matches_the_golden_file(model: ir.Model) -> None:
    files = render_model(model)
    rendered = files["src/pymedplum/fhir/widget.py"]
    golden = GOLDEN / "widget.py.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text()
    compile(rendered, "widget.py", "exec")
