"""Render the chart with the real Helm engine and look at what comes out.

The engine is Helm's Go SDK (v4) compiled into ``libhelm_c.so`` and shipped inside the PyPI package
``helm-python-sdk`` (import ``helm_python``): ``Chart.render`` is ``helm template``,
``helm_python.lint`` is ``helm lint``, ``Chart.validate_schema`` is Helm's values.schema.json check.
No helm binary and no cluster are involved.
"""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "stadtlink"
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
RELEASE = "rel"
NAMESPACE = "iot"

#: Kinds of CRDs kubernetes-validate carries no schema for (checked by hand in the tests).
CRD_KINDS = {"ServiceMonitor"}


def helm():
    import helm_python

    return helm_python


@lru_cache(maxsize=1)
def chart():
    return helm().Chart.load(str(CHART_DIR))


def ci_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "ci" / f"{name}-values.yaml").read_text(encoding="utf-8"))


def render(values: dict[str, Any] | None = None, *, validate: bool = True) -> dict[str, str]:
    """template path → rendered text (like ``helm template rel helm/stadtlink -n iot -f values``)."""
    values = copy.deepcopy(values or {})
    if validate:
        chart().validate_schema(values)
    return chart().render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for these values (NOTES.txt excluded)."""
    out = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        out.extend(d for d in yaml.safe_load_all(text) if d)
    return out


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found; have {[d['metadata']['name'] for d in by_kind(docs, kind)]}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every workload."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]
        elif d["kind"] == "CronJob":
            yield f"CronJob/{d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]
        elif d["kind"] == "Pod":
            yield f"Pod/{d['metadata']['name']}", d


def adapter_name(adapter: str) -> str:
    return f"{RELEASE}-stadtlink-{adapter.replace('_', '-')}"


def adapter_config(docs: list[dict[str, Any]], adapter: str, shard: int | None = None) -> dict[str, Any]:
    name = adapter_name(adapter) + (f"-{shard}" if shard is not None else "")
    return yaml.safe_load(named(docs, "ConfigMap", name)["data"]["config.yaml"])


def checksum(docs: list[dict[str, Any]], deployment: str) -> str:
    return named(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def with_base(values: dict[str, Any]) -> dict[str, Any]:
    base = ci_values("defaults")
    merged = copy.deepcopy(base)
    _deep_merge(merged, values)
    return merged


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)


# --- the pod as the kubelet builds it (for loading rendered configs in the runtime) ---------------

SECRET_DIR = "/var/run/secrets/stadtlink/broker-auth"


def pod_env(container: dict, secrets: dict[tuple[str, str], str], pod_name: str = "pod-0") -> dict[str, str]:
    """The container's environment as the kubelet builds it: secretKeyRef from ``secrets``,
    the downward API's ``metadata.name`` as ``pod_name``, ``$(NAME)`` replaced by earlier variables."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item and "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"] == {"fieldPath": "metadata.name"}, item
            env[item["name"]] = pod_name
        elif "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                       lambda m: env.get(m.group(1), m.group(0)), item["value"])
    return env


def configmaps_of_adapters(docs):
    for d in by_kind(docs, "Deployment"):
        if d["metadata"]["labels"].get("app.kubernetes.io/component") != "adapter":
            continue
        spec = d["spec"]["template"]["spec"]
        cm_name = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == "config")
        yield d, named(docs, "ConfigMap", cm_name), spec["containers"][0]


def mount_broker_secrets(config_text: str, container: dict, where: Path, secret: str = "s3cret") -> str:
    """The broker-auth Secrets as the kubelet would mount them: each broker-auth volume of the
    container (``broker-auth`` for the single broker, ``broker-auth-<i>`` per sink) becomes a
    directory under ``where`` holding every key file the config names; the config's paths are
    moved there. Fails if the config names a file under a directory that is not mounted."""
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"] if m["name"].startswith("broker-auth")}
    named = re.findall(re.escape(SECRET_DIR) + r"(-\d+)?/([-._A-Za-z0-9]+)", config_text)
    for suffix, key in named:
        mount = SECRET_DIR + suffix
        assert mount in mounts, f"{mount}/{key} is named in the config but no Secret is mounted there"
        local = where / mounts[mount]
        local.mkdir(exist_ok=True)
        (local / key).write_text(secret + "\n")
    for mount, name in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        config_text = config_text.replace(mount + "/", f"{where / name}/")
    return config_text
