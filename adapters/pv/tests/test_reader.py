"""The SunSpec register reader against a real pymodbus Modbus TCP server (the simulator)."""
from __future__ import annotations

import asyncio

import pytest
from pymodbus.client import AsyncModbusTcpClient

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.pv.decoders import sunspec
from stadtlink.adapters.pv.simulator import (
    build_register_map,
    inverter_chain,
    serve_sunspec_inverter,
    sunrise_values_fn,
)

from .helpers import join_chain, model_body, sample_registers, split_chain

pytestmark = pytest.mark.timeout(30)


async def _client(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
    assert await client.connect()
    return client


def _values(payload) -> dict:
    return sunspec.inverter_values(sunspec.decode_models(sunspec.payload_models(payload)))


@pytest.mark.parametrize("base", [40000, 50000, 0])
async def test_finds_the_map_at_each_base_address(base):
    sim = await serve_sunspec_inverter("127.0.0.1", 0, registers=sample_registers(), base_address=base)
    client = await _client(sim.port)
    try:
        payload = await sunspec.read_sunspec(client, 1, {})
    finally:
        client.close()
        await sim.stop()
    assert payload["base"] == base
    assert [(m[0], m[1]) for m in payload["models"]] == [(1, 66), (103, 50), (160, 48)]
    flat = sunspec.walk_register_block(sample_registers(), base)
    assert payload["models"] == flat["models"]
    assert sim.largest_read <= 125


async def test_configured_base_address_skips_the_probe():
    sim = await serve_sunspec_inverter("127.0.0.1", 0, registers=sample_registers(), base_address=50000)
    client = await _client(sim.port)
    try:
        payload = await sunspec.read_sunspec(client, 1, {"base_address": 50000})
        assert payload["base"] == 50000
        with pytest.raises(DecodeError) as err:
            await sunspec.read_sunspec(client, 1, {"base_address": [40000, 0]})
        assert err.value.reason == "sunspec-not-found"
    finally:
        client.close()
        await sim.stop()


async def test_long_models_are_read_in_chunks_of_at_most_125_and_unknown_models_are_not_read():
    chain = split_chain(sample_registers())
    chain.insert(1, [64001, 300, list(range(300))])             # unknown vendor model, 300 registers
    mppt = model_body(chain, 160)
    chain.append([160, 8 + 20 * 12, mppt[:8] + mppt[8:28] * 12])  # a second MPPT model, 12 modules (248 regs)
    registers = join_chain(chain)
    sim = await serve_sunspec_inverter("127.0.0.1", 0, registers=registers)
    client = await _client(sim.port)
    try:
        payload = await sunspec.read_sunspec(client, 1, {})
        unknown_start = 40000 + 2 + 2 + 66 + 2
        assert not any(unknown_start <= a < unknown_start + 300 for a, _ in sim.recent), \
            "the unknown model's body must be skipped by its length, not read"
        assert sim.largest_read <= 125
        ids = [(m[0], m[1], len(m[2])) for m in payload["models"]]
        assert ids == [(1, 66, 66), (64001, 300, 0), (103, 50, 50), (160, 48, 48), (160, 248, 248)]
        sim.recent.clear()
        payload = await sunspec.read_sunspec(client, 1, {"read_unknown_models": True, "max_registers_per_read": 100})
        assert payload["models"][1] == [64001, 300, list(range(300))]
        assert sim.largest_read <= 125 and max(c for _, c in sim.recent) == 100
    finally:
        client.close()
        await sim.stop()
    values = _values(payload)
    assert len(values["dc_inputs"]) == 2          # the first MPPT model wins
    assert values["ac_power_w"] == 5021


async def test_chain_ending_without_end_marker_stops_at_the_illegal_address():
    registers = join_chain(split_chain(sample_registers()))[:-2]   # no 0xFFFF end model
    sim = await serve_sunspec_inverter("127.0.0.1", 0, registers=registers, spare_registers=0)
    client = await _client(sim.port)
    try:
        payload = await sunspec.read_sunspec(client, 1, {})
    finally:
        client.close()
        await sim.stop()
    assert [m[0] for m in payload["models"]] == [1, 103, 160]


async def test_simulated_inverter_values_change_over_time_and_several_unit_ids():
    fn = sunrise_values_fn(peak_w=9000, day_s=4.0, night_share=0.0, start_phase=0.05)
    sim = await serve_sunspec_inverter("127.0.0.1", 0, values_fn=fn, unit_ids=(1, 2, 3))
    client = await _client(sim.port)
    try:
        first = _values(await sunspec.read_sunspec(client, 2, {}))
        await asyncio.sleep(0.8)
        second = _values(await sunspec.read_sunspec(client, 3, {}))
    finally:
        client.close()
        await sim.stop()
    assert first["manufacturer"] == "stadtlink" and first["status"] == "MPPT"
    assert 0 < first["ac_power_w"] < second["ac_power_w"] <= 9000     # the sun rises
    assert second["energy_export_wh"] >= first["energy_export_wh"]
    assert len(second["dc_inputs"]) == 2


def test_encoder_round_trips_through_the_decoder():
    chain = inverter_chain(4321.0, energy_wh=123456.0, serial="ABC-1")
    chain[0] = (1, chain[0][1], 65)                              # model 1 without Pad
    chain.insert(1, (64100, [7, 7, 7]))                          # unknown model
    values = _values(sunspec.walk_register_block(build_register_map(chain)))
    assert values["ac_power_w"] == 4321 and values["energy_export_wh"] == 123456
    assert values["serial_number"] == "ABC-1" and values["power_factor"] == 1.0
    assert values["sunspec_models"] == [1, 103, 160]


async def test_a_model_length_past_the_address_space_is_refused():
    registers = [0x5375, 0x6E53, 103, 0xFFF0] + [0] * 10
    sim = await serve_sunspec_inverter("127.0.0.1", 0, registers=registers)
    client = await _client(sim.port)
    try:
        with pytest.raises(DecodeError) as err:
            await sunspec.read_sunspec(client, 1, {})
    finally:
        client.close()
        await sim.stop()
    assert err.value.reason == "sunspec-chain-invalid"
