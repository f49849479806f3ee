"""The twin view against hostile data and hostile clients (issue 19): security headers, access
control, forged notifications, the cap on live streams and 300 browsers that stop reading."""
from __future__ import annotations

import asyncio
import base64
import logging
import json
import os
import socket
import subprocess
import sys

import aiohttp
import pytest

from stadtlink.adapters.core.adapter import STADTLINK_CONTEXT_URL
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.broker_client.twin import TwinServer
from stadtlink.broker_client.twin.server import AccessControl
from stadtlink.adapters.core.testing import free_port, wait_until

pytestmark = pytest.mark.timeout(240)


def car_park(n: int | str, name: str, free: int = 10, lon: float = 8.466, lat: float = 49.487) -> dict:
    return {"id": f"urn:ngsi-ld:OffStreetParking:sec:{n}", "type": "OffStreetParking",
            "name": {"type": "Property", "value": name},
            "availableSpotNumber": {"type": "Property", "value": free, "observedAt": "2026-01-01T10:00:00.000Z"},
            "totalSpotNumber": {"type": "Property", "value": 100},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}


class Twin:
    """A broker and a twin view in this process."""

    def __init__(self, **kw):
        self.kw = kw

    async def __aenter__(self):
        self._broker = running_broker()
        self.broker_url = await self._broker.__aenter__()
        self.writer = NGSILDClient(self.broker_url, context=STADTLINK_CONTEXT_URL)
        await self.writer.open()
        self.kw.setdefault("access", AccessControl())
        self.twin = TwinServer(self.broker_url, port=0, **self.kw)
        await self.twin.start()
        await wait_until(lambda: self.twin.broker_ok, what="the twin to reach the broker")
        return self

    async def __aexit__(self, *exc):
        await self.twin.stop()
        await self.writer.close()
        await self._broker.__aexit__(*exc)


async def test_every_answer_carries_the_security_headers():
    async with Twin() as t, aiohttp.ClientSession() as http:
        for path in ("/", "/static/app.js", "/api/entities", "/config.json", "/healthz", "/nothing-here"):
            async with http.get(t.twin.url + path) as resp:
                csp = resp.headers.get("Content-Security-Policy", "")
                assert "default-src 'none'" in csp and "script-src 'self'" in csp, (path, csp)
                assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, (path, csp)
                assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        async with http.get(t.twin.url + "/events") as resp:
            assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        page = (await (await http.get(t.twin.url + "/")).read()).decode()
        assert "<script>" not in page and " style=" not in page and "onload=" not in page, \
            "no inline script or style the policy would have to allow"


async def test_access_control_for_page_api_and_stream(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token\n")
    basic_file = tmp_path / "basic"
    basic_file.write_text("city:twin-pass\n")
    access = AccessControl.from_sources(token_file=str(token_file), basic_file=str(basic_file), environ={})
    async with Twin(access=access) as t:
        base = t.twin.url
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/api/entities", "/events", "/static/app.js", "/config.json"):
                async with http.get(base + path) as resp:
                    assert resp.status == 401, path
                    assert resp.headers["WWW-Authenticate"].startswith("Basic")
            async with http.get(base + "/healthz") as resp:
                assert resp.status == 200, "probes need no credentials"
            async with http.get(base + "/api/entities", headers={"Authorization": "Bearer s3cr3t-token"}) as resp:
                assert resp.status == 200
            async with http.get(base + "/api/entities", headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
            good = base64.b64encode(b"city:twin-pass").decode()
            bad = base64.b64encode(b"city:nope").decode()
            async with http.get(base + "/api/entities", headers={"Authorization": f"Basic {good}"}) as resp:
                assert resp.status == 200
            async with http.get(base + "/api/entities", headers={"Authorization": f"Basic {bad}"}) as resp:
                assert resp.status == 401
        # a browser with the token link: a session cookie (not the token), the token leaves the URL
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(base + "/?access_token=wrong", allow_redirects=False) as resp:
                assert resp.status == 401
            async with browser.get(base + "/?access_token=s3cr3t-token", allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"] == "/"
                cookie = resp.cookies["stadtlink_twin"]
                assert cookie.value and "s3cr3t-token" not in cookie.value
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
            async with browser.get(base + "/events") as resp:
                assert resp.status == 200
                assert (await resp.content.readuntil(b"\n\n")).startswith(b"retry:")
    # the access log shows the login link's requests, never the token itself
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("access_token=***" in line for line in access), access
    assert not any("s3cr3t-token" in line for line in access), access
    # the environment works as well as files
    env = AccessControl.from_sources(environ={"STADTLINK_TWIN_TOKEN": "t", "STADTLINK_TWIN_BASIC_AUTH": "u:p"})
    assert env.token == "t" and env.basic == "u:p"
    with pytest.raises(ValueError):
        AccessControl.from_sources(environ={"STADTLINK_TWIN_BASIC_AUTH": "no-colon"})


async def test_forged_notification_with_the_secret_from_the_subscriptions_changes_nothing():
    """Anyone who may read subscriptions learns the receiver's secret (receiverInfo). The twin
    only takes the ids of a notification and reads those entities back from the broker."""
    async with Twin() as t, aiohttp.ClientSession() as http:
        real = car_park(1, "Rathaus", free=42)
        await t.writer.upsert([real])
        await wait_until(lambda: t.twin.state.entities.get(real["id"], {}).get("name") == "Rathaus",
                         what="the real entity in the twin")
        # the attacker reads the subscriptions and copies the secret
        async with http.get(t.broker_url + "/ngsi-ld/v1/subscriptions") as resp:
            subs = await resp.json()
        info = [p for s in subs for p in s["notification"]["endpoint"].get("receiverInfo", [])]
        assert info, "the broker returns receiverInfo to every reader of the subscription"
        headers = {info[0]["key"]: info[0]["value"], "Content-Type": "application/json"}
        forged = {"id": "urn:ngsi-ld:Notification:forged-1", "type": "Notification",
                  "subscriptionId": subs[0]["id"], "notifiedAt": "2026-01-01T10:00:00.000Z",
                  "data": [car_park(1, "FORGED <b>closed</b>", free=0),
                           car_park("invented", "Invented car park", free=0)]}
        before = dict(t.twin.read_back.counters)
        async with http.post(t.twin.url + "/notify", data=json.dumps(forged), headers=headers) as resp:
            assert resp.status == 200, "the secret is right: the receiver takes the notification"
        await wait_until(lambda: t.twin.read_back.counters["unknown"] > before["unknown"],
                         what="the read-back of the forged notification")
        shown = {e["id"]: e for e in t.twin.state.snapshot()}
        assert shown[real["id"]]["name"] == "Rathaus" and shown[real["id"]]["values"]["availableSpotNumber"] == 42
        assert "urn:ngsi-ld:OffStreetParking:sec:invented" not in shown
        async with http.get(t.twin.url + "/api/entities") as resp:
            assert "FORGED" not in await resp.text()
        # a real change still arrives, read back from the broker
        await t.writer.upsert([car_park(1, "Rathaus", free=7)])
        await wait_until(lambda: t.twin.state.entities[real["id"]]["values"]["availableSpotNumber"] == 7,
                         what="the real update")


async def test_live_streams_are_capped():
    async with Twin(max_clients=3) as t, aiohttp.ClientSession() as http:
        streams = []
        for _ in range(3):
            resp = await http.get(t.twin.url + "/events")
            assert resp.status == 200
            await resp.content.readuntil(b"event: snapshot")
            streams.append(resp)
        async with http.get(t.twin.url + "/events") as resp:
            assert resp.status == 503 and "Retry-After" in resp.headers
        streams.pop().close()
        await wait_until(lambda: len(t.twin._clients) < 3, what="the closed stream to leave")
        async with http.get(t.twin.url + "/events") as resp:
            assert resp.status == 200
        for s in streams:
            s.close()


async def _read_until(stream, marker: bytes, timeout: float = 60.0) -> None:
    """Read a (large) stream until ``marker`` has passed, chunk by chunk."""
    async def scan():
        tail = b""
        while True:
            chunk = await stream.content.read(65536)
            if not chunk:
                raise AssertionError(f"stream ended before {marker!r}")
            window = tail + chunk
            if marker in window:
                return
            tail = window[-len(marker):]
    await asyncio.wait_for(scan(), timeout)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_300_browsers_that_stop_reading_keep_memory_bounded():
    n_entities, n_stalled = 10_000, 300
    async with running_broker() as broker_url:
        async with NGSILDClient(broker_url, context=STADTLINK_CONTEXT_URL) as writer:
            for start in range(0, n_entities, 1000):
                await writer.upsert([car_park(i, f"Car park number {i} with a longer name", free=i % 100,
                                              lon=8.4 + (i % 100) / 1000, lat=49.4 + (i // 100) / 1000)
                                     for i in range(start, start + 1000)])
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from stadtlink.broker_client.twin.server import main; "
                 "sys.exit(main(sys.argv[1:]))", "--broker", broker_url, "--port", str(port),
                 "--send-timeout", "10", "--name", f"sec-{port}"],
                env={**os.environ, "STADTLINK_TWIN_TOKEN": "", "STADTLINK_TWIN_BASIC_AUTH": ""},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            base = f"http://127.0.0.1:{port}"
            stalled: list[socket.socket] = []
            sampler = None
            try:
                async with aiohttp.ClientSession() as http:
                    async def loaded():
                        try:
                            async with http.get(base + "/healthz") as r:
                                return (await r.json())["entities"] == n_entities
                        except aiohttp.ClientError:
                            return False
                    await wait_until(loaded, timeout=120, what="the twin to load 10,000 entities")
                    async with http.get(base + "/api/entities") as r:
                        snapshot_bytes = len(await r.read())
                    baseline = _rss_kib(proc.pid)
                    peak = baseline

                    async def sample_rss():
                        nonlocal peak
                        while True:
                            peak = max(peak, _rss_kib(proc.pid))
                            await asyncio.sleep(0.1)
                    sampler = asyncio.ensure_future(sample_rss())
                    for _ in range(n_stalled):
                        s = socket.socket()
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                        s.connect(("127.0.0.1", port))
                        s.sendall(b"GET /events HTTP/1.1\r\nHost: twin\r\n\r\n")
                        stalled.append(s)       # never read

                    async def all_served():     # open now, or already dropped for not reading
                        async with http.get(base + "/healthz") as r:
                            health = await r.json()
                            return health["browsers"] + health["twin"]["streams_dropped"] >= n_stalled
                    await wait_until(all_served, timeout=120, what="300 streams")
                    await asyncio.sleep(2)
                    # another browser goes on: it gets the snapshot and then a live update
                    async with http.get(base + "/events") as stream:
                        assert stream.status == 200
                        await _read_until(stream, b"number 9999 ")       # the whole snapshot
                        await writer.upsert([car_park(5, "Updated while 300 stalled", free=99)])
                        await _read_until(stream, b"Updated while 300 stalled")

                    # the stalled ones are dropped after the send timeout
                    async def dropped():
                        async with http.get(base + "/healthz") as r:
                            return (await r.json())["browsers"] <= 10
                    await wait_until(dropped, timeout=120, what="the stalled streams to be dropped")
            finally:
                if sampler is not None:
                    sampler.cancel()
                for s in stalled:
                    s.close()
                proc.terminate()
                proc.wait(timeout=30)
    growth_mib = (peak - baseline) / 1024
    unshared_mib = n_stalled * snapshot_bytes / 2**20
    print(f"snapshot {snapshot_bytes / 2**20:.1f} MiB; RSS {baseline / 1024:.0f} -> {peak / 1024:.0f} MiB "
          f"with {n_stalled} stalled streams (+{growth_mib:.0f} MiB; one copy each would be {unshared_mib:.0f} MiB)")
    assert growth_mib < 150, f"RSS grew {growth_mib:.0f} MiB for {n_stalled} stalled streams"


async def test_read_back_bounds_a_flood_of_notified_ids():
    """Made-up ids beyond max_pending do not grow a set: they turn into one full read."""
    from stadtlink.broker_client.notify import Notification, ReadBack

    queries, shown = [], []

    class Broker:
        async def query_entities(self, **query):
            queries.append(query)
            for e in ([car_park(1, "real")] if "id" not in query or car_park(1, "")["id"] in query["id"] else []):
                yield e

    async def show(entities):
        shown.extend(e["id"] for e in entities)

    rb = ReadBack(Broker(), show, types=["OffStreetParking"], max_pending=100, batch=10)
    flood = [{"id": f"urn:ngsi-ld:OffStreetParking:x:{i}", "type": "OffStreetParking"} for i in range(5000)]
    await rb(Notification(id="n1", subscription_id="s", notified_at=None, data=flood))
    await wait_until(lambda: rb.counters["resyncs"] == 1 and not rb._pending, what="the resync")
    await asyncio.sleep(0.1)
    assert len(queries) <= 2 and any("id" not in q for q in queries)
    assert shown == [car_park(1, "")["id"]]
    await rb.stop()
