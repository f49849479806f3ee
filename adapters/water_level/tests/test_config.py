"""The example config loads through the runtime's config model, and examples/ holds the same files."""
from pathlib import Path

from stadtlink.adapters.core.config import load_config
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.water_level import ADAPTER

PKG = Path(__file__).resolve().parent.parent
ROOT = PKG.parent.parent


def test_packaged_example_matches_examples_folder():
    assert (PKG / "example-config.yaml").read_text() == (ROOT / "examples" / "water_level.yaml").read_text()
    assert (PKG / "water-level-stations.csv").read_text() == (ROOT / "examples" / "water-level-stations.csv").read_text()


def test_example_config_validates_and_registry_loads():
    cfg, base = load_config(ADAPTER.example_config, adapter=ADAPTER)
    assert cfg.settings.hysteresis_m == 0.05
    registry = DeviceRegistry.load(files=cfg.registry_files, base_dir=base)
    rec = registry.lookup("70b3d57ba0000001")
    assert rec is not None and rec.id == "pruem-bitburg" and rec.get("reference_level") == 3.5
    assert {r.profile for r in registry} == {"decentlab-dl-mbx", "milesight-em500-udl", "dragino-ldds75"}
