"""What the runtime's imports cost in memory, and which ones a configuration pulls in (issue #21 item 4).

1. For each module below, a fresh interpreter imports it alone: RSS after − RSS of a bare
   interpreter (each figure includes the module's own dependencies, so they do not add up).
2. The parking adapter as ``stadtlink run`` builds it — memory outbox, one MQTT source, 10,000
   registry rows — started in this process against an own Mosquitto: RSS after start, the
   registry's share (RSS with a 10-row registry subtracted), and whether the modules that only
   some configurations need (redis, pymodbus, aiomqtt, jsonschema's slow path) were loaded.

    python benchmarks/import_memory.py          # prints one JSON object
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODULES = ["asyncio", "orjson", "pydantic", "aiohttp", "paho.mqtt.client", "aiomqtt", "redis.asyncio", "pymodbus",
           "prometheus_client", "jsonschema", "jsonschema_rs", "yaml", "stadtlink.schemas",
           "stadtlink.adapters.core", "stadtlink.adapters.core.runner", "stadtlink.adapters.parking"]
OPTIONAL = ("redis", "pymodbus", "aiomqtt", "jsonschema", "gmqtt", "amqtt")

_RSS = "int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"


def _rss_kb() -> int:
    return int([line for line in open("/proc/self/status") if line.startswith("VmRSS")][0].split()[1])


def import_cost(module: str) -> float:
    code = f"r0={_RSS}\nimport {module}\nprint({_RSS}-r0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return float("nan")
    return round(int(out.stdout.strip()) / 1024, 1)


async def _parking(rows: int) -> dict:
    from benchmarks.harness import write_config, write_fleet
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import MosquittoProcess, free_port

    work = Path(tempfile.mkdtemp(prefix="stadtlink-imports-"))
    mosquitto = MosquittoProcess()
    mosquitto.start()
    try:
        write_fleet(work, spots=rows, per_site=min(100, rows))
        cfg_path = write_config(work, broker_url=f"http://127.0.0.1:{free_port()}", mqtt_port=mosquitto.port,
                                http_port=free_port(), client_id=f"imports-{uuid.uuid4().hex[:6]}", outbox="memory")
        before = _rss_kb()
        runner = Runner.from_config(cfg_path, adapter="parking")
        await runner.start()
        await asyncio.sleep(1.0)
        after = _rss_kb()
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(OPTIONAL))
        slow_schema = "jsonschema" in sys.modules
        await runner.stop(grace=1)
        return {"rows": rows, "rss_mb": round(after / 1024, 1), "rss_for_runner_mb": round((after - before) / 1024, 1),
                "optional_modules_loaded": loaded, "jsonschema_loaded": slow_schema}
    finally:
        mosquitto.cleanup()


def _child(rows: int) -> None:
    print(json.dumps(asyncio.run(_parking(rows))), flush=True)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        _child(int(sys.argv[2]))
        return
    costs = {m: import_cost(m) for m in MODULES}
    runs = {}
    for rows in (10, 10_000):
        out = subprocess.run([sys.executable, __file__, "child", str(rows)], capture_output=True, text=True, cwd=ROOT)
        lines = out.stdout.strip().splitlines()
        runs[rows] = json.loads(lines[-1]) if lines else {"error": out.stderr[-800:]}
    result = {"import_rss_mb": costs, "parking_memory_outbox": runs}
    if all("rss_mb" in r for r in runs.values()):
        result["registry_10000_rows_mb"] = round(runs[10_000]["rss_mb"] - runs[10]["rss_mb"], 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
