"""The @context server the chart runs: it serves what the chart's compound context names."""
from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from stadtlink.adapters.core import context_server as cs
from stadtlink.adapters.core.testing import free_port, wait_for_port
from stadtlink.schemas.contexts import CONTEXTS

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")
import helm_kit as hk  # noqa: E402


def chart_context_files(values=None) -> dict[str, str]:
    docs = hk.manifests(values or hk.ci_values("defaults"))
    return hk.named(docs, "ConfigMap", "rel-stadtlink-contexts")["data"]


async def _serve(files):
    server = TestServer(cs.create_app(files), host="127.0.0.1", port=0)
    await server.start_server()
    return server


def test_served_path_mirrors_the_upstream_url():
    assert cs.served_path("https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld") \
        == "/raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"
    with pytest.raises(ValueError):
        cs.served_path("context.jsonld")


def test_every_packaged_context_is_served():
    files = cs.collect()
    assert {cs.served_path(u) for u in CONTEXTS} == set(files)


async def test_compound_context_of_the_chart_resolves_in_cluster(tmp_path):
    data = chart_context_files()
    for name, text in data.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    compound = json.loads(data["stadtlink-context.jsonld"])
    upstream = json.loads((hk.ROOT / "schemas/contexts/stadtlink-context.jsonld").read_text())["@context"]
    assert len(compound["@context"]) == len(upstream) >= 7
    server = await _serve(cs.collect([tmp_path]))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/stadtlink-context.jsonld")) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("application/ld+json")
                assert json.loads(await resp.read()) == compound
            for in_cluster, original in zip(compound["@context"], upstream):
                parts = urlsplit(in_cluster)
                assert parts.netloc == "rel-stadtlink-contexts.iot.svc.cluster.local:8080"
                # what cluster DNS would do: the Service name → this server
                async with session.get(server.make_url(parts.path)) as resp:
                    assert resp.status == 200, in_cluster
                    body = await resp.read()
                assert body == CONTEXTS[original].read_bytes(), f"{in_cluster} is not the file of {original}"
    finally:
        await server.close()


async def test_etag_cors_404_health_and_index(tmp_path):
    server = await _serve(cs.collect())
    try:
        path = cs.served_path(next(iter(CONTEXTS)))
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url(path)) as resp:
                etag = resp.headers["ETag"]
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
            async with session.get(server.make_url(path), headers={"If-None-Match": etag}) as resp:
                assert resp.status == 304 and await resp.read() == b""
            async with session.get(server.make_url("/nope.jsonld")) as resp:
                assert resp.status == 404
            async with session.get(server.make_url("/healthz")) as resp:
                assert resp.status == 200 and await resp.text() == "ok"
            async with session.get(server.make_url("/")) as resp:
                assert path in await resp.json()
    finally:
        await server.close()


def test_extra_contexts_from_values_are_served(tmp_path):
    values = hk.with_base({"contextServer": {"extraContexts": {
        "stadt-terms.jsonld": {"@context": {"stadtteil": "https://stadt.example/terms#stadtteil"}}}}})
    data = chart_context_files(values)
    assert json.loads(data["stadt-terms.jsonld"]) == {"@context": {"stadtteil": "https://stadt.example/terms#stadtteil"}}
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    assert "/stadt-terms.jsonld" in cs.collect([tmp_path])


def test_broken_file_stops_the_start_with_a_clear_message(tmp_path):
    (tmp_path / "bad.jsonld").write_text("{not json")
    with pytest.raises(cs.ContextFileError, match="bad.jsonld is not valid JSON"):
        cs.collect([tmp_path])
    (tmp_path / "bad.jsonld").write_text('{"no": "context"}')
    with pytest.raises(cs.ContextFileError, match="no top-level @context"):
        cs.collect([tmp_path])
    assert cs.main(["--dir", str(tmp_path), "--list"]) == 2
    assert cs.main(["serve", "--dir", str(tmp_path), "--list"]) == 2    # the CLI's `stadtlink contexts serve`
    assert cs.main(["--dir", str(tmp_path / "missing"), "--list"]) == 2


def test_configmap_symlinks_are_skipped(tmp_path):
    """A mounted ConfigMap has ``..data`` and ``..<timestamp>`` entries beside the files."""
    real = tmp_path / "..2026_01_01"
    real.mkdir()
    (real / "a.jsonld").write_text('{"@context": {}}')
    (tmp_path / "..data").symlink_to(real.name)
    (tmp_path / "a.jsonld").symlink_to("..data/a.jsonld")
    assert set(cs.collect([tmp_path], packaged=False)) == {"/a.jsonld"}


def test_the_command_the_pod_runs(tmp_path):
    """``python -m stadtlink.adapters.core.context_server --port P --dir D`` as in the chart's Deployment."""
    for name, text in chart_context_files().items():
        (tmp_path / name).write_text(text)
    docs = hk.manifests(hk.ci_values("defaults"))
    container = hk.named(docs, "Deployment", "rel-stadtlink-contexts")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "stadtlink.adapters.core.context_server"]
    args = list(container["args"])
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--dir") + 1] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "stadtlink.adapters.core.context_server", "--host", "127.0.0.1", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stadtlink-context.jsonld", timeout=5) as resp:
            assert json.loads(resp.read())["@context"][0].startswith("http://rel-stadtlink-contexts.")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
