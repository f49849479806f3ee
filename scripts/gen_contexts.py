#!/usr/bin/env python3
"""Generate every copy of stadtlink's @context files from schemas/ — never edit them by hand.

    python scripts/gen_contexts.py           # (re)write them
    python scripts/gen_contexts.py --check   # exit 1 and name the stale files (tests run this too)
    make contexts

What it writes:

* ``schemas/contexts/stadtlink-context.jsonld`` — the compound context: the Smart Data Models
  common context, then the bundled repositories' contexts in the order with the fewest term
  clashes (``schemas.vocabulary.derive_compound_order``; a later context wins a term): first
  among the attributes the bundled families write (every entity in tests/families/golden/, the
  recorded outputs of every sample input), then among every bundled model's schema attributes;
* ``helm/stadtlink/files/stadtlink-context.jsonld`` — the same bytes, for the chart's template
  that rewrites each URL to the in-cluster context server.

The local broker and the context server read every other @context straight from the schemas
registry (``schemas.contexts.all_contexts()``): there is no further copy.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOUND = ROOT / "schemas" / "contexts" / "stadtlink-context.jsonld"
CHART_COMPOUND = ROOT / "helm" / "stadtlink" / "files" / "stadtlink-context.jsonld"


GOLDEN = ROOT / "tests" / "families" / "golden"


def written_attributes() -> list[tuple[str, str]]:
    """``(type, attribute)`` of every entity the bundled families produce for their samples."""
    found: dict[tuple[str, str], None] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str) and str(node.get("id", "")).startswith("urn:ngsi-ld:"):
                found.update(dict.fromkeys((node["type"], k) for k in node if k not in ("id", "type", "@context")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted(GOLDEN.glob("*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return sorted(found)


def compound_text() -> str:
    from stadtlink.schemas.bundled import MODELS
    from stadtlink.schemas.contexts import REPOSITORY_CONTEXT_URL
    from stadtlink.schemas.vocabulary import derive_compound_order

    repos = [url for repo, url in REPOSITORY_CONTEXT_URL.items() if repo != "data-models"]
    order = [REPOSITORY_CONTEXT_URL["data-models"], *derive_compound_order(repos, MODELS, written_attributes())]
    return json.dumps({"@context": order}, indent=2) + "\n"


def generated() -> dict[Path, bytes]:
    """Every generated file and the exact bytes it must hold."""
    text = compound_text().encode()
    return {COMPOUND: text, CHART_COMPOUND: text}


def stale() -> list[Path]:
    return [p for p, body in generated().items() if not p.is_file() or p.read_bytes() != body]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for path in bad:
            print(f"{path.relative_to(ROOT)} is stale: run `make contexts`", file=sys.stderr)
        return 1 if bad else 0
    for path, body in generated().items():
        if not path.is_file() or path.read_bytes() != body:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
