"""NGSI-LD ProblemDetails errors raised anywhere in the broker and rendered by the app."""

from __future__ import annotations

ERROR_PREFIX = "https://uri.etsi.org/ngsi-ld/errors/"

INVALID_REQUEST = ERROR_PREFIX + "InvalidRequest"
BAD_REQUEST_DATA = ERROR_PREFIX + "BadRequestData"
ALREADY_EXISTS = ERROR_PREFIX + "AlreadyExists"
OPERATION_NOT_SUPPORTED = ERROR_PREFIX + "OperationNotSupported"
RESOURCE_NOT_FOUND = ERROR_PREFIX + "ResourceNotFound"
INTERNAL_ERROR = ERROR_PREFIX + "InternalError"
TOO_MANY_RESULTS = ERROR_PREFIX + "TooManyResults"
LD_CONTEXT_NOT_AVAILABLE = ERROR_PREFIX + "LdContextNotAvailable"
NON_EXISTING_TENANT = ERROR_PREFIX + "NonExistingTenant"


class NgsiError(Exception):
    """A ProblemDetails answer: ``{"type", "title", "detail"}`` with an HTTP status."""

    def __init__(self, status: int, type_: str, title: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.type = type_
        self.title = title
        self.detail = detail if detail else "no detail"

    def body(self) -> dict:
        return {"type": self.type, "title": self.title, "detail": self.detail}

    def item(self) -> dict:
        """The per-entity error shape of batch 207 answers (with ``status``)."""
        return {"type": self.type, "title": self.title, "detail": self.detail, "status": self.status}


def bad_request(title: str, detail: str | None = None) -> NgsiError:
    return NgsiError(400, BAD_REQUEST_DATA, title, detail)


def invalid_request(title: str, detail: str | None = None) -> NgsiError:
    return NgsiError(400, INVALID_REQUEST, title, detail)


def not_found(title: str, detail: str | None = None) -> NgsiError:
    return NgsiError(404, RESOURCE_NOT_FOUND, title, detail)
