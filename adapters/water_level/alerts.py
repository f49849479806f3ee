"""Flood alerting: threshold crossings with hysteresis, and early warning from the rate of rise.

Pure functions over a per-station state dict (kept in the adapter's persisted StateStore, so a
restart neither forgets an open alert nor raises it twice). Each alert *episode* is its own Alert
entity (id ends in the episode's start time): raising creates it, escalation updates it, clearing
sets ``validTo``. Separate entities per episode mean an upsert never has to remove an attribute.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from stadtlink.adapters.core.timeutil import from_epoch

NORMAL, ALERT, DANGER = "Normal", "Alert", "Danger"
_RANK = {NORMAL: 0, ALERT: 1, DANGER: 2}


@dataclass(frozen=True)
class Thresholds:
    alert: float | None
    danger: float | None
    hysteresis: float = 0.05   # metres the level must fall below a threshold before it clears


@dataclass(frozen=True)
class ForecastSettings:
    window_s: float = 3600.0          # readings considered for the rate of rise
    horizon_s: float = 3 * 3600.0     # warn when a threshold would be reached within this time
    min_points: int = 4
    min_span_s: float = 900.0         # the readings must cover at least this long
    min_rise_per_h: float = 0.02      # m/h: slower rises are noise
    min_r2: float = 0.5               # a fit this poor is noise, not a trend
    clear_factor: float = 1.5         # clear when the crossing moves beyond horizon × this


@dataclass(frozen=True)
class AlertEvent:
    """What the mapper turns into an Alert entity."""

    kind: str                 # "threshold" | "forecast"
    episode: str              # stable id suffix of the episode
    action: str               # "raise" | "update" | "clear"
    severity: str
    level_name: str           # "alertLevel" | "dangerLevel"
    started_at: datetime
    at: datetime
    description: str
    data: dict[str, Any]


def classify(level: float, previous: str, th: Thresholds) -> str:
    """Normal / Alert / Danger with hysteresis: going up at the threshold, down only below it − h."""
    status = NORMAL
    if th.alert is not None and level >= th.alert:
        status = ALERT
    if th.danger is not None and level >= th.danger:
        status = DANGER
    if _RANK[status] >= _RANK[previous]:
        return status
    # Falling: stay in the higher state until the level is clearly below its threshold.
    if previous == DANGER and th.danger is not None and level > th.danger - th.hysteresis:
        return DANGER
    if previous in (DANGER, ALERT) and th.alert is not None and level > th.alert - th.hysteresis:
        return ALERT
    return status


def threshold_events(state: dict, station: str, level: float, at: datetime, th: Thresholds) -> tuple[str, list[AlertEvent]]:
    previous = state.get("status", NORMAL)
    status = classify(level, previous, th)
    state["status"] = status
    events: list[AlertEvent] = []
    if status == previous:
        return status, events
    episode = state.get("episode")
    severity = {ALERT: "medium", DANGER: "critical"}.get(status, "informational")
    if previous == NORMAL:
        episode = {"id": f"{station}-flood-{int(at.timestamp())}", "start": at.timestamp()}
        state["episode"] = episode
        action = "raise"
    elif status == NORMAL:
        state.pop("episode", None)
        action = "clear"
        severity = "informational"
    else:
        action = "update"
    if episode is None:  # state from before a threshold was configured
        episode = {"id": f"{station}-flood-{int(at.timestamp())}", "start": at.timestamp()}
    level_name = "dangerLevel" if status == DANGER or (status == NORMAL and previous == DANGER) else "alertLevel"
    threshold = th.danger if level_name == "dangerLevel" else th.alert
    if action == "clear":
        text = f"level {level:.2f} m fell back below {level_name} {threshold} m (hysteresis {th.hysteresis} m)"
    else:
        text = f"level {level:.2f} m reached {level_name} {threshold} m"
    events.append(AlertEvent("threshold", episode["id"], action, severity, level_name,
                             from_epoch(episode["start"]), at, text,
                             {"level": level, "threshold": threshold, "status": status}))
    return status, events


def _fit(points: list[list[float]]) -> tuple[float, float, float]:
    """Least-squares line through (t, level): slope per second, level at the last t, r²."""
    n = len(points)
    t0 = points[-1][0]
    xs = [p[0] - t0 for p in points]
    ys = [p[1] for p in points]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, ys[-1], 0.0
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx          # fitted level at t0 (x = 0)
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return slope, intercept, r2


def forecast_events(state: dict, station: str, level: float, at: datetime, th: Thresholds,
                    fs: ForecastSettings) -> list[AlertEvent]:
    """Update the level history and raise / clear the early-warning alert."""
    now = at.timestamp()
    history = [p for p in state.get("history", []) if now - fs.window_s <= p[0] < now]
    history.append([now, level])
    state["history"] = history
    active = state.get("forecast")
    status = state.get("status", NORMAL)
    targets = [(name, value) for name, value in (("alertLevel", th.alert), ("dangerLevel", th.danger))
               if value is not None and level < value]
    enough = len(history) >= fs.min_points and history[-1][0] - history[0][0] >= fs.min_span_s
    if not enough:
        return []          # too little data to say anything: keep whatever is open
    slope, fitted, r2 = _fit(history)
    rise_per_h = slope * 3600.0
    candidate = None
    if rise_per_h >= fs.min_rise_per_h and r2 >= fs.min_r2 and targets:
        name, value = targets[0]
        eta = (value - fitted) / slope
        candidate = (name, value, max(eta, 0.0))
    events: list[AlertEvent] = []

    def event(action: str, ep: dict, name: str, value: float, eta: float | None, text: str) -> AlertEvent:
        data = {"level": level, "risePerHour": round(rise_per_h, 4), "target": name, "threshold": value}
        if eta is not None:
            data["expectedCrossingAt"] = from_epoch(now + eta).strftime("%Y-%m-%dT%H:%M:%SZ")
        severity = "informational" if action == "clear" else ("high" if name == "dangerLevel" else "medium")
        return AlertEvent("forecast", ep["id"], action, severity, name, from_epoch(ep["start"]), at, text, data)

    if active:
        name, value = active["target"], active["threshold"]
        reached = (name == "alertLevel" and status != NORMAL) or (name == "dangerLevel" and status == "Danger")
        eta = (value - fitted) / slope if slope > 0 else None
        if reached or eta is None or eta > fs.horizon_s * fs.clear_factor or rise_per_h < fs.min_rise_per_h / 2:
            why = "threshold reached" if reached else "rise slowed or stopped"
            events.append(event("clear", active, name, value, None, f"early warning for {name} ended: {why}"))
            state.pop("forecast", None)
            active = None
        elif candidate and candidate[0] != name:
            # Escalation from the alert-level forecast to the danger-level forecast: new episode.
            events.append(event("clear", active, name, value, None, f"early warning for {name} superseded"))
            state.pop("forecast", None)
            active = None
        else:
            return events
    if candidate and candidate[2] <= fs.horizon_s and not active:
        name, value, eta = candidate
        ep = {"id": f"{station}-forecast-{int(now)}", "start": now, "target": name, "threshold": value}
        state["forecast"] = ep
        minutes = eta / 60.0
        events.append(event("raise", ep, name, value, eta,
                            f"level {level:.2f} m rising {rise_per_h:.2f} m/h: {name} {value} m expected in {minutes:.0f} min"))
    return events


__all__ = ["Thresholds", "ForecastSettings", "AlertEvent", "classify", "threshold_events", "forecast_events",
           "NORMAL", "ALERT", "DANGER", "timedelta"]
