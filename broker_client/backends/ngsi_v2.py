"""The NGSI-v2 sink: classic Orion (with QuantumLeap / Grafana behind it) as a stadtlink backend.

Entities arrive as NGSI-LD normalized dicts (what every adapter produces), are converted by the
rule table in :mod:`.ngsi_v2_convert` and written with ``POST /v2/op/update`` and
``actionType: append`` (create or update, attribute by attribute), with ``Fiware-Service`` /
``Fiware-ServicePath``.

What Orion answers (telefonicaid/fiware-orion, doc/manuals/orion-api.md; docs/backends/ngsi-v2.md):

* 204: every entity written.
* 400 ``BadRequest`` / ``ParseError``: one bad thing anywhere fails the *whole* request. Entities are
  checked before sending, so this should not happen; if it does, the batch is split in halves
  until the entity at fault is alone, and only that one is refused.
* 404 ``NotFound``, 422 ``Unprocessable``, ``PartialUpdate``: the ``description`` names entities
  in words meant for humans. It is used only as a hint: the entities it names are sent again one by
  one, the others again as a batch -- an answer for a single entity is unambiguous.
* 413 ``RequestEntityTooLarge``: split in halves (batches are already cut by bytes under
  ``max_body_bytes``, 1 MB being Orion's default ``-inReqPayloadMaxSize``).
* 5xx, timeouts, refused connections: retried by the HTTP layer, then raised -- the outbox keeps
  the entities. 401/403 (a PEP proxy) after one token refresh: raised as well.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Self

import orjson

from ..auth import Auth
from ..client import NGSILDClient, Response
from ..errors import (
    BrokerUnavailable,
    Forbidden,
    InvalidResponse,
    NGSILDError,
    ProblemDetails,
    ResourceNotFound,
    Unauthorized,
    error_class_for,
    is_retryable_status,
)
from ..results import BatchResult, EntityFailure, local_problem
from ..retry import DEFAULT_RETRY, RetryPolicy
from .ngsi_v2_convert import to_ngsi_v2

log = logging.getLogger("stadtlink.broker_client.ngsi_v2")

V2_PREFIX = "/v2"
V2_ERROR_TYPE = "urn:stadtlink:ngsi-v2:error:"
_SERVICE_RE = re.compile(r"^[A-Za-z0-9_]{1,50}$")
_PATH_LEVEL_RE = re.compile(r"^[A-Za-z0-9_]{1,50}$")
_ENVELOPE = b'{"actionType":"append","entities":[]}'


def validate_service(service: str | None) -> str | None:
    """``Fiware-Service``: alphanumeric and ``_``, at most 50 characters; Orion uses it in lower case."""
    if service is None or service == "":
        return None
    if not _SERVICE_RE.match(service):
        raise ValueError(f"service {service!r}: use 1-50 letters, digits or '_' (Fiware-Service)")
    return service.lower()


def validate_service_path(path: str | None) -> str:
    """``Fiware-ServicePath`` for writes: one absolute path, at most 10 levels of 1-50 alphanumeric/``_``."""
    if path is None or path == "":
        return "/"
    if not path.startswith("/"):
        raise ValueError(f"service_path {path!r} must start with '/'")
    if "," in path or "#" in path:
        raise ValueError(f"service_path {path!r}: a write takes exactly one path (no ',' or '#')")
    trimmed = path.rstrip("/") or "/"
    if trimmed == "/":
        return "/"
    levels = trimmed[1:].split("/")
    if len(levels) > 10:
        raise ValueError(f"service_path {path!r} has more than 10 levels")
    for level in levels:
        if not _PATH_LEVEL_RE.match(level):
            raise ValueError(f"service_path {path!r}: level {level!r} must be 1-50 letters, digits or '_'")
    return trimmed


def v2_problem(status: int, body: bytes) -> ProblemDetails:
    """An NGSI-v2 error body ``{"error", "description"}`` as ProblemDetails (``type`` = our URN + error)."""
    error = description = None
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = body[:200].decode("utf-8", "replace")
    if isinstance(decoded, dict):
        error = decoded.get("error") if isinstance(decoded.get("error"), str) else None
        description = decoded.get("description") if isinstance(decoded.get("description"), str) else None
    elif isinstance(decoded, str) and decoded:
        description = decoded
    return ProblemDetails(
        type=V2_ERROR_TYPE + (error or f"HTTP{status}"), title=error or f"HTTP {status}", detail=description,
        status=status,
    )


def v2_error(status: int, body: bytes) -> NGSILDError:
    problem = v2_problem(status, body)
    cls = error_class_for(status, None)
    return cls(status, problem.type, problem.title, problem.detail, body)


def ids_in_description(description: str | None, candidates: Sequence[str]) -> list[str]:
    """Entity ids of ``candidates`` that an Orion error description names (``E/T - [ A ], G/T [...]``).

    A hint only: the wording "may vary between Orion versions", so the caller re-sends rather than
    trusting it.
    """
    if not description:
        return []
    _, _, tail = description.partition(":")
    named: list[str] = []
    for cid in candidates:
        if re.search(r"(^|[\s,])" + re.escape(cid) + r"(/|\s|$|,)", tail):
            named.append(cid)
    return named


class _V2Http(NGSILDClient):
    """The HTTP layer of :class:`NGSIv2Backend`: the NGSI-LD client's requests, retries and auth
    (StaticToken / OAuth2 with cache, refresh and the 401 retry), pointed at ``/v2``."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        base = url.rstrip("/").removesuffix(V2_PREFIX)
        super().__init__(base, **kwargs)
        self.api_url = self.base_url + V2_PREFIX
        self._base_headers.pop("Link", None)


class NGSIv2Backend:
    """Writes NGSI-LD entities to an NGSI-v2 broker (Orion). Implements
    :class:`~stadtlink.broker_client.backend.Backend`; also the v2 subscription calls used by
    ``stadtlink subscriptions apply``.

    ``ids``: ``"urn"`` (default: the same entity id as in the NGSI-LD broker) or ``"local"``.
    """

    kind = "ngsi-v2"

    def __init__(
        self,
        url: str,
        *,
        service: str | None = None,
        service_path: str | None = "/",
        auth: Auth | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        batch_size: int = 200,
        max_body_bytes: int = 900_000,
        ids: str = "urn",
        max_connections: int = 10,
    ) -> None:
        if ids not in ("urn", "local"):
            raise ValueError("ids must be 'urn' or 'local'")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_body_bytes < 256:
            raise ValueError("max_body_bytes too small")
        self.service = validate_service(service)
        self.service_path = validate_service_path(service_path)
        headers = {"Fiware-ServicePath": self.service_path}
        if self.service:
            headers["Fiware-Service"] = self.service
        self.http = _V2Http(url, auth=auth, timeout=timeout, retry=retry, extra_headers=headers,
                            max_connections=max_connections)
        self.base_url = self.http.base_url
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.ids = ids
        self._noted: set[str] = set()

    def __repr__(self) -> str:
        return f"NGSIv2Backend(url={self.base_url!r}, service={self.service!r}, service_path={self.service_path!r})"

    async def open(self) -> Self:
        await self.http.open()
        return self

    async def close(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- Backend --------------------------------------------------------------------------------

    async def health(self) -> bool:
        """True when ``GET /v2`` answers (< 500, not 401/403)."""
        try:
            response = await self.http.request("GET", "", idempotent=True, attempts=1)
        except NGSILDError:
            return False
        return response.status < 500 and response.status not in (401, 403)

    async def probe(self) -> Response:
        """``GET /v2`` once, raising what the HTTP layer raises (start-up checks)."""
        return await self.http.request("GET", "", idempotent=True, attempts=1)

    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:
        """Convert, check, then append in byte- and count-limited batches."""
        result = BatchResult()
        ready: list[tuple[str, bytes]] = []
        limit = self.max_body_bytes - len(_ENVELOPE)
        for index, entity in enumerate(entities):
            entity_id = entity.get("id") if isinstance(entity, Mapping) else None
            if not isinstance(entity_id, str) or not entity_id:
                result.failed.append(EntityFailure(
                    f"<item {index}>", local_problem("Invalid entity", f"item {index} has no string 'id'", 400), False))
                continue
            conversion = to_ngsi_v2(entity, ids=self.ids)
            if not conversion.ok:
                result.failed.append(EntityFailure(entity_id, local_problem(
                    "Not representable in NGSI-v2", "; ".join(conversion.problems), 400), False))
                continue
            for note in conversion.notes:
                key = f"{entity.get('type')}:{note.split(':', 1)[0]}"
                if key not in self._noted:
                    self._noted.add(key)
                    log.info("NGSI-v2 conversion of %s: %s", entity_id, note)
            blob = orjson.dumps(conversion.entity)
            if len(blob) > limit:
                result.failed.append(EntityFailure(entity_id, local_problem(
                    "Entity too large", f"{len(blob)} bytes as NGSI-v2, more than max_body_bytes={self.max_body_bytes}",
                    413), False))
                continue
            ready.append((entity_id, blob))
        for chunk in self._chunks(ready):
            try:
                result.extend(await self._send(chunk))
            except NGSILDError as exc:
                exc.partial = result
                raise
        return result

    def _chunks(self, ready: list[tuple[str, bytes]]):
        chunk: list[tuple[str, bytes]] = []
        size = len(_ENVELOPE)
        for entry in ready:
            extra = len(entry[1]) + (1 if chunk else 0)
            if chunk and (len(chunk) >= self.batch_size or size + extra > self.max_body_bytes):
                yield chunk
                chunk, size = [], len(_ENVELOPE)
                extra = len(entry[1])
            chunk.append(entry)
            size += extra
        if chunk:
            yield chunk

    async def _send(self, chunk: list[tuple[str, bytes]]) -> BatchResult:
        ids = [entity_id for entity_id, _ in chunk]
        body = b'{"actionType":"append","entities":[' + b",".join(blob for _, blob in chunk) + b"]}"
        response = await self.http.request("POST", "/op/update", body=body, idempotent=True)
        status = response.status
        if status in (200, 201, 204):
            return BatchResult(succeeded=list(dict.fromkeys(ids)))
        if status in (401, 403) or status >= 500:
            raise v2_error(status, response.body)
        if status in (405, 408, 411, 415, 429):
            # about the request as a whole (or the moment), never one entity: keep them all
            raise v2_error(status, response.body)
        if status >= 400:
            problem = v2_problem(status, response.body)
            if len(chunk) == 1:
                return BatchResult(failed=[EntityFailure(ids[0], problem, is_retryable_status(status))])
            named = ids_in_description(problem.detail, ids) if status in (404, 422) else []
            if named and len(named) < len(chunk):
                log.warning("/v2/op/update: %s %s names %d of %d entities; re-sending those one by one",
                            status, problem.title, len(named), len(chunk))
                first = [c for c in chunk if c[0] not in named]
                result = await self._send(first)
                for entry in chunk:
                    if entry[0] in named:
                        result.extend(await self._send([entry]))
                return result
            half = len(chunk) // 2
            log.warning("/v2/op/update: %s %s for %d entities (%d bytes); splitting", status, problem.title,
                        len(chunk), len(body))
            result = await self._send(chunk[:half])
            result.extend(await self._send(chunk[half:]))
            return result
        raise InvalidResponse(status, None, "Unexpected status for /v2/op/update", None, response.body)

    # --- subscriptions (NGSI-v2) -----------------------------------------------------------------

    async def create_subscription(self, subscription: Mapping[str, Any]) -> str:
        response = await self.http.request("POST", "/subscriptions", json=dict(subscription), idempotent=False)
        self._raise_for(response)
        location = response.headers.get("Location", "")
        if "/v2/subscriptions/" in location:
            return location.rsplit("/v2/subscriptions/", 1)[1]
        raise InvalidResponse(response.status, None, "No Location header in the answer", None, response.body)

    async def list_subscriptions(self, *, page_size: int = 1000):
        offset = 0
        while True:
            response = await self.http.request(
                "GET", "/subscriptions", params={"limit": page_size, "offset": offset}, idempotent=True
            )
            self._raise_for(response)
            page = response.json() or []
            if not isinstance(page, list):
                raise InvalidResponse(response.status, None, "Expected a JSON array", repr(page)[:200], page)
            for sub in page:
                yield sub
            if len(page) < page_size:
                return
            offset += len(page)

    async def update_subscription(self, subscription_id: str, patch: Mapping[str, Any]) -> None:
        response = await self.http.request("PATCH", "/subscriptions/" + _safe_id(subscription_id), json=dict(patch),
                                           idempotent=True)
        self._raise_for(response)

    async def delete_subscription(self, subscription_id: str) -> None:
        response = await self.http.request("DELETE", "/subscriptions/" + _safe_id(subscription_id), idempotent=True)
        self._raise_for(response)

    @staticmethod
    def _raise_for(response: Response) -> None:
        if response.status >= 400:
            raise v2_error(response.status, response.body)


def _safe_id(subscription_id: str) -> str:
    if not re.match(r"^[A-Za-z0-9]{1,64}$", subscription_id or ""):
        raise ValueError(f"not an NGSI-v2 subscription id: {subscription_id!r}")
    return subscription_id


__all__ = [
    "BrokerUnavailable",
    "Forbidden",
    "NGSIv2Backend",
    "ResourceNotFound",
    "Unauthorized",
    "ids_in_description",
    "v2_problem",
    "validate_service",
    "validate_service_path",
]
