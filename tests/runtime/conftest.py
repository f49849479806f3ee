"""Fixtures of the runtime tests (real sockets, the shared Redis with unique key prefixes)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from stadtlink.adapters.core.testing import SHARED_REDIS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@pytest.fixture
def redis_prefix():
    """A unique key prefix on the shared Redis; every key under it is deleted afterwards."""
    import redis

    prefix = f"sltest-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis(host=SHARED_REDIS[0], port=SHARED_REDIS[1])
    try:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def cli_env():
    """Environment for `stadtlink` subprocesses that know the toy adapters."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(ROOT), env.get("PYTHONPATH")]))
    env["STADTLINK_EXTRA_ADAPTERS"] = "rt_toy_adapter:ADAPTER,rt_toy_adapter:BROKEN"
    for key in list(env):
        if key.startswith("STADTLINK_") and key not in ("STADTLINK_EXTRA_ADAPTERS", "STADTLINK_TEST_ARTIFACTS"):
            del env[key]
    return env
