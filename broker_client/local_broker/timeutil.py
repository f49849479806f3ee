"""ISO 8601 DateTime parsing and the millisecond ``...Z`` rendering Orion-LD uses."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

_DATETIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(Z|z|[+-]\d{2}:?\d{2}|[+-]\d{2})?$"
)


def parse_datetime(text: object) -> float | None:
    """Epoch seconds (ms precision, truncated) for an ISO 8601 date-time, or None if invalid."""
    if not isinstance(text, str):
        return None
    m = _DATETIME_RE.match(text.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, tz = m.groups()
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                      tzinfo=timezone.utc)
    except ValueError:
        return None
    epoch = dt.timestamp()
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0)
        epoch -= sign * offset
    millis = int((frac or "0")[:3].ljust(3, "0"))
    return epoch + millis / 1000.0


def format_datetime(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for epoch seconds."""
    whole = int(epoch // 1)
    millis = int(round((epoch - whole) * 1000))
    if millis >= 1000:
        whole += 1
        millis -= 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def normalise_datetime(text: object) -> str | None:
    epoch = parse_datetime(text)
    return None if epoch is None else format_datetime(epoch)


def now() -> float:
    """Current time truncated to milliseconds."""
    return int(time.time() * 1000) / 1000.0
