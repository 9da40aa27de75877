"""Medplum Bots without I/O: the Bot resource, `$deploy` and `$execute` requests, answers.

`$execute` takes the bot's input in the content type the bot expects (Medplum's
`executeBot`): JSON for `application/json` and `application/fhir+json` (and any
`+json` type), the text as it is for `text/plain`, HL7 v2 (`x-application/hl7-v2+er7`),
XML and other text types, and form fields for `application/x-www-form-urlencoded`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel

from pymedplum import _core, _json
from pymedplum._convert import resource_to_dict
from pymedplum._core import Call, _merge_headers

__all__ = [
    "JSON_CONTENT_TYPE",
    "bot_resource",
    "identifier_token",
    "encode_input",
    "build_execute",
    "parse_answer",
]

JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# A bot answers in whatever content type it chooses (as @medplum/core's default Accept).
ANY_ANSWER = "application/fhir+json, */*;q=0.1"
_RESERVED = frozenset({"resourceType", "id"})


def bot_resource(
    name: str,
    description: str | None,
    source_code: str | None,
    runtime_version: str | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """A new Bot resource; `extra` adds other Bot elements by their FHIR (camelCase) names."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("create_bot: name must be a non-empty string")
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"create_bot: {', '.join(sorted(clash))} cannot be set")
    bot: dict[str, Any] = {"resourceType": "Bot", "name": name}
    # Empty strings are invalid FHIR values: an omitted description is left out.
    if description:
        bot["description"] = description
    if source_code:
        bot["code"] = source_code
    if runtime_version:
        bot["runtimeVersion"] = runtime_version
    for key, value in extra.items():
        bot[key] = resource_to_dict(value) if isinstance(value, BaseModel) else value
    return bot


def identifier_token(identifier: str | Mapping[str, Any] | BaseModel) -> str:
    """`system|value` for `Bot/$execute?identifier=`, from a token or an Identifier."""
    if isinstance(identifier, str):
        token = identifier
    else:
        data = resource_to_dict(identifier)
        system, value = data.get("system"), data.get("value")
        if not isinstance(system, str) or not isinstance(value, str) or not system or not value:
            raise ValueError("execute_bot: an identifier needs a system and a value")
        token = f"{system}|{value}"
    system_part, bar, value_part = token.partition("|")
    if not bar or not system_part or not value_part:
        raise ValueError("execute_bot: identifier must be 'system|value'")
    return token


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or media.endswith("+json")


def encode_input(input_data: Any, content_type: str) -> bytes:
    """The request body of `$execute` for `input_data` sent as `content_type`."""
    if not isinstance(content_type, str) or "/" not in content_type:
        raise ValueError(f"content_type must be a media type, got {content_type!r}")
    if _is_json(content_type):
        if isinstance(input_data, BaseModel):
            input_data = resource_to_dict(input_data)
        return _json.dumps(input_data)
    if isinstance(input_data, bytes | bytearray):
        return bytes(input_data)
    try:
        if isinstance(input_data, str):
            return input_data.encode("utf-8")
        media = content_type.split(";", 1)[0].strip().lower()
        if media == FORM_CONTENT_TYPE and isinstance(input_data, Mapping):
            return urlencode(_core.query_pairs(input_data), doseq=False).encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"execute_bot: input_data holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}), "
            "which is not valid Unicode"
        ) from None
    raise TypeError(
        f"execute_bot: a {type(input_data).__name__} cannot be sent as {content_type}; "
        "pass str or bytes (or use a JSON content type)"
    )


def build_execute(
    fhir_base_url: str,
    bot_id: str | None,
    identifier: str | Mapping[str, Any] | BaseModel | None,
    input_data: Any,
    content_type: str,
    headers: Mapping[str, str] | None,
) -> Call:
    """The `$execute` call, by id (`Bot/{id}/$execute`) or identifier (`Bot/$execute?...`)."""
    if (bot_id is None) == (identifier is None):
        raise ValueError("execute_bot: give exactly one of bot_id and identifier")
    if bot_id is not None:
        url = f"{fhir_base_url}Bot/{_core._check_id(bot_id, 'bot_id')}/$execute"
    else:
        assert identifier is not None
        url = f"{fhir_base_url}Bot/$execute?" + _core.encode_query(
            [("identifier", identifier_token(identifier))]
        )
    body = encode_input(input_data, content_type)
    merged = _merge_headers(headers, Content_Type=content_type, Accept=ANY_ANSWER)
    # A bot run may act (send a message, write resources): never replayed.
    return Call("POST", url, merged, body, None, False)


def parse_answer(response: httpx.Response) -> Any:
    """A bot's answer: parsed JSON for a JSON content type, else the text; None when empty."""
    if not response.content:
        return None
    content_type = response.headers.get("content-type", "")
    if _is_json(content_type):
        return _json.loads(response.content)
    return response.text
