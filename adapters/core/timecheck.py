"""Time admission: an observation time the adapter can believe, or a dead letter.

A device or gateway with a broken clock (year 9999, 1970, a GPS week rollover) would otherwise
freeze an entity of a ``latest-state`` adapter for good: every later, correct reading is older than
the persisted newest ``observedAt`` and dropped as ``stale``. So every reading's ``observed_at``
(and, for what a mapper or a replay produced, every entity's newest ``observedAt``) must lie in
``[floor, now + future_margin]`` where ``floor`` is the later of ``not_before`` and
``now - max_age``. A reading outside is dead-lettered with reason :data:`IMPLAUSIBLE_TIME` before
the mapper sees it: it never reaches mapper state, the stale check or the persisted
newest-``observedAt`` hash. At start, persisted newest times in the future are removed
(:meth:`TimeAdmission.repair`) and future times in mapper state set back (:func:`repair_state_times`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .timeutil import iso_ms

#: dead-letter reason (and ``stadtlink_deadletters_total{reason}``) of a reading outside the window
IMPLAUSIBLE_TIME = "implausible-time"

DEFAULT_FUTURE_MARGIN_S = 300.0
DEFAULT_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MAX = datetime.max.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class TimeAdmission:
    """The admission window relative to the adapter's clock."""

    future_margin_s: float = DEFAULT_FUTURE_MARGIN_S
    not_before: datetime = DEFAULT_NOT_BEFORE
    max_age_s: float | None = None

    def bounds(self, now: datetime) -> tuple[datetime, datetime]:
        """``(earliest, latest)`` admissible observation time at ``now`` (aware UTC)."""
        try:
            latest = now + timedelta(seconds=self.future_margin_s)
        except OverflowError:    # a margin beyond year 9999: no upper bound
            latest = _MAX
        earliest = self.not_before
        if self.max_age_s is not None:
            try:
                earliest = max(earliest, now - timedelta(seconds=self.max_age_s))
            except OverflowError:
                pass
        return earliest, latest

    def iso_bounds(self, now: datetime) -> tuple[str, str]:
        """The bounds as NGSI-LD renders ``observedAt`` (``…T…Z`` strings compare in time order)."""
        earliest, latest = self.bounds(now)
        return iso_ms(earliest), iso_ms(latest)

    def problem(self, observed: datetime | str, now: datetime) -> str | None:
        """Why ``observed`` is not admissible at ``now`` (the dead letter's ``error``), or None."""
        earliest, latest = self.bounds(now)
        if isinstance(observed, str):
            lo, hi = iso_ms(earliest), iso_ms(latest)
            if observed > hi:
                return f"observation time {observed[:40]} is more than {self.future_margin_s:g} s in the future"
            if observed < lo:
                return f"observation time {observed[:40]} is before {lo}"
            return None
        if observed.tzinfo is None:
            return "observation time without a time zone"
        if observed > latest:
            return f"observation time {iso_ms(observed)} is more than {self.future_margin_s:g} s in the future"
        if observed < earliest:
            return f"observation time {iso_ms(observed)} is before {iso_ms(earliest)}"
        return None

    def repair(self, observed: dict[str, str], now: datetime) -> dict[str, str]:
        """Remove (and return) the persisted newest times that lie in the future at ``now``."""
        _, hi = self.iso_bounds(now)
        future = {eid: t for eid, t in observed.items() if t > hi}
        for eid in future:
            del observed[eid]
        return future


_ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z")


def repair_state_times(state: dict[str, Any], admission: TimeAdmission, now: datetime) -> dict[str, Any]:
    """Mapper state with ``…T…Z`` times in the future, repaired: ``{key: repaired value}``.

    A mapper that keeps the last time it saw per device (parking's ``last_seen``, to drop
    out-of-order uplinks) is frozen by one such time just like the newest-``observedAt`` hash. No
    correct reading can be later than it, so each such string is set back to ``not_before``:
    older than anything admissible, the next correct reading replaces it. ``state`` is updated in
    place; the caller persists the returned keys.
    """
    _, hi = admission.iso_bounds(now)
    floor = iso_ms(admission.not_before)
    changed: dict[str, Any] = {}

    def fix(value: Any) -> tuple[Any, bool]:
        if type(value) is str:
            if value > hi and _ISO_Z.fullmatch(value):
                return floor, True
            return value, False
        if type(value) is dict:
            out, hit = {}, False
            for k, v in value.items():
                out[k], h = fix(v)
                hit = hit or h
            return (out, True) if hit else (value, False)
        if type(value) is list:
            items = [fix(v) for v in value]
            if any(h for _, h in items):
                return [v for v, _ in items], True
            return value, False
        return value, False

    for key, value in state.items():
        fixed, hit = fix(value)
        if hit:
            changed[key] = fixed
    state.update(changed)
    return changed
