"""The async NGSI-LD client: the only code in stadtlink that speaks HTTP to a broker.

Request rules (reference/orion-ld.md §1): bodies are serialized with orjson to bytes here, so every
request with a body has ``Content-Length`` and is never chunked; ``Content-Type: application/json``
with the @context in a ``Link`` header; ``NGSILD-Tenant`` when a tenant is set; entity ids go into
paths unencoded (only characters that would break the URL are escaped).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import quote

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from .auth import Auth
from .errors import (
    BrokerUnavailable,
    Forbidden,
    InvalidResponse,
    NGSILDError,
    OperationNotSupported,
    ProblemDetails,
    Unauthorized,
    error_from_response,
    is_retryable_status,
)
from .models import Entity, is_uri
from .results import (
    AttributeUpdateResult,
    BatchResult,
    EntityFailure,
    batch_has_entity_errors,
    local_problem,
    parse_attribute_update,
    parse_batch_response,
)
from .redact import Redactor, has_userinfo, url_without_userinfo
from .retry import DEFAULT_RETRY, RetryPolicy

log = logging.getLogger("stadtlink.broker_client")

JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
API_PREFIX = "/ngsi-ld/v1"
MAX_PAGE_SIZE = 1000
USER_AGENT = f"stadtlink-broker-client aiohttp/{aiohttp.__version__}"
_TENANT_RE = re.compile(r"^[A-Za-z0-9_\-]{1,50}$")
# Characters left as they are in an entity id placed in a URL path (everything a URN or an http
# URI id uses); space, '?', '#', '%' and non-ASCII are percent-encoded.
_PATH_SAFE = ":/@!$&'()*+,;=-._~"

UpsertMode = Literal["update", "replace"]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise InvalidResponse(
                self.status, None, "Malformed JSON from broker", repr(self.body[:200]), self.body
            ) from None


def _link_header(url: str) -> str:
    return f'<{url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'


def _csv(value: str | Iterable[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return ",".join(value)


class NGSILDClient:
    """Async NGSI-LD client.

    ``url`` is the broker base (``http://orion:1026``); a URL already ending in ``/ngsi-ld/v1`` is
    accepted too. ``context`` is the @context URL sent in the Link header. Orion-LD (and JSON-LD
    itself) accept exactly one context Link, so for a list only the **first** URL is sent and a
    warning is logged once: publish one context file that imports the others instead.

    ``type_contexts`` (``entity type → @context URL``, e.g.
    :func:`stadtlink.schemas.contexts.type_contexts`) makes every batch write carry each entity's
    own @context in the body: the chunk is sent as ``application/ld+json`` without a Link header and
    every entity gets ``"@context": <its type's URL>`` (the core context is implied), so entities of
    several models go in one request each expanded through its own model's terms (reference/
    orion-ld.md §1.1: per-item @context in batches). An entity that brings its own ``@context`` keeps it.

    Use as ``async with NGSILDClient(...) as client:`` or ``await client.open()`` /
    ``await client.close()``.

    Batch writes (``upsert``, ``create_many``, ``update_many``, ``delete_many``) are split into
    chunks of at most ``batch_size`` entities and ``max_body_bytes`` bytes, sent in order, and
    return a :class:`BatchResult`. Per-entity problems (including a whole-chunk 4xx answer, and an
    entity bigger than ``max_body_bytes``) are reported in ``failed``; a 413 answer makes the client
    split the chunk in halves and try again. 5xx answers and connection errors that persist after
    the retries **raise** (``BrokerUnavailable`` or the typed error) -- the caller's outbox still
    holds the data; ``exc.partial`` carries the result of the chunks that got through. 401/403 after
    a token refresh raise as well, since no entity is at fault.
    """

    #: the sink kind named in messages (a :class:`~stadtlink.broker_client.backend.Backend`); the
    #: backends of other NGSI-LD brokers (Scorpio, Stellio) set their own
    kind: str = "orion-ld"

    def __init__(
        self,
        url: str,
        *,
        tenant: str | None = None,
        context: str | Sequence[str] | None = None,
        auth: Auth | None = None,
        timeout: float = 10.0,
        max_connections: int = 20,
        retry: RetryPolicy = DEFAULT_RETRY,
        batch_size: int = 200,
        max_body_bytes: int = 900_000,
        upsert_mode: UpsertMode = "update",
        extra_headers: Mapping[str, str] | None = None,
        type_contexts: Callable[[str], str | Sequence[str] | None] | None = None,
    ) -> None:
        base = url.rstrip("/")
        base = base.removesuffix(API_PREFIX)
        parsed = URL(base)
        if has_userinfo(base):
            raise ValueError(f"broker url must not carry user info (got {url_without_userinfo(url)!r}): "
                             "give credentials as auth (a token, OAuth2 or Basic from a file or the environment)")
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"broker url must be http(s)://host[:port] (got {url!r})")
        if tenant is not None and not _TENANT_RE.match(tenant):
            raise ValueError(
                f"tenant {tenant!r}: use 1-50 letters, digits, '_' or '-' (Orion-LD rejects anything else)"
            )
        if not 1 <= batch_size:
            raise ValueError("batch_size must be >= 1")
        if max_body_bytes < 64:
            raise ValueError("max_body_bytes too small")
        if upsert_mode not in ("update", "replace"):
            raise ValueError("upsert_mode must be 'update' or 'replace'")

        self.base_url = base
        self.api_url = base + API_PREFIX
        self.tenant = tenant
        self.auth = auth
        self.timeout = timeout
        self.max_connections = max_connections
        self.retry = retry
        self.batch_size = batch_size
        self.max_body_bytes = max_body_bytes
        self.upsert_mode: UpsertMode = upsert_mode

        contexts = [context] if isinstance(context, str) else list(context or [])
        if len(contexts) > 1:
            log.warning(
                "%d @context URLs given; Orion-LD accepts one Link header, sending only %s",
                len(contexts),
                contexts[0],
            )
        self.context: str | None = contexts[0] if contexts else None

        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self.context:
            headers["Link"] = _link_header(self.context)
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        if extra_headers:
            headers.update(extra_headers)
        self._base_headers = headers
        self.type_contexts = type_contexts
        self._context_prefix: dict[Any, bytes] = {}
        self._session: aiohttp.ClientSession | None = None
        self._merge_supported: bool | None = None
        self._redactor_key: tuple | None = None
        self._redactor = Redactor()

    def __repr__(self) -> str:
        return f"NGSILDClient(url={self.base_url!r}, tenant={self.tenant!r}, context={self.context!r}, auth={self.auth!r})"

    # --- lifecycle --------------------------------------------------------------------------

    async def open(self) -> Self:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=self.max_connections)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            raise RuntimeError("NGSILDClient is not open: use 'async with NGSILDClient(...)' or 'await client.open()'")
        return self._session

    # --- HTTP core ----------------------------------------------------------------------------

    def _url(self, path: str) -> URL:
        return URL(self.api_url + path, encoded=True)

    @staticmethod
    def _entity_path(entity_id: str, suffix: str = "") -> str:
        if not isinstance(entity_id, str) or not entity_id:
            raise ValueError(f"entity id must be a non-empty string (got {entity_id!r})")
        return "/entities/" + quote(entity_id, safe=_PATH_SAFE) + suffix

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        body: bytes | None = None,
        idempotent: bool,
        attempts: int | None = None,
        content_type: str | None = None,
        link_context: str | None = None,
    ) -> Response:
        """Send one request with retries; returns the final answer whatever its status.

        Retries (``self.retry``): connection failures before anything was sent are always retried;
        timeouts, broken connections, 5xx (not 501) and 429 only when ``idempotent``. A 401 makes
        the auth object drop its token and the request is sent once more (outside the retry count).
        Raises :class:`BrokerUnavailable` when no answer was obtained.

        The answer's body is returned with the credentials of this request redacted
        (:mod:`~stadtlink.broker_client.redact`): whatever the broker echoes of them never reaches
        an exception, a dead letter or a log.
        """
        if json is not None:
            body = orjson.dumps(json)
        headers = dict(self._base_headers)
        if link_context is not None:
            headers["Link"] = _link_header(link_context)
        if body is not None:
            headers["Content-Type"] = "application/json"
            if isinstance(json, dict) and "@context" in json:
                # Orion-LD: a body @context requires ld+json and forbids the Link header.
                headers["Content-Type"] = "application/ld+json"
                headers.pop("Link", None)
            if content_type is not None:
                headers["Content-Type"] = content_type
                if content_type == "application/ld+json":
                    headers.pop("Link", None)
        query = _clean_params(params)
        url = self._url(path)
        session = self.session
        max_attempts = attempts or self.retry.attempts
        attempt = 0
        refreshed_auth = False
        while True:
            attempt += 1
            if self.auth is not None:
                headers.update(await self.auth.headers(session))
            redactor = self._redactor_for(headers)
            try:
                async with session.request(method, url, params=query, data=body, headers=headers) as resp:
                    payload = await resp.read()
                    if redactor and payload:
                        payload = redactor.bytes(payload)
                    response = Response(resp.status, resp.headers, payload)
            except aiohttp.ClientConnectorError as exc:
                # Nothing reached the broker: retrying is safe even for non-idempotent calls.
                if attempt < max_attempts:
                    await self._backoff(attempt, max_attempts, method, path, f"connect failed ({exc.os_error or exc})")
                    continue
                raise BrokerUnavailable(
                    None, None, "Broker unreachable", f"{method} {path}: {exc.os_error or exc} after {attempt} attempt(s)"
                ) from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                what = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                if idempotent and attempt < max_attempts:
                    await self._backoff(attempt, max_attempts, method, path, what)
                    continue
                raise BrokerUnavailable(
                    None, None, "No answer from broker", f"{method} {path}: {what} after {attempt} attempt(s)"
                ) from None

            if response.status == 401 and self.auth is not None and not refreshed_auth:
                refreshed_auth = True
                attempt -= 1  # the refresh retry does not use up the retry budget
                await self.auth.invalidate()
                log.info("%s %s: 401, refreshing the token and retrying once", method, path)
                continue
            if idempotent and attempt < max_attempts and (
                response.status == 429 or (response.status >= 500 and response.status != 501)
            ):
                await self._backoff(
                    attempt, max_attempts, method, path, f"HTTP {response.status}", response.headers.get("Retry-After")
                )
                continue
            return response

    def _redactor_for(self, headers: Mapping[str, str]) -> Redactor:
        """The redactor of these request headers (rebuilt only when a credential changed)."""
        key = tuple(v for k, v in headers.items()
                    if k.lower() in ("authorization", "proxy-authorization", "cookie") or "token" in k.lower()
                    or "key" in k.lower() or "secret" in k.lower() or "password" in k.lower())
        if key != self._redactor_key:
            self._redactor_key = key
            self._redactor = Redactor.for_headers(headers)
        return self._redactor

    async def _backoff(
        self, attempt: int, max_attempts: int, method: str, path: str, why: str, retry_after: str | None = None
    ) -> None:
        delay = self.retry.delay(attempt)
        if retry_after:
            try:
                delay = min(self.retry.max_delay, max(delay, float(retry_after)))
            except ValueError:
                pass
        log.warning("%s %s: %s, retry %d/%d in %.2f s", method, path, why, attempt, max_attempts - 1, delay)
        await asyncio.sleep(delay)

    @staticmethod
    def _raise_for(response: Response) -> None:
        if response.status >= 400:
            raise error_from_response(response.status, response.body)

    # --- entities -----------------------------------------------------------------------------

    async def create_entity(self, entity: Mapping[str, Any] | Entity) -> str:
        """``POST /entities`` (not retried on 5xx/timeouts: not idempotent). Returns the entity id."""
        data = entity.to_dict() if isinstance(entity, Entity) else entity
        response = await self.request("POST", "/entities", json=data, idempotent=False)
        self._raise_for(response)
        location = response.headers.get("Location", "")
        marker = API_PREFIX + "/entities/"
        if marker in location:
            return location.split(marker, 1)[1]
        return str(data.get("id", ""))

    async def get_entity(
        self,
        entity_id: str,
        *,
        attrs: str | Iterable[str] | None = None,
        options: str | Iterable[str] | None = None,
        type: str | None = None,
    ) -> dict[str, Any]:
        response = await self.request(
            "GET",
            self._entity_path(entity_id),
            params={"attrs": _csv(attrs), "options": _csv(options), "type": type},
            idempotent=True,
        )
        self._raise_for(response)
        data = response.json()
        if not isinstance(data, dict):
            raise InvalidResponse(response.status, None, "Expected an entity object", repr(data)[:200], data)
        return data

    async def update_attributes(self, entity_id: str, attrs: Mapping[str, Any]) -> AttributeUpdateResult:
        """``PATCH /entities/{id}/attrs`` (only existing attributes are changed)."""
        response = await self.request("PATCH", self._entity_path(entity_id, "/attrs"), json=attrs, idempotent=True)
        return self._attribute_result(response, attrs)

    async def append_attributes(
        self, entity_id: str, attrs: Mapping[str, Any], *, no_overwrite: bool = False
    ) -> AttributeUpdateResult:
        """``POST /entities/{id}/attrs`` (``options=noOverwrite`` keeps existing attributes)."""
        response = await self.request(
            "POST",
            self._entity_path(entity_id, "/attrs"),
            params={"options": "noOverwrite" if no_overwrite else None},
            json=attrs,
            idempotent=not no_overwrite,
        )
        return self._attribute_result(response, attrs)

    async def update_attribute(self, entity_id: str, name: str, attribute: Mapping[str, Any]) -> None:
        """``PATCH /entities/{id}/attrs/{name}``."""
        path = self._entity_path(entity_id, "/attrs/" + quote(name, safe=_PATH_SAFE))
        response = await self.request("PATCH", path, json=attribute, idempotent=True)
        self._raise_for(response)

    def _attribute_result(self, response: Response, attrs: Mapping[str, Any]) -> AttributeUpdateResult:
        if response.status == 204 or (response.status in (200, 201) and not response.body):
            names = [k for k in attrs if k not in ("id", "type", "@context")]
            return AttributeUpdateResult(updated=names)
        if response.status == 207:
            try:
                return parse_attribute_update(response.body)
            except orjson.JSONDecodeError:
                raise InvalidResponse(207, None, "Malformed JSON from broker", repr(response.body[:200]), response.body) from None
        self._raise_for(response)
        raise InvalidResponse(response.status, None, "Unexpected status", None, response.body)

    async def merge_entity(self, entity_id: str, fragment: Mapping[str, Any]) -> None:
        """``PATCH /entities/{id}`` (merge-patch, NGSI-LD 1.6+).

        Legacy Orion-LD does not serve this route and answers 404 "Service Not Found". To tell that
        from "entity not found" without reading error text, a 404 is followed by a GET of the
        entity: if the entity exists, the operation is unsupported (``OperationNotSupported``).
        """
        await self._whole_entity_write("PATCH", entity_id, fragment)

    async def replace_entity(self, entity_id: str, entity: Mapping[str, Any] | Entity) -> None:
        """``PUT /entities/{id}`` (same legacy caveat as :meth:`merge_entity`)."""
        data = entity.to_dict() if isinstance(entity, Entity) else entity
        await self._whole_entity_write("PUT", entity_id, data)

    async def _whole_entity_write(self, method: str, entity_id: str, data: Mapping[str, Any]) -> None:
        if self._merge_supported is False:
            raise OperationNotSupported(
                None, None, "Operation not supported by this broker", f"{method} /entities/{{id}} (legacy Orion-LD)"
            )
        response = await self.request(method, self._entity_path(entity_id), json=data, idempotent=True)
        if response.status in (200, 201, 204):
            self._merge_supported = True
            return
        if response.status == 404 and self._merge_supported is None:
            probe = await self.request("GET", self._entity_path(entity_id), idempotent=True)
            if probe.status == 200:
                self._merge_supported = False
                err = error_from_response(404, response.body)
                raise OperationNotSupported(404, err.type, err.title or "Service Not Found", err.detail, err.body)
        self._raise_for(response)

    async def delete_entity(self, entity_id: str) -> None:
        response = await self.request("DELETE", self._entity_path(entity_id), idempotent=True)
        self._raise_for(response)

    async def delete_attribute(
        self, entity_id: str, name: str, *, dataset_id: str | None = None, delete_all: bool = False
    ) -> None:
        path = self._entity_path(entity_id, "/attrs/" + quote(name, safe=_PATH_SAFE))
        params = {"datasetId": dataset_id, "deleteAll": "true" if delete_all else None}
        response = await self.request("DELETE", path, params=params, idempotent=True)
        self._raise_for(response)

    # --- batches ------------------------------------------------------------------------------

    async def upsert(self, entities: Sequence[Mapping[str, Any]], *, mode: UpsertMode | None = None) -> BatchResult:
        """``POST /entityOperations/upsert?options=update`` (or ``replace``), chunked. Plain dicts in."""
        mode = mode or self.upsert_mode
        if mode not in ("update", "replace"):
            raise ValueError("mode must be 'update' or 'replace'")
        return await self._batch("upsert", entities, params={"options": mode}, idempotent=True)

    async def create_many(self, entities: Sequence[Mapping[str, Any]]) -> BatchResult:
        """``POST /entityOperations/create`` (not retried on 5xx/timeouts: not idempotent)."""
        return await self._batch("create", entities, params=None, idempotent=False)

    async def update_many(self, entities: Sequence[Mapping[str, Any]], *, no_overwrite: bool = False) -> BatchResult:
        """``POST /entityOperations/update`` (missing entities are per-entity failures)."""
        params = {"options": "noOverwrite"} if no_overwrite else None
        return await self._batch("update", entities, params=params, idempotent=True)

    async def delete_many(self, ids: Sequence[str]) -> BatchResult:
        """``POST /entityOperations/delete`` with an array of ids."""
        return await self._batch("delete", ids, params=None, idempotent=True, ids_only=True)

    async def write(self, entities: list[dict[str, Any]]) -> BatchResult:
        """:class:`~stadtlink.broker_client.backend.Backend` entry point: upsert with the configured mode."""
        return await self.upsert(entities)

    async def probe(self) -> Response:
        """``GET /ngsi-ld/v1/types`` once, raising what the HTTP layer raises (start-up checks)."""
        return await self.request("GET", "/types", idempotent=True, attempts=1)

    async def health(self) -> bool:
        """True when the broker answers HTTP (< 500, not 401/403) on ``GET /ngsi-ld/v1/types``."""
        try:
            response = await self.request("GET", "/types", idempotent=True, attempts=1)
        except NGSILDError:
            return False
        return response.status < 500 and response.status not in (401, 403)

    async def _batch(
        self,
        operation: str,
        items: Sequence[Any],
        *,
        params: Mapping[str, Any] | None,
        idempotent: bool,
        ids_only: bool = False,
    ) -> BatchResult:
        result = BatchResult()
        encoded: list[tuple[str, bytes]] = []
        limit = self.max_body_bytes - 2  # the enclosing [ ]
        per_type = self.type_contexts is not None and not ids_only
        for index, item in enumerate(items):
            entity_id, blob, problem = _encode_item(item, index, ids_only)
            if per_type and problem is None and blob is not None:
                blob = self._with_type_context(item, blob)
            if problem is None and blob is not None and len(blob) > limit:
                problem = local_problem(
                    "Entity too large",
                    f"{len(blob)} bytes serialized, more than max_body_bytes={self.max_body_bytes}",
                    413,
                )
            if problem is not None:
                result.failed.append(EntityFailure(entity_id, problem, False))
            else:
                encoded.append((entity_id, blob))  # type: ignore[arg-type]
        path = f"/entityOperations/{operation}"
        content_type = "application/ld+json" if per_type else None
        for chunk in self._chunks(encoded):
            try:
                result.extend(await self._send_chunk(path, chunk, params, idempotent, content_type))
            except NGSILDError as exc:
                exc.partial = result
                raise
        return result

    def _with_type_context(self, item: Any, blob: bytes) -> bytes:
        """``blob`` (a serialized entity object) with ``"@context": <its type's URL>`` in front."""
        if type(item) is not dict:  # fast path: plain dicts skip the ABC checks
            if isinstance(item, Entity):
                item = item.to_dict()
            if not isinstance(item, Mapping):
                return blob
        if "@context" in item or blob == b"{}":
            return blob
        etype = item.get("type")
        url = self.type_contexts(etype) if type(etype) is str else None  # type: ignore[misc]
        url = url or self.context or "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
        key = url if isinstance(url, (str, tuple)) else tuple(url)
        prefix = self._context_prefix.get(key)
        if prefix is None:
            prefix = b'{"@context":' + orjson.dumps(list(url) if isinstance(url, tuple) else url) + b","
            if len(self._context_prefix) < 1024:
                self._context_prefix[key] = prefix
        return prefix + blob[1:]

    def _chunks(self, encoded: list[tuple[str, bytes]]) -> Iterable[list[tuple[str, bytes]]]:
        chunk: list[tuple[str, bytes]] = []
        size = 2
        for entry in encoded:
            extra = len(entry[1]) + (1 if chunk else 0)
            if chunk and (len(chunk) >= self.batch_size or size + extra > self.max_body_bytes):
                yield chunk
                chunk, size = [], 2
                extra = len(entry[1])
            chunk.append(entry)
            size += extra
        if chunk:
            yield chunk

    async def _send_chunk(
        self, path: str, chunk: list[tuple[str, bytes]], params: Mapping[str, Any] | None, idempotent: bool,
        content_type: str | None = None,
    ) -> BatchResult:
        ids = [entity_id for entity_id, _ in chunk]
        body = b"[" + b",".join(blob for _, blob in chunk) + b"]"
        response = await self.request("POST", path, params=params, body=body, idempotent=idempotent,
                                      content_type=content_type)
        status = response.status
        if status in (200, 201, 204, 207):
            return parse_batch_response(status, response.body, ids)
        if status == 413 and len(chunk) > 1:
            half = len(chunk) // 2
            log.warning("%s: 413 for %d entities (%d bytes), splitting", path, len(chunk), len(body))
            first = await self._send_chunk(path, chunk[:half], params, idempotent, content_type)
            first.extend(await self._send_chunk(path, chunk[half:], params, idempotent, content_type))
            return first
        error = error_from_response(status, response.body)
        if isinstance(error, (Unauthorized, Forbidden)) or status >= 500:
            raise error
        if status >= 400 and batch_has_entity_errors(response.body):
            # Scorpio answers 400/404/409 with {"errors": [...]} when every entity failed.
            return parse_batch_response(207, response.body, ids)
        if status >= 400:
            problem = ProblemDetails(error.type, error.title, error.detail, status)
            retryable = is_retryable_status(status, error.type)
            return BatchResult(failed=[EntityFailure(i, problem, retryable) for i in dict.fromkeys(ids)])
        raise InvalidResponse(status, None, "Unexpected status for a batch operation", None, response.body)

    # --- queries ------------------------------------------------------------------------------

    def _query_params(
        self,
        *,
        type: str | Iterable[str] | None,
        id: str | Iterable[str] | None,
        id_pattern: str | None,
        attrs: str | Iterable[str] | None,
        q: str | None,
        georel: str | None,
        geometry: str | None,
        coordinates: Any,
        geoproperty: str | None,
        options: str | Iterable[str] | None,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if isinstance(coordinates, (list, tuple)):
            coordinates = orjson.dumps(coordinates).decode()
        params = {
            "type": _csv(type),
            "id": _csv(id),
            "idPattern": id_pattern,
            "attrs": _csv(attrs),
            "q": q,
            "georel": georel,
            "geometry": geometry,
            "coordinates": coordinates,
            "geoproperty": geoproperty,
            "options": _csv(options),
        }
        if extra:
            params.update(extra)
        return params

    async def query_entities(
        self,
        *,
        type: str | Iterable[str] | None = None,
        id: str | Iterable[str] | None = None,
        id_pattern: str | None = None,
        attrs: str | Iterable[str] | None = None,
        q: str | None = None,
        georel: str | None = None,
        geometry: str | None = None,
        coordinates: Any = None,
        geoproperty: str | None = None,
        options: str | Iterable[str] | None = None,
        limit: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
        extra_params: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Iterate over every matching entity, fetching pages of ``page_size`` (≤ 1000) with
        ``limit``/``offset``. ``limit`` caps the total number yielded (None = all).

        Offset paging is not a snapshot: entities created or deleted during the iteration may be
        skipped or seen twice.
        """
        params = self._query_params(
            type=type, id=id, id_pattern=id_pattern, attrs=attrs, q=q, georel=georel, geometry=geometry,
            coordinates=coordinates, geoproperty=geoproperty, options=options, extra=extra_params,
        )
        async for entity in self._paged("GET", "/entities", params, None, limit, page_size):
            yield entity

    async def count_entities(
        self,
        *,
        type: str | Iterable[str] | None = None,
        id: str | Iterable[str] | None = None,
        id_pattern: str | None = None,
        attrs: str | Iterable[str] | None = None,
        q: str | None = None,
        georel: str | None = None,
        geometry: str | None = None,
        coordinates: Any = None,
        geoproperty: str | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> int:
        """Number of matching entities (``count=true&limit=0``, ``NGSILD-Results-Count`` header)."""
        params = self._query_params(
            type=type, id=id, id_pattern=id_pattern, attrs=attrs, q=q, georel=georel, geometry=geometry,
            coordinates=coordinates, geoproperty=geoproperty, options=None, extra=extra_params,
        )
        params.update({"count": "true", "limit": 0})
        response = await self.request("GET", "/entities", params=params, idempotent=True)
        self._raise_for(response)
        return _results_count(response)

    async def query_entities_post(
        self,
        query: Mapping[str, Any],
        *,
        options: str | Iterable[str] | None = None,
        limit: int | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> AsyncIterator[dict[str, Any]]:
        """``POST /entityOperations/query`` with a Query body (``{"type": "Query", "entities": [...],
        "q": ..., "geoQ": {...}, "attrs": [...]}``), paged like :meth:`query_entities`."""
        body = dict(query)
        body.setdefault("type", "Query")
        params = {"options": _csv(options)}
        async for entity in self._paged("POST", "/entityOperations/query", params, body, limit, page_size):
            yield entity

    async def count_entities_post(self, query: Mapping[str, Any]) -> int:
        body = dict(query)
        body.setdefault("type", "Query")
        response = await self.request(
            "POST", "/entityOperations/query", params={"count": "true", "limit": 0}, json=body, idempotent=True
        )
        self._raise_for(response)
        return _results_count(response)

    async def _paged(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        body: Any,
        limit: int | None,
        page_size: int,
    ) -> AsyncIterator[dict[str, Any]]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        offset = 0
        remaining = limit
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page_params = dict(params, limit=size, offset=offset)
            response = await self.request(method, path, params=page_params, json=body, idempotent=True)
            self._raise_for(response)
            page = response.json()
            if page is None:
                page = []
            if not isinstance(page, list):
                raise InvalidResponse(response.status, None, "Expected a JSON array", repr(page)[:200], page)
            for entity in page:
                yield entity
            offset += len(page)
            if remaining is not None:
                remaining -= len(page)
            if len(page) < size:
                return

    # --- subscriptions ------------------------------------------------------------------------

    async def create_subscription(self, subscription: Mapping[str, Any]) -> str:
        """``POST /subscriptions`` (not retried on 5xx/timeouts). Returns the id from ``Location``."""
        body = dict(subscription)
        body.setdefault("type", "Subscription")
        response = await self.request("POST", "/subscriptions", json=body, idempotent=False)
        self._raise_for(response)
        location = response.headers.get("Location", "")
        marker = API_PREFIX + "/subscriptions/"
        if marker in location:
            return location.split(marker, 1)[1]
        if isinstance(body.get("id"), str):
            return body["id"]
        raise InvalidResponse(response.status, None, "No Location header in the answer", None, response.body)

    async def get_subscription(self, subscription_id: str, *, context: str | None = None) -> dict[str, Any]:
        """``GET /subscriptions/{id}``; attribute names compacted with ``context`` (default: the
        client's)."""
        response = await self.request("GET", self._subscription_path(subscription_id), idempotent=True,
                                      link_context=context)
        self._raise_for(response)
        data = response.json()
        if not isinstance(data, dict):
            raise InvalidResponse(response.status, None, "Expected a subscription object", repr(data)[:200], data)
        return data

    async def list_subscriptions(self, *, limit: int | None = None, page_size: int = MAX_PAGE_SIZE) -> AsyncIterator[dict[str, Any]]:
        async for sub in self._paged("GET", "/subscriptions", {}, None, limit, page_size):
            yield sub

    async def update_subscription(self, subscription_id: str, patch: Mapping[str, Any], *,
                                  context: str | None = None) -> None:
        """``PATCH /subscriptions/{id}``; attribute names expanded with ``context`` (sent in the
        body, default: the client's Link header)."""
        if context is not None and "@context" not in patch:
            patch = {**patch, "@context": context}
        response = await self.request("PATCH", self._subscription_path(subscription_id), json=patch, idempotent=True)
        self._raise_for(response)

    async def delete_subscription(self, subscription_id: str) -> None:
        response = await self.request("DELETE", self._subscription_path(subscription_id), idempotent=True)
        self._raise_for(response)

    @staticmethod
    def _subscription_path(subscription_id: str) -> str:
        if not isinstance(subscription_id, str) or not subscription_id:
            raise ValueError("subscription id must be a non-empty string")
        return "/subscriptions/" + quote(subscription_id, safe=_PATH_SAFE)


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = str(value)
    return out or None


def _results_count(response: Response) -> int:
    raw = response.headers.get("NGSILD-Results-Count")
    if raw is None:
        raise InvalidResponse(response.status, None, "No NGSILD-Results-Count header in the answer", None, response.body)
    try:
        return int(raw)
    except ValueError:
        raise InvalidResponse(response.status, None, "Bad NGSILD-Results-Count header", raw, response.body) from None


def _encode_item(item: Any, index: int, ids_only: bool) -> tuple[str, bytes | None, ProblemDetails | None]:
    """Serialize one batch item; a problem the broker would refuse anyway is reported locally."""
    if ids_only:
        if not isinstance(item, str) or not item:
            return f"<item {index}>", None, local_problem("Invalid entity id", f"item {index} is not a string id: {item!r:.80}", 400)
        if not is_uri(item):
            return item, None, local_problem("Invalid entity id", f"{item!r} is not a URI", 400)
        return item, orjson.dumps(item), None
    if type(item) is not dict:  # fast path: plain dicts skip the ABC checks
        if isinstance(item, Entity):
            item = item.to_dict()
        elif isinstance(item, Mapping):
            item = dict(item)
    if type(item) is not dict:
        return f"<item {index}>", None, local_problem("Invalid entity", f"item {index} is a {type(item).__name__}, not an object", 400)
    entity_id = item.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        return f"<item {index}>", None, local_problem("Invalid entity", f"item {index} has no string 'id'", 400)
    if not is_uri(entity_id):
        return entity_id, None, local_problem("Invalid entity id", f"{entity_id!r} is not a URI (e.g. urn:ngsi-ld:Type:id)", 400)
    try:
        blob = orjson.dumps(item)
    except TypeError as exc:
        return entity_id, None, local_problem("Entity not serializable", str(exc), 400)
    return entity_id, blob, None
