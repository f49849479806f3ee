"""The one row type of both PV decoders: a device's field (Fronius) or point (SunSpec) → a reading key.

Ranges are not checked here: the mapper's measure rows (valid ranges from the Smart Data Models'
schemas) leave out and count what a device reports out of range.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceRow:
    name: str                                   # the device's field / point name
    key: str                                    # the reading's key (the family vocabulary)
    convert: Callable[[Any], Any] | None = None  # unit conversion; None from it leaves the value out


def rows(*triples: tuple) -> tuple[SourceRow, ...]:
    return tuple(SourceRow(*t) for t in triples)


def apply_rows(table: Iterable[SourceRow], lookup: Callable[[str], Any], into: dict[str, Any], *,
               first_wins: bool = False) -> None:
    """Put each row's (converted) value found by ``lookup(row.name)`` into ``into[row.key]``; absent
    values are left out. ``first_wins``: a key already set is kept (SunSpec: the first model of a kind)."""
    for row in table:
        value = lookup(row.name)
        if value is None:
            continue
        if row.convert is not None:
            value = row.convert(value)
            if value is None:
                continue
        if first_wins:
            into.setdefault(row.key, value)
        else:
            into[row.key] = value


__all__ = ["SourceRow", "rows", "apply_rows"]
