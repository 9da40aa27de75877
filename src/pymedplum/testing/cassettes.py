"""vcrpy cassettes of Medplum traffic without tokens, secrets or PHI.

`medplum_vcr()` is a ``vcr.VCR`` whose filters rewrite every exchange before it is written
(and every request before it is matched, so a scrubbed cassette still replays):

- **Credentials.** The ``Authorization``, ``Proxy-Authorization`` and ``Cookie`` request
  headers and the ``Set-Cookie`` response header are replaced; in OAuth form bodies
  ``client_secret``, ``client_assertion``, ``subject_token``, ``refresh_token``, ``code``,
  ``code_verifier`` and ``password``; in JSON ``access_token``, ``id_token``,
  ``refresh_token``, ``client_secret``, ``secret``, ``retiringSecret``, ``passwordHash`` and
  ``password``; and any string that is a JWT (a subscription binding token, ...).
- **PHI** in JSON request and response bodies (resources, Bundles, NDJSON lines, JSON Patch
  values), at any depth: ``name`` (HumanName text, family, given, prefix, suffix),
  ``birthDate`` (``1900-01-01`` at the same precision, so it stays a valid date),
  ``identifier`` values, ``address`` (text, line, city, district, state, postal code,
  country), ``telecom`` values, ``firstName``/``lastName``/``email`` (User and invite bodies),
  a Reference's ``display``, narrative ``text.div`` and OperationOutcome ``diagnostics``
  (which can quote a submitted value).
- **Query strings**, of the request and of URLs inside bodies (``next`` links): search
  parameters that name a person (``name``, ``family``, ``given``, ``birthdate``,
  ``identifier``, ``address*``, ``telecom``, ``phone``, ``email``, ``phonetic``, chained
  forms like ``subject:Patient.name``), ``_filter``/``_content``/``_text``, and URL
  credentials (``access_token``, ``token``, signatures of presigned URLs).

What stays: resource ids and paths (the cassette must replay, and ids are random server
ids), codes, dates other than birth dates, free text elsewhere (notes, ``valueString``),
GraphQL query text. Record against data made for the test where that matters.

Compressed bodies are decompressed before recording so nothing escapes the scrubbing. Replay
against the base URL the cassette was recorded with.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pymedplum import _json

__all__ = [
    "REDACTED",
    "medplum_vcr",
    "scrub_body",
    "scrub_json",
    "scrub_query",
    "scrub_request",
    "scrub_response",
    "scrub_url",
]

#: What a scrubbed value becomes.
REDACTED = "REDACTED"

_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SECRET_RESPONSE_HEADERS = frozenset({"set-cookie"})
_SECRET_FORM_FIELDS = frozenset(
    {
        "client_secret",
        "client_assertion",
        "subject_token",
        "refresh_token",
        "code",
        "code_verifier",
        "password",
        "assertion",
    }
)
_SECRET_JSON_KEYS = frozenset(
    {
        "access_token",
        "id_token",
        "refresh_token",
        "client_secret",
        "secret",
        "retiringSecret",
        "passwordHash",
        "password",
    }
)
# Search parameters that name or locate a person (the last part of a chain, modifiers off).
_PHI_SEARCH_PARAMS = frozenset(
    {
        "name",
        "family",
        "given",
        "phonetic",
        "birthdate",
        "death-date",
        "identifier",
        "address",
        "address-city",
        "address-country",
        "address-postalcode",
        "address-state",
        "telecom",
        "phone",
        "email",
        "_filter",
        "_content",
        "_text",
    }
)
_URL_CREDENTIALS = frozenset(
    {
        "access_token",
        "token",
        "signature",
        "key-pair-id",
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
_HUMAN_NAME_TEXT = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_TEXT = ("text", "line", "city", "district", "state", "postalCode", "country")
_PERSON_TEXT_KEYS = frozenset({"firstName", "lastName", "email"})
_JWT = re.compile(r"\A[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\Z")
_PLACEHOLDER_DATE = "1900-01-01"
_REDACTED_DIV = '<div xmlns="http://www.w3.org/1999/xhtml">REDACTED</div>'


# ---------------------------------------------------------------- values


def _redact_strings(value: Any) -> Any:
    """Every string in `value` (a string or a list of them) replaced."""
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, list):
        return [_redact_strings(v) for v in value]
    return value


def _scrub_fields(value: Any, fields: Iterable[str]) -> Any:
    """A datatype (or a list of them) with `fields` redacted."""
    if isinstance(value, list):
        return [_scrub_fields(v, fields) for v in value]
    if isinstance(value, dict):
        out = scrub_json(value)
        for name in fields:
            if name in out:
                out[name] = _redact_strings(out[name])
        return out
    return value


def _placeholder_date(value: Any) -> Any:
    return _PLACEHOLDER_DATE[: len(value)] if isinstance(value, str) and value else value


def _scrub_key(key: str, value: Any, parent: dict[str, Any]) -> Any:
    if key in _SECRET_JSON_KEYS:
        return _redact_strings(value)
    if key == "name" and not isinstance(value, str):
        return _scrub_fields(value, _HUMAN_NAME_TEXT)  # HumanName (a str is an org's name)
    if key == "birthDate":
        return _placeholder_date(value)
    if key in ("identifier", "telecom"):
        return _scrub_fields(value, ("value",))
    if key == "address" and not isinstance(value, str):
        return _scrub_fields(value, _ADDRESS_TEXT)
    if key in _PERSON_TEXT_KEYS or key == "diagnostics":
        return _redact_strings(value)
    if key == "display" and ("reference" in parent or "identifier" in parent):
        return _redact_strings(value)  # a Reference's display names who it points at
    if key == "div" and isinstance(value, str):
        return _REDACTED_DIV
    return scrub_json(value)


def scrub_json(value: Any) -> Any:
    """A copy of a JSON value with credentials and PHI replaced (see the module docs)."""
    if isinstance(value, dict):
        if _is_patch_operation(value):
            return _scrub_patch(value)
        return {k: _scrub_key(k, v, value) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v) for v in value]
    if isinstance(value, str):
        if _JWT.match(value):
            return REDACTED
        if "?" in value and value.startswith(("http://", "https://", "ws://", "wss://")):
            return scrub_url(value)
    return value


def _is_patch_operation(value: dict[str, Any]) -> bool:
    return isinstance(value.get("op"), str) and isinstance(value.get("path"), str)


def _scrub_patch(operation: dict[str, Any]) -> dict[str, Any]:
    """A JSON Patch operation: its value scrubbed as the element its path names."""
    out = dict(operation)
    if "value" not in out:
        return out
    segments = [s for s in str(out["path"]).split("/") if s and not s.isdigit() and s != "-"]
    value = out["value"]
    if segments:
        last = segments[-1]
        holder = {last: value}
        scrubbed = _scrub_key(last, value, holder)
        # A string inside a scrubbed element (/name/0/family) is redacted as its element is.
        if scrubbed == value and isinstance(value, str | list) and _names_phi(segments):
            scrubbed = _redact_strings(value)
        out["value"] = scrubbed
    else:
        out["value"] = scrub_json(value)
    return out


def _names_phi(segments: list[str]) -> bool:
    phi = {"name", "identifier", "address", "telecom", "birthDate", "text"}
    return any(s in phi or s in _PERSON_TEXT_KEYS for s in segments)


# ---------------------------------------------------------------- query strings and URLs


def _phi_param(name: str) -> bool:
    base = name.split(":", 1)[0] if not name.startswith("_") else name
    last = name.rsplit(".", 1)[-1].split(":", 1)[0]  # subject:Patient.name -> name
    return base in _PHI_SEARCH_PARAMS or last in _PHI_SEARCH_PARAMS


def scrub_query(query: str) -> str:
    """A query string with the values of person-naming search parameters and of URL
    credentials replaced (the parameters themselves and their order kept)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    changed = False
    out: list[tuple[str, str]] = []
    for name, value in pairs:
        if value and (_phi_param(name) or name.lower() in _URL_CREDENTIALS):
            value, changed = REDACTED, True
        out.append((name, value))
    return urlencode(out, safe=",:|$") if changed else query


def scrub_url(url: str) -> str:
    """A URL with its query scrubbed (`scrub_query`)."""
    parts = urlsplit(url)
    query = scrub_query(parts.query)
    return url if query == parts.query else urlunsplit(parts._replace(query=query))


# ---------------------------------------------------------------- bodies


def _scrub_form(body: str) -> str:
    pairs = parse_qsl(body, keep_blank_values=True)
    if not any(k in _SECRET_FORM_FIELDS for k, _ in pairs):
        return body
    return urlencode([(k, REDACTED if k in _SECRET_FORM_FIELDS else v) for k, v in pairs])


def scrub_body(body: bytes | str | None, content_type: str | None = None) -> Any:
    """A request or response body with credentials and PHI replaced: JSON (and NDJSON) is
    scrubbed element by element, a form body field by field; anything else is kept."""
    if not body:
        return body
    raw = body.encode("utf-8") if isinstance(body, str) else body
    media = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return body  # binary content
    if media == "application/x-www-form-urlencoded":
        scrubbed = _scrub_form(text)
    elif text.lstrip()[:1] in ("{", "["):
        try:
            scrubbed = _json.dumps(scrub_json(_json.loads(raw))).decode("utf-8")
        except ValueError:
            scrubbed = _scrub_ndjson(text)
    elif "=" in text and media in ("", "application/x-www-form-urlencoded"):
        scrubbed = _scrub_form(text)
    else:
        return body
    return scrubbed if isinstance(body, str) else scrubbed.encode("utf-8")


def _scrub_ndjson(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if not stripped:
            lines.append(line)
            continue
        ending = line[len(line.rstrip("\r\n")) :]
        try:
            lines.append(_json.dumps(scrub_json(_json.loads(stripped))).decode("utf-8") + ending)
        except ValueError:
            return REDACTED  # neither JSON nor NDJSON: keep nothing of it
    return "".join(lines)


# ---------------------------------------------------------------- vcrpy filters


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return None


def scrub_request(request: Any) -> Any:
    """vcrpy's ``before_record_request``: a scrubbed copy of the request (vcrpy also runs it
    on each request before matching it against the cassette, so scrubbed URLs still match)."""
    request = copy.deepcopy(request)
    for name in list(request.headers):
        if name.lower() in _SECRET_HEADERS:
            request.headers[name] = REDACTED
    request.uri = scrub_url(request.uri)
    request.body = scrub_body(request.body, _header(request.headers, "content-type"))
    return request


def scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    """vcrpy's ``before_record_response``: a scrubbed copy of the recorded response."""
    response = copy.deepcopy(response)
    headers: dict[str, Any] = response.get("headers") or {}
    for name in list(headers):
        if name.lower() in _SECRET_RESPONSE_HEADERS:
            del headers[name]
        elif name.lower() in ("location", "content-location"):
            headers[name] = [scrub_url(v) for v in headers[name]]
    body = response.get("body") or {}
    original = body.get("string")
    scrubbed = scrub_body(original, _header(headers, "content-type"))
    if scrubbed is not original:
        body["string"] = scrubbed
        for name in headers:
            if name.lower() == "content-length":
                size = len(scrubbed.encode("utf-8") if isinstance(scrubbed, str) else scrubbed)
                headers[name] = [str(size)]
    return response


def medplum_vcr(
    *,
    before_record_request: Callable[[Any], Any] | None = None,
    before_record_response: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    **vcr_options: Any,
) -> Any:
    """A ``vcr.VCR`` that records Medplum exchanges without tokens, secrets or PHI.

    Example:
        vcr = medplum_vcr(cassette_library_dir="tests/cassettes")
        with vcr.use_cassette("read_patient.yaml"):
            client.read_resource("Patient", patient_id)

    `vcr_options` go to ``vcr.VCR`` (``record_mode``, ``match_on``, ...). Your own
    ``before_record_request``/``before_record_response`` run after the scrubbing. Needs
    vcrpy (``pip install vcrpy``).
    """
    try:
        import vcr  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("medplum_vcr needs vcrpy: pip install vcrpy") from None

    def on_request(request: Any) -> Any:
        request = scrub_request(request)
        return before_record_request(request) if before_record_request else request

    def on_response(response: dict[str, Any]) -> dict[str, Any]:
        response = scrub_response(response)
        return before_record_response(response) if before_record_response else response

    vcr_options.setdefault("decode_compressed_response", True)
    return vcr.VCR(
        before_record_request=on_request, before_record_response=on_response, **vcr_options
    )
