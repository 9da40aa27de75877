"""The specification's regular expressions are XML Schema regular expressions; the models
check them with pydantic-core's engine (Rust `regex`, Unicode-aware). The two dialects read
some escapes differently, so each pattern is translated here, once, before it is generated.

What differs, and how it is translated:

- `\\s` is only space, tab, CR and LF in XML Schema; in Rust it is any Unicode space (a
  no-break space, U+2009...). It becomes `[ \\t\\n\\r]`.
- `\\S` is its complement. XML Schema matches XML characters only (no control characters
  other than tab, CR and LF, no U+FFFE/U+FFFF, no surrogates), so `\\S` becomes the XML
  characters other than those four spaces. A no-break space matches it, as FHIR intends.
- A negated class (`[^\\s]`) likewise matches XML characters only.
- `.` is any XML character but CR and LF.

Constructs that exist only in XML Schema (`\\i`, `\\c`, class subtraction) or whose meaning
differs in ways not handled here (`\\w`, `\\p{..}`) are refused, so that a new definitions
version cannot slip a misread pattern through.
"""

from __future__ import annotations

# XML 1.0 `Char`, and the four characters XML Schema calls spaces.
XML_CHAR = r"\t\n\r\x{20}-\x{D7FF}\x{E000}-\x{FFFD}\x{10000}-\x{10FFFF}"
XML_SPACE = r" \t\n\r"
XML_NON_SPACE = r"\x{21}-\x{D7FF}\x{E000}-\x{FFFD}\x{10000}-\x{10FFFF}"

# Escapes that mean the same single character (or the same digits) in both dialects.
_SAME_ESCAPES = frozenset("nrt\\|.-^?*+{}()[]d")
_REFUSED_ESCAPES = frozenset("iIcCwWpP")
_CLASS_ESCAPES = {"s": f"[{XML_SPACE}]", "S": f"[{XML_NON_SPACE}]"}


class RegexError(ValueError):
    """An XML Schema construct this translator does not handle."""


def translate(pattern: str) -> str:
    """An XML Schema regular expression as an unanchored Rust `regex` pattern."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escape = _escape_at(pattern, i)
            out.append(
                {"s": f"[{XML_SPACE}]", "S": f"[{XML_NON_SPACE}]"}.get(escape, "\\" + escape)
            )
            i += 2
        elif char == "[":
            text, i = _class_at(pattern, i)
            out.append(text)
        elif char == ".":
            out.append(rf"[{XML_CHAR}&&[^\n\r]]")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _escape_at(pattern: str, i: int) -> str:
    if i + 1 >= len(pattern):
        raise RegexError(f"{pattern!r}: trailing backslash")
    escape = pattern[i + 1]
    if escape in _REFUSED_ESCAPES or not (escape in _SAME_ESCAPES or escape in "sS"):
        raise RegexError(f"{pattern!r}: the escape \\{escape} is not translated")
    return escape


def _class_at(pattern: str, start: int) -> tuple[str, int]:
    """The character class starting at `start`, translated, and the index after it."""
    i = start + 1
    negated = pattern.startswith("^", i)
    if negated:
        i += 1
    members: list[str] = []
    while True:
        if i >= len(pattern):
            raise RegexError(f"{pattern!r}: unterminated character class")
        char = pattern[i]
        if char == "]":
            if not members:
                raise RegexError(f"{pattern!r}: empty character class")
            i += 1
            break
        if char == "\\":
            escape = _escape_at(pattern, i)
            if escape == "s":
                members.append(XML_SPACE)
            elif escape == "S":
                if negated:
                    raise RegexError(f"{pattern!r}: \\S in a negated class is not translated")
                members.append(XML_NON_SPACE)
            else:
                members.append("\\" + escape)
            i += 2
            continue
        if char == "[" or (char == "-" and pattern.startswith("[", i + 1)):
            raise RegexError(f"{pattern!r}: nested classes and subtraction are not translated")
        members.append(char)
        i += 1
    body = "".join(members)
    if negated and body == XML_SPACE:
        return f"[{XML_NON_SPACE}]", i
    if negated:
        # Any XML character not listed.
        return f"[[{XML_CHAR}]&&[^{body}]]", i
    return f"[{body}]", i
