"""StructureDefinitions -> modules of model classes (the IR). Every FHIR rule the models
follow is decided here; the templates only lay the result out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codegen import ir, xsd_regex
from codegen.naming import attribute_name, class_name, module_name, upper_first
from codegen.valuesets import ValueSetExpander

JSON = dict[str, Any]

FHIR_TYPE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXTENSION = "http://hl7.org/fhir/StructureDefinition/regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."

# Elements of the polymorphic type code `Resource` are annotated `AnyResource` (defined in
# the generated resource.py with pymedplum._fhirmodel.PolymorphicResource): validated by
# resourceType into the right model.
POLYMORPHIC_RESOURCE = "AnyResource"

_INT32 = (-(2**31), 2**31 - 1)
_INTEGER_BOUNDS = {
    "integer": _INT32,
    "positiveInt": (1, _INT32[1]),
    "unsignedInt": (0, _INT32[1]),
    "integer64": (-(2**63), 2**63 - 1),
}
# Types whose values may also be given as Python date/datetime/time objects.
TEMPORAL_TYPES = frozenset({"date", "dateTime", "instant", "time"})
# The time zone at the end of the spec's dateTime and instant expressions.
_TIME_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
# The one relaxation of the spec the models apply by default (pymedplum.fhir.strict() turns
# it off): a dateTime with a time but no time zone, which Medplum stores verbatim and which
# Python's datetime.now().isoformat() writes. An instant keeps requiring its zone.
ZONELESS_UNLESS_STRICT = frozenset({"dateTime"})

_PYTHON_TYPES = {
    "boolean": "bool",
    "decimal": "Decimal",
    **{name: "int" for name in _INTEGER_BOUNDS},
}


class DefinitionError(Exception):
    """The definitions hold something the generator does not know how to model."""


def _anchored(xsd_pattern: str) -> str:
    """A spec regular expression (XML Schema, implicitly anchored) for pydantic-core."""
    try:
        return f"^(?:{xsd_regex.translate(xsd_pattern)})$"
    except xsd_regex.RegexError as error:
        raise DefinitionError(str(error)) from None


def _base_primitive(sd: JSON, primitive_types: list[str]) -> str | None:
    base = str(sd.get("baseDefinition", "")).rsplit("/", 1)[-1]
    return base if base in primitive_types else None


def _zoneless_pattern(fhir_type: str, xsd_pattern: str | None) -> str | None:
    """For the types whose time carries a required zone (dateTime, instant): the spec's
    expression with the zone made optional. It names the error of a zone-less value, and is
    what a dateTime accepts unless strict."""
    if fhir_type not in ("dateTime", "instant"):
        return None
    if xsd_pattern is None or xsd_pattern.count(_TIME_ZONE) != 1:
        raise DefinitionError(f"{fhir_type}: the time zone of its expression was not found")
    return _anchored(xsd_pattern.replace(_TIME_ZONE, _TIME_ZONE + "?"))


def primitive_alias(fhir_type: str) -> str:
    return f"Fhir{upper_first(fhir_type)}"


@dataclass
class _Context:
    """Per-module state collected while building its classes."""

    module: str
    primitives: set[str]
    referenced: set[str]


class ModelBuilder:
    def __init__(
        self, structure_definitions: dict[str, tuple[str, JSON]], expander: ValueSetExpander
    ):
        self._sds = structure_definitions
        self._expander = expander
        self.primitive_types = sorted(
            name
            for name, (_, sd) in structure_definitions.items()
            if sd.get("kind") == "primitive-type"
        ) + (["integer64"] if "integer64" not in structure_definitions else [])
        self.generated = {
            name: sd
            for name, (_, sd) in structure_definitions.items()
            if sd.get("kind") in ("complex-type", "resource")
            and sd.get("derivation") != "constraint"
            or name in _QUANTITY_PROFILES
        }
        self._module_of: dict[str, str] = {}

    # --- primitives -----------------------------------------------------------------

    def primitives(self) -> tuple[ir.Primitive, ...]:
        result = []
        for fhir_type in self.primitive_types:
            sd = self._sds.get(fhir_type, (None, {}))[1]
            value: JSON = next(
                (
                    e
                    for e in sd.get("snapshot", {}).get("element", [])
                    if e["path"] == f"{fhir_type}.value"
                ),
                {},
            )
            pattern = None
            for type_ in value.get("type", []):
                for ext in type_.get("extension", []):
                    if ext["url"] == REGEX_EXTENSION:
                        pattern = ext["valueString"]
            python_type = _PYTHON_TYPES.get(fhir_type, "str")
            minimum, maximum = _INTEGER_BOUNDS.get(fhir_type, (None, None))
            # Numbers and booleans are checked by JSON type, not by their text.
            if python_type != "str":
                pattern = None
            result.append(
                ir.Primitive(
                    name=primitive_alias(fhir_type),
                    fhir_type=fhir_type,
                    python_type=python_type,
                    base_type=_base_primitive(sd, self.primitive_types),
                    pattern=_anchored(pattern) if pattern else None,
                    temporal=fhir_type in TEMPORAL_TYPES,
                    zoneless_pattern=_zoneless_pattern(fhir_type, pattern),
                    zoneless_unless_strict=fhir_type in ZONELESS_UNLESS_STRICT,
                    max_length=value.get("maxLength"),
                    minimum=minimum,
                    maximum=maximum,
                    doc=_first_sentence(sd.get("description", f"FHIR {fhir_type}")),
                )
            )
        return tuple(result)

    # --- complex types and resources -------------------------------------------------

    def modules(self) -> tuple[ir.Module, ...]:
        for name in self.generated:
            self._module_of[name] = module_name(name)
        return tuple(self._module(name) for name in sorted(self.generated, key=module_name))

    def module_map(self) -> dict[str, str]:
        """Every public class -> its module (filled by modules())."""
        return dict(self._module_of)

    def _module(self, type_name: str) -> ir.Module:
        source, sd = self._sds[type_name]
        ctx = _Context(module=module_name(type_name), primitives=set(), referenced=set())
        elements = sd["snapshot"]["element"]
        children: dict[str, list[JSON]] = {}
        for element in elements[1:]:
            parent, _, _ = element["path"].rpartition(".")
            children.setdefault(parent, []).append(element)

        root_path = elements[0]["path"]
        base = _base_name(sd)
        classes = [self._root_class(type_name, sd, root_path, base, children, ctx)]
        for element in elements[1:]:
            if element["path"] in children and not element.get("contentReference"):
                classes.append(self._backbone_class(type_name, element, children, ctx))

        defined = {c.name for c in classes}
        base_imports: set[tuple[str, str]] = set()
        for cls in classes:
            if cls.base not in defined and cls.base != "FHIRModel":
                base_imports.add((module_name(cls.base), cls.base))
        real = defined | {name for _, name in base_imports}
        if POLYMORPHIC_RESOURCE in ctx.referenced:
            base_imports.add(("resource", POLYMORPHIC_RESOURCE))
            real.add(POLYMORPHIC_RESOURCE)
        dependencies = sorted(ctx.referenced - real)
        for dependency in dependencies:
            if dependency not in self.generated:
                raise DefinitionError(f"{type_name} refers to {dependency}, which is not generated")
        uses_choice = any(c.choice_groups for c in classes)
        for cls in classes:
            self._module_of[cls.name] = ctx.module
        return ir.Module(
            name=ctx.module,
            type_name=type_name,
            source=source,
            kind=sd["kind"],
            abstract=bool(sd.get("abstract")),
            classes=tuple(classes),
            base_imports=tuple(sorted(base_imports)),
            primitive_imports=tuple(sorted(ctx.primitives)),
            dependencies=tuple(dependencies),
            dependency_imports=tuple((module_name(d), d) for d in dependencies),
            uses_choice_check=uses_choice,
        )

    def _inherited(self, base: str) -> dict[str, JSON]:
        """The elements a base class already declares, by JSON name."""
        if base in ("FHIRModel",):
            return {}
        _, sd = self._sds[base]
        elements = sd["snapshot"]["element"]
        root = elements[0]["path"]
        return {
            e["path"].split(".", 1)[1]: e
            for e in elements[1:]
            if e["path"].count(".") == 1 and e["path"].startswith(root)
        }

    def _own_elements(self, elements: list[JSON], base: str, resource_root: bool) -> list[JSON]:
        """The elements a class declares itself: new ones, and inherited ones it redefines
        with another type or cardinality (Medplum's UserConfiguration.option.id is a
        required code, where Element.id is an optional string)."""
        inherited = self._inherited(base)

        def signature(element: JSON) -> tuple[Any, ...]:
            types = sorted(_type_code(t, element, resource_root) for t in element.get("type", []))
            return (types, element.get("min", 0), element.get("max"))

        return [
            e
            for e in elements
            if _json_base_name(e) not in inherited
            # A resource's own id is an id, however a definition labels it.
            or (not (resource_root and _json_base_name(e) == "id"))
            and signature(e) != signature(inherited[_json_base_name(e)])
        ]

    def _root_class(
        self,
        type_name: str,
        sd: JSON,
        root_path: str,
        base: str,
        children: dict[str, list[JSON]],
        ctx: _Context,
    ) -> ir.ModelClass:
        if type_name in _QUANTITY_PROFILES:
            fields: tuple[ir.Field, ...] = ()
            groups: tuple[ir.ChoiceGroup, ...] = ()
        else:
            resource_root = sd["kind"] == "resource"
            own = self._own_elements(children.get(root_path, []), base, resource_root)
            fields, groups = self._fields(type_name, own, ctx, resource_root=resource_root)
        concrete = sd["kind"] == "resource" and not sd.get("abstract")
        return ir.ModelClass(
            name=type_name,
            fhir_path=type_name,
            base=base,
            doc=_first_sentence(
                sd.get("description") or sd["snapshot"]["element"][0].get("short", type_name)
            ),
            fields=fields,
            choice_groups=groups,
            resource_type=type_name if concrete else None,
        )

    def _backbone_class(
        self, type_name: str, element: JSON, children: dict[str, list[JSON]], ctx: _Context
    ) -> ir.ModelClass:
        path = _fhir_path(type_name, element["path"])
        codes = [t["code"] for t in element.get("type", [])]
        base = "BackboneElement" if "BackboneElement" in codes else "Element"
        own = self._own_elements(children[element["path"]], base, resource_root=False)
        fields, groups = self._fields(type_name, own, ctx, resource_root=False)
        return ir.ModelClass(
            name=class_name(path),
            fhir_path=path,
            base=base,
            doc=_first_sentence(element.get("short") or element.get("definition", path)),
            fields=fields,
            choice_groups=groups,
            resource_type=None,
        )

    def _fields(
        self, type_name: str, elements: list[JSON], ctx: _Context, resource_root: bool
    ) -> tuple[tuple[ir.Field, ...], tuple[ir.ChoiceGroup, ...]]:
        fields: list[ir.Field] = []
        groups: list[ir.ChoiceGroup] = []
        for element in elements:
            if element.get("max") == "0":
                continue
            json_base = _json_base_name(element)
            fhir_path = _fhir_path(type_name, element["path"])
            is_list = element.get("max") != "1"
            required = element.get("min", 0) >= 1
            doc = _first_sentence(element.get("short") or element.get("definition", ""))
            if json_base.endswith("[x]"):
                stem = json_base[:-3]
                alternatives = []
                for type_ in element.get("type", []):
                    code = type_["code"]
                    json_name = stem + upper_first(code)
                    made = self._value_fields(
                        json_name, fhir_path, code, element, False, False, doc, ctx
                    )
                    fields.extend(made)
                    alternatives.append(tuple(f.name for f in made))
                groups.append(ir.ChoiceGroup(fhir_path, tuple(alternatives), required))
                continue
            if element.get("contentReference"):
                target = element["contentReference"].split("#", 1)[1]
                annotation = class_name(_fhir_path(type_name, target))
                ctx.referenced.add(annotation)
                fields.append(_field(json_base, fhir_path, annotation, required, is_list, doc))
                continue
            if element["path"] in self._children_paths(type_name):
                annotation = class_name(fhir_path)
                ctx.referenced.add(annotation)
                fields.append(_field(json_base, fhir_path, annotation, required, is_list, doc))
                continue
            codes = element.get("type", [])
            if len(codes) != 1:
                raise DefinitionError(f"{element['path']}: expected one type, found {len(codes)}")
            code = _type_code(codes[0], element, resource_root)
            fields.extend(
                self._value_fields(json_base, fhir_path, code, element, required, is_list, doc, ctx)
            )
        names = [f.name for f in fields]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise DefinitionError(f"{type_name}: attribute names collide: {sorted(duplicates)}")
        return tuple(fields), tuple(groups)

    def _children_paths(self, type_name: str) -> set[str]:
        cache = self.__dict__.setdefault("_children_cache", {})
        if type_name not in cache:
            elements = self._sds[type_name][1]["snapshot"]["element"]
            cache[type_name] = {e["path"].rpartition(".")[0] for e in elements[1:]}
        return cache[type_name]  # type: ignore[no-any-return]

    def _value_fields(
        self,
        json_name: str,
        fhir_path: str,
        code: str,
        element: JSON,
        required: bool,
        is_list: bool,
        doc: str,
        ctx: _Context,
    ) -> list[ir.Field]:
        """The field of one type code, plus its `_x` sibling when the type is primitive."""
        if code in self.primitive_types:
            annotation = self._code_literal(element) if code == "code" else None
            if annotation is None:
                annotation = primitive_alias(code)
                ctx.primitives.add(annotation)
            value = _field(json_name, fhir_path, annotation, required, is_list, doc)
            ctx.referenced.add("Element")
            sibling_type = "Element | None" if is_list else "Element"
            sibling = ir.Field(
                name=f"{value.name.rstrip('_')}_ext",
                json_name=f"_{json_name}",
                fhir_path=fhir_path,
                annotation=sibling_type,
                required=False,
                is_list=is_list,
                doc=f"Extensions and id of `{json_name}`.",
            )
            return [value, sibling]
        if code == "Resource":
            annotation = POLYMORPHIC_RESOURCE
        elif code in self.generated:
            annotation = code
        else:
            raise DefinitionError(f"{element['path']}: unknown type {code}")
        ctx.referenced.add(annotation)
        return [_field(json_name, fhir_path, annotation, required, is_list, doc)]

    def _code_literal(self, element: JSON) -> str | None:
        binding = element.get("binding") or {}
        if binding.get("strength") != "required" or "valueSet" not in binding:
            return None
        codes = self._expander.codes(binding["valueSet"])
        if codes is None:
            return None
        return "Literal[" + ", ".join(_quote(code) for code in codes) + "]"


# Constraint profiles of Quantity that appear as type codes (valueAge, valueDuration...).
_QUANTITY_PROFILES = frozenset(
    {"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}
)


def _field(
    json_name: str, fhir_path: str, annotation: str, required: bool, is_list: bool, doc: str
) -> ir.Field:
    return ir.Field(
        name=attribute_name(json_name),
        json_name=json_name,
        fhir_path=fhir_path,
        annotation=annotation,
        required=required,
        is_list=is_list,
        doc=doc,
    )


def _type_code(type_: JSON, element: JSON, resource_root: bool) -> str:
    code: str = type_["code"]
    if not code.startswith(SYSTEM_PREFIX):
        return code
    # FHIRPath system types mark element ids, Extension.url and Resource.id: the FHIR type
    # is in an extension. A resource's own id is an `id` (64 characters of [A-Za-z0-9-.]),
    # although R4's snapshots label it `string`.
    if resource_root and element["path"].count(".") == 1 and element["path"].endswith(".id"):
        return "id"
    for ext in type_.get("extension", []):
        if ext["url"] == FHIR_TYPE_EXTENSION:
            return str(ext["valueUrl"])
    raise DefinitionError(f"{element['path']}: system type {code} without a FHIR type")


def _base_name(sd: JSON) -> str:
    if sd.get("derivation") == "constraint":
        return str(sd["type"])
    base = sd.get("baseDefinition", "")
    name = base.rsplit("/", 1)[-1]
    return "FHIRModel" if name in ("", "Base") else name


def _json_base_name(element: JSON) -> str:
    return str(element["path"].rsplit(".", 1)[1])


def _fhir_path(type_name: str, path: str) -> str:
    """Element paths of a constraint start with the base type; ours with the type's name."""
    head, _, rest = path.partition(".")
    return f"{type_name}.{rest}" if rest else type_name


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for end in (". ", "; "):
        if end in text:
            text = text.split(end, 1)[0] + "."
            break
    if len(text) > 200:
        text = text[:197].rstrip() + "..."
    return text.replace("\\", "\\\\").replace('"', '\\"')
