"""The measuring instruments of the fault matrix: the counting sink and the reading tally."""
from __future__ import annotations

import asyncio
import socket

import aiohttp
import orjson
import pytest

from benchmarks.harness import count_readings, iso_ms, seq_observed, spot_entity_id
from benchmarks.sink import CountingSink

UPSERT = "/ngsi-ld/v1/entityOperations/upsert"


def _spot(index: int, obs: str) -> dict:
    return {"id": spot_entity_id(index), "type": "ParkingSpot",
            "status": {"type": "Property", "value": "free", "observedAt": obs}}


async def test_sink_answers_201_for_new_ids_then_204_and_records():
    sink = await CountingSink(record=True).start()
    try:
        async with aiohttp.ClientSession() as s:
            body = orjson.dumps([_spot(1, "2026-01-01T00:00:00.000Z")])
            async with s.post(sink.url + UPSERT, data=body) as r:
                assert r.status == 201
                assert await r.json() == [spot_entity_id(1)]
            async with s.post(sink.url + UPSERT, data=body) as r:
                assert r.status == 204
            async with s.get(sink.url + "/ngsi-ld/v1/types") as r:
                assert r.status == 200
        assert sink.requests == 2 and sink.entities == 2
        assert sink.written[spot_entity_id(1)] == ["2026-01-01T00:00:00.000Z"] * 2
    finally:
        await sink.stop()


async def test_sink_fault_modes():
    sink = await CountingSink().start()
    try:
        async with aiohttp.ClientSession() as s:
            await sink.set_mode("error500")
            async with s.post(sink.url + UPSERT, data=b"[]") as r:
                assert r.status == 500
            await sink.set_mode("refuse")
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", sink.port), timeout=1).close()
            await sink.set_mode("blackhole")
            with pytest.raises(asyncio.TimeoutError):
                async with s.post(sink.url + UPSERT, data=b"[]", timeout=aiohttp.ClientTimeout(total=0.5)):
                    pass
            await sink.set_mode("ok")
            async with s.post(sink.url + UPSERT, data=b"[]") as r:
                assert r.status == 204
        assert sink.requests_failed == 1
    finally:
        await sink.stop()


def test_count_readings_tells_written_superseded_lost_and_duplicated():
    spots, base = 10, 1_700_000_000.0
    obs = {seq: iso_ms(seq_observed(base, seq)) for seq in range(30)}
    written = {}
    for seq in range(30):
        if seq in (3, 13):     # spot 3: only its newest reading (23) arrives → 3 and 13 superseded
            continue
        if seq == 25:          # spot 5's newest reading never arrives → lost
            continue
        written.setdefault(spot_entity_id(seq % spots), []).append(obs[seq])
    written[spot_entity_id(7)].append(obs[17])   # one duplicate
    tally = count_readings(range(30), written, spots=spots, base_ts=base)
    assert (tally.sent, tally.written, tally.superseded, tally.lost, tally.duplicated) == (30, 27, 2, 1, 1)
    assert tally.lost_examples == [25]
