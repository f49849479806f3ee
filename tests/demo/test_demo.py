"""`stadtlink demo --duration 20 --report FILE`: all four families flow through the real code paths
into the broker and onto the twin view. While it runs, every entity in the broker passes the SDM
check and a headless Chromium shows markers of all four families."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stadtlink.adapters.core.adapter import STADTLINK_CONTEXT_URL
from stadtlink.adapters.core.testing import free_port
from stadtlink.broker_client import NGSILDClient
from stadtlink.schemas import check_entity
from stadtlink.schemas.vocabulary import compact_entity

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("STADTLINK_TEST_ARTIFACTS", ROOT / "artifacts"))
CHROMIUM = shutil.which("chromium")
FAMILY_TYPES = {
    "parking": ["ParkingSpot", "OffStreetParking", "ParkingGroup", "Device"],
    "climate": ["WeatherObserved", "DeviceMeasurement"],
    "water_level": ["FloodMonitoring", "WaterObserved", "Alert"],
    "pv": ["ThreePhaseAcMeasurement", "PhotovoltaicMeasurement"],
}


async def _wait_http(url, timeout=30.0):
    from aiohttp import ClientSession

    end = time.monotonic() + timeout
    async with ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(url) as r:
                    if r.status < 500:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


async def test_demo_runs_the_whole_city(tmp_path):
    report_file = tmp_path / "demo.json"
    broker_port, twin_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stadtlink.adapters.core.cli", "demo", "--duration", "20", "--report", str(report_file),
         "--broker-port", str(broker_port), "--twin-port", str(twin_port), "--no-open", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        broker = f"http://127.0.0.1:{broker_port}"
        twin = f"http://127.0.0.1:{twin_port}"
        await _wait_http(broker + "/ngsi-ld/ex/v1/version")
        await _wait_http(twin + "/healthz")
        await asyncio.sleep(12)   # let every family report and every poll come round

        # Every entity in the broker passes the Smart Data Models check.
        async with NGSILDClient(broker, context=STADTLINK_CONTEXT_URL) as client:
            seen = {}
            for types in FAMILY_TYPES.values():
                for t in types:
                    # each type is written with its own model's @context: long names get short again
                    ents = [compact_entity(e) async for e in client.query_entities(type=t)]
                    seen[t] = len(ents)
                    for e in ents:
                        assert check_entity(e) == [], (e["id"], check_entity(e))
        missing = [t for t, n in seen.items() if n == 0]
        assert not missing, f"entity types missing from the broker: {missing} ({seen})"

        if CHROMIUM:
            from playwright.async_api import async_playwright

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync"])
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.goto(twin + "/")
                for family in ("parking", "climate", "water", "pv"):
                    await page.wait_for_selector(f".twin-marker.family-{family}", timeout=5000)
                await page.screenshot(path=str(ARTIFACTS / "demo-twin-view.png"))
                await browser.close()
        out, _ = await asyncio.to_thread(proc.communicate, timeout=90)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, out[-3000:]
    report = json.loads(report_file.read_text())
    for name in FAMILY_TYPES:
        a = report["adapters"][name]
        assert a["upserted"] > 0, (name, a)
        assert a["dead_lettered"] == 0 and a["errors"] == 0, (name, a)
    for types in FAMILY_TYPES.values():
        for t in types:
            assert report["entities"][t] > 0, (t, report["entities"])
