"""Each stadtlink module is loaded once, under its ``stadtlink.`` name, also while pytest runs the
families' tests from their folders (see the repository's conftest.py)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = r'''
import sys, pytest
class Probe:
    def pytest_sessionfinish(self, session):
        seen = {}
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if path and path.startswith(sys.argv[1]) and "/.venv/" not in path:
                seen.setdefault(path, set()).add(module)
        twice = sorted(p for p, mods in seen.items() if len(mods) > 1)
        print("\nLOADED-TWICE", twice)
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]], plugins=[Probe()]))
'''


def test_family_tests_do_not_load_a_second_copy_of_the_family():
    tests = ["adapters/parking/tests/test_site_counts.py", "adapters/climate/tests/test_rain.py"]
    res = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), *tests], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("LOADED-TWICE"))
    assert line == "LOADED-TWICE []", line
