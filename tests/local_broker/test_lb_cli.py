"""The broker as a process: ``python -m stadtlink.broker_client.local_broker`` (what ``stadtlink broker`` runs)."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
from stadtlink.adapters.core.testing import free_port


async def test_module_runs_serves_and_stops_on_sigterm(tmp_path):
    (tmp_path / "index.json").write_text('{"http://example.org/ctx.jsonld": "ctx.jsonld"}')
    (tmp_path / "ctx.jsonld").write_text('{"@context": {"Car": "http://example.org/Car"}}')
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stadtlink.broker_client.local_broker", "--port", str(port),
        "--context-dir", str(tmp_path), "--log-level", "DEBUG",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{base}/ngsi-ld/ex/v1/version") as r:
                        assert r.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("broker did not start")
            link = {"Link": "<http://example.org/ctx.jsonld>"}
            async with http.post(f"{base}/ngsi-ld/v1/entities", json={"id": "urn:ngsi-ld:Car:1", "type": "Car"},
                                 headers=link) as r:
                assert r.status == 201
            async with http.get(f"{base}/ngsi-ld/v1/entities/urn:ngsi-ld:Car:1") as r:
                assert (await r.json())["type"] == "http://example.org/Car"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0
    log = stderr.decode()
    assert "not for production" in log
    assert "POST /ngsi-ld/v1/entities -> 201" in log  # one DEBUG line per request
