"""Stored cross-site scripting (issue 19): car park names with markup come from a polled ParkAPI
feed served over HTTP, go through the real parking adapter (http-poll source, decoder, mapper,
SDM check, batcher) into the local broker, and are shown by the twin view in a real headless
Chromium: no script runs, every name is shown exactly as typed, on the map and in the table."""
from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from datetime import datetime, timezone

import pytest
from aiohttp import web

from stadtlink.broker_client.local_broker import running_broker
from stadtlink.broker_client.twin import TwinServer
from stadtlink.broker_client.twin.server import AccessControl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser, pytest.mark.timeout(180),
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (make test installs it)")]
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

HOSTILE = {
    "img": '<img src=x onerror="window.__xss=(window.__xss||0)+1">',
    "script": "<script>window.__xss=99</script>Bahnhof",
    "svg": "P3 <svg onload=window.__xss=7></svg> & \"quotes\" 'single'",
    "entity": "&lt;b&gt;not bold&lt;/b&gt; <b>bold?</b>",
}


def feed() -> bytes:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = [{"uid": f"evil-{key}", "name": name, "lat": 49.4875 + i * 0.0005, "lon": 8.466 + i * 0.0005,
              "capacity": 100, "realtime_free_capacity": 40 + i, "realtime_opening_status": "OPEN",
              "realtime_data_updated_at": now, "type": "CAR_PARK"}
             for i, (key, name) in enumerate(HOSTILE.items())]
    return json.dumps({"items": items}).encode()


async def test_hostile_car_park_names_are_shown_as_text_and_never_run():
    from playwright.async_api import async_playwright

    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.parking import ADAPTER

    async def serve_feed(request: web.Request) -> web.Response:
        return web.Response(body=feed(), content_type="application/json")

    feed_app = web.Application()
    feed_app.router.add_get("/parkapi.json", serve_feed)
    feed_runner = web.AppRunner(feed_app)
    await feed_runner.setup()
    await web.TCPSite(feed_runner, "127.0.0.1", 0).start()
    feed_url = f"http://127.0.0.1:{feed_runner.addresses[0][1]}/parkapi.json"
    ns = f"xss{uuid.uuid4().hex[:8]}"
    try:
        async with running_broker() as broker_url:
            runner = Runner.from_config({
                "namespace": ns, "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
                "outbox": {"kind": "memory"}, "http": {"enabled": False},
                "sources": [{"kind": "http-poll", "name": "parkapi", "profile": "parkapi", "interval_s": 30,
                             "jitter": 0.0, "timeout_s": 5,
                             "targets": [{"url": feed_url, "device": "evil"}]}],
            }, adapter=ADAPTER)
            await runner.start()
            twin = TwinServer(broker_url, port=0, access=AccessControl())
            await twin.start()
            try:
                for _ in range(600):
                    names = {e.get("name") for e in twin.state.snapshot()}
                    if set(HOSTILE.values()) <= names:
                        break
                    await asyncio.sleep(0.1)
                assert set(HOSTILE.values()) <= names, f"the adapter did not deliver the names: {names}"

                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                    page = await browser.new_page(viewport={"width": 1200, "height": 800})
                    dialogs, errors = [], []
                    page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await page.add_init_script(
                        "window.__violations = [];"
                        "document.addEventListener('securitypolicyviolation',"
                        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));")
                    await page.goto(twin.url + "/")
                    await page.wait_for_function(f"Number(document.body.dataset.entities) >= {len(HOSTILE)}",
                                                 timeout=20000)
                    # zoom in so every label is on screen (labels open at zoom >= 13)
                    await page.evaluate("twinMap.setView([49.4883, 8.4668], 17, {animate: false})")
                    await page.wait_for_function(
                        f"document.querySelectorAll('.leaflet-tooltip').length >= {len(HOSTILE)}", timeout=10000)
                    labels = await page.eval_on_selector_all(".leaflet-tooltip", "els => els.map(e => e.textContent)")
                    for name in HOSTILE.values():
                        assert any(label.startswith(name + ":") for label in labels), (name, labels)
                    assert await page.locator(".leaflet-tooltip img, .leaflet-tooltip script, "
                                              ".leaflet-tooltip svg, .leaflet-tooltip b").count() == 0

                    await page.click("#show-table")
                    cells = await page.eval_on_selector_all("#entities tbody td:nth-child(2)",
                                                            "els => els.map(e => e.textContent)")
                    assert set(HOSTILE.values()) <= set(cells), cells
                    assert await page.locator("#entities img, #entities script, #entities svg").count() == 0

                    await asyncio.sleep(1.0)    # an image error handler would have fired by now
                    assert await page.evaluate("window.__xss") is None, "a script from the feed ran"
                    assert dialogs == [] and errors == [], (dialogs, errors)
                    assert await page.evaluate("window.__violations") == [], \
                        "the page itself needs nothing the Content-Security-Policy forbids"
                    await browser.close()
            finally:
                await twin.stop()
                await runner.stop(grace=2)
    finally:
        await feed_runner.cleanup()
