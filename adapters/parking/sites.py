"""Site aggregation state of the parking mapper: an object owned by the mapping context.

:class:`SiteAggregates` holds what the inline site aggregate (``site_state: local``) derives from
the registry and the spot states, so that it need not be recomputed on every uplink:

* the site index: which spot sensors belong to which site (rebuilt when the context's registry is
  replaced by a reload — registries are replaced, never mutated);
* the running counts of each site's spot states. Counting the ~100 spots of a site on every uplink
  would be the mapper's top cost (benchmarks/README.md). The counts are kept next to the very dict
  object they were taken from. The mapper never changes a spots dict once it is in ``ctx.state``
  (each write stores a new dict, which the StateStore journal relies on for rollback), so "the
  cached dict *is* the state's dict" means the counts are still right; anything else (restart,
  rollback, tick, another StateStore) finds a different object and recounts.

Nothing here is persisted: it is derived, rebuilt on first use. One instance per
:class:`~stadtlink.adapters.core.adapter.MapContext` (``ctx.owned(SiteAggregates)``), so two
adapters — or two tests — in one process never share it.
"""
from __future__ import annotations

from typing import Any, Iterable

from stadtlink.adapters.core.registry import DeviceRecord, DeviceRegistry

#: sites; beyond that the count cache starts over (it is only a cache)
MAX_CACHED_SITES = 100_000


def count_statuses(spots: Iterable[dict]) -> dict[str, int]:
    counts = {"free": 0, "occupied": 0, "closed": 0, "unknown": 0}
    for s in spots:
        counts[s.get("status", "unknown")] = counts.get(s.get("status", "unknown"), 0) + 1
    return counts


class Summary:
    """What the site aggregate needs from all spots: status counts, on-street spots, the latest
    ``observed_at`` (as string; ``odd`` counts stamps not in ``iso_ms`` form, for which it falls back)."""

    __slots__ = ("counts", "on_street", "odd", "latest", "size")

    def __init__(self, counts: dict[str, int], on_street: int, odd: int, latest: str | None, size: int):
        self.counts, self.on_street, self.odd, self.latest, self.size = counts, on_street, odd, latest, size


def _canonical(stamp: Any) -> bool:
    return type(stamp) is str and len(stamp) == 24 and stamp[-1] == "Z"


def summarize(spots: dict[str, dict]) -> Summary:
    """The full recount."""
    values = spots.values()
    stamps = [s.get("observed_at") for s in values]
    odd = sum(1 for t in stamps if not _canonical(t))
    return Summary(count_statuses(values), sum(1 for s in values if s.get("street") == "onStreet"), odd,
                   max(stamps) if stamps and not odd else None, len(spots))


class SiteAggregates:
    """The site index and the running counts of one mapping context (see the module docstring)."""

    def __init__(self) -> None:
        self._registry: DeviceRegistry | None = None
        self._index: dict[str, list[DeviceRecord]] = {}
        self._summaries: dict[str, tuple[dict, Summary]] = {}

    def index(self, registry: DeviceRegistry) -> dict[str, list[DeviceRecord]]:
        """Site id → its spot sensors' records, for ``registry`` (rebuilt when it is another one)."""
        if registry is not self._registry:
            index: dict[str, list[DeviceRecord]] = {}
            for rec in registry:
                site = rec.get("site")
                if site is not None:
                    index.setdefault(str(site), []).append(rec)
            self._registry, self._index = registry, index
        return self._index

    def cached(self, site: str) -> tuple[dict, Summary] | None:
        """(the spots dict, its summary) last counted for ``site``, if any."""
        return self._summaries.get(site)

    def summary_after(self, site: str, before: dict | None, spots: dict[str, dict], previous: dict | None,
                      entry: dict) -> Summary:
        """The summary of ``spots`` (= ``before`` with ``entry`` in place of ``previous``): from the cached
        summary of ``before`` when there is one, else recounted. Caches it for ``spots``."""
        cached = self._summaries.get(site)
        summary = None
        if cached is not None and before is not None and cached[0] is before and cached[1].size == len(before):
            old = cached[1]
            latest = old.latest
            stamp = entry["observed_at"]
            if previous is not None and (old.odd or (latest is not None and previous.get("observed_at") == latest
                                                     and not (_canonical(stamp) and stamp >= latest))):
                pass   # the latest stamp may go back (or stamps are odd): recount
            else:
                counts = dict(old.counts)
                on_street, odd = old.on_street, old.odd
                if previous is not None:
                    status = previous.get("status", "unknown")
                    counts[status] -= 1
                    on_street -= previous.get("street") == "onStreet"
                status = entry.get("status", "unknown")
                counts[status] = counts.get(status, 0) + 1
                on_street += entry.get("street") == "onStreet"
                if not _canonical(stamp):
                    odd, latest = odd + 1, None
                elif not odd:
                    latest = stamp if latest is None or stamp > latest else latest
                summary = Summary(counts, on_street, odd, latest, len(spots))
        if summary is None:
            summary = summarize(spots)
        if len(self._summaries) >= MAX_CACHED_SITES and site not in self._summaries:
            self._summaries.clear()
        self._summaries[site] = (spots, summary)
        return summary


__all__ = ["MAX_CACHED_SITES", "SiteAggregates", "Summary", "count_statuses", "summarize"]
