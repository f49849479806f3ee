"""SunSpec decoding: the shared register block decodes to its expected values; every edge case the
issue names (negative scale factors, not-implemented points, model 1 with 65 registers, an unknown
model in the chain, acc32 across two registers, strings) is exercised on hand-edited registers."""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.pv.decoders import sunspec
from stadtlink.adapters.pv.profiles import SUNSPEC_PROFILE

from .helpers import (
    NOW,
    SUNSPEC_SAMPLE,
    join_chain,
    load_sample,
    model_body,
    sample_registers,
    split_chain,
)


def decode_flat(registers: list[int], start: int = 40000) -> dict:
    msg = RawMessage(source="modbus", payload={"registers": registers, "start_address": start},
                     received_at=NOW, device_hint="inv-01")
    readings = SUNSPEC_PROFILE.decode(msg, {})
    assert len(readings) == 1
    return readings[0].values


def decoded_points(registers: list[int]) -> dict[int, dict]:
    models = sunspec.payload_models({"registers": registers, "start_address": 40000})
    return dict(sunspec.decode_models(models))


# --- model definitions -----------------------------------------------------------------------------

def test_model_offsets_come_from_the_json_point_sizes():
    defs = sunspec.model_definitions()
    m103 = defs[103]
    offsets = {p.name: p.offset for p in m103.points}
    # body offsets (after ID and L): A=0 … W=12, WH=22 (acc32, 2 registers), St=36, Evt1=38
    assert offsets["A"] == 0 and offsets["A_SF"] == 4 and offsets["W"] == 12 and offsets["WH"] == 22
    assert offsets["St"] == 36 and offsets["Evt1"] == 38
    assert m103.fixed_size == 50
    assert defs[1].fixed_size == 66                              # with Pad
    assert defs[160].fixed_size == 8 and defs[160].group.size == 20
    assert defs[102] is defs[101]                                # same layout, documented alias
    assert set(defs) >= {1, 101, 102, 103, 160, 701}


# --- the shared sample ------------------------------------------------------------------------------

def test_shared_sample_common_model_matches_expected():
    expected = load_sample(SUNSPEC_SAMPLE)["expected"]["common"]
    points = decoded_points(sample_registers())[1]
    for name, value in expected.items():
        assert points[name] == value, name
    values = decode_flat(sample_registers())
    assert values["manufacturer"] == "Fronius"
    assert values["model"] == "Symo 10.0-3-M"
    assert values["serial_number"] == "31234567"
    assert values["firmware_version"] == "0.3.29.3"
    assert values["options"] == "3.14.1-2"


def test_shared_sample_model_103_matches_expected():
    expected = load_sample(SUNSPEC_SAMPLE)["expected"]["model_103"]
    points = decoded_points(sample_registers())[103]
    for name, value in expected.items():
        if name in ("PF_percent", "PF_fraction", "WH_kWh", "St_name"):
            continue
        if value is None:
            assert name not in points, f"{name} is not implemented and must be omitted"
        else:
            assert points[name] == pytest.approx(value), name
    assert points["PF"] == pytest.approx(expected["PF_percent"])
    values = decode_flat(sample_registers())
    assert values["power_factor"] == pytest.approx(expected["PF_fraction"])
    assert values["status"] == expected["St_name"] == "MPPT"
    assert values["energy_export_wh"] == 30915234
    assert values["ac_power_w"] == 5021 and values["ac_reactive_power_var"] == -120
    assert values["phases"] == 3


def test_shared_sample_model_160_matches_expected():
    expected = load_sample(SUNSPEC_SAMPLE)["expected"]["model_160"]
    points = decoded_points(sample_registers())[160]
    assert points["N"] == expected["N"] == len(points["module"])
    values = decode_flat(sample_registers())
    for module, want, dc in zip(points["module"], expected["modules"], values["dc_inputs"]):
        for name in ("ID", "IDStr", "DCA", "DCV", "DCW", "DCWH"):
            assert module[name] == pytest.approx(want[name]) if not isinstance(want[name], str) else \
                module[name] == want[name]
        assert dc["status"] == want["DCSt"]
        assert dc["id"] == want["ID"] and dc["name"] == want["IDStr"]
        assert dc["voltage_v"] == pytest.approx(want["DCV"]) and dc["current_a"] == pytest.approx(want["DCA"])
        assert dc["power_w"] == want["DCW"]
        assert "temperature_c" not in dc             # Tmp = 0x8000


def test_cli_inputs_a_sample_document_or_a_bare_register_list():
    sample = load_sample(SUNSPEC_SAMPLE)
    for payload in (sample, sample["raw"], sample["raw"]["registers_uint16"]):
        msg = RawMessage(source="cli", payload=payload, received_at=NOW)
        reading = SUNSPEC_PROFILE.decode(msg, {})[0]
        assert reading.device_id == "31234567"         # no configured device: the serial number
        assert reading.values["ac_power_w"] == 5021


def test_reader_payload_shape_decodes_like_the_flat_dump():
    chain = split_chain(sample_registers())
    payload = {"base": 40000, "models": [[mid, length, body] for mid, length, body in chain]}
    msg = RawMessage(source="modbus", payload=payload, received_at=NOW, device_hint="inv-01")
    reading = SUNSPEC_PROFILE.decode(msg, {})[0]
    assert reading.values == decode_flat(sample_registers())
    assert reading.observed_at == NOW and reading.device_id == "inv-01" and reading.kind == "inverter"
    assert reading.meta == {"chain": [1, 103, 160], "base_address": 40000}


# --- edge cases --------------------------------------------------------------------------------------

def test_negative_and_positive_scale_factors():
    chain = split_chain(sample_registers())
    body = model_body(chain, 103)
    body[4] = 0xFFFD          # A_SF = -3 → A 1460 → 1.46
    body[13] = 1              # W_SF = +1 → W 5021 → 50210
    body[15] = 0xFFFF         # Hz_SF = -1 → 5001 → 500.1
    values = decode_flat(join_chain(chain))
    assert values["ac_current_a"] == pytest.approx(1.46) and values["current_l1_a"] == pytest.approx(0.487)
    assert values["ac_power_w"] == 50210
    assert values["frequency_hz"] == pytest.approx(500.1)
    # negative values with a negative scale factor: VAr = -120 with VAr_SF -1 → -12.0
    body[19] = 0xFFFF
    assert decode_flat(join_chain(chain))["ac_reactive_power_var"] == pytest.approx(-12.0)


@pytest.mark.parametrize("offset, registers, key", [
    (12, [0x8000], "ac_power_w"),                   # int16 not implemented
    (0, [0xFFFF], "ac_current_a"),                  # uint16 not implemented
    (14, [0xFFFF], "frequency_hz"),                 # uint16 not implemented
    (13, [0x8000], "ac_power_w"),                   # its scale factor (sunssf) not implemented
    (22, [0, 0], "energy_export_wh"),               # acc32 0 = not implemented
    (36, [0xFFFF], "status_code"),                  # enum16 not implemented
    (35, [0x8000], "temperature_heatsink_c"),       # Tmp_SF not implemented → every temperature omitted
])
def test_not_implemented_points_are_omitted(offset, registers, key):
    chain = split_chain(sample_registers())
    body = model_body(chain, 103)
    assert key in decode_flat(join_chain(chain))
    body[offset:offset + len(registers)] = registers
    values = decode_flat(join_chain(chain))
    assert key not in values
    assert all(v is not None for v in values.values())


def test_not_implemented_enum_leaves_out_the_status_name_too():
    chain = split_chain(sample_registers())
    model_body(chain, 103)[36] = 0xFFFF
    values = decode_flat(join_chain(chain))
    assert "status" not in values and "status_code" not in values


def test_mppt_count_point_may_lower_the_number_of_modules():
    chain = split_chain(sample_registers())
    model_body(chain, 160)[6] = 1                          # N = 1, but the length holds 2 modules
    values = decode_flat(join_chain(chain))
    assert [dc["name"] for dc in values["dc_inputs"]] == ["String 1"]
    model_body(chain, 160)[6] = 5                          # N larger than the length: the length wins
    assert len(decode_flat(join_chain(chain))["dc_inputs"]) == 2


def test_bitfield32_and_uint32_sentinels():
    chain = split_chain(sample_registers())
    model_body(chain, 103)[38:40] = [0xFFFF, 0xFFFF]      # Evt1 bitfield32 not implemented
    model_body(chain, 160)[8 + 18:8 + 20] = [1, 2]         # module 1 DCEvt = 0x00010002
    model_body(chain, 160)[8 + 14:8 + 16] = [0xFFFF, 0xFFFF]    # module 1 Tms uint32 not implemented
    points = decoded_points(join_chain(chain))
    assert "Evt1" not in points[103] and points[103]["Evt2"] == 0
    module = points[160]["module"][0]
    assert module["DCEvt"] == 0x00010002 and "Tms" not in module


def test_acc32_is_read_high_word_first():
    chain = split_chain(sample_registers())
    model_body(chain, 103)[22:24] = [0x0001, 0x0000]
    assert decode_flat(join_chain(chain))["energy_export_wh"] == 65536
    model_body(chain, 103)[22:24] = [0x0000, 0x0001]
    assert decode_flat(join_chain(chain))["energy_export_wh"] == 1


def test_model_1_with_65_registers_has_no_pad_and_the_chain_stays_aligned():
    chain = split_chain(sample_registers())
    common = chain[0]
    assert common[0] == 1 and common[1] == 66
    chain[0] = [1, 65, common[2][:65]]
    values = decode_flat(join_chain(chain))
    assert values["serial_number"] == "31234567" and values["device_address"] == 1
    assert values["ac_power_w"] == 5021                    # model 103 found right after 65 registers
    assert len(values["dc_inputs"]) == 2


def test_unknown_model_in_the_chain_is_skipped_by_its_length():
    chain = split_chain(sample_registers())
    chain.insert(1, [64001, 5, [0x4142, 0xFFFF, 0x8000, 7, 9]])     # vendor model between 1 and 103
    chain.insert(3, [307, 11, [1] * 11])                              # a SunSpec model we have no JSON for
    reference = decode_flat(sample_registers())
    values = decode_flat(join_chain(chain))
    assert values["sunspec_models"] == [1, 103, 160]
    assert {k: v for k, v in values.items() if k != "sunspec_models"} == \
        {k: v for k, v in reference.items() if k != "sunspec_models"}


def test_strings_are_trimmed_and_all_zero_strings_omitted():
    chain = split_chain(sample_registers())
    common = model_body(chain, 1)
    common[32:40] = [0] * 8                                 # Opt all zero → omitted
    common[40:48] = [0x312E, 0x3220, 0x2000, 0, 0, 0, 0, 0]  # Vr "1.2   " → "1.2"
    values = decode_flat(join_chain(chain))
    assert "options" not in values and values["firmware_version"] == "1.2"


def test_single_phase_model_101_and_split_phase_model_102():
    chain = split_chain(sample_registers())
    body = model_body(chain, 103)
    body[2:4] = [0xFFFF, 0xFFFF]           # AphB, AphC not implemented
    body[9:11] = [0xFFFF, 0xFFFF]          # PhVphB, PhVphC
    body[5:8] = [0xFFFF] * 3               # no phase-to-phase voltages
    for model_id, phases in ((101, 1), (102, 2)):
        edited = copy.deepcopy(chain)
        edited[1][0] = model_id
        values = decode_flat(join_chain(edited))
        assert values["phases"] == phases
        assert values["current_l1_a"] == pytest.approx(4.87) and "current_l2_a" not in values
        assert values["voltage_l1_v"] == pytest.approx(231.2) and "voltage_l2_v" not in values
        assert "voltage_l12_v" not in values
        assert values["ac_power_w"] == 5021


def _der_701_body() -> list[int]:
    """A model 701 body built by hand from model_701.json's offsets (constructed values)."""
    body = [0] * 153
    m = {p.name: p for p in sunspec.model_definitions()[701].points}

    def put(name, *regs):
        body[m[name].offset:m[name].offset + len(regs)] = list(regs)

    for name in ("A_SF", "V_SF", "Hz_SF", "PF_SF", "Tmp_SF"):
        put(name, {"A_SF": 0xFFFE, "V_SF": 0xFFFF, "Hz_SF": 0xFFFD, "PF_SF": 0xFFFD, "Tmp_SF": 0}[name])
    put("W", 6000); put("VA", 6010); put("Var", 0xFF9C)                  # -100 var
    put("PF", 998); put("A", 2610)
    put("WL1", 2000); put("WL2", 2001); put("WL3", 1999)
    put("AL1", 870); put("AL2", 870); put("AL3", 870)
    put("VL1", 2301); put("VL2", 2302); put("VL3", 2303)
    put("Hz", 0, 50002)                                                 # uint32, SF -3 → 50.002
    put("TotWhInj", 0, 0, 0x0001, 0x0002)                               # uint64 → 65538 Wh
    put("TotWhAbs", 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)                     # not implemented
    put("TmpSnk", 38)
    put("InvSt", 3)                                                     # RUNNING
    put("ACType", 2)
    for name in ("TotVarhInj", "TotVarhAbs"):
        put(name, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)
    return body


def test_der_model_701_gives_per_phase_active_power():
    chain = split_chain(sample_registers())
    chain = [chain[0], [701, 153, _der_701_body()]]
    values = decode_flat(join_chain(chain))
    assert values["ac_power_w"] == 6000 and values["ac_reactive_power_var"] == -100
    assert values["power_l1_w"] == 2000 and values["power_l3_w"] == 1999
    assert values["current_l2_a"] == pytest.approx(8.7)
    assert values["voltage_l3_v"] == pytest.approx(230.3)
    assert values["frequency_hz"] == pytest.approx(50.002)
    assert values["power_factor"] == pytest.approx(0.998)
    assert values["energy_export_wh"] == 65538 and "energy_import_wh" not in values
    assert values["status"] == "RUNNING" and values["temperature_heatsink_c"] == 38


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, reason", [
    ({"registers": [1, 2, 3]}, "sunspec-no-marker"),
    ({"registers": [0x5375, 0x6E53, 103, 50, 1, 2]}, "sunspec-truncated"),
    ({"registers": [0x5375, 0x6E53, 70000]}, "sunspec-bad-registers"),
    ({"models": [[103, 50, [0] * 10]]}, "sunspec-length-mismatch"),
    ({"models": [[103, 50]]}, "bad-payload"),
    ({"models": "x"}, "bad-payload"),
    ([1, 2, 3], "sunspec-no-marker"),
    ("text", "bad-payload"),
    (42, "bad-payload"),
    (b"not json", "bad-payload"),
    (b"[" * 100_000, "bad-payload"),
    ({"models": [[64001, 3, [1, 2, 3]]]}, "sunspec-no-known-model"),
    ({"registers": [0x5375, 0x6E53, 0xFFFF, 0]}, "sunspec-no-known-model"),
])
def test_bad_payloads_raise_decode_error(payload, reason):
    msg = RawMessage(source="modbus", payload=payload, received_at=NOW, device_hint="inv-01")
    with pytest.raises(DecodeError) as err:
        SUNSPEC_PROFILE.decode(msg, {})
    assert err.value.reason == reason


registers = st.integers(min_value=0, max_value=0xFFFF)
model_entries = st.one_of(
    st.tuples(st.sampled_from([1, 101, 102, 103, 160, 701, 64001]), st.integers(0, 200)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.lists(registers, min_size=t[1], max_size=t[1]))),
    st.tuples(registers, registers, st.lists(registers, max_size=8)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.fixed_dictionaries({"models": st.lists(model_entries, max_size=4)}),
    st.fixed_dictionaries({"registers": st.lists(registers, max_size=300)}),
    st.builds(lambda tail: {"registers": [0x5375, 0x6E53, *tail]}, st.lists(registers, max_size=300)),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                 max_leaves=10),
))
def test_fuzz_decoder_raises_only_decode_errors(payload):
    msg = RawMessage(source="modbus", payload=payload, received_at=NOW, device_hint="inv-01")
    try:
        readings = SUNSPEC_PROFILE.decode(msg, {})
    except (DecodeError, ReadingDropped):
        return
    for reading in readings:
        assert all(v is not None for v in reading.values.values())
