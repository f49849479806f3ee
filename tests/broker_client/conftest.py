"""Fixtures for the broker_client tests; the scripted Orion-LD stand-in lives in bc_fakes.py."""

from __future__ import annotations

import pytest
from bc_fakes import CONTEXT, FAST_RETRY, FakeOrion

from stadtlink.broker_client import NGSILDClient


@pytest.fixture
async def orion():
    fake = FakeOrion()
    await fake.start()
    yield fake
    await fake.stop()
    assert fake.violations == [], fake.violations


@pytest.fixture
async def client(orion: FakeOrion):
    async with NGSILDClient(orion.url, context=CONTEXT, retry=FAST_RETRY) as c:
        yield c
