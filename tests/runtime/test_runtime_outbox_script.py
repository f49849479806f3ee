"""RedisOutbox.put as one Lua script (entities + the commands of ``extra``), and its MULTI/EXEC
fallback when ``extra`` uses EVAL — against the shared Redis (unique key prefix) and an own one
whose script cache is flushed."""
from __future__ import annotations

import orjson
import pytest
import redis.asyncio as aioredis

from stadtlink.adapters.core.outbox import RedisOutbox
from stadtlink.adapters.core.testing import SHARED_REDIS_URL

REDIS = SHARED_REDIS_URL


def ent(i):
    return {"id": f"urn:ngsi-ld:WeatherObserved:t:{i}", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": float(i), "observedAt": "2024-05-01T12:00:00.000Z"}}


@pytest.mark.parametrize("with_eval", [False, True])
async def test_put_stores_entities_and_extra_commands_together(redis_prefix, with_eval):
    stream = f"{redis_prefix}:a:outbox"
    ob = RedisOutbox(url=REDIS, stream=stream, consumer="c1", max_length=100)
    await ob.start()
    r = aioredis.from_url(REDIS)
    try:
        def extra(pipe):
            pipe.hset(f"{redis_prefix}:a:state", mapping={"spot-1": orjson.dumps({"status": "free"}), "n": 3})
            pipe.hdel(f"{redis_prefix}:a:state", "gone")
            pipe.sadd(f"{redis_prefix}:a:dirty", "site-1")
            if with_eval:   # e.g. shared state's compare-and-set: scripts cannot call EVAL, MULTI/EXEC does it
                pipe.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, f"{redis_prefix}:a:cas", "v")

        await r.hset(f"{redis_prefix}:a:state", "gone", b"1")
        await ob.put([ent(1), ent(2), ent(3)], extra=extra)
        assert ob.depth == 3 and ob.oldest_age >= 0
        items = await ob.take(10, 0.1)
        assert [i.entity["id"] for i in items] == [ent(i)["id"] for i in (1, 2, 3)]
        assert await r.hgetall(f"{redis_prefix}:a:state") == {b"spot-1": b'{"status":"free"}', b"n": b"3"}
        assert await r.smembers(f"{redis_prefix}:a:dirty") == {b"site-1"}
        assert (await r.get(f"{redis_prefix}:a:cas")) == (b"v" if with_eval else None)
    finally:
        await r.aclose()
        await ob.close()


async def test_put_after_the_script_cache_was_flushed(redis_server):
    """A Redis restart empties the script cache: the next put loads the script again."""
    ob = RedisOutbox(url=redis_server.url, stream="t:a:outbox", consumer="c1", max_length=100)
    await ob.start()
    r = aioredis.from_url(redis_server.url)
    try:
        await ob.put([ent(1)], extra=lambda pipe: pipe.hset("t:a:state", "k", b"1"))
        await r.script_flush()
        await ob.put([ent(2)], extra=lambda pipe: pipe.hset("t:a:state", "k", b"2"))
        assert await r.xlen("t:a:outbox") == 2 and await r.hget("t:a:state", "k") == b"2"
    finally:
        await r.aclose()
        await ob.close()
