"""`stadtlink decode PROFILE HEX` with the payload inline; `stadtlink deadletter list` of a running
adapter with the memory outbox, through its HTTP port (GET /deadletters)."""
from __future__ import annotations

import asyncio
import base64

import aiohttp
import orjson
import yaml

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.runner import Runner
from rt_helpers import QueueSource, cli, free_port, wait_until
from rt_toy_adapter import ADAPTER


def test_decode_takes_the_payload_inline_as_hex_or_base64(cli_env, tmp_path):
    for inline in ("0866", "0x0866", "08 66", base64.b64encode(b"\x08\x66").decode()):
        res = cli(["decode", "toy-lora", inline, "--fport", "1"], cli_env)
        assert res.returncode == 0, (inline, res.stderr)
        assert orjson.loads(res.stdout)[0]["values"] == {"temperature": 21.5}, inline
    # an existing file of that name is read, not taken as the payload
    (tmp_path / "0866").write_text("0867")
    res = cli(["decode", "toy-lora", str(tmp_path / "0866"), "--fport", "1"], cli_env)
    assert orjson.loads(res.stdout)[0]["values"] == {"temperature": 21.51}
    res = cli(["decode", "toy-lora", "no-such-file.bin", "--fport", "1"], cli_env)
    assert res.returncode == 1
    assert b"neither a file nor inline hex, base64 or JSON" in res.stderr


async def test_deadletter_list_reads_the_memory_outbox_of_a_running_adapter(cli_env, tmp_path):
    http_port = free_port()
    cfg = {"adapter": "toy", "namespace": "dlm", "broker": {"url": f"http://127.0.0.1:{free_port()}"},
           "outbox": {"kind": "memory"}, "http": {"host": "127.0.0.1", "port": http_port},
           "devices": [{"id": "dev-1", "lat": 50, "lon": 8}]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    src = QueueSource()
    runner = Runner.from_config(cfg, adapter=ADAPTER, sources=[(src, "toy-lora", None)])
    await runner.start()
    try:
        await wait_until(lambda: src.ready)
        for i in range(3):
            topic, doc = tts_uplink(f"ghost-{i}", b"\x00\x64", f_port=1, f_cnt=i, received_at="2024-05-01T12:00:00Z")
            await src.push(doc, topic=topic)
        await wait_until(lambda: runner.metrics.counts["dead_lettered"] >= 3)
        res = await asyncio.to_thread(cli, ["deadletter", "list", "toy", "--config", str(tmp_path / "c.yaml"),
                                            "--json"], cli_env)
        assert res.returncode == 0, res.stderr
        listing = orjson.loads(res.stdout)
        assert listing["total"] == 3
        assert {r["device_id"] for r in listing["records"]} == {"ghost-0", "ghost-1", "ghost-2"}
        assert {r["reason"] for r in listing["records"]} == {"unknown-device"}
        res = await asyncio.to_thread(cli, ["deadletter", "list", "toy", "--config", str(tmp_path / "c.yaml"),
                                            "--limit", "2"], cli_env)
        assert res.returncode == 0 and res.stdout.decode().startswith("3 dead letter(s), showing 2")
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{http_port}/deadletters"
            async with session.get(base, params={"limit": "100000"}) as resp:      # capped, not refused
                assert resp.status == 200 and len((await resp.json())["records"]) == 3
            async with session.get(base, params={"limit": "-1"}) as resp:
                assert resp.status == 400
            async with session.post(base) as resp:                                 # read-only
                assert resp.status == 405
    finally:
        await runner.stop()
