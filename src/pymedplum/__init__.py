"""pymedplum: a typed Python SDK for Medplum (FHIR R4).

    from pymedplum import MedplumClient, AsyncMedplumClient

Names are imported on first use (module `__getattr__`), so `import pymedplum` stays
cheap and never loads the generated models in `pymedplum.fhir`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymedplum._async.client import (
        AsyncMedplumClient as AsyncMedplumClient,
    )
    from pymedplum._core import (
        UpdateResult as UpdateResult,
    )
    from pymedplum._obo import (
        OnBehalfOfContext as OnBehalfOfContext,
    )
    from pymedplum._retry import (
        MAX_RETRY_DELAY_SECONDS as MAX_RETRY_DELAY_SECONDS,
    )
    from pymedplum._sync.client import (
        MedplumClient as MedplumClient,
    )
    from pymedplum.bundle import (
        BundleEntryResult as BundleEntryResult,
    )
    from pymedplum.bundle import (
        FHIRBundle as FHIRBundle,
    )
    from pymedplum.exceptions import (
        AuthenticationError as AuthenticationError,
    )
    from pymedplum.exceptions import (
        AuthorizationError as AuthorizationError,
    )
    from pymedplum.exceptions import (
        BadRequestError as BadRequestError,
    )
    from pymedplum.exceptions import (
        BundleEntryError as BundleEntryError,
    )
    from pymedplum.exceptions import (
        ConflictError as ConflictError,
    )
    from pymedplum.exceptions import (
        GoneError as GoneError,
    )
    from pymedplum.exceptions import (
        InsecureTransportError as InsecureTransportError,
    )
    from pymedplum.exceptions import (
        MedplumError as MedplumError,
    )
    from pymedplum.exceptions import (
        MissingVersionIdError as MissingVersionIdError,
    )
    from pymedplum.exceptions import (
        NetworkError as NetworkError,
    )
    from pymedplum.exceptions import (
        NotFoundError as NotFoundError,
    )
    from pymedplum.exceptions import (
        OperationOutcomeError as OperationOutcomeError,
    )
    from pymedplum.exceptions import (
        PreconditionFailedError as PreconditionFailedError,
    )
    from pymedplum.exceptions import (
        RateLimitError as RateLimitError,
    )
    from pymedplum.exceptions import (
        ServerError as ServerError,
    )
    from pymedplum.exceptions import (
        TokenRefreshCooldownError as TokenRefreshCooldownError,
    )
    from pymedplum.exceptions import (
        UnsafeRedirectError as UnsafeRedirectError,
    )
    from pymedplum.exceptions import (
        ValidationError as ValidationError,
    )
    from pymedplum.hooks import (
        PreparedRequest as PreparedRequest,
    )
    from pymedplum.hooks import (
        RequestAttempt as RequestAttempt,
    )
    from pymedplum.hooks import (
        RequestEvent as RequestEvent,
    )

__version__ = "0.1.0"

_EXCEPTIONS = (
    "AuthenticationError",
    "AuthorizationError",
    "BadRequestError",
    "BundleEntryError",
    "ConflictError",
    "GoneError",
    "InsecureTransportError",
    "MedplumError",
    "MissingVersionIdError",
    "NetworkError",
    "NotFoundError",
    "OperationOutcomeError",
    "PreconditionFailedError",
    "RateLimitError",
    "ServerError",
    "TokenRefreshCooldownError",
    "UnsafeRedirectError",
    "ValidationError",
)

# Public name -> the module that defines it.
_IMPORT_MAP: dict[str, str] = {
    "AsyncMedplumClient": "pymedplum._async.client",
    "MedplumClient": "pymedplum._sync.client",
    "FHIRBundle": "pymedplum.bundle",
    "BundleEntryResult": "pymedplum.bundle",
    "UpdateResult": "pymedplum._core",
    "OnBehalfOfContext": "pymedplum._obo",
    "MAX_RETRY_DELAY_SECONDS": "pymedplum._retry",
    "PreparedRequest": "pymedplum.hooks",
    "RequestAttempt": "pymedplum.hooks",
    "RequestEvent": "pymedplum.hooks",
    **dict.fromkeys(_EXCEPTIONS, "pymedplum.exceptions"),
}

__all__ = sorted(_IMPORT_MAP)


def __getattr__(name: str) -> Any:
    module = _IMPORT_MAP.get(name)
    if module is None:
        raise AttributeError(f"module 'pymedplum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_IMPORT_MAP))
