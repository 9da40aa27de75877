"""On-behalf-of: which ProjectMembership a request acts as, resolved in a fixed order.

1. the per-call `on_behalf_of=` kwarg (an empty string clears everything for that call);
2. the ambient value set by `client.on_behalf_of(...)` (a per-client ContextVar);
3. the client's `default_on_behalf_of`;
4. none: no `X-Medplum-On-Behalf-Of` header.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pydantic import BaseModel

__all__ = ["OBO_HEADER", "OnBehalfOf", "OnBehalfOfContext", "membership_reference"]

OBO_HEADER = "X-Medplum-On-Behalf-Of"


def membership_reference(membership: str | Mapping[str, Any] | BaseModel) -> str:
    """The header value for a membership: a string as given, a resource as `Type/id`."""
    if isinstance(membership, str):
        value = membership
    else:
        if isinstance(membership, BaseModel):
            data: Mapping[str, Any] = membership.model_dump(by_alias=True, exclude_none=True)
        elif isinstance(membership, Mapping):
            data = membership
        else:
            raise TypeError(
                "on_behalf_of expects a 'ProjectMembership/<id>' string or a "
                f"ProjectMembership resource, got {type(membership).__name__}"
            )
        resource_type = data.get("resourceType") or type(membership).__name__
        if resource_type != "ProjectMembership" or not data.get("id"):
            raise ValueError("on_behalf_of resource must be a ProjectMembership with an id")
        value = f"ProjectMembership/{data['id']}"
    if "\r" in value or "\n" in value:
        raise ValueError("on_behalf_of must not contain line breaks")
    return value


class OnBehalfOf:
    """One client's OBO state: its default and its own ContextVar.

    The ContextVar's name carries a fresh UUID, so two clients (even one created after
    another was collected, at the same address) never share ambient state.
    """

    __slots__ = ("_var", "default")

    def __init__(self, default: str | None) -> None:
        self.default = membership_reference(default) if default else None
        self._var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            f"pymedplum_on_behalf_of_{uuid.uuid4().hex}", default=None
        )

    @property
    def var(self) -> contextvars.ContextVar[str | None]:
        """The ContextVar holding this client's ambient membership."""
        return self._var

    def resolve(self, explicit: str | None) -> str | None:
        """The membership to send, or None for no header."""
        if explicit is not None:
            # Checked as the other two ways are: a header value never carries a line break.
            return membership_reference(explicit) if explicit else None
        ambient = self._var.get()
        if ambient is not None:
            return ambient or None
        return self.default

    def scope(self, membership: str | Mapping[str, Any] | BaseModel) -> OnBehalfOfContext:
        """A context manager making `membership` the ambient value inside its block."""
        value = "" if membership == "" else membership_reference(membership)
        return OnBehalfOfContext(self._var, value)


class OnBehalfOfContext:
    """Sets a client's ambient on-behalf-of membership for a `with` or `async with` block.

    Leaving the block restores the previous value. An empty string clears the ambient
    value and the client default inside the block.
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
