"""A bare ``--also-to URL`` is told by the server's answers: a SensorThings service (the real
django-ogc-sensorthings server and the FROST-Server stand-in), Orion-LD (the local broker), a classic
NGSI-v2 Orion; an NGSI-LD broker that is not Orion-LD and a URL answering nothing are refused with
what to do instead."""
from __future__ import annotations

import pytest

from stadtlink.adapters.core.demo.city import DemoCity, parse_also_to
from stadtlink.adapters.core.testing import free_port
from stadtlink.broker_client.backends.detect import UnknownBackend, detect_kind
from stadtlink.broker_client.local_broker import running_broker

from backends.servers import OrionV2Server, ScorpioServer, StellioServer
from .frost_fake import start_fake_frost


async def test_the_real_sensorthings_server(sta_server):
    assert await detect_kind(sta_server.url) == "sensorthings"


async def test_the_frost_stand_in():
    fake, runner = await start_fake_frost()
    try:
        assert await detect_kind(fake.url) == "sensorthings"
    finally:
        await runner.cleanup()


async def test_orion_ld_and_ngsi_v2():
    async with running_broker() as broker_url:
        assert await detect_kind(broker_url) == "orion-ld"
    async with OrionV2Server() as orion:
        assert await detect_kind(orion.url) == "ngsi-v2"


@pytest.mark.parametrize("server", [ScorpioServer, StellioServer])
async def test_another_ngsi_ld_broker_is_named_not_guessed(server):
    async with server() as broker:
        with pytest.raises(UnknownBackend, match="scorpio\\+URL or stellio\\+URL"):
            await detect_kind(broker.url)


async def test_nothing_listening():
    with pytest.raises(UnknownBackend, match="cannot reach"):
        await detect_kind(f"http://127.0.0.1:{free_port()}", timeout_s=2)


async def test_the_demo_resolves_a_bare_url_before_it_starts(sta_server):
    assert parse_also_to(sta_server.url)["kind"] is None
    city = DemoCity(broker_port=0, twin_port=0, families=("parking",), also_to=sta_server.url)
    await city.resolve_also_to()
    assert city.also_to == {"name": "also", "kind": "sensorthings", "url": sta_server.url}
    # a kind given is taken as given
    city = DemoCity(broker_port=0, twin_port=0, families=("parking",), also_to=f"scorpio+{sta_server.url}")
    await city.resolve_also_to()
    assert city.also_to["kind"] == "scorpio"
