"""The tests use the one test-support module (stadtlink.adapters.core.testing + its pytest plugin)
instead of copies: no test module imports another test module, none defines its own waiting helper or
service probe, none hard-codes the shared Mosquitto's address. (Helper modules such as
tests/runtime/rt_helpers.py and tests/helm/helm_kit.py hold what one test folder shares.)"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _test_modules() -> list[Path]:
    files = sorted(ROOT.glob("tests/**/test_*.py")) + sorted(ROOT.glob("adapters/*/tests/test_*.py"))
    return [f for f in files if f.resolve() != Path(__file__).resolve()]


def _hits(pattern: str, allowed: set[str] = frozenset()) -> list[str]:
    rx = re.compile(pattern, re.M)
    found = []
    for path in _test_modules():
        rel = str(path.relative_to(ROOT))
        if rel in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        found += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}" for m in rx.finditer(text)]
    return found


def test_the_scan_sees_the_test_tree():
    names = {p.name for p in _test_modules()}
    assert {"test_mqtt.py", "test_e2e.py", "test_runtime_pipeline.py"} <= names


def test_no_test_module_imports_another():
    ours = "|".join(sorted({p.stem for p in _test_modules()} | {Path(__file__).stem}))
    assert _hits(rf"^\s*(from\s+\.*(\w+\.)*({ours})\s+import|import\s+(\w+\.)*({ours})\b)") == []


def test_no_own_waiting_helper():
    """Waiting is the kit's wait_until (polls, raises naming what it waited for)."""
    allowed = {"tests/runtime/test_runtime_cli.py",   # wait_source_connected: reads a subprocess's /readyz
               "tests/demo/test_demo.py"}              # _wait_http: until a server answers at all
    assert _hits(r"^(async )?def _?(wait|until|eventually)\w*\(", allowed) == []


def test_no_own_service_probe_or_hard_coded_shared_mosquitto():
    """The needs_mqtt / needs_redis markers and SHARED_MQTT / SHARED_REDIS_URL say it once."""
    assert _hits(r"create_connection\(\(\s*\"127\.0\.0\.1\",\s*(1883|6379)") == []
    allowed = {"tests/runtime/test_runtime_config.py",           # the config's own defaults
               "tests/local_broker/test_lb_subscriptions.py"}    # endpoint URIs as data to validate
    assert _hits(r"127\.0\.0\.1\"?,\s*(\"port\":\s*|port=)?1883|127\.0\.0\.1:1883|redis://127\.0\.0\.1:6379",
                 allowed) == []
