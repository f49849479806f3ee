"""Every script of benchmarks/ is described in benchmarks/README.md: a row of its table (what it
measures, how long) or a section of its own (a ``##`` heading naming the script)."""
from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_benchmark_script_is_described():
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([\w.]+\.py)` \|", readme, flags=re.M))
    sections = {name for heading in re.findall(r"^##+ .*$", readme, flags=re.M)
                for name in re.findall(r"`([\w.]+\.py)", heading)}
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py"}
    assert scripts, "no benchmark scripts found"
    assert sorted(scripts - rows - sections) == []
    assert sorted(rows - scripts) == [], "the table names scripts that are gone"
