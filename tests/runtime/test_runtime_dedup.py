"""The pipeline's LoRaWAN dedup window (two generations of key hashes)."""
from __future__ import annotations

import stadtlink.adapters.core.pipeline as pipeline_module
from stadtlink.adapters.core.pipeline import DedupWindow


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_keys_are_remembered_for_the_window_then_forgotten(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pipeline_module.time, "monotonic", clock)
    d = DedupWindow(600)
    d.add(("dev-1", 7, 1))
    assert ("dev-1", 7, 1) in d
    assert ("dev-1", 8, 1) not in d and ("dev-1", 7, 2) not in d and ("dev-2", 7, 1) not in d
    clock.now += 599
    assert ("dev-1", 7, 1) in d
    clock.now += 1
    d.add(("dev-1", 8, 1))          # a new generation starts after a whole window
    clock.now += 2
    assert ("dev-1", 7, 1) not in d  # older than the window (still stored in the old generation)
    assert ("dev-1", 8, 1) in d
    clock.now += 600
    d.add(("dev-1", 9, 1))          # rotates again: the generation holding fCnt 7 is dropped
    assert len(d) == 2
    assert ("dev-1", 8, 1) not in d and ("dev-1", 9, 1) in d


def test_memory_is_bounded_by_max_entries(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(pipeline_module.time, "monotonic", clock)
    d = DedupWindow(600, max_entries=100)
    for i in range(1000):
        d.add(("dev", i, 1))
    assert len(d) <= 200
    assert ("dev", 999, 1) in d     # the newest are kept
