"""/healthz, /readyz and /metrics over real HTTP."""
from __future__ import annotations

import time

import aiohttp

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.runner import Runner
from rt_helpers import FakeBroker, QueueSource, base_config, free_port, wait_until
from rt_toy_adapter import ADAPTER


async def get(url):
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_health_ready_metrics():
    fb = await FakeBroker().start()
    src = QueueSource()
    runner = Runner.from_config(base_config(fb.url, http={"device_last_seen": True}), adapter=ADAPTER,
                                sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        base = runner.http_url
        assert await wait_until(lambda: runner.ready, timeout=3)
        status, _, body = await get(base + "/readyz")
        assert status == 200
        import orjson

        doc = orjson.loads(body)
        assert doc["status"] == "ready" and doc["failing"] == []
        assert set(doc["checks"]) == {"running", "source:queue", "broker", "outbox"}
        status, _, body = await get(base + "/healthz")
        assert status == 200 and orjson.loads(body)["status"] == "ok"

        topic, up = tts_uplink("dev-1", b"\x00\x10", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z")
        await src.push(up, topic=topic)
        await src.push(b"junk", topic=topic)
        assert await runner.wait_idle()
        status, ctype, body = await get(base + "/metrics")
        text = body.decode()
        assert status == 200 and ctype.startswith("text/plain")
        assert 'stadtlink_received_total{adapter="toy"} 2.0' in text
        assert 'stadtlink_upserted_total{adapter="toy"} 1.0' in text
        assert 'stadtlink_dead_lettered_total{adapter="toy"} 1.0' in text
        assert 'stadtlink_dead_lettered_by_reason_total{adapter="toy",reason="invalid-json"} 1.0' in text
        assert 'stadtlink_outbox_depth{adapter="toy"} 0.0' in text
        assert 'stadtlink_batch_size_count{adapter="toy"} 1.0' in text
        assert 'stadtlink_end_to_end_latency_seconds_count{adapter="toy"} 1.0' in text
        assert 'stadtlink_device_last_seen_timestamp_seconds{adapter="toy",device="dev-1"}' in text
        assert 'stadtlink_source_acked{adapter="toy",source="queue"} 2.0' in text

        # a stuck event loop: the heartbeat is old → liveness fails
        runner._heartbeat = time.monotonic() - 60
        status, _, body = await get(base + "/healthz")
        assert status == 503 and orjson.loads(body)["status"] == "fail"
    finally:
        await runner.stop(grace=1)
        await fb.stop()


async def test_no_per_device_series_by_default():
    """``http.device_last_seen`` is off unless set: no series (and no map entry) per device."""
    fb = await FakeBroker().start()
    src = QueueSource()
    runner = Runner.from_config(base_config(fb.url), adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        topic, up = tts_uplink("dev-1", b"\x00\x10", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z")
        await src.push(up, topic=topic)
        assert await runner.wait_idle()
        status, _, body = await get(runner.http_url + "/metrics")
        text = body.decode()
        assert status == 200 and 'stadtlink_upserted_total{adapter="toy"} 1.0' in text
        assert "stadtlink_device_last_seen_timestamp_seconds" not in text
        assert runner.metrics.last_seen is None
    finally:
        await runner.stop(grace=1)
        await fb.stop()


async def test_readyz_503_names_the_broker_when_unreachable():
    src = QueueSource()
    runner = Runner.from_config(base_config(f"http://127.0.0.1:{free_port()}"), adapter=ADAPTER,
                                sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        assert await wait_until(lambda: runner.batcher.broker_ok is False, timeout=5)
        status, _, body = await get(runner.http_url + "/readyz")
        import orjson

        doc = orjson.loads(body)
        assert status == 503 and doc["failing"] == ["broker"]
        assert doc["checks"]["broker"]["detail"]
        status, _, _ = await get(runner.http_url + "/healthz")
        assert status == 200                                  # alive, just not ready
    finally:
        await runner.stop(grace=0.5)


async def test_two_runners_in_one_process_have_separate_metrics():
    fb = await FakeBroker().start()
    a_src, b_src = QueueSource("a"), QueueSource("b")
    a = Runner.from_config(base_config(fb.url), adapter=ADAPTER, sources=[(a_src, "toy-lora", None)])
    b = Runner.from_config(base_config(fb.url), adapter=ADAPTER, sources=[(b_src, "toy-lora", None)])
    await a.start()
    await b.start()
    try:
        topic, up = tts_uplink("dev-1", b"\x00\x10", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z")
        await wait_until(lambda: a_src.ready)
        await a_src.push(up, topic=topic)
        _, _, body = await get(b.http_url + "/metrics")
        assert 'stadtlink_received_total{adapter="toy"} 0.0' in body.decode()
        assert a.counters()["received"] == 1 and b.counters()["received"] == 0
    finally:
        await a.stop(grace=1)
        await b.stop(grace=1)
        await fb.stop()


async def test_webhook_source_is_served_on_the_adapter_port(monkeypatch):
    monkeypatch.setenv("RT_HOOK_TOKEN", "hook-token")
    fb = await FakeBroker().start()
    cfg = base_config(fb.url)
    cfg["sources"] = [{"kind": "webhook", "path": "/uplink", "token_env": "RT_HOOK_TOKEN", "profile": "toy-lora"}]
    runner = Runner.from_config(cfg, adapter=ADAPTER)
    await runner.start()
    try:
        topic, up = tts_uplink("dev-1", b"\x01\x00", f_port=1, f_cnt=1, received_at="2024-05-01T12:00:00Z")
        import orjson

        async with aiohttp.ClientSession() as s:
            async with s.post(runner.http_url + "/uplink", data=orjson.dumps(up),
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 401                                  # no token
            async with s.post(runner.http_url + "/uplink", data=orjson.dumps(up),
                              headers={"Content-Type": "application/json",
                                       "Authorization": "Bearer hook-token"}) as r:
                assert r.status < 300
        assert await runner.wait_idle()
        assert fb.entities["urn:ngsi-ld:WeatherObserved:test:dev-1"]["temperature"]["value"] == 2.56
        assert runner.readiness()[1]["source:webhook/uplink"]["ok"]
    finally:
        await runner.stop(grace=1)
        await fb.stop()
