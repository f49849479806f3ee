"""The README has a page per backend: for every sink kind the runtime accepts, docs/backends/<kind>.md
says how to point stadtlink at it (a ``kind:`` config block), names the commit of the backend's own
repository its facts were read at, and has a "lost in translation" section; the backends index and
the top-level README link them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stadtlink.adapters.core.config import BrokerConfig
from stadtlink.broker_client.backends import KINDS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "backends"
RUNTIME_KINDS = BrokerConfig.model_json_schema()["properties"]["kind"]["enum"]


def test_the_runtime_and_the_backends_know_the_same_kinds():
    assert sorted(RUNTIME_KINDS) == sorted(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_has_its_page(kind):
    page = DOCS / f"{kind}.md"
    assert page.is_file(), f"docs/backends/{kind}.md is missing"
    text = page.read_text(encoding="utf-8")
    assert re.search(rf"^\s*kind: {re.escape(kind)}\b", text, re.M), "no config block pointing stadtlink at it"
    assert re.search(r"\b[0-9a-f]{40}\b", text), "no full commit of the backend's repository named"
    assert re.search(r"lost in translation", text, re.I), "no 'lost in translation' section"
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    assert f"({kind}.md)" in index, f"docs/backends/README.md does not link {kind}.md"


def test_the_readme_links_the_backend_pages():
    assert "docs/backends/README.md" in (ROOT / "README.md").read_text(encoding="utf-8")
