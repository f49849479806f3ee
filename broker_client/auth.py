"""Bearer-token authentication: a static token (value, env var or mounted file) and the OAuth2
client-credentials grant (Keycloak style) with a token cache.

An auth object gives the client its headers with ``await auth.headers(session)`` and is told
with ``await auth.invalidate()`` that the broker (or its PEP proxy) answered 401, so the next
``headers`` call fetches a fresh token. Secrets never appear in ``repr`` or in log messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import aiohttp
import orjson

from .errors import AuthenticationError
from .redact import Redactor, has_userinfo, url_without_userinfo

log = logging.getLogger("stadtlink.broker_client.auth")


@runtime_checkable
class Auth(Protocol):
    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]: ...

    async def invalidate(self) -> None: ...


class StaticToken:
    """A fixed bearer token given directly, by environment variable name, or by file path.

    A file (e.g. a Kubernetes secret mount, which is replaced atomically on rotation) is read again
    whenever its modification time or size changes, and always after a 401. An env var is read at
    every request, so a process that rotates it in ``os.environ`` is followed too.
    """

    def __init__(self, token: str | None = None, *, env: str | None = None, file: str | os.PathLike[str] | None = None):
        if sum(x is not None for x in (token, env, file)) != 1:
            raise ValueError("StaticToken needs exactly one of token=, env=, file=")
        self._token = token
        self._env = env
        self._file = Path(file) if file is not None else None
        self._file_sig: tuple[int, int] | None = None
        self._file_token: str | None = None

    def __repr__(self) -> str:
        source = f"env={self._env!r}" if self._env else f"file={str(self._file)!r}" if self._file else "token=***"
        return f"StaticToken({source})"

    def _current(self) -> str:
        if self._token is not None:
            return self._token
        if self._env is not None:
            value = os.environ.get(self._env, "").strip()
            if not value:
                raise AuthenticationError(title="Token missing", detail=f"environment variable {self._env} is empty or unset")
            return value
        assert self._file is not None
        try:
            st = self._file.stat()
        except OSError as exc:
            raise AuthenticationError(title="Token file unreadable", detail=f"{self._file}: {exc.strerror}") from None
        sig = (st.st_mtime_ns, st.st_size)
        if sig != self._file_sig or self._file_token is None:
            value = self._file.read_text(encoding="utf-8").strip()
            if not value:
                raise AuthenticationError(title="Token missing", detail=f"token file {self._file} is empty")
            self._file_token, self._file_sig = value, sig
        return self._file_token

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._current()}"}

    async def invalidate(self) -> None:
        self._file_sig = None
        self._file_token = None


class OAuth2ClientCredentials:
    """OAuth2 client-credentials grant (RFC 6749 §4.4), as Keycloak serves it at
    ``<realm>/protocol/openid-connect/token``: a form POST with ``grant_type=client_credentials``,
    ``client_id`` and ``client_secret``.

    The token is cached and fetched again shortly before it expires: at ``expires_in`` minus a
    margin of 20% of its lifetime, at most 30 s (a 300 s token is renewed after 270 s). A 401 from
    the broker invalidates it (the client then retries the request once). Concurrent callers share
    one fetch.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        audience: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if has_userinfo(token_url):
            raise ValueError(f"token_url must not carry user info (got {url_without_userinfo(token_url)!r}): "
                             "give the client secret as client_secret / client_secret_file")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self.audience = audience
        self._timeout = timeout
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, client_secret=***)"

    @staticmethod
    def refresh_delay(expires_in: float) -> float:
        """Seconds after issue at which a token living ``expires_in`` seconds is renewed."""
        margin = min(30.0, 0.2 * expires_in)
        return max(0.0, expires_in - margin)

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        token = self._token
        if token is None or self._clock() >= self._refresh_at:
            async with self._lock:
                if self._token is None or self._clock() >= self._refresh_at:
                    await self._fetch(session)
                token = self._token
        return {"Authorization": f"Bearer {token}"}

    async def invalidate(self) -> None:
        self._token = None

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._client_secret}
        if self.scope:
            form["scope"] = self.scope
        if self.audience:
            form["audience"] = self.audience
        started = self._clock()
        # the endpoint's answer may repeat what we sent (a Keycloak error_description, a proxy's page)
        redact = Redactor([self._client_secret])
        try:
            async with session.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                body = redact.bytes(await resp.read())
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise AuthenticationError(
                title="Token endpoint unreachable", detail=f"{self.token_url}: {type(exc).__name__}"
            ) from None
        if status != 200:
            detail = None
            try:
                decoded = orjson.loads(body) if body else None
                if isinstance(decoded, dict):  # OAuth2 error body: {"error", "error_description"}
                    detail = " ".join(str(decoded[k]) for k in ("error", "error_description") if k in decoded) or None
                    if detail is not None and len(detail) > 300:
                        detail = detail[:300] + "..."
            except orjson.JSONDecodeError:
                pass
            log.warning("token request to %s refused with HTTP %s", self.token_url, status)
            raise AuthenticationError(status, None, "Token request refused", detail, None)
        try:
            decoded = orjson.loads(body)
            token = decoded["access_token"]
            if not isinstance(token, str) or not token:
                raise TypeError
            expires_in = decoded.get("expires_in", 300)
            expires_in = float(expires_in) if isinstance(expires_in, (int, float, str)) else 300.0
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AuthenticationError(200, None, "Token response unusable", "no access_token in the answer", None) from None
        self._token = token
        self._refresh_at = started + self.refresh_delay(expires_in)
        log.debug("fetched a token from %s valid %.0f s", self.token_url, expires_in)

