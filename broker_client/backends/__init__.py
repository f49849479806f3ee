"""Sinks as plug-ins: one :class:`~stadtlink.broker_client.backend.Backend` per broker kind.

    backend = make_backend({"kind": "scorpio", "url": "http://scorpio:9090", "tenant": "town"})
    await backend.open()
    await check_backend(backend, key="broker")     # BackendConfigError naming the key, or fine
    result = await backend.write(entities)          # BatchResult

Kinds: ``orion-ld`` (default), ``scorpio``, ``stellio`` (NGSI-LD, their differences in
:mod:`.quirks`) and ``ngsi-v2`` (classic Orion, :mod:`.ngsi_v2`). The same ``auth`` block (static
token or OAuth2 client credentials) works for every kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..auth import Auth, OAuth2ClientCredentials, StaticToken
from ..redact import has_userinfo, url_without_userinfo
from ..client import NGSILDClient
from ..errors import (
    AuthenticationError,
    BrokerUnavailable,
    NGSILDError,
    NonExistingTenant,
)
from ..retry import DEFAULT_RETRY, RetryPolicy
from .ngsi_v2 import NGSIv2Backend
from .quirks import NGSI_LD_KINDS, QUIRKS, BrokerQuirks, quirks_for

KINDS: tuple[str, ...] = (*NGSI_LD_KINDS, "ngsi-v2", "sensorthings")
DEFAULT_KIND = "orion-ld"


class BackendConfigError(ValueError):
    """A sink's configuration is wrong; ``key`` is the config path at fault (``broker.tenant``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class NGSILDBackend(NGSILDClient):
    """The NGSI-LD client for one broker kind: limits, tenant header and page size from its
    :class:`~.quirks.BrokerQuirks` row."""

    def __init__(self, url: str, *, quirks: BrokerQuirks, tenant: str | None = None, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra_headers", None) or {})
        if tenant:
            if not quirks.tenant_pattern.match(tenant):
                raise ValueError(f"tenant {tenant!r} is not valid for {quirks.label}: {quirks.tenant_hint}")
            extra[quirks.tenant_header] = tenant
        kwargs["batch_size"] = min(kwargs.get("batch_size", 200), quirks.max_batch_entities)
        kwargs.setdefault("max_body_bytes", quirks.max_body_bytes)
        super().__init__(url, extra_headers=extra, **kwargs)
        self.quirks = quirks
        self.kind = quirks.kind
        self.tenant = tenant

    def __repr__(self) -> str:
        return f"NGSILDBackend(kind={self.kind!r}, url={self.base_url!r}, tenant={self.tenant!r})"

    async def _paged(self, method, path, params, body, limit, page_size):  # type: ignore[override]
        async for item in super()._paged(method, path, params, body, limit, min(page_size, self.quirks.max_page_size)):
            yield item

def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def build_auth(auth: Any, *, key: str = "broker.auth") -> Auth | None:
    """An auth block (mapping, or the runtime's TokenAuth/OAuth2Auth model) → an Auth object."""
    if auth is None:
        return None
    if isinstance(auth, (StaticToken, OAuth2ClientCredentials)):
        return auth
    if hasattr(auth, "build"):
        return auth.build()
    kind = _get(auth, "kind")
    secret = lambda v: v.get_secret_value() if hasattr(v, "get_secret_value") else v
    try:
        if kind == "token":
            given = {k: _get(auth, k) for k in ("value", "env", "file") if _get(auth, k) is not None}
            if len(given) != 1:
                raise BackendConfigError(key, "token auth needs exactly one of value, env, file")
            (name, value), = given.items()
            return StaticToken(secret(value)) if name == "value" else StaticToken(**{name: value})
        if kind == "oauth2":
            for required in ("token_url", "client_id", "client_secret"):
                if not _get(auth, required):
                    raise BackendConfigError(f"{key}.{required}", "required for oauth2 auth")
            if has_userinfo(str(_get(auth, "token_url"))):
                raise BackendConfigError(f"{key}.token_url", "user info (user:password@) is not allowed in the URL: "
                                                             f"give the secret as {key}.client_secret_file")
            return OAuth2ClientCredentials(
                _get(auth, "token_url"), _get(auth, "client_id"), secret(_get(auth, "client_secret")),
                scope=_get(auth, "scope"), audience=_get(auth, "audience"),
            )
        if kind == "basic":  # FROST-Server's BasicAuthProvider
            from ..sensorthings.basic_auth import BasicAuth

            given = {k: _get(auth, k) for k in ("password", "password_env", "password_file") if _get(auth, k) is not None}
            return BasicAuth(_get(auth, "username") or "", **{k: secret(v) for k, v in given.items()})
    except ValueError as exc:
        if isinstance(exc, BackendConfigError):
            raise
        raise BackendConfigError(key, str(exc)) from None
    raise BackendConfigError(f"{key}.kind", f"unknown auth kind {kind!r}; one of 'token', 'oauth2', 'basic'")


def make_backend(config: Any, *, key: str = "broker", retry: RetryPolicy = DEFAULT_RETRY,
                 context: str | None = None, per_type_contexts: bool = True):
    """Build the sink a ``broker:`` block (mapping or config object) describes.

    Keys: ``kind``, ``url``, ``tenant`` (NGSI-LD) or ``service`` / ``service_path`` (NGSI-v2;
    ``tenant`` is taken as the service when ``service`` is absent), ``context``, ``auth``,
    ``batch_size``, ``max_body_bytes``, ``timeout_s``, ``ids`` (NGSI-v2: ``urn`` | ``local``).
    Raises :class:`BackendConfigError` naming the key at fault.

    NGSI-LD sinks write each entity with its own model's @context (``per_type_contexts``, see
    :func:`stadtlink.schemas.contexts.type_contexts`): ``context`` is then the fallback for types no
    registered model defines, and names the context server the model contexts are read from when
    it is one (the chart's). NGSI-v2 and SensorThings sinks convert entities and use no @context.
    """
    kind = _get(config, "kind") or DEFAULT_KIND
    if kind not in KINDS:
        raise BackendConfigError(f"{key}.kind", f"unknown broker kind {kind!r}; one of {', '.join(KINDS)}")
    url = _get(config, "url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BackendConfigError(f"{key}.url", f"must be an http:// or https:// URL (got {url!r})")
    if has_userinfo(url):
        raise BackendConfigError(f"{key}.url", f"user info (user:password@) is not allowed in the URL "
                                               f"({url_without_userinfo(url)}): give the credentials as {key}.auth")
    auth = build_auth(_get(config, "auth"), key=f"{key}.auth")
    timeout = float(_get(config, "timeout_s", 10.0) or 10.0)
    batch_size = int(_get(config, "batch_size", 200) or 200)
    max_body = _get(config, "max_body_bytes")
    tenant = _get(config, "tenant")
    if kind == "sensorthings":  # OGC SensorThings API v1.1 (FROST-Server, …): docs/backends/sensorthings.md
        from ..sensorthings import SensorThingsBackend

        if tenant:
            raise BackendConfigError(f"{key}.tenant", "SensorThings has no tenants: give each its own service root url")

        return SensorThingsBackend(url, auth=auth, timeout=timeout, retry=retry,
                                   batch_size=int(_get(config, "batch_size", 500) or 500),
                                   data_array=_get(config, "data_array"))
    if kind == "ngsi-v2":
        service = _get(config, "service") or tenant
        try:
            return NGSIv2Backend(
                url, service=service, service_path=_get(config, "service_path") or "/", auth=auth, timeout=timeout,
                retry=retry, batch_size=batch_size, max_body_bytes=int(max_body or 900_000),
                ids=_get(config, "ids") or "urn",
            )
        except ValueError as exc:
            text = str(exc)
            field = text.split(" ", 1)[0] if text.split(" ", 1)[0] in ("service", "service_path", "ids") else "url"
            if field == "service" and not _get(config, "service"):
                field = "tenant"
            raise BackendConfigError(f"{key}.{field}", text) from None
    quirks = quirks_for(kind)
    options: dict[str, Any] = {"timeout": timeout, "retry": retry, "batch_size": batch_size, "auth": auth}
    if max_body:
        options["max_body_bytes"] = int(max_body)
    try:
        context = _get(config, "context") or context
        if per_type_contexts:
            from stadtlink.schemas.contexts import type_contexts

            options["type_contexts"] = type_contexts(context)
        return NGSILDBackend(url, quirks=quirks, tenant=tenant, context=context, **options)
    except ValueError as exc:
        text = str(exc)
        field = "tenant" if text.startswith("tenant") else "url"
        raise BackendConfigError(f"{key}.{field}", text) from None


class BrokerDown(Exception):
    """The sink's host resolves but nothing answered at start (refused, timeout): not necessarily a
    configuration mistake -- the broker may come up later and the outbox waits for it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


async def _resolves(url: str) -> str | None:
    """None when the URL's host resolves, else the resolver's complaint."""
    import asyncio
    import socket

    from yarl import URL

    parsed = URL(url)
    try:
        await asyncio.get_running_loop().getaddrinfo(parsed.host, parsed.port or 80, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    return None


async def check_backend(backend: Any, *, key: str = "broker") -> None:
    """One request to the sink at start-up. A mistake in the configuration becomes a
    :class:`BackendConfigError` naming the key: ``url`` (the host does not resolve, or something
    answers that is not this kind of broker), ``auth`` (token endpoint refused, or the broker
    answered 401/403), ``tenant`` (unknown to the broker).

    A broker that is merely down (connection refused, timeout) raises :class:`BrokerDown`: the
    caller decides (the runtime logs it and starts -- the outbox waits -- unless
    ``check_at_start: strict``). A 5xx passes.
    """
    label = getattr(getattr(backend, "quirks", None), "label", None) or getattr(backend, "kind", "broker")
    complaint = await _resolves(backend.base_url)
    if complaint is not None:
        raise BackendConfigError(f"{key}.url", f"the host of {backend.base_url} does not resolve ({complaint})")
    try:
        response = await backend.probe()
    except AuthenticationError as exc:
        if exc.retryable:
            # unreachable, 5xx, 429: like a broker that is down, the outbox waits and the batcher retries
            raise BrokerDown(f"{key}.auth.token_url", f"the token endpoint did not answer: {exc}") from None
        raise BackendConfigError(f"{key}.auth", f"the token endpoint refused or failed: {exc}") from None
    except BrokerUnavailable as exc:
        raise BrokerDown(f"{key}.url", f"cannot reach {backend.base_url}: {exc.detail or exc}") from None
    except NGSILDError as exc:
        raise BackendConfigError(f"{key}.url", f"{backend.base_url}: {exc}") from None
    status = response.status
    if status in (401, 403):
        raise BackendConfigError(f"{key}.auth", f"{label} at {backend.base_url} refused the credentials (HTTP {status})")
    if status == 404:
        body = response.body or b""
        if b"NonexistentTenant" in body or b"NonExistingTenant" in body or b"NonExistentTenant" in body:
            raise BackendConfigError(f"{key}.tenant", f"{label} does not know tenant {getattr(backend, 'tenant', None)!r}")
        raise BackendConfigError(
            f"{key}.url", f"{backend.base_url} answers 404 where a {label} API should be: wrong URL or wrong kind?")
    if 400 <= status < 500 and status != 429:
        raise BackendConfigError(f"{key}.url", f"{backend.base_url} answers HTTP {status} to a plain GET ({label})")


__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "QUIRKS",
    "BackendConfigError",
    "BrokerDown",
    "BrokerQuirks",
    "NGSILDBackend",
    "NGSIv2Backend",
    "NonExistingTenant",
    "build_auth",
    "check_backend",
    "make_backend",
    "quirks_for",
]
