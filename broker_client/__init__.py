"""stadtlink's async NGSI-LD client (aiohttp): the only code that speaks HTTP to a broker.

    async with NGSILDClient("http://orion:1026", context=CTX, tenant="town") as client:
        result = await client.upsert(entities)   # BatchResult(succeeded=[ids], failed=[EntityFailure])

See broker_client/README.md.
"""

from .auth import Auth, OAuth2ClientCredentials, StaticToken
from .backend import Backend
from .client import NGSILDClient, Response
from .errors import (
    ERROR_TYPE_PREFIX,
    AlreadyExists,
    AuthenticationError,
    BadRequestData,
    BrokerUnavailable,
    Forbidden,
    InternalError,
    InvalidRequest,
    InvalidResponse,
    LdContextNotAvailable,
    MethodNotAllowed,
    NGSILDError,
    NoMultiTenantSupport,
    NonExistingTenant,
    NotAcceptable,
    OperationNotSupported,
    PayloadTooLarge,
    ProblemDetails,
    ResourceNotFound,
    TooComplexQuery,
    TooManyRequests,
    TooManyResults,
    Unauthorized,
    UnsupportedMediaType,
    error_class_for,
    error_from_response,
)
from .models import (
    Entity,
    GeoJSONGeometry,
    GeoProperty,
    Property,
    Relationship,
    is_uri,
    validate_entity,
)
from .results import (
    AttributeNotUpdated,
    AttributeUpdateResult,
    BatchResult,
    EntityFailure,
    parse_attribute_update,
    parse_batch_response,
)
from .retry import RetryPolicy

__all__ = [
    "ERROR_TYPE_PREFIX",
    "AlreadyExists",
    "AttributeNotUpdated",
    "AttributeUpdateResult",
    "Auth",
    "AuthenticationError",
    "Backend",
    "BadRequestData",
    "BatchResult",
    "BrokerUnavailable",
    "Entity",
    "EntityFailure",
    "Forbidden",
    "GeoJSONGeometry",
    "GeoProperty",
    "InternalError",
    "InvalidRequest",
    "InvalidResponse",
    "LdContextNotAvailable",
    "MethodNotAllowed",
    "NGSILDClient",
    "NGSILDError",
    "NoMultiTenantSupport",
    "NonExistingTenant",
    "NotAcceptable",
    "OAuth2ClientCredentials",
    "OperationNotSupported",
    "PayloadTooLarge",
    "ProblemDetails",
    "Property",
    "Relationship",
    "ResourceNotFound",
    "Response",
    "RetryPolicy",
    "StaticToken",
    "TooComplexQuery",
    "TooManyRequests",
    "TooManyResults",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_class_for",
    "error_from_response",
    "is_uri",
    "parse_attribute_update",
    "parse_batch_response",
    "validate_entity",
]
