"""The README's Helm quick start, exactly as written, renders with the real Helm engine.

The command is read from README.md (the ``helm install stadtlink`` line of the "Deploying with Helm"
block, with its continuation lines), its ``--set`` / ``--set-string`` / ``-f`` arguments are parsed by
Helm's own parser (helm-python-sdk's ``parse_set_string``, the strvals code of ``helm --set``), and
the values go through the chart's values.schema.json, the templates and the runtime's config loader.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402
from helm_kit import configmaps_of_adapters  # noqa: E402

from stadtlink.adapters.core.config import load_config  # noqa: E402
from stadtlink.adapters.core.plugins import load_adapters  # noqa: E402

README = hk.ROOT / "README.md"


def readme_install_command() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Deploying with Helm", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S).group(1)
    command = re.search(r"^helm install stadtlink .*?(?<!\\)$", block.replace("\\\n", "\\ "),
                        flags=re.M | re.S).group(0)
    return shlex.split(command.replace("\\ ", " "), comments=True)


def values_of(args: list[str]) -> tuple[str, Path, dict]:
    """(release, chart dir, values) as ``helm install`` composes them: -f files first, then the
    --set flags in order. Helm parses each --set into the same map (strvals.ParseInto), list indexes
    included; joined with commas they are the one expression Helm would build."""
    assert args[:2] == ["helm", "install"], args
    release, chart, rest = args[2], hk.ROOT / args[3], args[4:]
    files: list[Path] = []
    sets: list[str] = []
    i = 0
    while i < len(rest):
        flag = rest[i]
        if flag in ("--set", "-f", "--values", "-n", "--namespace"):
            value, i = rest[i + 1], i + 2
        elif flag in ("--create-namespace", "--wait", "--atomic"):
            i += 1
            continue
        else:
            raise AssertionError(f"the test does not know {flag!r}: teach it, do not skip it")
        if flag in ("-f", "--values"):
            files.append(hk.ROOT / value)
        elif flag == "--set":
            assert "," not in value, f"a comma inside one --set is a second assignment: {value}"
            sets.append(value)
    h = hk.helm()
    values: dict = {}
    for path in files:
        hk._deep_merge(values, h.values_from_yaml(path.read_text(encoding="utf-8")))
    if sets:
        hk._deep_merge(values, h.parse_set_string(",".join(sets)))
    return release, chart, values


def test_the_readme_quick_start_renders_as_written(tmp_path):
    args = readme_install_command()
    assert "--set" in args and "adapters.parking.enabled=true" in args
    release, chart, values = values_of(args)
    assert chart == hk.CHART_DIR and release == "stadtlink"
    hk.chart().validate_schema(values)                     # what `helm install` checks first
    docs = hk.manifests(values)
    deployments = {d["metadata"]["name"] for d in hk.by_kind(docs, "Deployment")}
    assert hk.adapter_name("parking") in deployments
    # the adapter's rendered config is one the runtime accepts
    [(_, cm, container)] = list(configmaps_of_adapters(docs))
    data = yaml.safe_load(cm["data"]["config.yaml"])
    adapters, _ = load_adapters()
    config, _ = load_config(data, adapter=adapters["parking"], env={}, base_dir=tmp_path)
    assert config.adapter == "parking" and config.sources
    assert config.broker.url == values["broker"]["url"]
    assert config.namespace == values["entityNamespace"]


def test_the_old_quick_start_is_refused_by_the_schema():
    """What the README said before: no entityNamespace, a parking adapter without a source."""
    with pytest.raises(Exception) as refused:
        hk.chart().validate_schema(hk.helm().parse_set_string(
            "broker.url=http://orion-orion-ld:1026,adapters.parking.enabled=true"))
    assert "entityNamespace" in str(refused.value) and "sources" in str(refused.value)
