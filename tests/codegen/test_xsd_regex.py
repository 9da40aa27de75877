"""The spec's XML Schema regular expressions, translated for pydantic-core's engine."""

from __future__ import annotations

import pytest
from pydantic_core import SchemaValidator, ValidationError, core_schema

from codegen.models import DefinitionError, _anchored, _zoneless_pattern
from codegen.xsd_regex import RegexError, translate


def _matches(xsd_pattern: str, text: str) -> bool:
    validator = SchemaValidator(core_schema.str_schema(pattern=_anchored(xsd_pattern)))
    try:
        validator.validate_python(text)
    except ValidationError:
        return False
    return True


STRING = r"[ \r\n\t\S]+"
CODE = r"[^\s]+(\s[^\s]+)*"
URI = r"\S*"


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (STRING, "van\u00a0Dijk"),  # no-break space: \S in XML Schema
        (STRING, "\u2009\u3000\u2028"),  # other Unicode spaces too
        (STRING, "tab\tand\r\nnewlines"),
        (STRING, "emoji \U0001f600"),
        (CODE, "a\u00a0b"),
        (CODE, "\u00a0"),
        (CODE, "a b"),
        (CODE, "a\tb"),  # \s between the parts: the four XML Schema spaces
        (URI, "urn:a\u00a0b"),
        (URI, ""),
    ],
)
def test_what_xml_schema_matches_is_matched(pattern: str, text: str) -> None:
    assert _matches(pattern, text)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (STRING, "a\u000bb"),  # control characters are not XML characters
        (STRING, "a\u0000b"),
        (STRING, "a\ufffeb"),
        (CODE, "a  b"),
        (CODE, " a"),
        (CODE, "a\u0001"),
        (URI, "a b"),
        (URI, "a\nb"),
        (URI, "\u0007"),
    ],
)
def test_what_xml_schema_refuses_is_refused(pattern: str, text: str) -> None:
    assert not _matches(pattern, text)


def test_patterns_without_xml_schema_escapes_are_unchanged() -> None:
    for pattern in (r"[A-Za-z0-9\-\.]{1,64}", r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+", "true|false"):
        assert translate(pattern) == pattern


def test_a_dot_is_any_xml_character_but_a_line_end() -> None:
    assert _matches("a.c", "a\u00a0c") and _matches("a.c", "a\tc")
    assert not _matches("a.c", "a\nc") and not _matches("a.c", "a\u0001c")


@pytest.mark.parametrize("pattern", [r"\i\c*", r"\w+", r"\p{L}", r"[a-z-[aeiou]]", r"[^\S]", "[ab"])
def test_constructs_it_cannot_translate_are_refused(pattern: str) -> None:
    with pytest.raises(RegexError):
        translate(pattern)
    with pytest.raises(DefinitionError):
        _anchored(pattern)


def test_the_zoneless_form_makes_only_the_time_zone_optional() -> None:
    date_time = (
        r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]"
        r"|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)"
        r"((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
    )
    zoneless = _zoneless_pattern("dateTime", date_time)
    assert zoneless is not None
    validator = SchemaValidator(core_schema.str_schema(pattern=zoneless))
    for text in ("2020-01-02T10:00:00", "2020-01-02T10:00:00.5", "2020-01-02T10:00:00Z", "2020"):
        validator.validate_python(text)
    for text in ("2020-01-02T10", "2020-01-02T10:00", "2020-01-02Z"):
        with pytest.raises(ValidationError):
            validator.validate_python(text)
    with pytest.raises(DefinitionError, match="time zone"):
        _zoneless_pattern("dateTime", "[0-9]{4}")
