"""End to end: an upsert into the local broker → notification → receiver → SSE → the page in a real
headless Chromium shows the new value within 2 seconds. A screenshot is saved as a test artifact."""
import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from stadtlink.adapters.core.adapter import STADTLINK_CONTEXT_URL
from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.broker_client.twin import TwinServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not installed (make test installs it)")]
ARTIFACTS = Path(os.environ.get("STADTLINK_TEST_ARTIFACTS", "artifacts"))

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def spot(n, status, lon=10.7865, lat=52.4227):
    return {"id": f"urn:ngsi-ld:ParkingSpot:wolfsburg:{n}", "type": "ParkingSpot",
            "status": {"type": "Property", "value": status, "observedAt": "2024-05-01T10:00:00.000Z"},
            "name": {"type": "Property", "value": f"Spot {n}"},
            "category": {"type": "Property", "value": ["onStreet"]},
            "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:OffStreetParking:wolfsburg:p1"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}}


def station(temp):
    return {"id": "urn:ngsi-ld:WeatherObserved:mannheim:s1", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": temp, "unitCode": "CEL", "observedAt": "2024-05-01T10:00:00.000Z"},
            "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2024-05-01T10:00:00.000Z"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.4660, 49.4875]}}}


async def test_upsert_reaches_the_browser_within_two_seconds():
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with running_broker() as broker_url:
        async with NGSILDClient(broker_url, context=STADTLINK_CONTEXT_URL) as writer:
            await writer.upsert([spot(1, "free"), station(18.5)])
            twin = TwinServer(broker_url, port=0)
            await twin.start()
            try:
                for _ in range(100):
                    if twin.broker_ok:
                        break
                    await asyncio.sleep(0.05)
                assert twin.broker_ok
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                    page = await browser.new_page(viewport={"width": 1200, "height": 800})
                    errors = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    await page.goto(twin.url + "/")
                    await page.wait_for_function("document.body.dataset.entities === '2'", timeout=10000)
                    assert await page.locator(".twin-marker.family-parking.state-ok").count() == 1
                    assert await page.locator(".twin-marker.family-climate").count() == 1
                    assert "live" in await page.locator("#connection").inner_text()

                    t0 = time.monotonic()
                    await writer.upsert([spot(1, "occupied"), station(31.2)])
                    await page.wait_for_selector(".twin-marker.family-parking.state-bad", timeout=2000)
                    elapsed = time.monotonic() - t0
                    assert elapsed < 2.0

                    towns = await page.eval_on_selector("#town", "e => [...e.options].map(o => o.value)")
                    assert towns == ["", "mannheim", "wolfsburg"], "the town list comes from the entity ids"
                    await page.select_option("#town", "wolfsburg")
                    await page.wait_for_function("twinMap.getZoom() >= 13", timeout=3000)
                    await page.click("#show-table")
                    assert await page.locator("tr[data-entity-id]").count() == 1, "the table follows the town"
                    await page.select_option("#town", "")
                    row = page.locator('tr[data-entity-id="urn:ngsi-ld:WeatherObserved:mannheim:s1"] td.value')
                    await row.wait_for(timeout=2000)
                    assert "31.2 °C" in await row.inner_text()
                    await page.click("#show-map")
                    await page.screenshot(path=str(ARTIFACTS / "twin-view.png"))

                    # Filters hide a family; keyboard users reach the checkboxes and buttons.
                    await page.uncheck('input[name="family"][value="parking"]')
                    assert await page.locator(".twin-marker.family-parking").count() == 0
                    await page.focus("#show-table")
                    await page.keyboard.press("Enter")
                    assert await page.get_attribute("#show-table", "aria-pressed") == "true"

                    assert errors == [], f"JavaScript errors on the page: {errors}"

                    # The view says so when its server goes away.
                    await twin.stop()
                    await page.wait_for_selector("#connection.disconnected", timeout=5000)
                    await browser.close()
            finally:
                if twin._runner is not None and twin._runner.server is not None:
                    await twin.stop()
