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
from .models import Entity, GeoJSONGeometry, GeoProperty, Property, Relationship, is_uri, validate_entity
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
    "NGSILDClient",
    "Response",
    "Backend",
    "Auth",
    "StaticToken",
    "OAuth2ClientCredentials",
    "RetryPolicy",
    "BatchResult",
    "EntityFailure",
    "AttributeUpdateResult",
    "AttributeNotUpdated",
    "parse_batch_response",
    "parse_attribute_update",
    "ProblemDetails",
    "ERROR_TYPE_PREFIX",
    "NGSILDError",
    "InvalidRequest",
    "BadRequestData",
    "AlreadyExists",
    "OperationNotSupported",
    "ResourceNotFound",
    "InternalError",
    "TooComplexQuery",
    "TooManyResults",
    "LdContextNotAvailable",
    "NoMultiTenantSupport",
    "NonExistingTenant",
    "MethodNotAllowed",
    "NotAcceptable",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unauthorized",
    "Forbidden",
    "TooManyRequests",
    "BrokerUnavailable",
    "InvalidResponse",
    "AuthenticationError",
    "error_class_for",
    "error_from_response",
    "Entity",
    "Property",
    "Relationship",
    "GeoProperty",
    "GeoJSONGeometry",
    "validate_entity",
    "is_uri",
]
