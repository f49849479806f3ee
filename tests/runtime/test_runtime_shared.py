"""State shared by replicas and derived entities (adapters/core/shared.py), on the shared Redis with
a unique key prefix: field-level writes, the lease (never two holders), the derive loop (one
computing replica, takeover after expiry recomputes everything, a failed round re-marks), and the
parking adapter's ``site_state: shared`` wiring (ConfigError without Redis, uplinks write the hash)."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.lorawan import tts_uplink
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.shared import DeriveHook, DeriveOptions, DerivedLoop, Lease, SharedState, SharedWrites
from stadtlink.adapters.parking import ADAPTER as PARKING
from stadtlink.adapters.core.testing import SHARED_REDIS_URL

from rt_helpers import FakeBroker, QueueSource, wait_until

REDIS_URL = SHARED_REDIS_URL


@pytest.fixture
async def r():
    client = aioredis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_put_newer_never_overwrites_a_newer_field_and_marks_pop_once(r, redis_prefix):
    shared = SharedState(lambda: r, f"{redis_prefix}:x")
    w = SharedWrites()
    w.put_newer("h", "a", {"v": 2, "t": "2026-01-01T00:00:02.000Z"}, order="t")
    w.put_newer("h", "a", {"v": 1, "t": "2026-01-01T00:00:01.000Z"}, order="t")   # older: refused
    w.put_newer("h", "b", {"v": 5, "t": "2026-01-01T00:00:01.000Z"}, order="t")
    w.mark("dirty", "s1")
    w.mark("dirty", "s1")
    w.mark("dirty", "s2")
    await shared.apply(w.take())
    assert w.ops == []
    (doc,) = await shared.read_hashes(["h"])
    assert doc == {"a": {"v": 2, "t": "2026-01-01T00:00:02.000Z"}, "b": {"v": 5, "t": "2026-01-01T00:00:01.000Z"}}
    w.put_newer("h", "a", {"v": 3, "t": "2026-01-01T00:00:02.000Z"}, order="t")   # same time: written
    await shared.apply(w.take())
    assert (await shared.read_hashes(["h"]))[0]["a"]["v"] == 3
    assert await shared.pop("dirty", 10) == ["s1", "s2"]
    assert await shared.pop("dirty", 10) == []
    await r.hset(f"{redis_prefix}:x:shared:h", "bad", b"{not json")      # read field by field, bad one skipped
    assert set((await shared.read_hashes(["h"]))[0]) == {"a", "b"}
    assert await shared.read_hashes(["missing"]) == [{}]


async def test_lease_has_one_holder_and_only_the_holder_renews_or_releases(r, redis_prefix):
    key = f"{redis_prefix}:lease"
    a = Lease(lambda: r, key, ttl_ms=5000)
    b = Lease(lambda: r, key, ttl_ms=5000)
    assert await a.acquire()
    assert not await b.acquire()
    assert not await b.renew() and not await b.release()
    assert await a.renew() and await a.holder() == a.token
    assert 4000 < await r.pttl(key) <= 5000
    await r.pexpire(key, 50)                                  # a stalls: its last renew was ~TTL ago …
    await asyncio.sleep(0.2)                                  # … and the TTL runs out
    assert await b.acquire()
    assert not await a.renew(), "a lost lease must not be extended"
    assert not await a.release(), "a lost lease must not delete the new holder's"
    assert await r.get(key) == b.token.encode()
    assert await b.release() and await r.get(key) is None


def _loop(r, prefix, computed, *, interval=0.05, lease_ms=5000, fail=None, repeat_s=3600.0, claim_window_s=0.0,
          clock=None):
    async def compute(dc):
        marked = await dc.pop_marked("dirty")
        if fail is not None and fail["on"]:
            raise RuntimeError("outbox full")
        computed.append((dc.full, marked))
        return [{"id": f"urn:ngsi-ld:T:x:{m}", "type": "T"} for m in marked]

    admitted: list = []

    async def admit(entities, ops):
        admitted.append(entities)

    shared = SharedState(lambda: r, prefix)
    loop = DerivedLoop(DeriveHook(compute=compute, options=lambda s: None),
                       DeriveOptions(interval_s=interval, lease_ms=lease_ms, resync_s=3600, repeat_s=repeat_s),
                       shared=shared, lease=Lease(lambda: r, f"{prefix}:derive:lease", lease_ms),
                       make_ctx=lambda: type("Ctx", (), {})(), admit=admit, claim_window_s=claim_window_s,
                       **({"clock": clock} if clock else {}))
    return loop, shared, admitted


async def test_two_loops_never_compute_at_once_and_a_takeover_recomputes_everything(r, redis_prefix):
    ca, cb = [], []
    a, shared, _ = _loop(r, redis_prefix, ca)
    b, _, _ = _loop(r, redis_prefix, cb)
    for i in range(20):
        await shared.mark("dirty", [f"s{i}"])
        await asyncio.gather(a.step(), b.step())
        assert a.leader + b.leader == 1, "exactly one holder"
    first = a if a.leader else b
    other = b if first is a else a
    done_first = ca if first is a else cb
    assert [m for _, ms in done_first for m in ms] == [f"s{i}" for i in range(20)]
    assert (cb if first is a else ca) == [], "the other replica computed nothing"
    assert done_first[0][0] is True, "the first round of a new holder is a full pass"
    # the holder is killed (no release, no renew): the other takes over only after the TTL
    await shared.mark("dirty", ["late"])
    await other.step()
    assert not other.leader
    await r.pexpire(f"{redis_prefix}:derive:lease", 50)      # the holder's last renew was ~TTL ago …
    await asyncio.sleep(0.2)                                 # … and the TTL runs out
    await other.step()
    assert other.leader and other.takeovers == 1
    done_other = ca if other is a else cb
    assert done_other == [(True, ["late"])], "takeover: a full pass"
    await first.step()
    assert not first.leader, "the old holder sees the lease lost and stops computing"
    await other.close()
    assert await r.get(f"{redis_prefix}:derive:lease") is None


async def test_a_failed_round_marks_its_sites_again(r, redis_prefix):
    computed: list = []
    fail = {"on": True}
    loop, shared, admitted = _loop(r, redis_prefix, computed, fail=fail)
    await shared.mark("dirty", ["s1", "s2"])
    with pytest.raises(RuntimeError):
        await loop.step()
    fail["on"] = False
    await loop.step()
    assert computed[-1][1] == ["s1", "s2"] and admitted[-1][0]["id"].endswith(":s1")


class _Clock:
    """The loop's monotonic clock, moved by the test (no test waits on wall time)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_each_derived_entity_is_written_once_more_after_its_last_version(r, redis_prefix):
    computed: list = []
    clock = _Clock()
    loop, shared, admitted = _loop(r, redis_prefix, computed, repeat_s=2.0, clock=clock)
    ids = lambda: [e["id"][-1] for e in admitted[-1]]        # noqa: E731
    await shared.mark("dirty", ["a", "b"])
    await loop.step()                            # t=0: a, b
    assert ids() == ["a", "b"]
    clock.t += 1.0
    await shared.mark("dirty", ["b"])            # t=1: a newer version of b; its repeat moves to t=3
    await loop.step()
    assert ids() == ["b"]
    clock.t += 1.5
    n = len(admitted)
    await loop.step()                            # t=2.5: a is due, b not yet
    assert len(admitted) == n + 1 and ids() == ["a"]
    clock.t += 1.0
    await loop.step()                            # t=3.5: b is due
    assert ids() == ["b"]
    n = len(admitted)
    clock.t += 10.0
    await loop.step()
    assert len(admitted) == n, "written once more, not forever"


async def test_a_new_holder_passes_full_again_after_the_outbox_claim_window(r, redis_prefix):
    computed: list = []
    clock = _Clock()
    loop, shared, _ = _loop(r, redis_prefix, computed, claim_window_s=30.0, clock=clock)
    await loop.step()
    clock.t += 1.0
    await loop.step()
    assert [full for full, _ in computed] == [True, False]
    clock.t += 30.0                              # claim window + 2 intervals after the takeover
    await loop.step()
    clock.t += 1.0
    await loop.step()
    assert [full for full, _ in computed] == [True, False, True, False]


def _parking_config(broker_url: str, prefix: str, outbox: str = "redis", **settings) -> dict:
    return {
        "adapter": "parking", "namespace": "shr", "http": {"enabled": False},
        "broker": {"url": broker_url, "flush_ms": 20, "retry_base_s": 0.05, "retry_max_s": 0.2},
        "outbox": {"kind": outbox, "url": REDIS_URL, "key_prefix": prefix, "consumer": "c1", "claim_min_idle_ms": 500},
        "sources": [{"kind": "mqtt", "topics": ["v3/x/devices/+/up"], "profile": "bosch-tps110"}],
        "devices": [{"id": "site", "lat": 52.1, "lon": 10.1, "total_spots": 3}]
                   + [{"id": f"tps-{i}", "lat": 52.1, "lon": 10.1, "site": "site", "level": 0} for i in range(3)],
        "settings": {"site_state": "shared", "aggregate_interval_ms": 50, "aggregate_lease_ms": 5000, **settings},
    }


def test_shared_site_state_needs_the_redis_outbox():
    with pytest.raises(ConfigError, match=r"settings\.site_state.*outbox\.kind: redis"):
        Runner.from_config(_parking_config("http://127.0.0.1:1", "p", outbox="memory"), adapter=PARKING)
    with pytest.raises(ConfigError, match="aggregate_lease_ms"):
        Runner.from_config(_parking_config("http://127.0.0.1:1", "p", aggregate_interval_ms=2000), adapter=PARKING)


async def test_parking_shared_uplinks_write_one_field_each_and_the_holder_aggregates(r, redis_prefix):
    broker = await FakeBroker().start()
    src = QueueSource()
    runner = Runner.from_config(_parking_config(broker.url, redis_prefix), adapter=PARKING,
                                sources=[(src, "bosch-tps110", None)])
    await runner.start()
    try:
        t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)   # within the heartbeat timeout
        for i, payload in enumerate([b"\x01", b"\x00", b"\x01"]):
            _, doc = tts_uplink(f"tps-{i}", payload, f_port=1, f_cnt=1,
                                received_at=(t0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            await src.push(doc)
        spots = await r.hgetall(f"{redis_prefix}:parking:shared:spots:site")
        assert set(spots) == {b"tps-0", b"tps-1", b"tps-2"}, "one hash field per spot"
        assert not await r.hexists(f"{redis_prefix}:parking:state", "parking:spots:site"), \
            "no whole-site JSON value in the state hash"
        site_id = "urn:ngsi-ld:OffStreetParking:shr:site"

        def site_ok():
            e = broker.entities.get(site_id)
            return e is not None and e["availableSpotNumber"]["value"] == 1 and e["occupiedSpotNumber"]["value"] == 2

        assert await wait_until(site_ok, timeout=10), {k: v for k, v in broker.entities.get(site_id, {}).items() if "Spot" in k}
        assert runner.derived.leader and runner.metrics.gauges["derive_leader"]() == 1.0
        assert f"{redis_prefix}:parking:derive:lease" in [k.decode() for k in await r.keys(f"{redis_prefix}:*lease")]
    finally:
        await runner.stop()
        await broker.stop()
    assert await r.get(f"{redis_prefix}:parking:derive:lease") is None, "a stopping holder releases the lease"


def test_parking_mapper_in_shared_mode_yields_spot_and_device_and_queues_one_field():
    from stadtlink.adapters.core.adapter import MapContext
    from stadtlink.adapters.core.reading import Reading
    from stadtlink.adapters.core.registry import DeviceRegistry
    from stadtlink.adapters.parking.settings import ParkingSettings

    cfg = _parking_config("http://127.0.0.1:1", "p")
    ctx = MapContext(namespace="shr", registry=DeviceRegistry.load(inline=cfg["devices"]),
                     settings=ParkingSettings.model_validate(cfg["settings"]), shared=SharedWrites())
    reading = Reading(device_id="tps-1", profile="bosch-tps110", observed_at=datetime(2026, 3, 1, tzinfo=timezone.utc),
                      values={"occupied": True}, kind="status")
    entities = PARKING.mapper(reading, ctx)
    assert sorted(e["type"] for e in entities) == ["Device", "ParkingSpot"]
    ops = ctx.shared.take()
    assert [op[:3] for op in ops] == [("put", "spots:site", "tps-1"), ("mark", "dirty-sites", "site")]
    assert dict(ctx.state) == {}, "no spot states in the process-local state"
    ctx.shared = None      # the same settings without the runtime's shared writes: inline, as before
    assert "OffStreetParking" in {e["type"] for e in PARKING.mapper(reading, ctx)}


async def test_parking_shared_heartbeat_timeouts_are_applied_by_the_holder(r, redis_prefix):
    broker = await FakeBroker().start()
    src = QueueSource()
    runner = Runner.from_config(_parking_config(broker.url, redis_prefix, heartbeat_timeout_s=60,
                                                aggregate_resync_s=0.3),
                                adapter=PARKING, sources=[(src, "bosch-tps110", None)])
    await runner.start()
    try:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for i, age_s in enumerate([600, 10]):          # tps-0 silent for 10 min (> 60 s), tps-1 fresh
            _, doc = tts_uplink(f"tps-{i}", b"\x01", f_port=1, f_cnt=1,
                                received_at=(now - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            await src.push(doc)
        spot0 = "urn:ngsi-ld:ParkingSpot:shr:tps-0"
        site_id = "urn:ngsi-ld:OffStreetParking:shr:site"

        def timed_out():
            site = broker.entities.get(site_id)
            return (broker.entities.get(spot0, {}).get("status", {}).get("value") == "unknown" and site is not None
                    and site["occupiedSpotNumber"]["value"] == 1 and site["availableSpotNumber"]["value"] == 0)

        assert await wait_until(timed_out, timeout=10), (broker.entities.get(spot0), broker.entities.get(site_id))
        expired_at = (now - timedelta(seconds=540)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert broker.entities[spot0]["status"]["observedAt"] == expired_at, "unknown at last uplink + timeout"
        stored = await r.hget(f"{redis_prefix}:parking:shared:spots:site", "tps-0")
        assert b'"status":"unknown"' in stored, "the holder wrote the timeout back into the shared hash"
        # spot states left in the local state by an earlier `site_state: local` run: the replicas' own tick
        # must not compute a site aggregate from them (the holder does the timeouts on the shared state)
        runner.pipeline.ctx.state["parking:spots:site"] = {"tps-2": {
            "status": "free", "observed_at": "2026-01-01T00:00:00.000Z", "last_seen": "2026-01-01T00:00:00.000Z",
            "device": "tps-2", "street": "offStreet", "level": 0}}
        assert await runner.pipeline.run_tick() == 0
    finally:
        await runner.stop()
        await broker.stop()


async def test_switching_from_local_to_shared_seeds_the_shared_hashes_from_the_persisted_spot_states(r, redis_prefix):
    """A deployment scaled from one pod (site_state local, spot states persisted whole per site) to
    several (shared): spots that do not report again are still counted, a newer shared entry wins."""
    import orjson

    now = datetime.now(timezone.utc).replace(microsecond=0)
    at = lambda s: (now - timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.000Z")   # noqa: E731
    local = {f"tps-{i}": {"status": "occupied", "observed_at": at(300), "last_seen": at(300), "device": f"tps-{i}",
                          "street": "offStreet", "level": 0} for i in range(3)}
    await r.hset(f"{redis_prefix}:parking:state", "parking:spots:site", orjson.dumps(local))
    await r.hset(f"{redis_prefix}:parking:shared:spots:site", "tps-2", orjson.dumps(
        {"status": "free", "observed_at": at(60), "last_seen": at(60), "device": "tps-2", "street": "offStreet",
         "level": 0}))                                          # reported after the switch: newer, kept
    broker = await FakeBroker().start()
    runner = Runner.from_config(_parking_config(broker.url, redis_prefix), adapter=PARKING,
                                sources=[(QueueSource(), "bosch-tps110", None)])
    await runner.start()
    try:
        site_id = "urn:ngsi-ld:OffStreetParking:shr:site"

        def counted():
            e = broker.entities.get(site_id)
            return e is not None and (e["occupiedSpotNumber"]["value"], e["availableSpotNumber"]["value"]) == (2, 1)

        assert await wait_until(counted, timeout=10), broker.entities.get(site_id)
        stored = await r.hgetall(f"{redis_prefix}:parking:shared:spots:site")
        assert orjson.loads(stored[b"tps-0"])["status"] == "occupied"
        assert orjson.loads(stored[b"tps-2"])["status"] == "free"
    finally:
        await runner.stop()
        await broker.stop()


@pytest.mark.parametrize("n_entities", [1, 1200], ids=["one-script-put", "multi-exec-put"])
async def test_shared_writes_join_the_outbox_put_atomically_in_both_put_paths(r, redis_prefix, n_entities):
    """The outbox puts with one Lua script (its script runs the put-newer write itself) or, for very
    many arguments, with MULTI/EXEC (the write sent as EVAL): the same result either way."""
    from stadtlink.adapters.core.outbox import RedisOutbox

    outbox = RedisOutbox(url=REDIS_URL, stream=f"{redis_prefix}:outbox", client=r, max_length=10_000)
    await outbox.start()
    shared = SharedState(lambda: r, redis_prefix)
    ents = [{"id": f"urn:ngsi-ld:T:x:{i}", "type": "T"} for i in range(n_entities)]
    for value, t in ((2, "2026-01-01T00:00:02.000Z"), (1, "2026-01-01T00:00:01.000Z")):
        w = SharedWrites()
        w.put_newer("h", "a", {"v": value, "t": t}, order="t")
        w.mark("dirty", "s1")
        ops = w.take()
        await outbox.put(ents, extra=lambda pipe, ops=ops: shared.add_to(pipe, ops))
    assert await r.xlen(f"{redis_prefix}:outbox") == 2 * n_entities
    assert (await shared.read_hashes(["h"]))[0] == {"a": {"v": 2, "t": "2026-01-01T00:00:02.000Z"}}
    assert await shared.pop("dirty", 10) == ["s1"]
