"""Webhook source: network servers push uplinks (TTS webhook integration, ChirpStack HTTP integration).

``POST <path>`` on the adapter's own aiohttp app. The token is checked in constant time against
``X-Stadtlink-Token`` or ``Authorization: Bearer …`` (401 otherwise). The answer is ``202`` only
after ``emit`` returned, i.e. the message is in the outbox; ``503`` if the pipeline refused it
(outbox full) or the source is not running yet, so the pushing server retries; ``413`` above
``max_body_bytes`` (1 MiB).

ChirpStack's HTTP integration posts every event type to one URL with ``?event=up|join|status|…``:
events other than ``up`` (and TTS-style ``?event=`` values listed in ``events``) are answered
``202`` and counted as ``ignored``, not emitted — they are not uplinks and would only be dead letters.

The Things Stack tries a webhook at most once per uplink unless its paid retries feature is on
(lorawan-stack-docs ``doc/content/integrations/webhooks/retries.md`` @
a189a5255199ce9ac016abbcf66d69fd3a73fed9): with a ``tts:`` block (``application_id``, ``api_url``,
the API key) the source catches up from the Storage Integration at start and every
``tts.backfill.period_s`` (:mod:`.tts_storage`), so a push that failed while the adapter was down
is fetched from there.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import datetime, timezone
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..reading import RawMessage
from .base import Emit, SourceBase
from .secrets import resolve_secret
from .tts import TtsConfig
from .tts_storage import make_backfill

log = logging.getLogger("stadtlink.source.webhook")


async def read_limited(stream, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds ``limit`` bytes (chunked bodies included)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


class WebhookSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["webhook"] = "webhook"
    name: str | None = None
    path: str = "/uplink"
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: str | None = None
    profile: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)   # passed to profile.decode (e.g. json-map fields)
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    #: values of the ``event`` query parameter that are emitted (absent parameter: always emitted)
    events: list[str] = Field(default_factory=lambda: ["up"])
    #: The Things Stack pushes here: backfill from its Storage Integration (needs ``tts.api_url``)
    tts: TtsConfig | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or v in ("/healthz", "/readyz", "/metrics"):
            raise ValueError("path must start with '/' and not be /healthz, /readyz or /metrics")
        return v

    @model_validator(mode="after")
    def _one_token(self):
        if sum(x is not None for x in (self.token, self.token_env, self.token_file)) > 1:
            raise ValueError("give only one of token, token_env, token_file")
        return self


class WebhookSource(SourceBase):
    def __init__(self, config: WebhookSourceConfig, *, http_app: web.Application):
        self.config = config
        self.name = config.name or f"webhook{config.path}"
        token = resolve_secret(config.token, config.token_env, config.token_file, what="token")
        self._token = token.encode() if token else None
        if self._token is None:
            log.warning("webhook %s: no token configured — anyone who can reach the port can push data",
                        config.path)
        self._emit: Emit | None = None
        self._stats = {"requests": 0.0, "accepted": 0.0, "unauthorized": 0.0, "too_large": 0.0,
                       "emit_refused": 0.0, "ignored": 0.0}
        #: catch-ups from TTS's Storage Integration (None without ``tts:``)
        self.backfill = make_backfill(config.tts, default_host=None, source_kind="webhook", name=self.name)
        http_app.router.add_post(config.path, self._handle)

    def use_store(self, store) -> None:
        if self.backfill is not None:
            self.backfill.use_store(store)

    @property
    def ready(self) -> bool:
        return self._emit is not None

    def stats(self) -> dict[str, float]:
        out = dict(self._stats)
        if self.backfill is not None:
            out.update(self.backfill.stats())
        return out

    async def run(self, emit: Emit) -> None:
        self._emit = emit
        catching_up = (asyncio.create_task(self.backfill.run(emit), name=f"tts-backfill:{self.name}")
                       if self.backfill is not None else None)
        try:
            await asyncio.Event().wait()   # requests arrive through the route; run until cancelled
        finally:
            self._emit = None
            if catching_up is not None:
                await self.backfill.stop_task(catching_up)

    def _authorized(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        presented = request.headers.get("X-Stadtlink-Token")
        if presented is None:
            auth = request.headers.get("Authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":
                presented = value.strip()
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    async def _handle(self, request: web.Request) -> web.Response:
        self._stats["requests"] += 1
        if not self._authorized(request):
            self._stats["unauthorized"] += 1
            return web.json_response({"error": "unauthorized"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="stadtlink"'})
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            self._stats["too_large"] += 1
            return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
        body = await read_limited(request.content, limit)
        if body is None:
            self._stats["too_large"] += 1
            return web.json_response({"error": f"body larger than {limit} bytes"}, status=413)
        event = request.query.get("event")
        if event is not None and event not in self.config.events:
            self._stats["ignored"] += 1
            return web.json_response({"status": "ignored", "event": event}, status=202)
        emit = self._emit
        if emit is None:
            return web.json_response({"error": "not running"}, status=503, headers={"Retry-After": "5"})
        message = RawMessage(source="webhook", payload=body, topic=self.config.path,
                             received_at=datetime.now(timezone.utc),
                             attributes={"content_type": request.headers.get("Content-Type", "")})
        try:
            await emit(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - outbox full: the pusher must retry
            self._stats["emit_refused"] += 1
            log.warning("webhook %s: pipeline refused a message (%s); answered 503", self.config.path, exc)
            return web.json_response({"error": "temporarily unavailable"}, status=503,
                                     headers={"Retry-After": "5"})
        self._stats["accepted"] += 1
        if self.backfill is not None:
            self.backfill.note(body)
        return web.json_response({"status": "accepted"}, status=202)


__all__ = ["WebhookSourceConfig", "WebhookSource"]
