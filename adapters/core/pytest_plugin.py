"""pytest fixtures of the stadtlink test kit.

Enable with ``pytest_plugins = ["stadtlink.adapters.core.pytest_plugin"]`` in a top-level conftest.py.

* ``free_tcp_port`` — a free port on 127.0.0.1.
* ``unique_topic`` — an MQTT topic prefix no other test (or agent) uses.
* ``shared_mqtt`` — ``(host, port)`` of the shared Mosquitto (127.0.0.1:1883); use unique topics.
* ``mosquitto`` / ``mosquitto_persistent`` — an own :class:`MosquittoProcess` on a free port that
  the test may stop, kill and restart (persistent: sessions and queued messages survive a stop).
* ``redis_server`` / ``redis_persistent`` — an own :class:`RedisProcess` likewise (AOF when persistent).
* ``local_broker`` — base URL of an in-process NGSI-LD broker (``stadtlink.broker_client.local_broker``).
"""
from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from .testing import MosquittoProcess, RedisProcess, free_port
from .testing import local_broker as _local_broker


@pytest.fixture
def free_tcp_port() -> int:
    return free_port()


@pytest.fixture
def unique_topic() -> str:
    return f"stadtlink-test/{uuid.uuid4().hex}"


@pytest.fixture
def shared_mqtt() -> tuple[str, int]:
    return ("127.0.0.1", 1883)


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
