"""Short variants of the fault matrix (benchmarks/faults.py): real Mosquitto, Redis, adapter process,
counting sink. Every row must have 0 lost readings; duplicates are allowed. Nothing here is timed."""
from __future__ import annotations

import pytest

from benchmarks.faults import Scenario, run_scenario, scenarios

SHORT = dict(rate=100.0, pre_s=2.0, post_s=2.0, spots=1000, drain_timeout_s=60.0)


def _scenario(name: str, **overrides) -> Scenario:
    sc = next(s for s in scenarios(long=True) if s.name == name)
    for key, value in overrides.items():
        setattr(sc, key, value)
    return sc


def _assert_nothing_lost(row: dict) -> None:
    assert row["sent"] > 0, row
    assert row["publisher_unacked"] == 0, row
    assert row["lost"] == 0, f"lost readings {row['lost_examples']}: {row}"
    assert row["drained"], row
    assert row["written"] + row["superseded"] == row["sent"], row


async def test_broker_refused_loses_nothing_and_turns_unready(tmp_path):
    row = await run_scenario(_scenario("broker-stopped-30s"), fault_s=3.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert row["observed"].get("not_ready_seen"), row
    assert "broker" in row["observed"]["failing_checks"], row


async def test_broker_refused_with_redis_outbox_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("broker-stopped-30s-redis"), fault_s=3.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert "broker" in row["observed"]["failing_checks"], row


async def test_broker_500_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("broker-500-10s"), fault_s=3.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert row["requests_failed"] > 0, row   # the fault really happened


async def test_broker_answering_after_3s_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("broker-slow-3s"), fault_s=4.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)


@pytest.mark.slow
async def test_silently_dropped_connection_loses_nothing(tmp_path):
    sc = _scenario("broker-blackhole-20s", adapter_options={"timeout_s": 2.0})
    row = await run_scenario(sc, fault_s=13.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    # a write hanging longer than the batcher's stall_s (10 s) turns readiness false
    assert row["observed"].get("not_ready_seen"), row
    assert "broker" in row["observed"]["failing_checks"], row


async def test_mosquitto_restart_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("mosquitto-restart"), fault_s=2.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)


async def test_redis_restart_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("redis-restart"), fault_s=2.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert "outbox" in row["observed"]["failing_checks"], row


async def test_adapter_sigkill_with_redis_outbox_loses_nothing(tmp_path):
    row = await run_scenario(_scenario("adapter-sigkill"), fault_s=1.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)


async def test_adapter_sigterm_flushes_the_memory_outbox(tmp_path):
    row = await run_scenario(_scenario("adapter-sigterm"), fault_s=1.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert row["observed"]["exit_code"] == 0, row
    assert row["observed"]["left_in_outbox_logged"] is False, row


@pytest.mark.slow
async def test_outbox_limit_alarms_and_pushes_back_without_loss(tmp_path):
    sc = _scenario("outbox-limit", adapter_options={"max_length": 300, "backpressure_wait_s": 0.5})
    row = await run_scenario(sc, fault_s=5.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    obs = row["observed"]
    assert obs["alarm_logged"], row
    assert obs["emit_refused"] > 0, row          # back-pressure: MQTT messages left unacknowledged
    assert obs["max_outbox_depth"] <= 300, row   # never above the limit
    assert obs["outbox_full_seen"], row          # the alarm gauge fired …
    assert "outbox" in obs["failing_checks"], row  # … and readiness names the outbox


async def test_adapter_sigkill_in_the_middle_of_a_group_commit_loses_nothing(tmp_path):
    """Redis frozen while the adapter's group commit waits for its answer, the adapter SIGKILLed
    right there: nothing was acknowledged meanwhile, Mosquitto redelivers the group, 0 lost."""
    row = await run_scenario(_scenario("adapter-sigkill-mid-commit"), fault_s=1.0, work_root=tmp_path, **SHORT)
    _assert_nothing_lost(row)
    assert row["observed"].get("unacked_at_kill", 0) > 0, row        # a group really was in flight
    assert row["observed"].get("acked_while_redis_frozen", 1) == 0, row
