"""`stadtlink validate FILE...` (stadtlink.schemas.validate_cli.main) and `python -m stadtlink.schemas`."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from stadtlink.schemas.validate_cli import main
from stadtlink.schemas.validation import PACKAGE_DIR

from sdm_entities import BUILDERS

REPO_ROOT = PACKAGE_DIR.parent


def run(argv: list[str]) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue().splitlines(), err.getvalue()


def write(tmp_path: Path, name: str, document) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_valid_files_exit_0_and_print_no_problem(tmp_path):
    single = write(tmp_path, "weather.json", BUILDERS["WeatherObserved"]())
    many = write(tmp_path, "all.json", [build() for build in BUILDERS.values()])
    code, lines, err = run([single, many])
    assert (code, lines) == (0, [])
    assert f"{1 + len(BUILDERS)} entities checked, 0 invalid" in err


def test_invalid_entities_exit_1_with_one_line_per_problem(tmp_path):
    good = BUILDERS["ParkingSpot"]()
    bad_spot = BUILDERS["ParkingSpot"]()
    bad_spot["id"] = "urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-2"
    bad_spot["status"]["value"] = "vacant"
    bad_water = BUILDERS["WaterObserved"]()
    bad_water["waterLevel"]["value"] = -0.2
    bad_water["flow"]["value"] = None
    no_id = {"type": "ParkingSpot"}
    spots = write(tmp_path, "spots.json", [good, bad_spot, no_id])
    water = write(tmp_path, "water.json", bad_water)
    code, lines, err = run([spots, water])
    assert code == 1
    spot_id = "urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-2"
    assert lines[0].startswith(f"{spots}: {spot_id}: $.status: 'vacant' is not one of")
    assert f"{spots}: <entity #2 without id>: $.id: entity has no 'id'" in lines
    assert lines[-2:] == [
        f"{water}: urn:ngsi-ld:WaterObserved:pegelonline:24300600: $.flow: value is null; NGSI-LD has no "
        "null values: omit the attribute when there is no reading",
        f"{water}: urn:ngsi-ld:WaterObserved:pegelonline:24300600: $.waterLevel: -0.2 is less than the minimum of 0",
    ]
    assert all(line.count(": ") >= 3 for line in lines)
    assert "4 entities checked, 3 invalid" in err


def test_unreadable_or_invalid_json_exits_2(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "urn:ngsi-ld:X:1", ', encoding="utf-8")
    valid = write(tmp_path, "ok.json", BUILDERS["Device"]())
    code, lines, err = run([str(broken), valid])
    assert (code, lines) == (2, [])
    assert f"{broken}: not valid JSON: " in err

    missing = tmp_path / "nope.json"
    code, lines, err = run([str(missing)])
    assert code == 2 and f"{missing}: cannot read file: No such file or directory" in err


def test_invalid_json_wins_over_invalid_entity(tmp_path):
    bad = BUILDERS["Device"]()
    bad["batteryLevel"]["value"] = 90
    invalid = write(tmp_path, "bad.json", bad)
    broken = tmp_path / "broken.json"
    broken.write_bytes(b"\xff\xfe not json")
    code, lines, _ = run([invalid, str(broken)])
    assert code == 2 and len(lines) == 1 and "$.batteryLevel" in lines[0]


def test_model_and_key_values_options(tmp_path):
    example = str(PACKAGE_DIR / "ParkingSpot" / "examples" / "example.jsonld")
    assert run(["--key-values", example, "-q"]) == (0, [], "")
    code, lines, _ = run(["--key-values", "--model", "OffStreetParking", example])
    assert code == 1 and any(": $.type: " in line for line in lines)
    # normalized checking of a keyValues file fails structurally
    code, lines, _ = run([example])
    assert code == 1 and any("use check_key_values" in line for line in lines)


def test_usage_errors_do_not_raise():
    assert run([])[0] == 2
    assert run(["--model", "Streetlight", "x.json"])[0] == 2


def test_python_dash_m_schemas(tmp_path):
    bad = BUILDERS["WeatherObserved"]()
    bad["relativeHumidity"]["value"] = 52.4
    path = write(tmp_path, "weather.json", bad)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "stadtlink.schemas", path], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stdout == (f"{path}: urn:ngsi-ld:WeatherObserved:mannheim:helix-01: $.relativeHumidity: "
                             "52.4 is greater than the maximum of 1\n")
    ok = subprocess.run([sys.executable, "-m", "stadtlink.schemas", "-q", str(PACKAGE_DIR / "WeatherObserved" / "examples"
                         / "example.jsonld"), "--key-values"], capture_output=True, text=True, cwd=tmp_path,
                        env=env, timeout=60)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
