"""What every polling source shares (HTTP feeds, Modbus devices): config fields, one loop per
target on a fixed-rate schedule, backoff after failures, counters and readiness.

Every target runs on its own schedule (``interval_s`` ± ``jitter``, the first polls spread over the
first interval's jitter window), so a slow or dead target never delays the others; a semaphore
shared by all targets caps concurrent polls at ``concurrency``. A failed poll (an error, a timeout,
the outbox refusing the message) is counted and retried after an exponential backoff starting at
``retry_min_s`` (at most the interval) and capped at ``retry_max_s`` (at least the interval); it
never stops the source. ``ready`` is True when the share of targets whose last poll succeeded is
above zero and at least ``ready_min_share``.

A subclass says how to poll one target (:meth:`PollingSource.poll_once`) and may hold resources
for the whole run (:meth:`PollingSource.polling`: an HTTP session, Modbus connections).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any, AsyncIterator, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..reading import RawMessage
from .backoff import Backoff, jittered
from .base import Emit, SourceBase


class PollingSourceConfig(BaseModel):
    """The fields every polling source has. A subclass adds ``kind`` and ``targets`` and may
    redeclare a field to give it its own default (Modbus devices are polled more often than feeds)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    profile: str | None = None
    interval_s: float = Field(60.0, gt=0)
    jitter: float = Field(0.1, ge=0, lt=1)
    timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(8, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    retry_min_s: float = Field(5.0, gt=0)            # first retry after an error (capped at interval_s)
    retry_max_s: float = Field(300.0, gt=0)          # backoff ceiling (at least interval_s)
    ready_min_share: float = Field(0.0, ge=0, le=1)  # ready: share of targets whose last poll succeeded


T = TypeVar("T")


class TargetState(Generic[T]):
    """One target's schedule and health. Subclasses add what their protocol keeps per target
    (HTTP validators, a Modbus connection)."""

    def __init__(self, target: T, interval_s: float, backoff: Backoff):
        self.target = target
        self.interval_s = interval_s
        self.backoff = backoff
        self.ok: bool | None = None      # None until the first poll finished
        self.failures = 0


class PollingSource(SourceBase, Generic[T]):
    """The poll loop; subclasses implement :meth:`poll_once` (and :meth:`describe` for log lines)."""

    kind = "poll"
    log = logging.getLogger("stadtlink.source.poll")

    def __init__(self, config: PollingSourceConfig, targets: list[TargetState[T]], *, extra_stats: tuple[str, ...] = ()):
        self.config = config
        self.name = config.name or self.kind
        self._targets = targets
        self._stats: dict[str, float] = dict.fromkeys(("polls", "poll_failures", *extra_stats, "emitted",
                                                        "emit_refused"), 0.0)

    @staticmethod
    def schedule(config: PollingSourceConfig, interval_s: float | None = None) -> tuple[float, Backoff]:
        """A target's interval (its own or the source's) and its backoff."""
        interval = interval_s or config.interval_s
        first = min(config.retry_min_s, interval)
        return interval, Backoff(first, max(config.retry_max_s, interval, first))

    # -- what the runner reads ------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        ok = sum(1 for s in self._targets if s.ok)
        return ok > 0 and ok / len(self._targets) >= self.config.ready_min_share

    def stats(self) -> dict[str, float]:
        ok = sum(1 for s in self._targets if s.ok)
        return {**self._stats, "targets": float(len(self._targets)), "targets_ok": float(ok)}

    # -- the loop -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def polling(self) -> AsyncIterator[Any]:
        """Resources held while the source runs, handed to every :meth:`poll_once` (default: none)."""
        yield None

    async def poll_once(self, state: TargetState[T], resource: Any, sem: asyncio.Semaphore, emit: Emit) -> bool:
        """Poll ``state.target`` once (under ``sem``) and emit what it answered; raise on failure.
        Returns True if a message was emitted."""
        raise NotImplementedError

    def describe(self, state: TargetState[T]) -> str:
        """The target in log lines."""
        return str(state.target)

    async def run(self, emit: Emit) -> None:
        sem = asyncio.Semaphore(self.config.concurrency)
        async with self.polling() as resource:
            async with asyncio.TaskGroup() as tg:
                for state in self._targets:
                    tg.create_task(self._poll_loop(state, resource, sem, emit))

    async def _poll_loop(self, state: TargetState[T], resource: Any, sem: asyncio.Semaphore, emit: Emit) -> None:
        interval = state.interval_s
        await asyncio.sleep(interval * self.config.jitter * random.random())
        next_due = time.monotonic()
        while True:
            try:
                await self.poll_once(state, resource, sem, emit)
                state.ok = True
                state.failures = 0
                state.backoff.reset()
                # Fixed rate: a poll that ran long does not shift the schedule, but never burst-catch-up.
                next_due = max(next_due + jittered(interval, self.config.jitter), time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a bad target must never stop the source
                state.ok = False
                state.failures += 1
                self._stats["poll_failures"] += 1
                delay = state.backoff.next()
                next_due = time.monotonic() + delay
                level = logging.WARNING if state.failures <= 3 or state.failures % 20 == 0 else logging.DEBUG
                self.log.log(level, "%s %s: %s failed (%s, %d in a row); retry in %.1fs", self.kind, self.name,
                             self.describe(state), exc, state.failures, delay)
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))

    async def emit_counted(self, emit: Emit, message: RawMessage) -> None:
        """``emit(message)``, counted as emitted or refused (the outbox full: the poll failed)."""
        try:
            await emit(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._stats["emit_refused"] += 1
            raise
        self._stats["emitted"] += 1


__all__ = ["PollingSourceConfig", "PollingSource", "TargetState"]
