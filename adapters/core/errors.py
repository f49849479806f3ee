"""Errors a decoder or mapper raises for bad input. The runtime turns them into dead letters."""
from __future__ import annotations


class StadtlinkError(Exception):
    """Base class."""


class DecodeError(StadtlinkError):
    """The input cannot be decoded (wrong length, unknown frame, invalid JSON/XML …).

    ``reason`` is a short machine-friendly tag used as the metrics label and dead-letter reason.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MappingError(StadtlinkError):
    """A reading cannot become a valid entity (e.g. the device is not in the registry)."""

    def __init__(self, reason: str, detail: str = "", missing: list[str] | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.missing = missing or []


class ReadingDropped(StadtlinkError):
    """A deliberate drop (retransmission, implausible value, no echo …): counted, not dead-lettered."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigError(StadtlinkError):
    """Bad configuration; the message names the key."""
