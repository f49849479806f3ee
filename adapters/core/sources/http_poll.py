"""HTTP polling source: REST/JSON/XML feeds (ParkAPI, DATEX II, PEGELONLINE, Fronius Solar API …).

The schedule, backoff, counters and readiness are every polling source's (:mod:`.polling`): each
target on its own fixed-rate schedule, ``concurrency`` requests at most at once. Conditional requests (``If-None-Match`` / ``If-Modified-Since``) make an unchanged feed cost one
``304`` and emit nothing. Errors (5xx/4xx, timeouts, refused connections) are counted and retried
with exponential backoff; they never stop the source. The validators of a response are kept only
after ``emit`` returned, so data the pipeline refused (outbox full) is fetched again next time.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..reading import RawMessage
from .base import Emit
from .polling import PollingSource, PollingSourceConfig, TargetState
from .secrets import resolve_secret
from .webhook import read_limited

log = logging.getLogger("stadtlink.source.http")


class HttpTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    device: str | None = None
    profile: str | None = None                     # overrides the source's profile for this target
    options: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    interval_s: float | None = Field(None, gt=0)   # overrides the source's interval for this target

    @model_validator(mode="after")
    def _url(self):
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"target url must start with http:// or https://: {self.url!r}")
        return self


class HttpPollSourceConfig(PollingSourceConfig):
    kind: Literal["http-poll"] = "http-poll"
    targets: list[HttpTarget] = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    #: secret headers: header name → environment variable holding its value (e.g. an API key)
    headers_env: dict[str, str] = Field(default_factory=dict)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    conditional: bool = True                         # send If-None-Match / If-Modified-Since


class _TargetState(TargetState[HttpTarget]):
    """A feed's schedule plus the validators of its last answer that the pipeline took."""

    def __init__(self, target: HttpTarget, interval_s: float, backoff):
        super().__init__(target, interval_s, backoff)
        self.etag: str | None = None
        self.last_modified: str | None = None


class _PollFailed(Exception):
    pass


class HttpPollSource(PollingSource[HttpTarget]):
    kind = "http-poll"
    log = log

    def __init__(self, config: HttpPollSourceConfig):
        targets = [_TargetState(t, *self.schedule(config, t.interval_s)) for t in config.targets]
        super().__init__(config, targets, extra_stats=("not_modified",))
        self.config: HttpPollSourceConfig = config
        self._secret_headers: dict[str, str] = {}
        for header, env in config.headers_env.items():
            value = resolve_secret(None, env, None, what=f"headers_env.{header}")
            if value is not None:
                self._secret_headers[header] = value

    @contextlib.asynccontextmanager
    async def polling(self) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield session

    def describe(self, state: _TargetState) -> str:
        return state.target.url

    def _headers(self, state: _TargetState) -> dict[str, str]:
        headers = {**self.config.headers, **self._secret_headers, **state.target.headers}
        if self.config.conditional:
            if state.etag:
                headers["If-None-Match"] = state.etag
            if state.last_modified:
                headers["If-Modified-Since"] = state.last_modified
        return headers

    async def poll_once(self, state: _TargetState, session: aiohttp.ClientSession, sem: asyncio.Semaphore,
                        emit: Emit) -> bool:
        """One request; emits the body unless 304. Returns True if something was emitted."""
        url = state.target.url
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        async with sem:
            self._stats["polls"] += 1
            try:
                async with session.get(url, headers=self._headers(state), timeout=timeout) as resp:
                    if resp.status == 304:
                        self._stats["not_modified"] += 1
                        return False
                    if resp.status >= 400:
                        raise _PollFailed(f"HTTP {resp.status}")
                    if resp.content_length is not None and resp.content_length > self.config.max_body_bytes:
                        raise _PollFailed(f"body of {resp.content_length} bytes exceeds max_body_bytes")
                    body = await read_limited(resp.content, self.config.max_body_bytes)
                    if body is None:
                        raise _PollFailed("body exceeds max_body_bytes")
                    status = resp.status
                    content_type = resp.headers.get("Content-Type", "")
                    etag = resp.headers.get("ETag")
                    last_modified = resp.headers.get("Last-Modified")
            except asyncio.TimeoutError:
                raise _PollFailed(f"timeout after {self.config.timeout_s}s") from None
            except aiohttp.ClientError as exc:
                raise _PollFailed(f"{type(exc).__name__}: {exc}") from None
        options = {**self.config.options, **state.target.options}
        attributes: dict[str, Any] = {k: v for k, v in options.items()}
        attributes.update({"options": options, "content_type": content_type, "status": status, "url": url})
        if state.target.profile:
            attributes["profile"] = state.target.profile
        message = RawMessage(source="http", payload=body, topic=url, device_hint=state.target.device,
                             received_at=datetime.now(timezone.utc), attributes=attributes)
        await self.emit_counted(emit, message)
        # Only now "acknowledge" the response: remember its validators.
        state.etag = etag
        state.last_modified = last_modified
        return True


__all__ = ["HttpTarget", "HttpPollSourceConfig", "HttpPollSource"]
