"""MQTT notification endpoints, delivered to the shared Mosquitto (SHARED_MQTT)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid

import aiomqtt
import pytest

from .conftest import PARKING_CTX, PARKING_LINK
from stadtlink.adapters.core.testing import SHARED_MQTT


SPOT = {"id": "urn:ngsi-ld:ParkingSpot:m:1", "type": "ParkingSpot",
        "status": {"type": "Property", "value": "free"}}


@pytest.mark.needs_mqtt
async def test_mqtt_notification_is_published(http, broker):
    topic = f"stadtlink-test/local-broker/{uuid.uuid4()}"
    uri = f"mqtt://{SHARED_MQTT[0]}:{SHARED_MQTT[1]}/{topic}"
    async with aiomqtt.Client(*SHARED_MQTT) as mqtt:
        await mqtt.subscribe(topic, qos=1)
        sub = {"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
               "notification": {"format": "keyValues", "endpoint": {
                   "uri": uri, "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}],
                   "receiverInfo": [{"key": "X-Room", "value": "42"}]}}}
        async with http.post(f"{broker}/subscriptions", json=sub, headers={"Link": PARKING_LINK}) as r:
            assert r.status == 201
            sub_id = r.headers["Location"].rsplit("/", 1)[1]
        async with http.post(f"{broker}/entities", json=SPOT, headers={"Link": PARKING_LINK}) as r:
            assert r.status == 201
        async with asyncio.timeout(10):
            message = await anext(aiter(mqtt.messages))
    payload = json.loads(message.payload)
    assert payload["metadata"]["Content-Type"] == "application/json"
    assert payload["metadata"]["Link"] == PARKING_CTX
    assert payload["metadata"]["X-Room"] == "42"
    assert payload["body"]["subscriptionId"] == sub_id
    assert payload["body"]["data"] == [{"id": "urn:ngsi-ld:ParkingSpot:m:1", "type": "ParkingSpot", "status": "free"}]


async def test_mqtt_delivery_failure_marks_subscription_failed(http, broker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    sub = {"type": "Subscription", "entities": [{"type": "ParkingSpot"}],
           "notification": {"endpoint": {"uri": f"mqtt://127.0.0.1:{dead}/nowhere"}}}
    async with http.post(f"{broker}/subscriptions", json=sub, headers={"Link": PARKING_LINK}) as r:
        sub_id = r.headers["Location"].rsplit("/", 1)[1]
    async with http.post(f"{broker}/entities", json=SPOT, headers={"Link": PARKING_LINK}) as r:
        assert r.status == 201
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        async with http.get(f"{broker}/subscriptions/{sub_id}") as r:
            notification = (await r.json())["notification"]
        if notification.get("status") == "failed":
            break
        await asyncio.sleep(0.1)
    assert notification["status"] == "failed" and notification["timesFailed"] == 1
