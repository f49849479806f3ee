"""JSON log lines and the per-key rate limiter."""
from __future__ import annotations

import io
import logging

import orjson

from stadtlink.adapters.core.logging import JsonFormatter, RateLimitedLog, setup_logging


def test_json_lines_carry_adapter_and_extras():
    stream = io.StringIO()
    setup_logging("INFO", adapter="parking", stream=stream)
    try:
        log = logging.getLogger("stadtlink.test")
        log.info("dead letter %s", "x", extra={"device": "spot-1", "reason": "bad-length"})
        log.debug("not shown at INFO")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        doc = orjson.loads(lines[0])
        assert doc["msg"] == "dead letter x" and doc["level"] == "INFO" and doc["adapter"] == "parking"
        assert doc["device"] == "spot-1" and doc["reason"] == "bad-length" and doc["time"].endswith("Z")
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_stadtlink", False):
                root.removeHandler(h)


def test_rate_limited_once_per_key_with_suppressed_count(caplog):
    caplog.set_level(logging.WARNING)
    limited = RateLimitedLog(logging.getLogger("stadtlink.rl"), interval=0.2)
    for _ in range(5):
        limited(logging.WARNING, ("dev-1", "bad"), "bad input from %s", "dev-1")
    limited(logging.WARNING, ("dev-2", "bad"), "bad input from %s", "dev-2")
    assert [r.getMessage() for r in caplog.records] == ["bad input from dev-1", "bad input from dev-2"]
    import time

    time.sleep(0.25)
    limited(logging.WARNING, ("dev-1", "bad"), "bad input from %s", "dev-1")
    assert caplog.records[-1].suppressed == 4


def test_exceptions_are_one_line():
    fmt = JsonFormatter("toy")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = fmt.format(rec)
    assert "\n" not in line and "ValueError: boom" in orjson.loads(line)["exc"]
