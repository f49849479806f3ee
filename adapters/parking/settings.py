"""The ``settings:`` section of a parking adapter config."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Battery voltage → level (0..1), piecewise linear, per LoRaWAN profile. Lithium-thionyl-chloride
#: cells stay near 3.6 V most of their life and drop late; the knees follow Nwave's health thresholds
#: (normal ≥ 3.0 V, low ≥ 2.9 V). An approximation: a fuel gauge it is not.
DEFAULT_BATTERY_CURVES: dict[str, list[tuple[float, float]]] = {
    "nwave-nps405": [(2.8, 0.0), (2.9, 0.05), (3.0, 0.2), (3.3, 0.7), (3.6, 1.0)],
}


class SiteSettings(BaseModel):
    """Per-site choices for sites whose spots carry sensors (keyed by the site id of the registry)."""

    model_config = ConfigDict(extra="forbid")

    aggregate: bool | None = None            # None → ParkingSettings.aggregate_sites
    total_spots: int | None = Field(None, ge=1)  # default: registry site record, else the number of its spot sensors
    closed: bool = False                     # every spot of the site reports `closed`; the site status is ["closed"]
    almost_full_free: int | None = Field(None, ge=1)  # free spots at or below → status almostFull


_DEFAULT_SITE = SiteSettings()


class ParkingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A spot sensor silent for longer than this turns its ParkingSpot `unknown` (registry column
    #: `heartbeat_timeout_s` overrides it per sensor). Set it to a few heartbeat periods.
    heartbeat_timeout_s: float = Field(26 * 3600, gt=0)
    #: Compute an OffStreetParking entity for every site whose spots carry sensors (per site: sites.<id>.aggregate).
    aggregate_sites: bool = True
    sites: dict[str, SiteSettings] = Field(default_factory=dict)
    #: Spots (registry ids of their sensors, or their `spot` ids) that report `closed` whatever the sensor says.
    closed_spots: list[str] = Field(default_factory=list)
    #: Emit a ParkingGroup per level of a site (registry column `level` on the spot sensors).
    level_groups: bool = True
    #: Emit a Device entity per spot sensor (battery, RSSI, last report).
    devices: bool = True
    battery_curves: dict[str, list[tuple[float, float]]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_BATTERY_CURVES.items()})
    #: Where the spot states of sensor-equipped sites live. ``local``: in this process (persisted with
    #: the Redis outbox), the site aggregate computed inline per uplink — right for ONE replica only.
    #: ``shared``: in Redis, one hash per site (one field per spot), the aggregates computed by one
    #: replica at a time (a lease in Redis) every ``aggregate_interval_ms`` — for several replicas on
    #: one MQTT shared subscription. Needs ``outbox.kind: redis``. See README.md, "Scaling".
    site_state: Literal["local", "shared"] = "local"
    #: shared: how often the lease holder recomputes the sites whose spots changed.
    aggregate_interval_ms: int = Field(1000, ge=50, le=60_000)
    #: shared: lease TTL; a killed holder is replaced after at most this long (≥ 3 intervals).
    aggregate_lease_ms: int = Field(5000, ge=500)
    #: shared: a full pass over every site this often (heartbeat timeouts, every aggregate written again).
    aggregate_resync_s: float = Field(60.0, gt=0)

    @field_validator("battery_curves")
    @classmethod
    def _curves_ascending(cls, curves: dict[str, list[tuple[float, float]]]):
        for profile, points in curves.items():
            if len(points) < 2:
                raise ValueError(f"battery_curves.{profile}: at least two (volts, level) points")
            volts = [v for v, _ in points]
            if volts != sorted(volts) or len(set(volts)) != len(volts):
                raise ValueError(f"battery_curves.{profile}: volts must be strictly ascending")
            if any(not 0 <= level <= 1 for _, level in points):
                raise ValueError(f"battery_curves.{profile}: levels must be within 0..1")
        return curves

    @model_validator(mode="after")
    def _lease_outlives_rounds(self) -> "ParkingSettings":
        if self.aggregate_lease_ms < 3 * self.aggregate_interval_ms:
            raise ValueError("aggregate_lease_ms must be at least 3 × aggregate_interval_ms "
                             "(the holder renews the lease once per round)")
        return self

    def site(self, site_id: str) -> SiteSettings:
        """The site's settings, or the defaults: one shared instance (read only; it is asked several
        times per uplink, and building a model per call is not free: benchmarks/README.md)."""
        return self.sites.get(site_id) or _DEFAULT_SITE

    def aggregates(self, site_id: str) -> bool:
        chosen = self.site(site_id).aggregate
        return self.aggregate_sites if chosen is None else chosen


def battery_level(volts: float, curve: list[tuple[float, float]]) -> float:
    """Piecewise-linear level 0..1, clamped at both ends, rounded to 3 decimals."""
    if volts <= curve[0][0]:
        return float(curve[0][1])
    for (v0, l0), (v1, l1) in zip(curve, curve[1:]):
        if volts <= v1:
            return round(l0 + (l1 - l0) * (volts - v0) / (v1 - v0), 3)
    return float(curve[-1][1])
