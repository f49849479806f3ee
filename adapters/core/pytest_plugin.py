"""pytest fixtures of the stadtlink test kit.

Enable with ``pytest_plugins = ["stadtlink.adapters.core.pytest_plugin"]`` in a top-level conftest.py.

* ``free_tcp_port`` — a free port on 127.0.0.1.
* ``unique_topic`` — an MQTT topic prefix no other test (or agent) uses.
* ``shared_mqtt`` — ``(host, port)`` of the shared Mosquitto (127.0.0.1:1883); use unique topics.
* ``redis_prefix`` — a key prefix on the shared Redis no other test uses; every key under it
  (``<prefix>:*``) is deleted after the test.
* ``mosquitto`` / ``mosquitto_persistent`` — an own :class:`MosquittoProcess` on a free port that
  the test may stop, kill and restart (persistent: sessions and queued messages survive a stop).
* ``redis_server`` / ``redis_persistent`` — an own :class:`RedisProcess` likewise (AOF when persistent).
* ``local_broker`` — base URL of an in-process NGSI-LD broker (``stadtlink.broker_client.local_broker``).

Markers: ``@pytest.mark.needs_mqtt`` / ``@pytest.mark.needs_redis`` skip a test (saying why) when
the shared Mosquitto / Redis (:data:`~.testing.SHARED_MQTT`, :data:`~.testing.SHARED_REDIS`) does
not answer. ``make test`` starts both, so there they always run.
"""
from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from .testing import (SHARED_MQTT, SHARED_REDIS, MosquittoProcess, RedisProcess, free_port, mqtt_available,
                      redis_available)
from .testing import local_broker as _local_broker


_NEEDS = {
    "needs_mqtt": (mqtt_available, "the shared Mosquitto on {}:{} does not answer", SHARED_MQTT),
    "needs_redis": (redis_available, "the shared Redis on {}:{} does not answer", SHARED_REDIS),
}


def pytest_configure(config) -> None:
    for name, (_, why, address) in _NEEDS.items():
        config.addinivalue_line("markers", f"{name}: skip when {why.format(*address)}")


def pytest_runtest_setup(item) -> None:
    for name, (available, why, address) in _NEEDS.items():
        if item.get_closest_marker(name) is not None and not available():
            pytest.skip(why.format(*address))


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


@pytest.fixture
def unique_topic() -> str:
    return f"stadtlink-test/{uuid.uuid4().hex}"


@pytest.fixture
def shared_mqtt() -> tuple[str, int]:
    return SHARED_MQTT


@pytest.fixture
def redis_prefix():
    import redis

    prefix = f"sltest-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis(host=SHARED_REDIS[0], port=SHARED_REDIS[1])
    try:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def mosquitto(tmp_path):
    broker = MosquittoProcess(data_dir=tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture
def mosquitto_persistent(tmp_path):
    broker = MosquittoProcess(persistence=True, data_dir=tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisProcess(data_dir=tmp_path / "redis")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_persistent(tmp_path):
    server = RedisProcess(persistence=True, data_dir=tmp_path / "redis")
    server.start()
    yield server
    server.cleanup()


@pytest_asyncio.fixture
async def local_broker():
    async with _local_broker() as url:
        yield url
