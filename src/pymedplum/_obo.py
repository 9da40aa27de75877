"""On-behalf-of: which ProjectMembership a request acts as, resolved in a fixed order.

1. the per-call `on_behalf_of=` kwarg (an empty string clears everything for that call);
2. the ambient value set by `client.on_behalf_of(...)` (a per-client ContextVar);
3. the client's `default_on_behalf_of`;
4. none: no `X-Medplum-On-Behalf-Of` header.

Every way of naming the acting membership accepts the same forms (`membership_reference`),
and a value Medplum would misread is refused before anything is sent. Admin calls
(`admin_on_behalf_of`) ignore the ambient value and the default: they act as the client.
"""

from __future__ import annotations

import contextvars
import re
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

__all__ = [
    "OBO_HEADER",
    "PROFILE_TYPES",
    "OnBehalfOf",
    "OnBehalfOfContext",
    "admin_on_behalf_of",
    "is_admin_path",
    "membership_reference",
]

OBO_HEADER = "X-Medplum-On-Behalf-Of"

#: Resource types a ProjectMembership's `profile` can reference. Medplum reads any header
#: value not starting with `ProjectMembership/` as such a profile reference.
PROFILE_TYPES = frozenset({"Bot", "ClientApplication", "Patient", "Practitioner", "RelatedPerson"})
MEMBERSHIP = "ProjectMembership"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ACCEPTED = (
    "a ProjectMembership id, 'ProjectMembership/<id>', a ProjectMembership resource, or the "
    "membership's profile ('Practitioner/<id>', or Patient, RelatedPerson, Bot, "
    "ClientApplication)"
)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 70 else value[:67] + "...")


def _is_id(value: str) -> bool:
    return _FHIR_ID.fullmatch(value) is not None and value not in (".", "..")


def _from_string(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty: pass {_ACCEPTED}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must not contain line breaks")
    if "/" not in value:
        if _is_id(value):
            # Medplum reads a bare value as a profile reference, finds none, and answers 403.
            return f"{MEMBERSHIP}/{value}"
        raise ValueError(f"{what}: {_shown(value)} is not a valid id; expected {_ACCEPTED}")
    resource_type, _, resource_id = value.partition("/")
    if resource_type != MEMBERSHIP and resource_type not in PROFILE_TYPES:
        raise ValueError(
            f"{what}: {_shown(value)} names neither a ProjectMembership nor a membership "
            f"profile; expected {_ACCEPTED}"
        )
    if not _is_id(resource_id):
        raise ValueError(f"{what}: {_shown(value)} has no valid id; expected {_ACCEPTED}")
    return value


def membership_reference(
    membership: str | Mapping[str, Any] | BaseModel, what: str = "on_behalf_of"
) -> str:
    """The `X-Medplum-On-Behalf-Of` value for one way of naming the acting membership.

    - `"abc"` (a bare ProjectMembership id) -> `"ProjectMembership/abc"`;
    - `"ProjectMembership/abc"` -> itself;
    - a profile reference (`"Practitioner/xyz"`; also Patient, RelatedPerson, Bot and
      ClientApplication) -> itself: Medplum finds the project's membership with that profile;
    - a ProjectMembership resource (a dict or a model) with an id -> `"ProjectMembership/<id>"`;
    - a Reference (a dict or a model with `reference`) -> its reference, by the rules above.

    Raises ValueError for an empty or malformed value (naming `what`), TypeError for
    anything that is not a str, a dict or a model.

    >>> membership_reference("7b65b01b")
    'ProjectMembership/7b65b01b'
    """
    if isinstance(membership, str):
        return _from_string(membership, what)
    if isinstance(membership, BaseModel):
        data: Mapping[str, Any] = membership.model_dump(by_alias=True, exclude_none=True)
        resource_type = data.get("resourceType") or type(membership).__name__
    elif isinstance(membership, Mapping):
        data = membership
        resource_type = data.get("resourceType")
    else:
        raise TypeError(f"{what} expects {_ACCEPTED}, got {type(membership).__name__}")
    if resource_type is None or resource_type == "Reference":
        reference = data.get("reference")
        if isinstance(reference, str):
            return _from_string(reference, f"{what} (a Reference)")
        raise ValueError(f"{what}: a dict without resourceType or reference; expected {_ACCEPTED}")
    if resource_type != MEMBERSHIP:
        raise ValueError(
            f"{what}: a {resource_type} resource is not a ProjectMembership; pass "
            f"'{resource_type}/<id>' to act as the membership whose profile it is"
        )
    resource_id = data.get("id")
    if not isinstance(resource_id, str) or not _is_id(resource_id):
        raise ValueError(f"{what}: the ProjectMembership has no valid id (read it from the server)")
    return f"{MEMBERSHIP}/{resource_id}"


def admin_on_behalf_of(on_behalf_of: str | None) -> str:
    """The per-call value of an admin call: what the caller passed, else "" (the client itself).

    Admin work (ProjectMembership access, invitations, `$set-accounts`, `$expunge`, the
    `admin/` API) needs the client's own admin rights: Medplum answers 403 to it on behalf
    of a restricted member, so the ambient value and the default never apply.
    """
    return "" if on_behalf_of is None else on_behalf_of


def is_admin_path(base_url: str, path: str) -> bool:
    """Whether a low-level `get`/`post`/`put`/`delete` path is Medplum's `admin/` API."""
    if "://" in path:
        base_path = urlsplit(base_url).path
        url_path = urlsplit(path).path
        if not url_path.startswith(base_path):
            return False
        path = url_path[len(base_path) :]
    return path.lstrip("/").startswith("admin/")


class OnBehalfOf:
    """One client's OBO state: its default and its own ContextVar.

    The ContextVar's name carries a fresh UUID, so two clients (even one created after
    another was collected, at the same address) never share ambient state. It holds ""
    inside a `client.on_behalf_of(None)` block: "act as the client itself".
    """

    __slots__ = ("_var", "default")

    def __init__(self, default: str | Mapping[str, Any] | BaseModel | None) -> None:
        self.default = (
            None if default is None else membership_reference(default, "default_on_behalf_of")
        )
        self._var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"pymedplum_on_behalf_of_{uuid.uuid4().hex}", default=None
        )

    @property
    def var(self) -> contextvars.ContextVar[str | None]:
        """The ContextVar holding this client's ambient membership."""
        return self._var

    def resolve(self, explicit: str | Mapping[str, Any] | BaseModel | None) -> str | None:
        """The membership to send, or None for no header."""
        if explicit is not None:
            # "" is the documented per-call clear; any other value follows the common rules.
            return None if explicit == "" else membership_reference(explicit)
        ambient = self._var.get()
        if ambient is not None:
            return ambient or None
        return self.default

    def scope(self, membership: str | Mapping[str, Any] | BaseModel | None) -> OnBehalfOfContext:
        """A context manager making `membership` the ambient value inside its block.

        None acts as the client itself inside the block (no header, default ignored).
        """
        if membership is None:
            return OnBehalfOfContext(self._var, "")
        if membership == "":
            raise ValueError(
                "on_behalf_of() must not be empty: pass a membership, or None to act as the "
                "client itself inside the block"
            )
        return OnBehalfOfContext(self._var, membership_reference(membership, "on_behalf_of()"))


class OnBehalfOfContext:
    """Sets a client's ambient on-behalf-of membership for a `with` or `async with` block.

    Leaving the block restores the previous value. `membership` is the header value sent
    inside the block ("" for `client.on_behalf_of(None)`: none, the default ignored).
    """

    __slots__ = ("_var", "membership", "_token")

    def __init__(self, var: contextvars.ContextVar[str | None], membership: str) -> None:
        self._var = var
        self.membership = membership
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> OnBehalfOfContext:
        if self._token is not None:
            raise RuntimeError("this on_behalf_of context is already active; make a new one")
        self._token = self._var.set(self.membership)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            self._var.reset(token)

    async def __aenter__(self) -> OnBehalfOfContext:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return "<OnBehalfOfContext>"
