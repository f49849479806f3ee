"""The chart's pieces working together, as in a cluster but on this machine.

From one ``helm template`` of the chart (real Helm engine) this test takes
- the climate adapter's ConfigMap (config + registry CSV) and the pod's environment,
- the Redis ConfigMap and the Redis container's command (password from the generated Secret),
- the @context server's ConfigMap (the compound context with in-cluster URLs),
and runs them with real processes: ``redis-server`` with the chart's redis.conf, the context server,
``stadtlink run climate`` with the pod's env (only the cluster addresses are replaced by 127.0.0.1
ports, like cluster DNS would), the shared Mosquitto, and the local NGSI-LD broker whose @context
fetcher resolves the in-cluster URLs via the context server (what Orion-LD does).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402
from helm_kit import pod_env as kubelet_env  # noqa: E402
from stadtlink.adapters.core import context_server as cs  # noqa: E402
from stadtlink.adapters.core.lorawan import chirpstack_uplink  # noqa: E402
from stadtlink.adapters.core.testing import SHARED_MQTT, free_port, publish_uplinks, wait_for_port, wait_until  # noqa: E402

MQTT_HOST, MQTT_PORT = SHARED_MQTT
CONTEXT_HOST = "rel-stadtlink-contexts.iot.svc.cluster.local:8080"
REDIS_HOST = "rel-stadtlink-redis.iot.svc.cluster.local:6379"
WEATHER_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld"


pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed"),
    pytest.mark.needs_mqtt,
    pytest.mark.timeout(120),
]


def _redis_cli(port: int, password: str | None, *args: str) -> str:
    env = {**os.environ}
    env.pop("REDISCLI_AUTH", None)
    if password:
        env["REDISCLI_AUTH"] = password
    return subprocess.run(["redis-cli", "-p", str(port), *args], env=env, capture_output=True, text=True,
                          timeout=10).stdout.strip()


async def test_chart_rendered_adapter_redis_and_contexts_work_together(tmp_path):
    from stadtlink.broker_client.local_broker.app import BROKER_KEY, create_app
    from stadtlink.adapters.climate.simulator import encode_meteohelix

    run = uuid.uuid4().hex[:10]
    cs_app = str(uuid.uuid4())
    stations = (hk.ROOT / "examples" / "climate-stations.csv").read_text(encoding="utf-8")
    values = hk.with_base({"entityNamespace": f"e2e-{run}", "adapters": {"climate": {"enabled": True, "config": {
        "sources": [{"kind": "mqtt", "host": "mosquitto.iot.svc.cluster.local", "port": 1883,
                     "topics": [f"application/{cs_app}/device/+/event/up"], "profile": "barani-meteohelix",
                     "session_expiry_s": 0}]},
        "registryFiles": {"climate-stations.csv": stations}}}})
    docs = hk.manifests(values)
    redis_password = "pw" + uuid.uuid4().hex       # what the generated Secret would hold

    # --- Redis exactly as the StatefulSet starts it, on a free local port ---------------------------
    redis_cm = hk.named(docs, "ConfigMap", "rel-stadtlink-redis")["data"]["redis.conf"]
    [sts] = hk.by_kind(docs, "StatefulSet")
    redis_container = sts["spec"]["template"]["spec"]["containers"][0]
    assert redis_container["command"] == ["/bin/sh", "-c"]
    redis_port = free_port()
    data_dir = tmp_path / "redis-data"
    data_dir.mkdir()
    conf = (redis_cm.replace("dir /data", f"dir {data_dir}")
            .replace("port 6379", f"port {redis_port}")
            .replace("bind * -::*", "bind 127.0.0.1"))
    (tmp_path / "redis.conf").write_text(conf)
    script = redis_container["args"][0].replace("/etc/redis/redis.conf", str(tmp_path / "redis.conf"))
    redis_proc = subprocess.Popen(["/bin/sh", "-c", script], env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": redis_password},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    adapter = None
    broker_runner = None
    ctx_server = None
    try:
        wait_for_port("127.0.0.1", redis_port, timeout=15)
        assert _redis_cli(redis_port, redis_password, "ping") == "PONG"
        assert "NOAUTH" in _redis_cli(redis_port, None, "ping")
        assert "unknown command" in _redis_cli(redis_port, redis_password, "flushall").lower()
        # the readiness probe's command, as the kubelet runs it inside the container
        probe = redis_container["readinessProbe"]["exec"]["command"]
        probe_script = probe[2].replace("-p 6379", f"-p {redis_port}")
        assert subprocess.run(["/bin/sh", "-c", probe_script], timeout=10,
                              env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": redis_password}).returncode == 0

        # --- the context server with the chart's ConfigMap ------------------------------------------
        ctx_dir = tmp_path / "contexts"
        ctx_dir.mkdir()
        for name, text in hk.named(docs, "ConfigMap", "rel-stadtlink-contexts")["data"].items():
            (ctx_dir / name).write_text(text)
        ctx_server = TestServer(cs.create_app(cs.collect([ctx_dir])), host="127.0.0.1", port=0)
        await ctx_server.start_server()

        # --- the broker; its context fetcher plays cluster DNS for the context server's Service ---
        fetched: list[str] = []

        async def fetch(url: str):
            parts = urlsplit(url)
            if parts.netloc != CONTEXT_HOST:
                raise RuntimeError(f"no internet in the cluster: {url}")
            fetched.append(url)
            async with aiohttp.ClientSession() as s:
                async with s.get(ctx_server.make_url(parts.path)) as resp:
                    resp.raise_for_status()
                    return await resp.json(content_type=None)

        app = create_app()
        app[BROKER_KEY].resolver.fetcher = fetch
        broker_runner = web.AppRunner(app, access_log=None)
        await broker_runner.setup()
        broker_port = free_port()
        await web.TCPSite(broker_runner, "127.0.0.1", broker_port).start()
        broker_url = f"http://127.0.0.1:{broker_port}"

        # --- the adapter: the ConfigMap as mounted, the pod's env as the kubelet builds it -----------
        cfg_dir = tmp_path / "etc-stadtlink"
        cfg_dir.mkdir()
        for name, text in hk.named(docs, "ConfigMap", hk.adapter_name("climate"))["data"].items():
            (cfg_dir / name).write_text(text)
        deployment = hk.named(docs, "Deployment", hk.adapter_name("climate"))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        pod_env = kubelet_env(container, {("rel-stadtlink-redis", "redis-password"): redis_password},
                              pod_name=f"rel-stadtlink-climate-{uuid.uuid4().hex[:10]}")
        http_port = free_port()
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8", **pod_env,
               # what cluster DNS resolves; the only changes to the rendered objects
               "STADTLINK_OUTBOX__URL": pod_env["STADTLINK_OUTBOX__URL"].replace(REDIS_HOST, f"127.0.0.1:{redis_port}"),
               "STADTLINK_BROKER__URL": broker_url,
               "STADTLINK_SOURCES__0__HOST": MQTT_HOST,
               "STADTLINK_HTTP__HOST": "127.0.0.1",
               "STADTLINK_HTTP__PORT": str(http_port)}
        assert env["STADTLINK_OUTBOX__URL"] == f"redis://:{redis_password}@127.0.0.1:{redis_port}/0"
        exe = Path(sys.executable).with_name("stadtlink")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stadtlink.adapters.core.cli"]
        adapter = await asyncio.create_subprocess_exec(*cmd, *container["args"][:2], "--config",
                                                       str(cfg_dir / "config.yaml"), env=env, cwd=tmp_path,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.PIPE)
        async with aiohttp.ClientSession() as session:
            async def ready():
                if adapter.returncode is not None:
                    raise AssertionError(f"adapter exited: {(await adapter.stderr.read()).decode()[-2000:]}")
                try:
                    async with session.get(f"http://127.0.0.1:{http_port}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(ready, what="the adapter's /readyz")
            t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=2)
            await publish_uplinks(MQTT_HOST, MQTT_PORT, [chirpstack_uplink(
                "0004a30b00000201", encode_meteohelix({"battery_voltage": 4.1, "air_temperature": 9.8,
                                                       "relative_humidity": 0.88, "atmospheric_pressure": 101200,
                                                       "solar_radiation": 20, "rain_counter": 5}),
                f_port=1, f_cnt=4, time=t0.strftime("%Y-%m-%dT%H:%M:%SZ"), application_id=cs_app)])

            entity_id = f"urn:ngsi-ld:WeatherObserved:e2e-{run}:mhm-wasserturm"

            async def arrived():
                # asked with the public Weather context: same IRIs as the in-cluster compound context
                async with session.get(f"{broker_url}/ngsi-ld/v1/entities/{entity_id}",
                                       headers={"Link": f'<{WEATHER_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
                                                        'type="application/ld+json"'}) as resp:
                    return await resp.json() if resp.status == 200 else None

            entity = await wait_until(arrived, what=f"{entity_id} in the broker")
            assert entity["type"] == "WeatherObserved"
            assert entity["temperature"]["value"] == 9.8
            assert entity["name"]["value"] == "Friedrichsplatz / Wasserturm"   # from the mounted registry CSV

        # the entity was written with its own model's @context, named by its mirrored URL on the
        # in-cluster context server (the configured context is that server's compound context)
        weather_url = f"http://{CONTEXT_HOST}/" + WEATHER_CONTEXT.split("://", 1)[1]
        assert weather_url in fetched, fetched
        assert all(urlsplit(u).netloc == CONTEXT_HOST for u in fetched)
        # the outbox lives in the chart's Redis under the release's prefix
        keys = _redis_cli(redis_port, redis_password, "--scan", "--pattern", "rel-stadtlink:climate:*").split()
        assert "rel-stadtlink:climate:outbox" in keys, keys
    finally:
        if adapter is not None and adapter.returncode is None:
            adapter.terminate()
            try:
                await asyncio.wait_for(adapter.wait(), 15)
            except TimeoutError:
                adapter.kill()
                await adapter.wait()
        if broker_runner is not None:
            await broker_runner.cleanup()
        if ctx_server is not None:
            await ctx_server.close()
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
