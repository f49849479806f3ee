"""Shared pytest setup. Fixtures of the runtime's test kit live in adapters/core/pytest_plugin.py."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARTIFACTS = ROOT / "artifacts"
os.environ.setdefault("STADTLINK_TEST_ARTIFACTS", str(ARTIFACTS))

pytest_plugins = ["stadtlink.adapters.core.pytest_plugin"]
