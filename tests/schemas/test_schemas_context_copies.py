"""One source for every @context file: the copies are generated from schemas/ and equal it byte
for byte; the local broker and the context server read the rest from the schemas registry."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from stadtlink.adapters.core import context_server as cs
from stadtlink.broker_client.local_broker.contexts import ContextResolver
from stadtlink.schemas.contexts import CONTEXTS, STADTLINK_CONTEXT_URL, all_contexts, context_text

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_contexts", ROOT / "scripts" / "gen_contexts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_copy_equals_what_the_generator_writes_byte_for_byte():
    gen = _generator()
    files = gen.generated()
    assert set(files) == {ROOT / "schemas/contexts/stadtlink-context.jsonld",
                          ROOT / "helm/stadtlink/files/stadtlink-context.jsonld"}
    for path, body in files.items():
        assert path.read_bytes() == body, f"{path.relative_to(ROOT)} drifted: run `make contexts`"
    assert gen.stale() == []


def test_the_check_mode_names_a_drifted_copy(tmp_path, monkeypatch, capsys):
    gen = _generator()
    copy = tmp_path / "stadtlink-context.jsonld"
    copy.write_bytes((ROOT / "helm/stadtlink/files/stadtlink-context.jsonld").read_bytes().replace(b"  ", b" "))
    monkeypatch.setattr(gen, "CHART_COMPOUND", copy)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "COMPOUND", tmp_path / "compound.jsonld")
    (tmp_path / "compound.jsonld").write_bytes(gen.compound_text().encode())
    assert gen.main(["--check"]) == 1
    assert "stadtlink-context.jsonld is stale" in capsys.readouterr().err


def test_no_hand_kept_copy_of_a_context_exists_outside_schemas():
    copies = [p for p in ROOT.glob("**/*.jsonld")
              if not p.is_relative_to(ROOT / "schemas") and ".venv" not in p.parts and "build" not in p.parts
              and "testdata" not in p.parts and "tests" not in p.parts]
    assert copies == [ROOT / "helm/stadtlink/files/stadtlink-context.jsonld"]


def test_the_local_broker_holds_exactly_the_schemas_files():
    resolver = ContextResolver(fetcher=False)
    contexts = all_contexts()
    assert len(contexts) >= 18
    for url, path in contexts.items():
        assert resolver.documents[url] == json.loads(path.read_bytes())["@context"], url
        assert context_text(url).encode() == path.read_bytes()


def test_the_context_server_serves_the_schemas_files_byte_for_byte():
    files = cs.collect()
    for url in CONTEXTS:
        assert files[cs.served_path(url)].body == CONTEXTS[url].read_bytes(), url
    assert files[cs.served_path(STADTLINK_CONTEXT_URL)].body == \
        (ROOT / "helm/stadtlink/files/stadtlink-context.jsonld").read_bytes()
