"""Fixtures of the runtime tests (``redis_prefix`` for the shared Redis comes from the test kit's plugin)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


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
