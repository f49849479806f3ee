#!/usr/bin/env python3
"""Regenerate helm/stadtlink/values.schema.json from the runtime's config schema.

    python scripts/gen_values_schema.py           # write the file
    python scripts/gen_values_schema.py --check   # exit 1 if the committed file is out of date

The schema is the chart's own keys (written below) plus, for each built-in adapter (the
``stadtlink.adapters`` entry points of this distribution), ``adapters.<name>.config`` = that
adapter's config-file schema (``adapters.core.config.config_model(spec)``, the same model
``stadtlink config schema --adapter NAME`` prints) minus what the chart fills in itself:

- ``adapter`` and ``http`` (the chart sets the name and the port its probes use),
- ``broker.auth`` (use ``broker.auth`` / ``adapters.<name>.brokerAuth``: a Secret mounted as a file),
- ``outbox.kind`` and ``outbox.url`` (from ``outbox.kind`` and ``redis``),
- nothing is required (``namespace`` defaults to ``entityNamespace``, ``broker.url`` to ``broker.url``).

Source entries must name their ``kind``. It also copies schemas/contexts/stadtlink-context.jsonld
into the chart (files/), from which the template builds the in-cluster compound context.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "stadtlink"
SCHEMA_FILE = CHART / "values.schema.json"
COMPOUND_SRC = ROOT / "schemas" / "contexts" / "stadtlink-context.jsonld"
COMPOUND_DST = CHART / "files" / "stadtlink-context.jsonld"

PULL_KINDS = ["http-poll", "modbus"]


def builtin_adapters() -> dict[str, Any]:
    """The adapters this distribution declares (not whatever plugins happen to be installed)."""
    out = {}
    for ep in entry_points(group="stadtlink.adapters"):
        if ep.dist is not None and ep.dist.name != "stadtlink":
            continue
        out[ep.name] = ep.load()
    if not out:
        raise SystemExit("no stadtlink.adapters entry points: run `pip install -e .` first")
    return dict(sorted(out.items()))


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                name = v[len("#/$defs/"):]
                out[k] = "#/$defs/" + renames.get(name, name)
            elif k == "discriminator":      # OpenAPI keyword, not JSON Schema: the oneOf decides
                continue
            else:
                out[k] = _rewrite_refs(v, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def adapter_config_schema(spec: Any, defs: dict[str, Any], owner: str) -> dict[str, Any]:
    """The schema of ``adapters.<owner>.config``; its $defs are merged into ``defs`` (renamed on a clash)."""
    from adapters.core.config import config_model

    full = config_model(spec).model_json_schema()
    local_defs = full.pop("$defs", {})
    renames: dict[str, str] = {}
    for name, d in local_defs.items():
        if name in defs and defs[name] != _rewrite_refs(d, {}):
            renames[name] = f"{owner}.{name}"
    for name, d in local_defs.items():
        target = renames.get(name, name)
        defs.setdefault(target, _rewrite_refs(d, renames))
    schema = _rewrite_refs(full, renames)
    props = schema["properties"]
    for key in ("adapter", "http"):
        props.pop(key, None)
    schema.pop("required", None)
    schema["additionalProperties"] = False
    schema["title"] = f"{owner} adapter configuration (runtime format; the chart fills adapter, http, broker.auth, outbox.kind/url)"
    # chart-owned parts of the nested sections: inline adjusted copies
    broker = copy.deepcopy(defs["BrokerConfig"])
    broker["properties"].pop("auth", None)
    broker.pop("required", None)
    broker["title"] = "broker (overrides the chart's broker.* for this adapter; auth: use brokerAuth)"
    props["broker"] = broker
    outbox = copy.deepcopy(defs["OutboxConfig"])
    for key in ("kind", "url"):
        outbox["properties"].pop(key, None)
    outbox.pop("required", None)
    props["outbox"] = outbox
    props["sources"]["items"].pop("discriminator", None)
    props["registry_files"]["description"] = (
        "registry files relative to the config; the names of registryFiles are added automatically")
    return schema


def _source_defs_need_kind(defs: dict[str, Any]) -> None:
    for name, d in defs.items():
        props = d.get("properties", {})
        kind = props.get("kind")
        if name.endswith("SourceConfig") and isinstance(kind, dict) and "const" in kind:
            req = d.setdefault("required", [])
            if "kind" not in req:
                req.insert(0, "kind")


# --- the chart's own keys ---------------------------------------------------------------------------

OBJ = {"type": "object"}
ARR = {"type": "array"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def _obj(props: dict[str, Any], *, required: list[str] | None = None, description: str | None = None,
         extra: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": extra, "properties": props}
    if required:
        out["required"] = required
    if description:
        out["description"] = description
    return out


def _int(minimum: int | None = None, maximum: int | None = None, description: str | None = None):
    out: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    if description:
        out["description"] = description
    return out


AUTH = _obj({
    "kind": {"enum": ["none", "token", "oauth2"]},
    "existingSecret": STR,
    "tokenKey": {"type": "string", "minLength": 1},
    "clientSecretKey": {"type": "string", "minLength": 1},
    "tokenUrl": {"type": "string", "anyOf": [{"const": ""}, {"pattern": "^https?://"}]},
    "clientId": STR,
    "scope": STR,
    "audience": STR,
}, description="broker authentication from an existing Secret (mounted as a file)")

IMAGE = _obj({"repository": {"type": "string", "minLength": 1}, "tag": STR,
              "digest": {"type": "string", "anyOf": [{"const": ""}, {"pattern": "^sha256:[0-9a-f]{64}$"}]},
              "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}})

PDB = _obj({"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]},
            "minAvailable": {"type": ["integer", "string"]}})

AUTOSCALING = _obj({"enabled": BOOL, "minReplicas": _int(1), "maxReplicas": _int(1),
                    "targetCPUUtilizationPercentage": _int(1, 100)})

POD_KNOBS = {
    "resources": OBJ,
    "nodeSelector": {"type": "object", "additionalProperties": STR},
    "tolerations": ARR,
    "affinity": OBJ,
    "podAnnotations": {"type": "object", "additionalProperties": STR},
    "podLabels": {"type": "object", "additionalProperties": STR},
    "terminationGracePeriodSeconds": _int(0),
    "pdb": PDB,
    "autoscaling": AUTOSCALING,
}

ENV_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"

# an adapter with a pull source runs one replica per shard and no HPA
PULL_RULE = {
    "if": {"required": ["config"], "properties": {"config": {
        "required": ["sources"],
        "properties": {"sources": {"contains": {"required": ["kind"],
                                                "properties": {"kind": {"enum": PULL_KINDS}}}}}}}},
    "then": {"properties": {
        "replicas": {"maximum": 1, "description": "pull sources (http-poll/modbus): one replica; use shards"},
        "autoscaling": {"properties": {"enabled": {"const": False}}}}},
}

ENABLED_NEEDS_SOURCES = {
    "if": {"required": ["enabled"], "properties": {"enabled": {"const": True}}},
    "then": {"required": ["config"], "properties": {"config": {
        "required": ["sources"], "properties": {"sources": {"minItems": 1}}}}},
}


def adapter_entry(config_ref: str, name: str) -> dict[str, Any]:
    props = {
        "enabled": BOOL,
        "replicas": _int(1, description="pods per shard (MQTT/webhook adapters; pull adapters: 1)"),
        "shards": _int(1, description="split the targets of pull sources over this many Deployments"),
        "config": {"$ref": config_ref},
        "registryFiles": {"type": "object", "description": "file name → CSV/GeoJSON text",
                          "propertyNames": {"pattern": "^[-._a-zA-Z0-9]+$"},
                          "additionalProperties": STR},
        "brokerAuth": AUTH,
        "env": {"type": "object", "propertyNames": {"pattern": ENV_NAME},
                "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "secretEnv": {"type": "object", "propertyNames": {"pattern": ENV_NAME},
                      "additionalProperties": _obj({"secretName": {"type": "string", "minLength": 1},
                                                    "key": {"type": "string", "minLength": 1}},
                                                   required=["secretName", "key"])},
        "secretFiles": {"type": "array", "items": _obj({
            "secretName": {"type": "string", "minLength": 1},
            "mountPath": {"type": "string", "pattern": "^/"},
            "items": ARR}, required=["secretName", "mountPath"])},
        **POD_KNOBS,
    }
    return {"type": "object", "additionalProperties": False, "title": f"adapter {name}",
            "properties": props, "allOf": [PULL_RULE, ENABLED_NEEDS_SOURCES]}


def build_schema() -> dict[str, Any]:
    from adapters.core.config import config_model

    adapters = builtin_adapters()
    defs: dict[str, Any] = {}
    configs: dict[str, Any] = {}
    for name, spec in adapters.items():
        configs[name] = adapter_config_schema(spec, defs, name)
    configs["generic"] = adapter_config_schema(None, defs, "generic")
    configs["generic"]["properties"]["settings"] = {"type": ["object", "null"],
                                                    "description": "the plugin adapter's own settings"}
    configs["generic"]["title"] = "plugin adapter configuration (common keys only)"
    _source_defs_need_kind(defs)
    for name, schema in configs.items():
        defs[f"config.{name}"] = schema
    for name in adapters:
        defs[f"adapter.{name}"] = adapter_entry(f"#/$defs/config.{name}", name)
    defs["adapter.generic"] = adapter_entry("#/$defs/config.generic", "plugin")

    properties: dict[str, Any] = {
        "global": OBJ,
        "image": IMAGE,
        "imagePullSecrets": {"type": "array", "items": _obj({"name": STR}, required=["name"])},
        "nameOverride": STR,
        "fullnameOverride": STR,
        "commonLabels": {"type": "object", "additionalProperties": STR},
        "entityNamespace": {"type": "string", "minLength": 1, "pattern": "^[^\\s:<>\"'=;()]+$",
                            "description": "urn:ngsi-ld:<Type>:<entityNamespace>:<id>"},
        "broker": _obj({
            "url": {"type": "string", "minLength": 1, "pattern": "^https?://",
                    "description": "NGSI-LD broker base URL"},
            "tenant": STR,
            "context": {"type": "string", "anyOf": [{"const": ""}, {"pattern": "^https?://"}]},
            "auth": AUTH,
        }, required=["url"]),
        "outbox": _obj({"kind": {"enum": ["redis", "memory"]}, "keyPrefix": STR}),
        "redis": _obj({
            "enabled": BOOL,
            "external": _obj({"url": {"type": "string", "anyOf": [{"const": ""}, {"pattern": "^rediss?://"}]},
                              "existingSecret": STR, "urlKey": {"type": "string", "minLength": 1}}),
            "auth": _obj({"enabled": BOOL, "existingSecret": STR,
                          "passwordKey": {"type": "string", "minLength": 1}}),
            "image": IMAGE,
            "persistence": _obj({"enabled": BOOL, "size": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([KMGTPE]i?)?$"},
                                 "storageClass": STR, "accessModes": {"type": "array", "items": STR}}),
            "runAsUser": _int(1), "runAsGroup": _int(1),
            "resources": OBJ, "nodeSelector": OBJ, "tolerations": ARR, "affinity": OBJ,
        }),
        "httpPort": _int(1024, 65535, "adapters' HTTP port (non-root: above 1023)"),
        "podSecurityContext": OBJ,
        "containerSecurityContext": OBJ,
        "serviceAccount": _obj({"create": BOOL, "name": STR, "annotations": OBJ,
                                "automountServiceAccountToken": BOOL}),
        "metrics": _obj({"podAnnotations": BOOL, "serviceMonitor": _obj({
            "enabled": BOOL, "interval": STR, "scrapeTimeout": STR,
            "labels": {"type": "object", "additionalProperties": STR}})}),
        "contextServer": _obj({
            "enabled": BOOL, "replicas": _int(1), "port": _int(1024, 65535), "clusterDomain": {"type": "string", "minLength": 1},
            "extraContexts": {"type": "object", "propertyNames": {"pattern": "^[-_a-zA-Z0-9.]+\\.(json|jsonld)$"},
                              "additionalProperties": {"type": "object", "required": ["@context"]}},
            "resources": OBJ, "nodeSelector": OBJ, "tolerations": ARR, "affinity": OBJ,
            "pdb": PDB,
        }),
        "networkPolicy": _obj({
            "enabled": BOOL,
            "egress": _obj({
                **{k: _obj({"to": ARR, "ports": ARR}) for k in ("broker", "mqtt", "redis", "dns")},
                "extra": ARR,
            }),
            "adapterIngressFrom": ARR,
            "contextServerIngressFrom": ARR,
        }),
        "defaults": _obj(dict(POD_KNOBS)),
        "adapters": {"type": "object", "additionalProperties": False,
                     "description": "the built-in adapters; plugin adapters go to extraAdapters",
                     "properties": {name: {"$ref": f"#/$defs/adapter.{name}"} for name in adapters}},
        "extraAdapters": {"type": "object", "propertyNames": {"pattern": "^[a-z][a-z0-9_]*$"},
                          "additionalProperties": {"$ref": "#/$defs/adapter.generic"}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "stadtlink Helm chart values",
        "description": "Generated by scripts/gen_values_schema.py from the stadtlink runtime config models; do not edit.",
        "type": "object",
        "additionalProperties": False,
        "required": ["broker", "entityNamespace"],
        "properties": properties,
        "$defs": dict(sorted(defs.items())),
    }


def render() -> dict[Path, str]:
    return {
        SCHEMA_FILE: json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n",
        COMPOUND_DST: COMPOUND_SRC.read_text(encoding="utf-8"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    rel = [str(p.relative_to(ROOT)) for p in stale]
    if args.check:
        if stale:
            print("out of date (run python scripts/gen_values_schema.py): " + ", ".join(rel), file=sys.stderr)
            return 1
        return 0
    print("wrote " + ", ".join(rel) if rel else "up to date")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
