"""Prometheus metrics of one runner (its own CollectorRegistry, so several runners can share a process).

The hot path only bumps plain ints in dicts; a custom collector turns them into metric families
at scrape time. Histograms (batch size, device→broker latency) are observed per batch/entity in
the batcher, off the receive path.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

COUNTERS = {
    "received": "messages handed over by the sources",
    "decoded": "readings decoded",
    "mapped": "entities produced by the mapper or tick",
    "invalid": "entities that failed the Smart Data Models check",
    "dead_lettered": "messages or entities sent to the dead-letter stream",
    "upserted": "entities the broker confirmed",
    "failed": "per-entity broker failures (retryable or not)",
    "retried": "entities sent again after a failure",
    "errors": "unexpected errors (decoder/mapper crashes, broker/outbox errors)",
}


class Metrics:
    def __init__(self, adapter: str, *, device_last_seen: bool = False):
        self.adapter = adapter
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.dropped: dict[str, int] = defaultdict(int)
        self.dead_reasons: dict[str, int] = defaultdict(int)
        #: (attribute, reason) → values left out of an entity (sentinel, implausible …; Reading.meta["dropped"])
        self.rejected: dict[tuple[str, str], int] = defaultdict(int)
        #: device → last message (unix time) for ``stadtlink_device_last_seen_timestamp_seconds``;
        #: None unless ``http.device_last_seen`` is on: one series per device is a cardinality
        #: Prometheus operators avoid at city scale (10,000 spots), a few ms per scrape and ~100 bytes
        #: per device in the adapter.
        self.last_seen: dict[str, float] | None = {} if device_last_seen else None
        #: (entity type, attribute, IRI) → attributes written under an IRI that is not their
        #: model's own (adapters/core/vocabulary_watch.py)
        self.vocabulary: dict[tuple[str, str, str], int] = defaultdict(int)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.source_stats: list[tuple[str, Callable[[], dict[str, float]]]] = []
        self.registry = CollectorRegistry(auto_describe=True)
        self.batch_size = Histogram("stadtlink_batch_size", "entities per broker write", ["adapter"],
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=self.registry)
        self.latency = Histogram("stadtlink_end_to_end_latency_seconds",
                                 "device observation (observedAt) to broker confirmation", ["adapter"],
                                 buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
                                 registry=self.registry)
        self.batch_size_child = self.batch_size.labels(adapter)
        self.latency_child = self.latency.labels(adapter)
        self.registry.register(_Collector(self))

    def inc(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def reject(self, attribute: str, reason: str, n: int = 1) -> None:
        """A value the device sent was left out of the entity; the rest of the reading was written."""
        self.dropped[f"value-{reason}"] += n
        self.rejected[(attribute, reason)] += n

    def vocabulary_mismatch(self, entity_type: str, attribute: str, iri: str, n: int = 1) -> None:
        self.vocabulary[(entity_type, attribute, iri)] += n

    def dead(self, reason: str, n: int = 1) -> None:
        self.counts["dead_lettered"] += n
        self.dead_reasons[reason] += n

    def seen(self, device: str, ts: float | None = None) -> None:
        if self.last_seen is not None:
            self.last_seen[device] = time.time() if ts is None else ts

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counts)
        out["dropped"] = dict(self.dropped)
        out["dropped_total"] = sum(self.dropped.values())
        out["dead_letter_reasons"] = dict(self.dead_reasons)
        out["vocabulary_mismatches"] = {f"{t}.{attr}": n for (t, attr, _), n in self.vocabulary.items()}
        out["values_rejected"] = {f"{attribute}:{reason}": n for (attribute, reason), n in self.rejected.items()}
        for name, fn in self.gauges.items():
            try:
                out[name] = fn()
            except Exception:  # noqa: BLE001
                out[name] = None
        return out

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        m = self.m
        a = m.adapter
        for name, doc in COUNTERS.items():
            fam = CounterMetricFamily(f"stadtlink_{name}", doc, labels=["adapter"])
            fam.add_metric([a], m.counts[name])
            yield fam
        fam = CounterMetricFamily("stadtlink_dropped", "readings deliberately dropped, by reason",
                                  labels=["adapter", "reason"])
        for reason, n in sorted(m.dropped.items()):
            fam.add_metric([a, reason], n)
        yield fam
        fam = CounterMetricFamily("stadtlink_values_rejected",
                                  "values left out of an entity (sentinel, outside the valid range, not a number); "
                                  "the rest of the reading was written", labels=["adapter", "attribute", "reason"])
        for (attribute, reason), n in sorted(m.rejected.items()):
            fam.add_metric([a, attribute, reason], n)
        yield fam
        fam = CounterMetricFamily("stadtlink_vocabulary_mismatches",
                                  "attributes written under an IRI that is not their Smart Data Model's own "
                                  "(another model's term or the default vocabulary), by the IRI they got",
                                  labels=["adapter", "entity_type", "attribute", "iri"])
        for (etype, attribute, iri), n in sorted(m.vocabulary.items()):
            fam.add_metric([a, etype, attribute, iri], n)
        yield fam
        fam = CounterMetricFamily("stadtlink_dead_lettered_by_reason", "dead letters by reason",
                                  labels=["adapter", "reason"])
        for reason, n in sorted(m.dead_reasons.items()):
            fam.add_metric([a, reason], n)
        yield fam
        for name, fn in sorted(m.gauges.items()):
            g = GaugeMetricFamily(f"stadtlink_{name}", name.replace("_", " "), labels=["adapter"])
            try:
                value = fn()
            except Exception:  # noqa: BLE001 - a scrape must not fail
                continue
            if value is None:
                continue
            g.add_metric([a], float(value))
            yield g
        if m.last_seen is not None:
            g = GaugeMetricFamily("stadtlink_device_last_seen_timestamp_seconds",
                                  "when a device's last message was received (unix time)", labels=["adapter", "device"])
            for device, ts in m.last_seen.items():
                g.add_metric([a, device], ts)
            yield g
        stats: dict[str, GaugeMetricFamily] = {}
        for source_name, fn in m.source_stats:
            try:
                values = fn() or {}
            except Exception:  # noqa: BLE001
                continue
            for key, value in values.items():
                fam = stats.get(key)
                if fam is None:
                    fam = stats[key] = GaugeMetricFamily(f"stadtlink_source_{_safe(key)}", f"source stat {key}",
                                                         labels=["adapter", "source"])
                try:
                    fam.add_metric([a, source_name], float(value))
                except (TypeError, ValueError):
                    continue
        yield from stats.values()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(name))
