"""The example config: valid for the runtime, shipped identically inside the package, registry consistent."""
from __future__ import annotations

from pathlib import Path

from stadtlink.adapters.core.config import load_config
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.parking import ADAPTER, PACKAGE_DIR
from stadtlink.adapters.parking.settings import ParkingSettings

REPO = PACKAGE_DIR.parent.parent


def test_packaged_example_matches_examples_folder():
    assert ADAPTER.example_config == PACKAGE_DIR / "example-config.yaml"
    assert ADAPTER.example_config.read_text() == (REPO / "examples" / "parking.yaml").read_text()
    assert (PACKAGE_DIR / "parking-devices.csv").read_text() == (REPO / "examples" / "parking-devices.csv").read_text()


def test_example_config_validates_and_its_registry_is_complete():
    for path in (ADAPTER.example_config, REPO / "examples" / "parking.yaml"):
        cfg, base = load_config(path, adapter=ADAPTER)
        assert isinstance(cfg.settings, ParkingSettings)
        assert cfg.namespace == "wolfsburg"
        kinds = [s.kind for s in cfg.sources]
        assert kinds == ["mqtt", "http-poll", "http-poll"]
        urls = [t.url for s in cfg.sources[1:] for t in s.targets]
        assert "http://127.0.0.1:8601/datex/status.xml" in urls
        assert any(t.options.get("role") == "static" for t in cfg.sources[1].targets)
        registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
        sensors = [r for r in registry if r.get("site")]
        assert len(sensors) == 6
        assert {r.profile for r in sensors} == {"bosch-tps110", "nwave-nps405"}
        assert all(r.has_location and r.profile in ADAPTER.profiles for r in sensors)
        site = registry.lookup("pr-nord")
        assert site is not None and site.has_location and site.get("total_spots") == 6


def test_readme_shows_the_example_config():
    readme = (PACKAGE_DIR / "README.md").read_text()
    assert ADAPTER.example_config.read_text() in readme
    for profile in ADAPTER.profiles:
        assert f"`{profile}`" in readme
