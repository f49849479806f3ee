"""Time handling for decoders and mappers: :func:`parse_time` (any ISO 8601 a device or feed sends →
aware UTC) and :func:`iso_ms` (the millisecond ``…Z`` form Orion-LD stores).

The one definition lives in :mod:`stadtlink.timeutil` (the root package, below the broker client,
whose backends parse and render times too); this module is the adapters' name for it.
"""
from stadtlink.timeutil import UTC, TimeFormatError, from_epoch, iso_ms, parse_time, timedelta, utcnow

__all__ = ["UTC", "TimeFormatError", "parse_time", "iso_ms", "utcnow", "from_epoch", "timedelta"]
