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
    from pymedplum._budget import (
        MemoryRateLimitBudget as MemoryRateLimitBudget,
    )
    from pymedplum._budget import (
        RateLimitBudget as RateLimitBudget,
    )
    from pymedplum._core import (
        UpdateResult as UpdateResult,
    )
    from pymedplum._fhirmodel import (
        FHIRValidationError as FHIRValidationError,
    )
    from pymedplum._json import (
        DecimalFloat as DecimalFloat,
    )
    from pymedplum._obo import (
        OnBehalfOfContext as OnBehalfOfContext,
    )
    from pymedplum._ratelimit import (
        RateLimitPolicy as RateLimitPolicy,
    )
    from pymedplum._ratelimit import (
        RateLimitStatus as RateLimitStatus,
    )
    from pymedplum._retry import (
        MAX_RETRY_DELAY_SECONDS as MAX_RETRY_DELAY_SECONDS,
    )
    from pymedplum._sync.client import (
        MedplumClient as MedplumClient,
    )
    from pymedplum._token_cache import (
        CachedToken as CachedToken,
    )
    from pymedplum._token_cache import (
        MemoryTokenCache as MemoryTokenCache,
    )
    from pymedplum._token_cache import (
        SharedTokenCache as SharedTokenCache,
    )
    from pymedplum._token_cache import (
        TokenCache as TokenCache,
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
        InvalidResponseError as InvalidResponseError,
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
        ResponseTooLargeError as ResponseTooLargeError,
    )
    from pymedplum.exceptions import (
        ResponseValidationError as ResponseValidationError,
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
    from pymedplum.extensions import (
        SERVICE_TYPE_REFERENCE_URL as SERVICE_TYPE_REFERENCE_URL,
    )
    from pymedplum.extensions import (
        get_extension as get_extension,
    )
    from pymedplum.extensions import (
        get_extension_value as get_extension_value,
    )
    from pymedplum.extensions import (
        get_extensions as get_extensions,
    )
    from pymedplum.extensions import (
        get_nested_value as get_nested_value,
    )
    from pymedplum.extensions import (
        read_service_type_references as read_service_type_references,
    )
    from pymedplum.extensions import (
        remove_extension as remove_extension,
    )
    from pymedplum.extensions import (
        service_type_reference_extension as service_type_reference_extension,
    )
    from pymedplum.extensions import (
        set_extension as set_extension,
    )
    from pymedplum.extensions import (
        upsert_extension as upsert_extension,
    )
    from pymedplum.helpers import (
        build_reference as build_reference,
    )
    from pymedplum.helpers import (
        coding_parts as coding_parts,
    )
    from pymedplum.helpers import (
        decode_jwt_exp as decode_jwt_exp,
    )
    from pymedplum.helpers import (
        extract_account_references as extract_account_references,
    )
    from pymedplum.helpers import (
        extract_identifier as extract_identifier,
    )
    from pymedplum.helpers import (
        get_code_by_system as get_code_by_system,
    )
    from pymedplum.helpers import (
        get_code_display as get_code_display,
    )
    from pymedplum.helpers import (
        get_patient_display_name as get_patient_display_name,
    )
    from pymedplum.helpers import (
        get_resource_accounts as get_resource_accounts,
    )
    from pymedplum.helpers import (
        parse_reference as parse_reference,
    )
    from pymedplum.helpers import (
        resolve_id as resolve_id,
    )
    from pymedplum.helpers import (
        resource_has_account as resource_has_account,
    )
    from pymedplum.helpers import (
        to_fhir_json as to_fhir_json,
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
    from pymedplum.parameters import (
        dict_to_parameters as dict_to_parameters,
    )
    from pymedplum.parameters import (
        get_parameter as get_parameter,
    )
    from pymedplum.parameters import (
        get_parameter_resource as get_parameter_resource,
    )
    from pymedplum.parameters import (
        parameters_to_dict as parameters_to_dict,
    )
    from pymedplum.project_membership import (
        MergeResult as MergeResult,
    )
    from pymedplum.project_membership import (
        build_merged_access as build_merged_access,
    )
    from pymedplum.project_membership import (
        get_project_membership_access_parameter as get_project_membership_access_parameter,
    )
    from pymedplum.project_membership import (
        get_project_membership_access_policy_id as get_project_membership_access_policy_id,
    )
    from pymedplum.project_membership import (
        make_project_membership_access as make_project_membership_access,
    )
    from pymedplum.project_membership import (
        merged_equals_remote as merged_equals_remote,
    )
    from pymedplum.project_membership import (
        normalize_access_entry as normalize_access_entry,
    )
    from pymedplum.project_membership import (
        normalize_access_policy_id as normalize_access_policy_id,
    )
    from pymedplum.project_membership import (
        normalize_access_policy_reference as normalize_access_policy_reference,
    )
    from pymedplum.project_membership import (
        partition_access as partition_access,
    )
    from pymedplum.project_membership import (
        validate_managed_access as validate_managed_access,
    )
    from pymedplum.subscriptions import (
        SubscriptionError as SubscriptionError,
    )
    from pymedplum.subscriptions import (
        SubscriptionEvent as SubscriptionEvent,
    )
    from pymedplum.types import (
        PatchOperation as PatchOperation,
    )
    from pymedplum.types import (
        SummaryMode as SummaryMode,
    )
    from pymedplum.types import (
        TotalMode as TotalMode,
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
    "InvalidResponseError",
    "MedplumError",
    "MissingVersionIdError",
    "NetworkError",
    "NotFoundError",
    "OperationOutcomeError",
    "PreconditionFailedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ServerError",
    "TokenRefreshCooldownError",
    "UnsafeRedirectError",
    "ValidationError",
)

# FHIR helpers and extension helpers (pymedplum.helpers, pymedplum.extensions).
_HELPERS = (
    "build_reference",
    "coding_parts",
    "decode_jwt_exp",
    "extract_account_references",
    "extract_identifier",
    "get_code_by_system",
    "get_code_display",
    "get_patient_display_name",
    "get_resource_accounts",
    "parse_reference",
    "resolve_id",
    "resource_has_account",
    "to_fhir_json",
)
_EXTENSIONS = (
    "SERVICE_TYPE_REFERENCE_URL",
    "get_extension",
    "get_extension_value",
    "get_extensions",
    "get_nested_value",
    "read_service_type_references",
    "remove_extension",
    "service_type_reference_extension",
    "set_extension",
    "upsert_extension",
)

# ProjectMembership.access helpers (pymedplum.project_membership).
_PROJECT_MEMBERSHIP = (
    "MergeResult",
    "build_merged_access",
    "get_project_membership_access_parameter",
    "get_project_membership_access_policy_id",
    "make_project_membership_access",
    "merged_equals_remote",
    "normalize_access_entry",
    "normalize_access_policy_id",
    "normalize_access_policy_reference",
    "partition_access",
    "validate_managed_access",
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
    "dict_to_parameters": "pymedplum.parameters",
    "get_parameter": "pymedplum.parameters",
    "get_parameter_resource": "pymedplum.parameters",
    "parameters_to_dict": "pymedplum.parameters",
    "RateLimitStatus": "pymedplum._ratelimit",
    "FHIRValidationError": "pymedplum._fhirmodel",
    "DecimalFloat": "pymedplum._json",
    "RateLimitPolicy": "pymedplum._ratelimit",
    "TokenCache": "pymedplum._token_cache",
    "CachedToken": "pymedplum._token_cache",
    "MemoryTokenCache": "pymedplum._token_cache",
    "SharedTokenCache": "pymedplum._token_cache",
    "RateLimitBudget": "pymedplum._budget",
    "MemoryRateLimitBudget": "pymedplum._budget",
    "PatchOperation": "pymedplum.types",
    "SummaryMode": "pymedplum.types",
    "TotalMode": "pymedplum.types",
    "SubscriptionError": "pymedplum.subscriptions",
    "SubscriptionEvent": "pymedplum.subscriptions",
    **dict.fromkeys(_EXCEPTIONS, "pymedplum.exceptions"),
    **dict.fromkeys(_PROJECT_MEMBERSHIP, "pymedplum.project_membership"),
    **dict.fromkeys(_HELPERS, "pymedplum.helpers"),
    **dict.fromkeys(_EXTENSIONS, "pymedplum.extensions"),
}

__all__ = sorted(_IMPORT_MAP)


def _import_lazily(name: str) -> Any:
    module = _IMPORT_MAP.get(name)
    if module is None:
        raise AttributeError(f"module 'pymedplum' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


if not TYPE_CHECKING:
    # The module __getattr__, hidden from type checkers: to them a misspelt name is an
    # error ("has no attribute"), not Any.
    __getattr__ = _import_lazily


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_IMPORT_MAP))
