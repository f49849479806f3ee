"""JSON logs, one line per event, with the adapter and device ids; and a rate limiter so a
misbehaving device is logged once per reason and interval, never once per message."""
from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from typing import Any

import orjson

_STD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, adapter: str | None = None):
        super().__init__()
        self.adapter = adapter

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.adapter and "adapter" not in record.__dict__:
            out["adapter"] = self.adapter
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "INFO", *, adapter: str | None = None, stream=None) -> None:
    """Route the root logger to one JSON line per record on stderr (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_stadtlink", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(adapter))
    handler._stadtlink = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per scrape: keep it quiet unless debugging
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG)


class RateLimitedLog:
    """Logs an event at most once per ``key`` and ``interval`` seconds, with the count suppressed since."""

    def __init__(self, logger: logging.Logger, interval: float = 300.0, max_keys: int = 10_000):
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self._last: dict[Any, list] = {}

    def __call__(self, level: int, key: Any, msg: str, *args: Any, **extra: Any) -> bool:
        now = time.monotonic()
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return False
        suppressed = entry[1] if entry is not None else 0
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = [now, 0]
        if suppressed:
            extra["suppressed"] = suppressed
        self.logger.log(level, msg, *args, extra=extra)
        return True
