"""Readings of the parking family → normalized NGSI-LD entities (pure, no I/O).

Three kinds of input:

* spot sensors (``bosch-tps110``, ``nwave-nps405``; reading kinds status/heartbeat/startup) →
  ``ParkingSpot`` + ``Device``, and — when the site aggregates — the site's ``OffStreetParking``
  computed from the states of its spots, plus a ``ParkingGroup`` per level;
* feed sites (``datex2`` / ``parkapi``, kind ``site``) → ``OffStreetParking`` (or ``ParkingGroup`` when
  the registry names a ``parent_site``);
* static table rows (kind ``site-static``) → kept in ``ctx.state``, no entity of their own.

State (``ctx.state``, JSON, survives restarts):

``parking:spots:<site>``        {spot id: {status, observed_at, last_seen, device, level?, street}}
``parking:static:<site>``       the static table row of a feed site (name, total, lon/lat, layout …)
``parking:static-feed:<feed>``  marks a feed whose static table has been read
``parking:pending:<site>``      the latest status of a site whose static table had not arrived yet
``parking:site-time:<site>``    observation time of the last mapped status of a feed site

With ``site_state: shared`` (several replicas) the spot states are not in ``ctx.state`` but in
Redis, shared by the replicas (adapters/core/shared.py): the hash ``spots:<site>`` (one field per
spot, the same entry as above, written only if not older) and the set ``dirty-sites``. An uplink
then yields ParkingSpot + Device only; :func:`derive_sites` (run by one replica at a time)
computes the site aggregates from the whole hash with :func:`_site_aggregate`, as the inline path does.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Iterable

from stadtlink.adapters.core.adapter import MapContext
from stadtlink.adapters.core.device import device_entity
from stadtlink.adapters.core.entity import (
    Measure,
    datetime_prop,
    geo_point,
    new_entity,
    note_rejected,
    prop,
    rel,
    set_measurements,
)
from stadtlink.adapters.core.entity import entity_id as _entity_id
from stadtlink.adapters.core.errors import MappingError, ReadingDropped
from stadtlink.adapters.core.reasons import OLDER_THAN_STATE
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.core.registry import DeviceRecord, DeviceRegistry
from stadtlink.adapters.core.timeutil import iso_ms, parse_time

from .decoders.vocab import LAYOUT_CATEGORY, SITE_CATEGORY, SITE_LAYOUT, split_list, unique
from .profiles import KIND_INVALID_SITE, KIND_SITE, KIND_SITE_STATIC
from .settings import ParkingSettings, battery_level
from .sites import SiteAggregates, Summary, count_statuses, summarize
from .reasons import (
    AWAITING_STATIC_TABLE,
    INVALID_SITE_RECORD,
    NO_OCCUPANCY,
    SITE_NOT_IN_STATIC_LIST,
    SITE_WITHOUT_LOCATION,
    UNSUPPORTED_READING,
)

SPOT_KINDS = frozenset({"status", "heartbeat", "startup"})

#: more spaces than any car park has (the largest hold some 20,000): a count above is a feed error
MAX_SPOTS = 100_000

#: A feed site's counts → OffStreetParking / ParkingGroup attributes. A count outside its range (a
#: negative number, a feed's absurd value) or an occupancy outside 0..1 (the SDM bounds) is left out
#: and counted; the site's other attributes are written.
FEED_SITE_ROWS: tuple[Measure, ...] = (
    Measure("total", "totalSpotNumber", None, valid_range=(1, MAX_SPOTS)),
    Measure("available", "availableSpotNumber", None, valid_range=(0, MAX_SPOTS)),
    Measure("occupied", "occupiedSpotNumber", None, valid_range=(0, MAX_SPOTS)),
    Measure("occupancy", "occupancy", "C62", valid_range=(0.0, 1.0)),
)
_AVAILABLE, _OCCUPIED = FEED_SITE_ROWS[1], FEED_SITE_ROWS[2]
SPOT_CATEGORIES = ("onStreet", "offStreet")

SPOTS = "parking:spots:"
STATIC = "parking:static:"
STATIC_FEED = "parking:static-feed:"
PENDING = "parking:pending:"
SITE_TIME = "parking:site-time:"
# site_state: shared (names of Redis keys shared by the replicas, adapters/core/shared.py)
SHARED_SPOTS = "spots:"
DIRTY_SITES = "dirty-sites"


# --------------------------------------------------------------------------------------------- helpers

#: The same few ids are built several times per uplink (spot, its device, its site); entity_id runs
#: two regex substitutions each time. Pure function of strings, so a bounded cache is enough.
entity_id = lru_cache(maxsize=1 << 16)(_entity_id)


def settings_of(ctx: MapContext[ParkingSettings]) -> ParkingSettings:
    """The adapter's settings, validated by the runtime before any mapping (AdapterSpec.validate_settings)."""
    return ctx.settings


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 1 else None


def _fraction(part: int, whole: int) -> float:
    return round(min(max(part / whole, 0.0), 1.0), 4)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "1")) or value == 1


def _site_entity_id(ctx: MapContext, site: str, street: str = "offStreet") -> str:
    return entity_id("OnStreetParking" if street == "onStreet" else "OffStreetParking", ctx.namespace, site)


def _group_id(ctx: MapContext, site: str, level: Any) -> str:
    return entity_id("ParkingGroup", ctx.namespace, f"{site}-level-{level}")


def _spot_category(rec: DeviceRecord) -> list[str]:
    chosen = [c for c in split_list(rec.get("category")) if c in SPOT_CATEGORIES]
    return chosen[:1] or ["offStreet"]


def _sites(ctx: MapContext) -> SiteAggregates:
    """The context's site index and running counts (adapters/parking/sites.py)."""
    return ctx.owned(SiteAggregates)


def _centroid(records: Iterable[DeviceRecord]) -> tuple[float, float] | None:
    points = [(r.lon, r.lat) for r in records if r.has_location]
    if not points:
        return None
    return (round(sum(p[0] for p in points) / len(points), 7), round(sum(p[1] for p in points) / len(points), 7))


# --------------------------------------------------------------------------------------------- entry

def map_reading(reading: Reading, ctx: MapContext) -> list[dict]:
    settings = settings_of(ctx)
    if reading.kind in SPOT_KINDS:
        return _map_spot(reading, ctx, settings)
    if reading.kind == KIND_SITE:
        return _map_site(reading, ctx, settings)
    if reading.kind == KIND_SITE_STATIC:
        return _store_static(reading, ctx, settings)
    if reading.kind == KIND_INVALID_SITE:
        raise MappingError(INVALID_SITE_RECORD, f"site {reading.meta.get('site_ref') or reading.device_id!r} "
                                                f"of feed {reading.meta.get('feed')!r}: {reading.values.get('error')}")
    raise MappingError(UNSUPPORTED_READING, f"the parking mapper has no rule for reading kind {reading.kind!r}")


# --------------------------------------------------------------------------------------------- spot sensors

def _map_spot(reading: Reading, ctx: MapContext, settings: ParkingSettings) -> list[dict]:
    rec = ctx.require_device(reading)
    site = ctx.require(rec, "site")
    lonlat = ctx.require(rec, "location")
    occupied = reading.values.get("occupied")
    if not isinstance(occupied, bool):
        raise MappingError(NO_OCCUPANCY, f"{reading.profile} reading of {rec.id!r} has no occupancy")
    site = str(site) if site is not None else None
    spot_id = str(rec.get("spot") or rec.id)
    street = _spot_category(rec)[0]
    level = rec.get("level")
    site_closed = site is not None and (settings.site(site).closed or _truthy(_site_record_field(ctx, site, "closed")))
    closed = (_truthy(rec.get("closed")) or spot_id in settings.closed_spots or rec.id in settings.closed_spots
              or site_closed)
    status = "closed" if closed else ("occupied" if occupied else "free")

    entities: list[dict] = []
    entry = {"status": status, "observed_at": iso_ms(reading.observed_at), "last_seen": iso_ms(reading.observed_at),
             "device": rec.id, "street": street}
    if level is not None:
        entry["level"] = level
    shared = ctx.shared if settings.site_state == "shared" else None
    if shared is not None:
        # several replicas: the spot's entry goes to the site's hash in Redis (unless a newer one is
        # there), the site is marked for the aggregate, which one replica computes (derive_sites)
        if site is not None:
            shared.put_newer(SHARED_SPOTS + site, spot_id, entry, order="last_seen")
            if settings.aggregates(site):
                shared.mark(DIRTY_SITES, site)
        entities.append(_spot_entity(ctx, rec, settings, site, spot_id, status, reading.observed_at, lonlat))
        if settings.devices:
            entities.append(_device_entity(ctx, rec, reading, settings, lonlat))
        return entities
    state_key = SPOTS + (site or "?")
    before = ctx.state.get(state_key)
    spots = dict(before or {})
    previous = spots.get(spot_id)
    if previous is not None and parse_time(previous["last_seen"]) > reading.observed_at:
        raise ReadingDropped(OLDER_THAN_STATE,
                             f"{rec.id}: uplink of {iso_ms(reading.observed_at)} is older than {previous['last_seen']}")
    spots[spot_id] = entry
    if site is not None:
        ctx.state[state_key] = spots

    entities.append(_spot_entity(ctx, rec, settings, site, spot_id, status, reading.observed_at, lonlat))
    if settings.devices:
        entities.append(_device_entity(ctx, rec, reading, settings, lonlat))
    if site is not None and settings.aggregates(site):
        summary = _sites(ctx).summary_after(site, before, spots, previous, entry)
        entities.extend(_site_aggregate(ctx, settings, site, levels={level} if level is not None else set(),
                                        spots=spots, summary=summary))
    return entities


def _site_record_field(ctx: MapContext, site: str, key: str) -> Any:
    rec = ctx.registry.lookup(site)
    return rec.get(key) if rec is not None and rec.get("site") is None else None


def _spot_entity(ctx: MapContext, rec: DeviceRecord, settings: ParkingSettings, site: str | None, spot_id: str,
                 status: str, observed_at: datetime, lonlat: tuple[float, float] | None) -> dict:
    category = _spot_category(rec)
    level = rec.get("level")
    attrs: dict[str, Any] = {
        "status": prop(status, observed_at=observed_at),
        "category": prop(category),
        "location": geo_point(*lonlat) if lonlat else None,
        "name": prop(str(rec.name)) if rec.name else None,
        "refParkingSite": rel(_site_entity_id(ctx, site, category[0])) if site else None,
    }
    if level is not None and site and settings.level_groups and category[0] == "offStreet":
        attrs["refParkingGroup"] = rel(_group_id(ctx, site, level))
    if settings.devices:
        attrs["refDevice"] = rel([entity_id("Device", ctx.namespace, rec.id)])
    for key in ("width", "length"):
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            attrs[key] = prop(float(value), unit="MTR")
    return new_entity(entity_id("ParkingSpot", ctx.namespace, spot_id), "ParkingSpot", **attrs)


def _device_entity(ctx: MapContext, rec: DeviceRecord, reading: Reading, settings: ParkingSettings,
                   lonlat: tuple[float, float] | None) -> dict:
    observed = reading.observed_at
    volts = reading.values.get("battery_voltage")
    curve = settings.battery_curves.get(reading.profile)
    battery = battery_level(float(volts), curve) if isinstance(volts, (int, float)) and curve else None
    rssi = reading.meta.get("rssi")
    firmware = reading.values.get("firmware_version")
    extra = {
        "firmwareVersion": prop(firmware, observed_at=observed) if isinstance(firmware, str) else None,
        "serialNumber": prop(str(reading.meta["dev_eui"])) if reading.meta.get("dev_eui") else None,
    }
    return device_entity(ctx.namespace, rec.id, controlled_property=["occupancy"], observed_at=observed,
                         battery_level=battery,
                         rssi=float(rssi) if isinstance(rssi, (int, float)) and not isinstance(rssi, bool) else None,
                         name=str(rec.name) if rec.name else None, lonlat=lonlat, extra=extra)


# --------------------------------------------------------------------------------------------- aggregation

def _site_aggregate(ctx: MapContext, settings: ParkingSettings, site: str, levels: set,
                    spots: dict[str, dict] | None = None, summary: Summary | None = None) -> list[dict]:
    """The OffStreetParking of a sensor-equipped site (+ the ParkingGroups of ``levels``), from
    ``spots`` (spot id → entry), by default the site's spot states in ``ctx.state``. ``summary``:
    the counts of ``spots`` if known (:meth:`SiteAggregates.summary_after`), else they are counted here."""
    if not settings.aggregates(site):
        return []
    if spots is None:
        spots = dict(ctx.state.get(SPOTS + site) or {})
    if not spots:
        return []
    if summary is None:
        summary = summarize(spots)
    if summary.on_street:
        return []  # on-street sites have no OffStreetParking; their spots stand alone
    registered = _sites(ctx).index(ctx.registry).get(site, [])
    site_rec = ctx.registry.lookup(site)
    if site_rec is not None and site_rec.get("site") is not None:
        site_rec = None  # that id is a spot sensor, not a site record
    site_settings = settings.site(site)
    closed_site = site_settings.closed or (site_rec is not None and _truthy(site_rec.get("closed")))

    counts = summary.counts
    total = (site_settings.total_spots or (_positive_int(site_rec.get("total_spots")) if site_rec else None)
             or len(registered) or len(spots))
    total = max(total, len(spots))
    if site_rec is not None and site_rec.has_location:
        lonlat = (site_rec.lon, site_rec.lat)
    else:
        lonlat = _centroid(registered)
    if lonlat is None:
        return []  # nowhere to put it (spot records without coordinates were already refused)
    observed = parse_time(summary.latest) if summary.latest is not None \
        else _latest(s["observed_at"] for s in spots.values())

    attrs: dict[str, Any] = {
        "location": geo_point(*lonlat),
        "name": prop(str(site_rec.name)) if site_rec is not None and site_rec.name else prop(site),
        "totalSpotNumber": prop(total, observed_at=observed),
        "occupancyDetectionType": prop(["singleSpaceDetection"]),
        "occupancyModified": datetime_prop(observed),
    }
    if closed_site or counts["closed"] == len(spots):
        attrs["status"] = prop(["closed"], observed_at=observed)
        attrs["availableSpotNumber"] = prop(0, observed_at=observed)
    else:
        known = counts["free"] + counts["occupied"]
        attrs["availableSpotNumber"] = prop(counts["free"], observed_at=observed)
        attrs["occupiedSpotNumber"] = prop(counts["occupied"], observed_at=observed)
        if known:
            # over the spots whose state is known: unknown (silent) and closed spots are neither free nor taken
            attrs["occupancy"] = prop(_fraction(counts["occupied"], known), unit="C62", observed_at=observed)
            status = ["full"] if counts["free"] == 0 else ["spacesAvailable"]
            if counts["free"] and site_settings.almost_full_free and counts["free"] <= site_settings.almost_full_free:
                status = ["almostFull"]
            attrs["status"] = prop(status, observed_at=observed)
    if site_rec is not None:
        _static_attrs(attrs, layout=split_list(site_rec.get("layout")), category=split_list(site_rec.get("category")))
    entities = [new_entity(_site_entity_id(ctx, site), "OffStreetParking", **attrs)]
    if settings.level_groups:
        for level in sorted(levels, key=str):
            entities.append(_level_group(ctx, site, level, spots, registered, site_rec))
    return entities


def _latest(stamps: Iterable[str]) -> datetime:
    """The latest of the spots' ``observed_at``. They are written by ``iso_ms`` (fixed width, UTC ``Z``),
    so the latest string is the latest time and only that one is parsed: the aggregate runs on every
    uplink over every spot of the site, and parsing them all would be the adapter's top cost
    (benchmarks/README.md)."""
    stamps = list(stamps)
    if all(type(t) is str and len(t) == 24 and t[-1] == "Z" for t in stamps):
        return parse_time(max(stamps))
    return max(parse_time(t) for t in stamps)


def _level_group(ctx: MapContext, site: str, level: Any, spots: dict[str, dict], registered: list[DeviceRecord],
                 site_rec: DeviceRecord | None) -> dict:
    on_level = [s for s in spots.values() if str(s.get("level")) == str(level)]
    recs = [r for r in registered if str(r.get("level")) == str(level)]
    counts = count_statuses(on_level)
    observed = _latest(s["observed_at"] for s in on_level) if on_level else None
    total = max(len(recs), len(on_level), 1)
    site_name = site_rec.name if site_rec is not None and site_rec.name else site
    centroid = _centroid(recs)
    attrs: dict[str, Any] = {
        "refParkingSite": rel(_site_entity_id(ctx, site)),
        "category": prop(["completeFloor", "offStreet"]),
        "name": prop(f"{site_name} level {level}"),
        "location": geo_point(*centroid) if centroid else None,
        "totalSpotNumber": prop(total, observed_at=observed),
        "availableSpotNumber": prop(counts["free"], observed_at=observed),
        "occupiedSpotNumber": prop(counts["occupied"], observed_at=observed),
        "occupancyDetectionType": prop(["singleSpaceDetection"]),
    }
    if isinstance(level, int):
        attrs["floor"] = prop(level)
    return new_entity(_group_id(ctx, site, level), "ParkingGroup", **attrs)


# --------------------------------------------------------------------------------------------- timer

def tick(ctx: MapContext) -> list[dict]:
    """Spots silent for longer than their heartbeat timeout turn ``unknown``; their sites follow.

    The ``unknown`` state is observed at *last uplink + timeout* (when the silence became too long),
    so the entity carries a deterministic time and never one of the adapter clock.
    """
    if ctx.now is None:
        return []
    settings = settings_of(ctx)
    if settings.site_state == "shared" and ctx.shared is not None:
        return []   # the lease holder applies the timeouts to the shared spot states (derive_sites)
    entities: list[dict] = []
    for key in [k for k in list(ctx.state) if k.startswith(SPOTS)]:
        site = key[len(SPOTS):]
        spots = dict(ctx.state.get(key) or {})
        expired, changed_levels = _expire(ctx, settings, site, spots, entities)
        if expired:
            ctx.state[key] = spots
            entities.extend(_site_aggregate(ctx, settings, site, levels=changed_levels))
    return entities


def _expire(ctx: MapContext, settings: ParkingSettings, site: str, spots: dict[str, dict],
            entities: list[dict]) -> tuple[dict[str, dict], set]:
    """Turn the spots silent past their heartbeat timeout ``unknown`` (in ``spots``, in place) and
    append their ParkingSpot entities; returns the changed entries and their levels."""
    expired: dict[str, dict] = {}
    changed_levels: set = set()
    for spot_id, entry in list(spots.items()):
        if entry.get("status") in ("unknown", "closed"):
            continue
        rec = ctx.registry.lookup(entry.get("device"))
        timeout = settings.heartbeat_timeout_s
        if rec is not None and isinstance(rec.get("heartbeat_timeout_s"), (int, float)) \
                and rec.get("heartbeat_timeout_s") > 0:
            timeout = float(rec.get("heartbeat_timeout_s"))
        expired_at = parse_time(entry["last_seen"]) + timedelta(seconds=timeout)
        if ctx.now <= expired_at:
            continue
        entry = dict(entry, status="unknown", observed_at=iso_ms(expired_at))
        spots[spot_id] = expired[spot_id] = entry
        if entry.get("level") is not None:
            changed_levels.add(entry["level"])
        if rec is not None and rec.has_location:
            entities.append(_spot_entity(ctx, rec, settings, site, spot_id, "unknown", expired_at,
                                         (rec.lon, rec.lat)))
    return expired, changed_levels


# --------------------------------------------------------------------------------------------- shared sites

async def derive_sites(dc) -> list[dict]:
    """``site_state: shared``: the aggregates of the sites marked dirty since the last round (of every
    site on a full pass, which also applies the heartbeat timeouts), each from the site's whole
    hash of spot states. Runs in the replica holding the lease (adapters/core/shared.py)."""
    ctx = dc.ctx
    settings = settings_of(ctx)
    if dc.takeover:
        _seed_from_local_state(ctx, settings, dc.writes)
    if dc.full:
        marked = await dc.pop_marked(DIRTY_SITES, 1_000_000)
        sites = sorted(set(_sites(ctx).index(ctx.registry)) | set(marked))
    else:
        sites = await dc.pop_marked(DIRTY_SITES)
    if not sites:
        return []
    hashes = await dc.read_hashes([SHARED_SPOTS + site for site in sites])
    entities: list[dict] = []
    for site, spots in zip(sites, hashes):
        if not spots:
            continue
        if dc.full and ctx.now is not None:
            expired, _ = _expire(ctx, settings, site, spots, entities)
            for spot_id, entry in expired.items():
                # same last_seen: written unless an uplink brought a newer entry meanwhile
                dc.writes.put_newer(SHARED_SPOTS + site, spot_id, entry, order="last_seen")
        levels = {s.get("level") for s in spots.values() if s.get("level") is not None}
        entities.extend(_site_aggregate(ctx, settings, site, levels=levels, spots=spots))
    return entities


def _seed_from_local_state(ctx: MapContext, settings: ParkingSettings, writes) -> None:
    """Spot states a ``site_state: local`` run left in the persisted state (switching to ``shared``, e.g.
    when the chart scales a deployment to two pods) go into the shared hashes, unless newer entries
    are there, and their sites are marked: the aggregates then count spots that have not reported
    since the switch too. Idempotent; runs at every takeover (read-only on ``ctx.state``)."""
    for key in [k for k in list(ctx.state) if k.startswith(SPOTS)]:
        site = key[len(SPOTS):]
        spots = ctx.state.get(key)
        if site == "?" or not isinstance(spots, dict):
            continue
        for spot_id, entry in spots.items():
            if isinstance(entry, dict) and isinstance(entry.get("last_seen"), str):
                writes.put_newer(SHARED_SPOTS + site, spot_id, entry, order="last_seen")
        if settings.aggregates(site):
            writes.mark(DIRTY_SITES, site)


def derive_options(settings) -> Any:
    """The derive hook is on with ``site_state: shared``."""
    from stadtlink.adapters.core.shared import DeriveOptions

    s = settings if isinstance(settings, ParkingSettings) else ParkingSettings.model_validate(settings or {})
    if s.site_state != "shared":
        return None
    interval = s.aggregate_interval_ms / 1000.0
    return DeriveOptions(interval_s=interval, lease_ms=s.aggregate_lease_ms, resync_s=s.aggregate_resync_s,
                         repeat_s=max(2.0, 2 * interval))


# --------------------------------------------------------------------------------------------- feeds

def _store_static(reading: Reading, ctx: MapContext, settings: ParkingSettings) -> list[dict]:
    site_id = reading.device_id
    values = dict(reading.values)
    if ctx.state.get(STATIC + site_id) != values:
        ctx.state[STATIC + site_id] = values
    feed_key = STATIC_FEED + str(reading.meta.get("feed", "default"))
    if feed_key not in ctx.state:
        ctx.state[feed_key] = {"loaded_at": iso_ms(reading.observed_at)}
    pending = ctx.state.get(PENDING + site_id)
    if pending is None:
        return []
    del ctx.state[PENDING + site_id]
    try:
        return _map_site(_reading_from_json(pending), ctx, settings)
    except (MappingError, ReadingDropped):
        return []  # the next status poll brings it again and reports it then


def _reading_from_json(doc: dict) -> Reading:
    return Reading(device_id=doc["device_id"], profile=doc["profile"], observed_at=parse_time(doc["observed_at"]),
                   values=doc["values"], kind=doc["kind"], meta=doc.get("meta") or {})


def _static_attrs(attrs: dict[str, Any], *, layout: list[str], category: list[str],
                  layout_raw: list[str] = (), site_type: str | None = None) -> None:
    """``layout`` / ``category`` restricted to the SDM enums; DATEX ``underground`` layout → category."""
    raw = list(layout) + list(layout_raw)
    lay = unique(v for v in raw if v in SITE_LAYOUT)
    cat = unique(v for v in category if v in SITE_CATEGORY)
    if not cat:
        cat = unique(LAYOUT_CATEGORY[v] for v in raw if v in LAYOUT_CATEGORY)
    if lay:
        attrs["layout"] = prop(lay)
    if cat:
        attrs["category"] = prop(cat)


def _map_site(reading: Reading, ctx: MapContext, settings: ParkingSettings) -> list[dict]:
    site_id = reading.device_id
    feed = str(reading.meta.get("feed", "default"))
    values = reading.values
    static: dict[str, Any] = dict(ctx.state.get(STATIC + site_id) or {})
    rec = ctx.registry.lookup(site_id)

    def pick(key: str) -> Any:
        if rec is not None and rec.get(key) is not None:
            return rec.get(key)
        if values.get(key) is not None:
            return values.get(key)
        return static.get(key)

    if rec is not None and rec.has_location:
        lonlat = (rec.lon, rec.lat)
    elif values.get("lon") is not None and values.get("lat") is not None:
        lonlat = (values["lon"], values["lat"])
    elif static.get("lon") is not None and static.get("lat") is not None:
        lonlat = (static["lon"], static["lat"])
    else:
        lonlat = None
    if lonlat is None:
        known = bool(static) or rec is not None
        if not known and reading.meta.get("static_source") == "table" and STATIC_FEED + feed not in ctx.state:
            ctx.state[PENDING + site_id] = reading.as_json()
            raise ReadingDropped(AWAITING_STATIC_TABLE,
                                 f"site {site_id!r}: the static table of feed {feed!r} has not been read yet")
        if not known:
            where = "the static table nor the registry" if reading.meta.get("static_source") == "table" \
                else "the registry"
            raise MappingError(SITE_NOT_IN_STATIC_LIST,
                               f"site {site_id!r} of feed {feed!r} is neither in {where}", missing=["location"])
        if ctx.lenient:
            ctx.missing.append(f"{site_id}: no coordinates")
        else:
            raise MappingError(SITE_WITHOUT_LOCATION,
                               f"site {site_id!r} of feed {feed!r} has no coordinates (add lat/lon in the registry)",
                               missing=["location"])

    last = ctx.state.get(SITE_TIME + site_id)
    if last is not None and parse_time(last) > reading.observed_at:
        raise ReadingDropped(OLDER_THAN_STATE, f"site {site_id!r}: {iso_ms(reading.observed_at)} is older than {last}")
    if last != iso_ms(reading.observed_at):
        ctx.state[SITE_TIME + site_id] = iso_ms(reading.observed_at)

    observed = reading.observed_at
    total_realtime = values.get("total_realtime")
    closed_by_capacity = total_realtime == 0
    total = _positive_int(total_realtime) or _positive_int(pick("total_spots")) or _positive_int(pick("total"))
    # the feed's counts pass their rows' ranges first: nothing is derived from a refused count
    rejected: dict[str, str] = {}
    available, occupied = _AVAILABLE.value(values, rejected), _OCCUPIED.value(values, rejected)
    if not closed_by_capacity and total is not None:
        if occupied is None and available is not None:
            occupied = max(total - available, 0)
        elif available is None and occupied is not None:
            available = max(total - occupied, 0)
    status = ["closed"] if closed_by_capacity else [s for s in values.get("status", [])]

    counts: dict[str, Any] = {"total": total, "available": available, "occupied": occupied}
    if not closed_by_capacity:
        percent = values.get("occupancy_percent")
        if isinstance(percent, (int, float)) and not isinstance(percent, bool):
            counts["occupancy"] = round(percent / 100, 4)
        elif total is not None and occupied is not None:
            counts["occupancy"] = _fraction(occupied, total)
    attrs: dict[str, Any] = {
        "location": geo_point(*lonlat) if lonlat else None,
        "name": prop(str(pick("name"))) if pick("name") is not None else None,
        **set_measurements({}, counts, FEED_SITE_ROWS, observed, rejected),
        "status": prop(status, observed_at=observed) if status else None,
        "occupancyModified": datetime_prop(observed),
    }
    note_rejected(reading, rejected)
    layout = split_list(rec.get("layout")) if rec is not None and rec.get("layout") else list(values.get("layout") or [])
    category = split_list(rec.get("category")) if rec is not None and rec.get("category") \
        else list(values.get("category") or [])
    _static_attrs(attrs, layout=layout, category=category, layout_raw=static.get("layout_raw") or [])

    parent = rec.get("parent_site") if rec is not None else None
    if parent is not None:
        group = {k: v for k, v in attrs.items() if k not in ("status", "layout", "category", "occupancy",
                                                              "occupancyModified")}
        group["refParkingSite"] = rel(_site_entity_id(ctx, str(parent)))
        group["category"] = prop(["completeFloor", "offStreet"] if rec.get("level") is not None else ["offStreet"])
        if isinstance(rec.get("level"), int):
            group["floor"] = prop(rec.get("level"))
        return [new_entity(entity_id("ParkingGroup", ctx.namespace, site_id), "ParkingGroup", **group)]
    return [new_entity(_site_entity_id(ctx, site_id), "OffStreetParking", **attrs)]
