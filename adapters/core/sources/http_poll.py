"""HTTP polling source: REST/JSON/XML feeds (ParkAPI, DATEX II, PEGELONLINE, Fronius Solar API …).

Every target runs on its own schedule (fixed rate, ``interval_s`` ± ``jitter``), so a slow or dead
target never delays the others; a shared semaphore caps concurrent requests at ``concurrency``.
Conditional requests (``If-None-Match`` / ``If-Modified-Since``) make an unchanged feed cost one
``304`` and emit nothing. Errors (5xx/4xx, timeouts, refused connections) are counted and retried
with exponential backoff; they never stop the source. The validators of a response are kept only
after ``emit`` returned, so data the pipeline refused (outbox full) is fetched again next time.

``ready`` is True when the share of targets whose last poll succeeded is above zero and at least
``ready_min_share``.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..reading import RawMessage
from .backoff import Backoff, jittered
from .base import Emit
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


class HttpPollSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["http-poll"] = "http-poll"
    name: str | None = None
    profile: str | None = None
    interval_s: float = Field(60.0, gt=0)
    jitter: float = Field(0.1, ge=0, lt=1)
    timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(8, ge=1)
    targets: list[HttpTarget] = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    #: secret headers: header name → environment variable holding its value (e.g. an API key)
    headers_env: dict[str, str] = Field(default_factory=dict)
    retry_min_s: float = Field(5.0, gt=0)            # first retry after an error (capped at interval_s)
    retry_max_s: float = Field(300.0, gt=0)          # backoff ceiling (at least interval_s)
    ready_min_share: float = Field(0.0, ge=0, le=1)  # ready: share of targets whose last poll succeeded
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    conditional: bool = True                         # send If-None-Match / If-Modified-Since


class _TargetState:
    __slots__ = ("target", "etag", "last_modified", "ok", "failures", "backoff")

    def __init__(self, target: HttpTarget, backoff: Backoff):
        self.target = target
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.ok: bool | None = None      # None until the first poll finished
        self.failures = 0
        self.backoff = backoff


class _PollFailed(Exception):
    pass


class HttpPollSource:
    def __init__(self, config: HttpPollSourceConfig):
        self.config = config
        self.name = config.name or "http-poll"
        self._targets: list[_TargetState] = []
        for t in config.targets:
            interval = t.interval_s or config.interval_s
            first = min(config.retry_min_s, interval)
            self._targets.append(_TargetState(t, Backoff(first, max(config.retry_max_s, interval, first))))
        self._stats = {"polls": 0.0, "poll_failures": 0.0, "not_modified": 0.0, "emitted": 0.0,
                       "emit_refused": 0.0}
        self._secret_headers: dict[str, str] = {}
        for header, env in config.headers_env.items():
            value = resolve_secret(None, env, None, what=f"headers_env.{header}")
            if value is not None:
                self._secret_headers[header] = value

    @property
    def ready(self) -> bool:
        ok = sum(1 for s in self._targets if s.ok)
        return ok > 0 and ok / len(self._targets) >= self.config.ready_min_share

    def stats(self) -> dict[str, float]:
        ok = sum(1 for s in self._targets if s.ok)
        return {**self._stats, "targets": float(len(self._targets)), "targets_ok": float(ok)}

    async def run(self, emit: Emit) -> None:
        sem = asyncio.Semaphore(self.config.concurrency)
        connector = aiohttp.TCPConnector(limit=self.config.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with asyncio.TaskGroup() as tg:
                for state in self._targets:
                    tg.create_task(self._poll_loop(state, session, sem, emit))

    async def _poll_loop(self, state: _TargetState, session: aiohttp.ClientSession, sem: asyncio.Semaphore,
                         emit: Emit) -> None:
        interval = state.target.interval_s or self.config.interval_s
        # Spread the first polls of many targets over the first interval's jitter window.
        await asyncio.sleep(interval * self.config.jitter * random.random())
        next_due = time.monotonic()
        while True:
            try:
                await self.poll_once(state, session, sem, emit)
                state.ok = True
                state.failures = 0
                state.backoff.reset()
                next_due += jittered(interval, self.config.jitter)
                # Fixed rate: a poll that ran long does not shift the schedule, but never burst-catch-up.
                next_due = max(next_due, time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad target must never stop the source
                state.ok = False
                state.failures += 1
                self._stats["poll_failures"] += 1
                delay = state.backoff.next()
                next_due = time.monotonic() + delay
                level = logging.WARNING if state.failures <= 3 or state.failures % 20 == 0 else logging.DEBUG
                log.log(level, "http-poll %s: %s failed (%s, %d in a row); retry in %.1fs", self.name,
                        state.target.url, exc, state.failures, delay)
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))

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
        try:
            await emit(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._stats["emit_refused"] += 1
            raise
        self._stats["emitted"] += 1
        # Only now "acknowledge" the response: remember its validators.
        state.etag = etag
        state.last_modified = last_modified
        return True


__all__ = ["HttpTarget", "HttpPollSourceConfig", "HttpPollSource"]
