"""Typed NGSI-LD errors.

The class of an error is chosen from the ProblemDetails ``type`` URI first and the HTTP status
second -- never from ``title``/``detail``: Orion-LD words those differently per mode and per route.
Orion-LD's top-level error bodies carry no ``status`` member, so the HTTP status is taken from the
response line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

ERROR_TYPE_PREFIX = "https://uri.etsi.org/ngsi-ld/errors/"


@dataclass(frozen=True, slots=True)
class ProblemDetails:
    """An RFC 7807 problem as NGSI-LD brokers send it (``status`` and ``detail`` may be absent)."""

    type: str | None = None
    title: str | None = None
    detail: str | None = None
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def short_type(self) -> str | None:
        """``BadRequestData`` for ``https://uri.etsi.org/ngsi-ld/errors/BadRequestData``."""
        if self.type is None:
            return None
        if self.type.startswith(ERROR_TYPE_PREFIX):
            return self.type[len(ERROR_TYPE_PREFIX):]
        return self.type

    @classmethod
    def from_json(cls, data: Any, *, status: int | None = None) -> ProblemDetails:
        """Build from a decoded JSON object; tolerant of missing or mistyped members.

        ``status`` from the body wins when it is an int; otherwise the HTTP status given is used.
        """
        if not isinstance(data, dict):
            return cls(title="Unexpected error body", detail=_clip(repr(data)), status=status)
        body_status = data.get("status")
        if isinstance(body_status, bool) or not isinstance(body_status, int):
            body_status = None
        known = {"type", "title", "detail", "status"}
        return cls(
            type=_str_or_none(data.get("type")),
            title=_str_or_none(data.get("title")),
            detail=_str_or_none(data.get("detail")),
            status=body_status if body_status is not None else status,
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.type is not None:
            out["type"] = self.type
        if self.title is not None:
            out["title"] = self.title
        if self.detail is not None:
            out["detail"] = self.detail
        if self.status is not None:
            out["status"] = self.status
        out.update(self.extra)
        return out


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def is_retryable_status(status: int | None, type_: str | None = None) -> bool:
    """True for answers that may succeed if sent again later (5xx except 501, 408, 429).

    Without a status (per-entity errors whose ``status`` was absent) the type decides:
    LdContextNotAvailable (a context download that failed) and InternalError are transient.
    """
    if status is None:
        short = type_[len(ERROR_TYPE_PREFIX):] if type_ and type_.startswith(ERROR_TYPE_PREFIX) else type_
        return short in ("LdContextNotAvailable", "InternalError")
    if status in (408, 429):
        return True
    return status >= 500 and status != 501


class NGSILDError(Exception):
    """Base of every error the client raises. ``body`` is the decoded error body (or raw text).

    ``partial``: when a multi-chunk batch call raises part-way, the
    :class:`~stadtlink.broker_client.results.BatchResult` of the chunks already answered (else ``None``).
    """

    partial: Any = None

    def __init__(
        self,
        status: int | None = None,
        type: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.body = body
        parts = [p for p in (title, detail) if p]
        text = ": ".join(parts) if parts else self.__class__.__name__
        super().__init__(f"{status} {text}" if status is not None else text)

    @property
    def problem(self) -> ProblemDetails:
        return ProblemDetails(type=self.type, title=self.title, detail=self.detail, status=self.status)

    @property
    def retryable(self) -> bool:
        return is_retryable_status(self.status, self.type)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(status={self.status!r}, type={self.type!r}, "
            f"title={self.title!r}, detail={self.detail!r})"
        )


# --- one class per NGSI-LD ProblemDetails type --------------------------------------------------


class InvalidRequest(NGSILDError):
    """Malformed request (e.g. JSON parse error)."""


class BadRequestData(NGSILDError):
    """Well-formed request with invalid content (most validation errors)."""


class AlreadyExists(NGSILDError):
    pass


class OperationNotSupported(NGSILDError):
    """The broker does not implement the operation (Orion-LD 501, or legacy Orion-LD's
    404 "Service Not Found" for merge-patch / PUT on an entity)."""


class ResourceNotFound(NGSILDError):
    pass


class InternalError(NGSILDError):
    pass


class TooComplexQuery(NGSILDError):
    pass


class TooManyResults(NGSILDError):
    pass


class LdContextNotAvailable(NGSILDError):
    """The broker could not download the @context (Orion-LD: 503)."""


class NoMultiTenantSupport(NGSILDError):
    pass


class NonExistingTenant(NGSILDError):
    pass


# --- HTTP-level conditions without an NGSI-LD type of their own ----------------------------------


class MethodNotAllowed(NGSILDError):
    """405: known path, wrong verb (Orion-LD answers with an empty body and an Allow header)."""


class NotAcceptable(BadRequestData):
    """406: no acceptable response media type."""


class PayloadTooLarge(BadRequestData):
    """413: request body larger than the broker accepts (Orion-LD: 1 MiB by default)."""


class UnsupportedMediaType(BadRequestData):
    """415: Content-Type not accepted."""


class Unauthorized(NGSILDError):
    """401 (from a PEP proxy or an authenticating broker), after one token refresh."""


class Forbidden(NGSILDError):
    pass


class TooManyRequests(NGSILDError):
    """429 from a proxy or rate limiter."""


class BrokerUnavailable(NGSILDError):
    """No usable answer after all retries: connection refused/reset, timeout, 502/503/504."""


class InvalidResponse(NGSILDError):
    """The broker answered with a body the client cannot parse (e.g. malformed JSON)."""


class AuthenticationError(NGSILDError):
    """The token endpoint refused the credentials or could not be reached/parsed."""

    @property
    def retryable(self) -> bool:
        # No status: the endpoint could not be reached, which may pass.
        return self.status is None or is_retryable_status(self.status)


ERROR_CLASSES: dict[str, type[NGSILDError]] = {
    "InvalidRequest": InvalidRequest,
    "BadRequestData": BadRequestData,
    "AlreadyExists": AlreadyExists,
    "OperationNotSupported": OperationNotSupported,
    "ResourceNotFound": ResourceNotFound,
    "InternalError": InternalError,
    "TooComplexQuery": TooComplexQuery,
    "TooManyResults": TooManyResults,
    "LdContextNotAvailable": LdContextNotAvailable,
    "NoMultiTenantSupport": NoMultiTenantSupport,
    "NonExistingTenant": NonExistingTenant,
    # Stellio spells this one differently (reference/backends.md).
    "NonexistentTenant": NonExistingTenant,
}

# Status codes whose meaning is about HTTP itself; they win over a generic BadRequestData type.
_STATUS_CLASSES: dict[int, type[NGSILDError]] = {
    401: Unauthorized,
    403: Forbidden,
    405: MethodNotAllowed,
    406: NotAcceptable,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
}

# Fallback when the body has no (known) type.
_STATUS_FALLBACK: dict[int, type[NGSILDError]] = {
    400: BadRequestData,
    404: ResourceNotFound,
    409: AlreadyExists,
    422: BadRequestData,
    501: OperationNotSupported,
    502: BrokerUnavailable,
    503: BrokerUnavailable,
    504: BrokerUnavailable,
}


def error_class_for(status: int | None, type_uri: str | None) -> type[NGSILDError]:
    """Pick the exception class from the ``type`` URI and HTTP status (never from text)."""
    short = None
    if type_uri:
        short = type_uri[len(ERROR_TYPE_PREFIX):] if type_uri.startswith(ERROR_TYPE_PREFIX) else None
    by_type = ERROR_CLASSES.get(short) if short else None
    if status is not None and status in _STATUS_CLASSES:
        status_cls = _STATUS_CLASSES[status]
        # 406/413/415 come with type BadRequestData from Orion-LD: the status class is the more
        # precise one and still a BadRequestData subclass.
        if by_type is None or issubclass(status_cls, by_type):
            return status_cls
    if by_type is not None:
        return by_type
    if status is not None:
        if status in _STATUS_FALLBACK:
            return _STATUS_FALLBACK[status]
        if status >= 500:
            return InternalError
        if status >= 400:
            return BadRequestData
    return NGSILDError


def error_from_response(status: int, body: bytes) -> NGSILDError:
    """Build the typed error for an HTTP error answer (body may be empty or not JSON)."""
    decoded: Any = None
    if body:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            decoded = body.decode("utf-8", "replace")
    if isinstance(decoded, dict):
        problem = ProblemDetails.from_json(decoded, status=status)
        cls = error_class_for(status, problem.type)
        # The HTTP status is authoritative for the whole request.
        return cls(status, problem.type, problem.title, problem.detail, decoded)
    cls = error_class_for(status, None)
    detail = _clip(decoded) if isinstance(decoded, str) and decoded else None
    return cls(status, None, f"HTTP {status}", detail, decoded)


def error_from_problem(problem: ProblemDetails, body: Any = None) -> NGSILDError:
    cls = error_class_for(problem.status, problem.type)
    return cls(problem.status, problem.type, problem.title, problem.detail, body)
