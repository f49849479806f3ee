"""Setup of the tests/ tree (the test kit's fixtures are loaded by the repository's conftest.py)."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARTIFACTS = ROOT / "artifacts"
os.environ.setdefault("STADTLINK_TEST_ARTIFACTS", str(ARTIFACTS))

