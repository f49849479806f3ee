"""The chart never runs several parking pods with site aggregates computed from each pod's share of
the spots: it sets ``settings.site_state: shared`` when unset, refuses an explicit ``local`` and a
memory outbox (issue #11, defect 3; adapters/parking/README.md "Scaling")."""
from __future__ import annotations

import pytest
import yaml

import helm_kit as hk


def _parking(**over) -> dict:
    entry = {"enabled": True, "replicas": 2, "config": {
        "sources": [{"kind": "mqtt", "host": "mq", "shared_group": "g"}]}}
    for k, v in over.items():
        if k == "settings":
            entry["config"]["settings"] = v
        else:
            entry[k] = v
    return hk.with_base({"adapters": {"parking": entry}})


def _parking_config(values) -> dict:
    docs = hk.manifests(values)
    [cm] = [d for d in hk.by_kind(docs, "ConfigMap") if d["metadata"]["name"] == hk.adapter_name("parking")]
    return yaml.safe_load(cm["data"]["config.yaml"])


def _error(values) -> str:
    with pytest.raises(hk.helm().HelmError) as info:
        hk.render(values)
    return str(info.value)


def test_two_parking_pods_get_the_shared_site_state_and_keep_their_other_settings():
    cfg = _parking_config(_parking(settings={"heartbeat_timeout_s": 7200, "sites": {"p1": {"total_spots": 5}}}))
    assert cfg["settings"] == {"site_state": "shared", "heartbeat_timeout_s": 7200, "sites": {"p1": {"total_spots": 5}}}
    assert cfg["outbox"]["kind"] == "redis"


def test_autoscaled_parking_gets_the_shared_site_state():
    values = _parking(replicas=1, autoscaling={"enabled": True}, resources={"requests": {"cpu": "100m"}})
    assert _parking_config(values)["settings"]["site_state"] == "shared"


def test_one_parking_pod_keeps_the_inline_default():
    assert "settings" not in _parking_config(_parking(replicas=1))


def test_without_aggregates_several_pods_need_no_shared_state():
    cfg = _parking_config(_parking(settings={"aggregate_sites": False}))
    assert "site_state" not in cfg["settings"]
    cfg = _parking_config(_parking(settings={"aggregate_sites": False, "sites": {"p1": {"aggregate": True}}}))
    assert cfg["settings"]["site_state"] == "shared", "one aggregating site is enough"


def test_explicit_local_site_state_with_two_pods_fails_naming_the_key():
    msg = _error(_parking(settings={"site_state": "local"}))
    assert "adapters.parking.config.settings.site_state" in msg and "replicas: 2" in msg


def test_two_parking_pods_with_the_memory_outbox_fail():
    values = _parking()
    values["outbox"] = {"kind": "memory"}
    values.pop("redis", None)
    msg = _error(values)
    assert "adapters.parking" in msg and "outbox.kind: redis" in msg
