"""`MedplumClientConfig`: client settings held in one object, for code that passes them around.

    config = MedplumClientConfig(client_id="...", client_secret="...")
    client = MedplumClient(**config.to_dict())

The secret and the access token are left out of `repr()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MedplumClientConfig"]


@dataclass
class MedplumClientConfig:
    """The common constructor arguments of `MedplumClient` and `AsyncMedplumClient`.

    Attributes:
        base_url: the Medplum server (a trailing `/` is added when missing).
        client_id: OAuth client id (with `client_secret`).
        client_secret: OAuth client secret (not in repr).
        access_token: a bearer token obtained elsewhere (not in repr).
        fhir_url_path: the FHIR base under `base_url`.
        project_id: the Medplum project, kept for callers that need it.
        before_request: hook run before every wire attempt.
        default_on_behalf_of: the membership every request acts as by default.
    """

    base_url: str = "https://api.medplum.com/"
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    fhir_url_path: str = "fhir/R4/"
    project_id: str | None = None
    before_request: Callable[..., Any] | None = None
    default_on_behalf_of: str | None = None

    def __post_init__(self) -> None:
        if not self.base_url.endswith("/"):
            self.base_url += "/"

    def to_dict(self) -> dict[str, Any]:
        """The settings as constructor keyword arguments: `MedplumClient(**config.to_dict())`."""
        return {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "access_token": self.access_token,
            "fhir_url_path": self.fhir_url_path,
            "project_id": self.project_id,
            "before_request": self.before_request,
            "default_on_behalf_of": self.default_on_behalf_of,
        }
