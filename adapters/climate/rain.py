"""MeteoHelix rain: a revolving 8-bit click counter turned into precipitation per message.

The station only sends how many clicks its rain gauge has counted so far, modulo 256. The amount
of one interval is the difference to the previous message times the gauge resolution. The previous
counter lives in the adapter's persistent state (``ctx.state``), so a restart of the adapter neither
loses the baseline nor invents rain.

Decisions (each tested):

* no previous counter (first message of a station) → no precipitation, the counter becomes the baseline;
* counter below the previous one → the counter wrapped: ``counter + 256 − previous`` clicks;
* LoRaWAN frame counter below the previous one → the device restarted (rejoin resets ``f_cnt``),
  its click counter restarted too: no precipitation, new baseline;
* previous counter older than ``max_gap_s`` → it may have wrapped more than once: new baseline;
* a message not newer than the baseline (late retransmission) → ignored, baseline kept;
* a message without a counter (sensor error) leaves the baseline alone, so the next message's
  difference still covers all the rain.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stadtlink.adapters.core.timeutil import TimeFormatError, iso_ms, parse_time

COUNTER_MODULO = 256
STATE_PREFIX = "climate:rain:"


@dataclass(frozen=True, slots=True)
class RainStep:
    """What one counter value meant: ``outcome`` is one of baseline, delta, wrap, device-reset,
    stale, out-of-order; ``precipitation`` (mm) is set only for delta and wrap."""

    outcome: str
    clicks: int | None = None
    precipitation: float | None = None


def state_key(station_id: str) -> str:
    return f"{STATE_PREFIX}{station_id}"


def _load(previous: Any) -> tuple[int, datetime, int | None] | None:
    """The stored baseline, or None if absent or unreadable (then the message re-baselines)."""
    if not isinstance(previous, dict):
        return None
    counter = previous.get("counter")
    if isinstance(counter, bool) or not isinstance(counter, int) or not 0 <= counter < COUNTER_MODULO:
        return None
    try:
        when = parse_time(previous.get("t"))
    except (TimeFormatError, TypeError):
        return None
    f_cnt = previous.get("f_cnt")
    return counter, when, f_cnt if isinstance(f_cnt, int) and not isinstance(f_cnt, bool) else None


def rain_step(state: MutableMapping[str, Any], station_id: str, counter: int, observed_at: datetime,
              f_cnt: int | None, *, resolution_mm: float, max_gap_s: float) -> RainStep:
    """Advance the station's rain baseline by one message and say how much rain fell since the last."""
    key = state_key(station_id)
    prev = _load(state.get(key))
    new_baseline = {"counter": int(counter), "t": iso_ms(observed_at), "f_cnt": f_cnt}
    if prev is None:
        state[key] = new_baseline
        return RainStep("baseline")
    prev_counter, prev_time, prev_f_cnt = prev
    if observed_at <= prev_time:
        return RainStep("out-of-order")
    state[key] = new_baseline
    if f_cnt is not None and prev_f_cnt is not None and f_cnt < prev_f_cnt:
        return RainStep("device-reset")
    if (observed_at - prev_time).total_seconds() > max_gap_s:
        return RainStep("stale")
    if counter >= prev_counter:
        clicks, outcome = counter - prev_counter, "delta"
    else:
        clicks, outcome = counter + COUNTER_MODULO - prev_counter, "wrap"
    return RainStep(outcome, clicks, round(clicks * resolution_mm, 3))


__all__ = ["COUNTER_MODULO", "STATE_PREFIX", "RainStep", "rain_step", "state_key"]
