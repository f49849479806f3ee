"""Time handling shared by every decoder, mapper and broker backend.

Defined in the root package, below every layer that uses it (adapters, and in the broker client the
SensorThings backend and the subscription sync); adapters may import it as
``stadtlink.adapters.core.timeutil`` or from ``stadtlink.sdk``.

NGSI-LD wants UTC with a ``Z``; Orion-LD stores ``observedAt`` with millisecond precision. Devices and
network servers send nanoseconds (TTS), local offsets (PEGELONLINE, Fronius) or no offset at all
(ParkAPI v1, some DATEX II feeds). Everything goes through :func:`parse_time` and :func:`iso_ms`.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
_FRACTION = re.compile(r"\.(\d+)")


class TimeFormatError(ValueError):
    """A timestamp that cannot be read."""


def parse_time(value: str | datetime, *, naive_is: timezone | None = UTC) -> datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime.

    Fractions longer than microseconds (TTS sends nanoseconds) are truncated. A timestamp without an
    offset is taken to be in ``naive_is`` (UTC by default); pass ``naive_is=None`` to refuse it.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        if not isinstance(value, str) or not value:
            raise TimeFormatError(f"not a timestamp: {value!r}")
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise TimeFormatError(f"not an ISO 8601 timestamp: {value!r}") from exc
    if dt.tzinfo is None:
        if naive_is is None:
            raise TimeFormatError(f"timestamp without UTC offset: {value!r}")
        dt = dt.replace(tzinfo=naive_is)
    try:
        return dt.astimezone(UTC)
    except OverflowError:   # e.g. 0001-01-01T00:00:00+01:00 lies before datetime.min in UTC
        raise TimeFormatError(f"timestamp out of range: {value!r}") from None


_LAST_ISO: tuple[datetime | None, str] = (None, "")


def iso_ms(dt: datetime) -> str:
    """``2024-05-01T12:00:00.000Z``: UTC, millisecond precision, as Orion-LD stores it.

    On every mapper's hot path (each attribute of an entity renders its ``observedAt``, usually the
    same datetime object): the last datetime rendered is remembered, and ``isoformat`` is used rather
    than ``strftime`` (faster, and strftime left years before 1000 unpadded)."""
    global _LAST_ISO
    last = _LAST_ISO
    if dt is last[0]:
        return last[1]
    if dt.tzinfo is None:
        raise TimeFormatError("naive datetime: attach a timezone before rendering")
    text = dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    _LAST_ISO = (dt, text)
    return text


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


__all__ = ["UTC", "TimeFormatError", "parse_time", "iso_ms", "utcnow", "from_epoch", "timedelta"]
