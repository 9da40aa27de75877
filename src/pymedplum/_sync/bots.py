# Generated from src/pymedplum/_async/bots.py by codegen/unasync.py: run `make generate`.
"""Medplum Bots: CRUD, code, deployment and execution."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from pymedplum import _bots, _core, _operations
from pymedplum._convert import resource_to_dict
from pymedplum._core import Resource
from pymedplum._sync._base import ClientBase
from pymedplum.exceptions import PreconditionFailedError

M = TypeVar("M", bound=BaseModel)


class BotMethods(ClientBase):
    """Medplum Bots: CRUD, code, deployment and execution."""

    def create_bot(
        self,
        name: str,
        description: str | None = None,
        source_code: str | None = None,
        runtime_version: str | None = None,
        *,
        on_behalf_of: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Create a Bot; return it as stored.

        `runtime_version` (`"awslambda"` or `"vmcontext"`) is needed for the bot to be
        deployed and run. Other Bot elements go in `kwargs` by their FHIR names
        (`timeout=10`, `system=True`). Empty `description`/`source_code` are left out.

        Example:
            bot = client.create_bot("Intake", runtime_version="awslambda")
        """
        bot = _bots.bot_resource(name, description, source_code, runtime_version, kwargs)
        call = self._build_create(bot, None, None)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    @overload
    def read_bot(
        self, bot_id: str, as_fhir: None = None, *, on_behalf_of: str | None = None
    ) -> dict[str, Any]: ...
    @overload
    def read_bot(self, bot_id: str, as_fhir: type[M], *, on_behalf_of: str | None = None) -> M: ...
    def read_bot(
        self, bot_id: str, as_fhir: type[M] | None = None, *, on_behalf_of: str | None = None
    ) -> dict[str, Any] | M:
        """Read a Bot by id: a dict, or an `as_fhir` model (`pymedplum.fhir.Bot`)."""
        call = self._build_read("Bot", (_core._check_id(bot_id, "bot_id"),), None)
        return self._json(call, on_behalf_of, as_fhir)  # type: ignore[no-any-return]

    def update_bot(self, bot: Resource, *, on_behalf_of: str | None = None) -> dict[str, Any]:
        """Replace a Bot (it needs an id); guarded by If-Match when it has a `meta.versionId`.

        A stale version raises PreconditionFailedError.
        """
        body = resource_to_dict(bot)
        if body.get("resourceType") != "Bot":
            raise ValueError("update_bot: the resource is not a Bot")
        call = self._build_update(body, None, None, True)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def delete_bot(self, bot_id: str, *, on_behalf_of: str | None = None) -> None:
        """Delete a Bot."""
        self._send(self._build_delete("Bot", bot_id, None), on_behalf_of)

    def list_bots(self, *, on_behalf_of: str | None = None, **search_params: Any) -> dict[str, Any]:
        """Search Bots (`name="intake"`, `_count=100`); return the Bundle of one page."""
        call = self._build_search("Bot", search_params)
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def save_bot_code(
        self, bot_id: str, source_code: str, *, on_behalf_of: str | None = None
    ) -> dict[str, Any]:
        """Store source code in a Bot's `code`; return the Bot.

        Read, change and write back under If-Match, re-read once on a concurrent change
        (412); no write when the code is already the same.
        """
        if not isinstance(source_code, str):
            raise TypeError("save_bot_code: source_code must be a str")
        read = self._build_read("Bot", (_core._check_id(bot_id, "bot_id"),), None)
        for attempt in range(2):
            bot: dict[str, Any] = self._json(read, on_behalf_of)
            if bot.get("code") == source_code:
                return bot
            call = self._build_update({**bot, "code": source_code}, None, None, "required")
            try:
                return self._json(call, on_behalf_of)  # type: ignore[no-any-return]
            except PreconditionFailedError:
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def deploy_bot(
        self,
        bot_id: str,
        code: str,
        filename: str = "index.js",
        *,
        on_behalf_of: str | None = None,
    ) -> dict[str, Any]:
        """Deploy compiled JavaScript to a Bot (`$deploy`); return the server's outcome.

        Example:
            client.deploy_bot(bot["id"], open("dist/bot.js").read())
        """
        if not isinstance(code, str) or not isinstance(filename, str) or not filename:
            raise TypeError("deploy_bot: code and filename must be strings")
        call = _operations.build_operation(
            self,
            "Bot",
            "deploy",
            bot_id,
            {"code": code, "filename": filename},
            headers={"Content-Type": _bots.JSON_CONTENT_TYPE},
        )
        return self._json(call, on_behalf_of)  # type: ignore[no-any-return]

    def save_and_deploy_bot(
        self,
        bot_id: str,
        source_code: str,
        compiled_code: str,
        filename: str = "index.js",
        *,
        on_behalf_of: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Save the source (`save_bot_code`), then deploy the compiled code (`deploy_bot`).

        Returns (the Bot, the deploy answer). If the deploy fails, the saved source stays.
        """
        bot = self.save_bot_code(bot_id, source_code, on_behalf_of=on_behalf_of)
        deployed = self.deploy_bot(bot_id, compiled_code, filename, on_behalf_of=on_behalf_of)
        return bot, deployed

    def execute_bot(
        self,
        bot_id: str | None = None,
        input_data: Any = None,
        content_type: str = _bots.JSON_CONTENT_TYPE,
        *,
        identifier: str | Mapping[str, Any] | BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
        on_behalf_of: str | None = None,
    ) -> Any:
        """Run a Bot (`$execute`) by id, or by `identifier` (`"system|value"` or an Identifier).

        `input_data` is sent as `content_type`: JSON for `application/json` and
        `application/fhir+json`; str or bytes as they are for text types such as
        `text/plain` or HL7 v2 (`x-application/hl7-v2+er7`). Returns the bot's answer:
        parsed JSON when it answers JSON, else its text (None when empty). A run is never
        replayed after an ambiguous failure.

        Example:
            answer = client.execute_bot(bot["id"], {"resourceType": "Patient"})
            answer = client.execute_bot(
                identifier="https://example.com/bots|intake", input_data=hl7_text,
                content_type="x-application/hl7-v2+er7",
            )
        """
        call = _bots.build_execute(
            self.fhir_base_url, bot_id, identifier, input_data, content_type, headers
        )
        return self._send(call, on_behalf_of, decode=_bots.parse_answer)
