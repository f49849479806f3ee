"""The site aggregate's running counts (sites.SiteAggregates.summary_after) against a full recount.

The inline path keeps each site's status counts and latest observation next to the spots dict
they were taken from and updates them by the one changed spot; everything that replaces the
state (restart, rollback, heartbeat timeouts) must lead to the same aggregate as counting anew.
"""
from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from stadtlink.adapters.core.adapter import StateStore
from stadtlink.adapters.core.errors import ReadingDropped
from stadtlink.adapters.core.timeutil import parse_time
from stadtlink.adapters.parking import ADAPTER, tick
from stadtlink.adapters.parking import mapper as parking_mapper
from stadtlink.adapters.parking.sites import SiteAggregates

from .helpers import T0, make_ctx, spot_reading, value

SITE = "pr-west"
KEY = parking_mapper.SPOTS + SITE


def _fleet() -> list[dict]:
    devices = [{"id": SITE, "name": "P+R West", "lat": 52.41, "lon": 10.77, "total_spots": 14,
                "category": "parkingLot"}]
    for i in range(12):
        rec = {"id": f"w-{i}", "lat": 52.41 + i * 1e-5, "lon": 10.77, "profile": "bosch-tps110", "site": SITE,
               "level": i % 3}
        if i % 4 == 0:
            rec["heartbeat_timeout_s"] = 300          # these turn unknown quickly
        if i == 5:
            rec["closed"] = "yes"                      # always reports closed
        devices.append(rec)
    return devices


def _recount(ctx, levels) -> dict[str, dict]:
    """The aggregate from a full recount of the spots now in the state (no running counts)."""
    spots = dict(ctx.state[KEY])
    return {e["id"]: e for e in parking_mapper._site_aggregate(ctx, ctx.settings, SITE, levels, spots=spots)}


def _check_against_state(ctx, site_entity: dict) -> None:
    """Independent of the mapper's helpers: the numbers follow from the spot entries themselves."""
    entries = list(ctx.state[KEY].values())
    free = sum(1 for e in entries if e["status"] == "free")
    occupied = sum(1 for e in entries if e["status"] == "occupied")
    if all(e["status"] == "closed" for e in entries):
        assert value(site_entity, "status") == ["closed"] and value(site_entity, "availableSpotNumber") == 0
    else:
        assert value(site_entity, "availableSpotNumber") == free
        assert value(site_entity, "occupiedSpotNumber") == occupied
    latest = max(parse_time(e["observed_at"]) for e in entries)
    assert parse_time(site_entity["occupancyModified"]["value"]["@value"]) == latest


@pytest.mark.parametrize("seed", range(6))
def test_running_counts_equal_a_full_recount(seed):
    rnd = random.Random(seed)
    ctx = make_ctx(_fleet(), settings={"level_groups": True, "heartbeat_timeout_s": 900, "closed_spots": ["w-7"]})
    now = T0
    fast_hits = recounts = rollbacks = restarts = expiries = 0
    seen_available: set[int] = set()
    for step in range(400):
        action = rnd.random()
        if action < 0.05:
            # restart: the state comes back from its persisted JSON (new objects, running counts gone)
            ctx.state = StateStore(json.loads(json.dumps(dict(ctx.state))))
            restarts += 1
            continue
        if action < 0.12:
            ctx.now = now + timedelta(seconds=rnd.randint(0, 1500))
            ents = tick(ctx)
            site_ents = [e for e in ents if e["type"] in ("OffStreetParking", "ParkingGroup")]
            if site_ents:
                expiries += 1
                levels = {e["id"].rsplit("-", 1)[1] for e in site_ents if e["type"] == "ParkingGroup"}
                expected = _recount(ctx, {int(v) for v in levels})
                assert {e["id"]: e for e in site_ents} == expected
            continue
        # an uplink, now and then older than the spot's last one (dropped), now and then rolled back
        now += timedelta(seconds=rnd.randint(0, 400))
        at = now - timedelta(seconds=rnd.randint(0, 900)) if rnd.random() < 0.1 else now
        device = f"w-{rnd.randrange(12)}"
        reading = spot_reading(device, rnd.choice(["00", "01"]), at=at)
        rollback = rnd.random() < 0.1
        before = ctx.state.get(KEY)
        cached = ctx.owned(SiteAggregates).cached(SITE)
        ctx.state.begin()
        try:
            ents = ADAPTER.mapper(reading, ctx)
        except ReadingDropped:
            ctx.state.rollback()
            continue
        if cached is not None and before is not None and cached[0] is before:
            fast_hits += 1
        else:
            recounts += 1
        site_ents = {e["id"]: e for e in ents if e["type"] in ("OffStreetParking", "ParkingGroup")}
        level = next(r for r in _fleet() if r["id"] == device)["level"]
        assert site_ents == _recount(ctx, {level})
        site_entity = site_ents[f"urn:ngsi-ld:OffStreetParking:test:{SITE}"]
        _check_against_state(ctx, site_entity)
        seen_available.add(value(site_entity, "availableSpotNumber"))
        assert ctx.owned(SiteAggregates).cached(SITE)[0] is ctx.state[KEY]
        if rollback:
            ctx.state.rollback()
            rollbacks += 1
        else:
            ctx.state.commit()
    # the sequence did exercise every path (else the test would prove nothing)
    assert fast_hits > 100 and recounts > 5 and rollbacks and restarts and expiries
    assert len(seen_available) > 3


def test_odd_timestamps_in_a_restored_state_fall_back_to_parsing():
    """Entries persisted by an older version may carry other ISO forms; the latest is still the latest time."""
    ctx = make_ctx(_fleet())
    ADAPTER.mapper(spot_reading("w-1", "01", at=T0), ctx)
    state = dict(ctx.state)
    spots = dict(state[KEY])
    spots["w-2"] = dict(spots["w-1"], observed_at="2025-03-01T12:00:00+01:00", last_seen="2025-03-01T12:00:00+01:00",
                        device="w-2", status="free")           # 11:00 UTC: later than T0 + 10 min
    state[KEY] = spots
    ctx.state = StateStore(state)
    ents = ADAPTER.mapper(spot_reading("w-3", "00", at=T0 + timedelta(minutes=10)), ctx)
    site = next(e for e in ents if e["type"] == "OffStreetParking")
    assert site["occupancyModified"]["value"]["@value"] == "2025-03-01T11:00:00.000Z"
    assert value(site, "availableSpotNumber") == 2
    ents = ADAPTER.mapper(spot_reading("w-4", "01", at=T0 + timedelta(minutes=20)), ctx)   # cached + odd stamp
    site = next(e for e in ents if e["type"] == "OffStreetParking")
    assert site["occupancyModified"]["value"]["@value"] == "2025-03-01T11:00:00.000Z"
    assert value(site, "occupiedSpotNumber") == 2


def test_site_aggregation_belongs_to_its_context():
    """Two mapping contexts (two adapters in one process) with a site of the same name but different
    registries and states: interleaved uplinks give each context the aggregate of its own spots."""
    small = [d for d in _fleet() if d["id"] in (SITE, "w-0", "w-1")]
    small[0] = dict(small[0], total_spots=2)
    big, little = make_ctx(_fleet()), make_ctx(small)
    assert big.owned(SiteAggregates) is not little.owned(SiteAggregates)
    for i, (ctx, device) in enumerate([(big, "w-2"), (little, "w-0"), (big, "w-3"), (little, "w-1"), (big, "w-0")]):
        ents = ADAPTER.mapper(spot_reading(device, "01", at=T0 + timedelta(minutes=i)), ctx)
        site = next(e for e in ents if e["type"] == "OffStreetParking")
        _check_against_state(ctx, site)
        assert ctx.owned(SiteAggregates).cached(SITE)[0] is ctx.state[KEY]
    assert value(site, "totalSpotNumber") == 14
    ents = ADAPTER.mapper(spot_reading("w-0", "00", at=T0 + timedelta(minutes=9)), little)
    site = next(e for e in ents if e["type"] == "OffStreetParking")
    assert (value(site, "totalSpotNumber"), value(site, "availableSpotNumber"), value(site, "occupiedSpotNumber")) \
        == (2, 1, 1)
