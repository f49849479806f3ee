"""What an adapter is: a small declared object the runtime runs.

An adapter names its decoding profiles (vendor bytes / API answers → :class:`Reading`), one mapper
(:class:`Reading` → normalized NGSI-LD entities), a settings model for its own config section and
its write semantics. Built-in adapters and integrators' packages register the same way, under the
entry-point group ``stadtlink.adapters``.
"""
from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Generic, Iterator, Literal, Mapping, Protocol, TypeVar, runtime_checkable

from pydantic import ValidationError

from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL  # default @context of every stadtlink entity
from stadtlink.schemas.registry import SmartDataModel

from .errors import ConfigError, DecodeError, MappingError
from .lorawan import parse_uplink
from .reasons import REGISTRY_FIELD_MISSING, UNKNOWN_DEVICE
from .reading import RawMessage, Reading, Uplink
from .registry import DeviceRecord, DeviceRegistry


Semantics = Literal["latest-state", "time-series"]
T = TypeVar("T")
#: the adapter's settings model (``AdapterSpec.settings_model``)
S = TypeVar("S")


@runtime_checkable
class Profile(Protocol):
    """A decoding profile, named as in ``stadtlink decode PROFILE`` and in config."""

    name: str
    kind: str          # "lorawan" | "http" | "modbus" | "json"
    description: str

    def decode(self, message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
        """Pure and synchronous. Raise DecodeError (dead-lettered) or ReadingDropped (counted)."""


PayloadDecoder = Callable[[bytes, "int | None"], dict[str, Any]]


@dataclass(frozen=True)
class LoRaWANProfile:
    """A vendor payload decoder wrapped for TTS v3 / ChirpStack v4 uplinks.

    ``payload_decoder(payload, f_port)`` returns the decoded values in SI units; a ``"kind"`` key, if
    present, becomes :attr:`Reading.kind`, and a ``"dropped"`` mapping ``{attribute: reason}`` (values
    the device sent but that are invalid) moves to ``Reading.meta["dropped"]``, where the runtime
    counts it. It raises :class:`DecodeError` for bad bytes.
    """

    name: str
    description: str
    payload_decoder: PayloadDecoder
    kind: str = "lorawan"

    def decode_payload(self, payload: bytes, f_port: int | None) -> dict[str, Any]:
        return self.payload_decoder(payload, f_port)

    def decode_uplink(self, uplink: Uplink) -> list[Reading]:
        values = dict(self.payload_decoder(uplink.payload, uplink.f_port))
        kind = values.pop("kind", "measurement")
        dropped = values.pop("dropped", None)
        meta = {
            "network": uplink.network,
            "dev_eui": uplink.dev_eui,
            "f_port": uplink.f_port,
            "f_cnt": uplink.f_cnt,
            "rssi": uplink.rssi,
            "snr": uplink.snr,
        }
        if uplink.gateway_time is not None:
            meta["gateway_time"] = uplink.gateway_time
        if dropped:
            meta["dropped"] = dict(dropped)
        return [Reading(device_id=uplink.device_id, profile=self.name, observed_at=uplink.received_at,
                        values=values, kind=kind, meta={k: v for k, v in meta.items() if v is not None})]

    def decode(self, message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
        uplink = message.payload if isinstance(message.payload, Uplink) else parse_uplink(message.payload, message.topic)
        return self.decode_uplink(uplink)


@dataclass(frozen=True)
class FunctionProfile:
    """A profile for polled APIs (HTTP JSON/XML, Modbus registers): ``fn(message, options)``."""

    name: str
    kind: str
    description: str
    fn: Callable[[RawMessage, Mapping[str, Any]], list[Reading]]

    def decode(self, message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
        return self.fn(message, options)


_MISSING = object()


class StateStore(MutableMapping):
    """Mapper state that must survive a restart (rain counters, alert hysteresis, spot states).

    A plain dict of JSON-serialisable values with dirty tracking; the runtime loads it at start
    and persists the changed keys after each mapping (into Redis when the outbox is Redis).
    """

    def __init__(self, initial: Mapping[str, Any] | None = None):
        self._data: dict[str, Any] = dict(initial or {})
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._journal: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if self._journal is not None and key not in self._journal:
            self._journal[key] = self._data.get(key, _MISSING)
        self._data[key] = value
        self._dirty.add(key)
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        if self._journal is not None and key not in self._journal and key in self._data:
            self._journal[key] = self._data[key]
        del self._data[key]
        self._dirty.discard(key)
        self._deleted.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def begin(self) -> None:
        """Start recording old values, so that :meth:`rollback` can undo a mapping whose entities
        could not be queued (the source then redelivers the message; counters must not count it twice)."""
        self._journal = {}

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        journal, self._journal = self._journal, None
        for key, old in (journal or {}).items():
            if old is _MISSING:
                self._data.pop(key, None)
            else:
                self._data[key] = old

    def take_changes(self) -> tuple[dict[str, Any], set[str]]:
        """The keys written and deleted since the last call (for the runtime to persist)."""
        changed = {k: self._data[k] for k in self._dirty if k in self._data}
        deleted = set(self._deleted)
        self._dirty.clear()
        self._deleted.clear()
        return changed, deleted


@dataclass
class MapContext(Generic[S]):
    """Everything a mapper may use besides the reading. No I/O happens through it.

    ``settings`` is an instance of the adapter's ``settings_model``, validated once by the runtime
    from the config's ``settings:`` section (the defaults when the section is absent); a mapper
    annotates its context ``MapContext[MySettings]`` and reads typed fields, never a dict.
    """

    namespace: str
    registry: DeviceRegistry
    settings: S = None  # type: ignore[assignment]
    state: StateStore = field(default_factory=StateStore)
    now: datetime | None = None          # the adapter clock (for timers only; never an observedAt)
    lenient: bool = False                # `stadtlink decode --entity`: report missing registry data, don't fail
    missing: list[str] = field(default_factory=list)
    #: Field-level writes to state shared by all replicas (adapters/core/shared.py), set by the
    #: runtime when the adapter's ``derive`` hook is on; None otherwise (the mapper maps inline).
    shared: Any = None
    #: objects the mapper owns for this context (indexes, running counts): see :meth:`owned`
    _owned: dict[Callable[[], Any], Any] = field(default_factory=dict, repr=False)

    def owned(self, factory: Callable[[], T]) -> T:
        """The mapper's own object of type/factory ``factory`` for this context, built on first use.

        For state a mapper derives and keeps between readings but never persists (a site index,
        running counts): it lives exactly as long as this context, so two adapters — or two tests —
        in one process never share it, unlike a module global."""
        try:
            return self._owned[factory]
        except KeyError:
            obj = self._owned[factory] = factory()
            return obj

    def device(self, reading: Reading) -> DeviceRecord | None:
        return self.registry.lookup(reading.device_id, reading.meta.get("dev_eui"))

    def require_device(self, reading: Reading) -> DeviceRecord:
        """The registry record, or (strict) a MappingError that dead-letters the reading.

        In lenient mode an empty record stands in and the miss is noted.
        """
        rec = self.device(reading)
        if rec is not None:
            return rec
        if self.lenient:
            self.missing.append(f"device {reading.device_id!r} is not in the registry")
            return DeviceRecord(id=reading.device_id)
        raise MappingError(UNKNOWN_DEVICE, f"device {reading.device_id!r} is not in the registry")

    def require(self, record: DeviceRecord, key: str) -> Any:
        """A registry field the entity needs (location, reference level …)."""
        if key in ("location", "lonlat"):
            if record.has_location:
                return (record.lon, record.lat)
        else:
            value = record.get(key)
            if value is not None:
                return value
        if self.lenient:
            self.missing.append(f"{record.id}: registry field {key!r} missing")
            return None
        raise MappingError(REGISTRY_FIELD_MISSING, f"device {record.id!r} has no {key!r} in the registry",
                           missing=[key])


Mapper = Callable[[Reading, MapContext], list[dict]]


#: ``encode(state, rnd, now) -> (payload bytes, f_port)``: one simulated uplink of a demo device.
DemoEncoder = Callable[[dict, Any, float], "tuple[bytes, int]"]


@dataclass(frozen=True)
class DemoSimulators:
    """What ``stadtlink demo`` runs for a family besides its adapter (``AdapterSpec.demo``).

    The demo starts the adapter from its ``example_config`` and points it at these simulators, so a
    family — built in or an integrator's package — joins the demo without a change to the core.

    ``devices``: LoRaWAN profile → ``make(record, fleet)`` returning ``(encode, interval_s)`` (or None
    to leave the record out) for every registry record of that profile; the demo publishes the
    encoded bytes in TTS v3 / ChirpStack v4 uplinks on the example config's topics. ``fleet`` is the
    family's :class:`~stadtlink.adapters.core.demo.devices.DeviceFleet` (its start time ``t0`` and the
    ``devices`` built so far).

    ``services``: ``async start(demo)`` starting the HTTP feeds / Modbus servers the example config
    polls, with ``demo`` a :class:`~stadtlink.adapters.core.demo.city.DemoServices`
    (``serve_http(app, replaces=...)``, ``redirect_modbus(...)``, ``on_stop(...)``).
    """

    devices: Mapping[str, Callable[[DeviceRecord, Any], "tuple[DemoEncoder, float] | None"]] = field(
        default_factory=dict)
    services: Callable[[Any], Awaitable[None]] | None = None


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    description: str
    profiles: Mapping[str, Profile]
    mapper: Mapper
    semantics: Semantics = "latest-state"
    settings_model: type | None = None        # pydantic model for the config's `settings:` section
    entity_types: tuple[str, ...] = ()
    example_config: Path | None = None
    #: Called every ``tick_interval`` seconds with the MapContext (ctx.now set): timer-driven
    #: entities such as a parking spot turning ``unknown`` after its heartbeat timeout.
    tick: Callable[[MapContext], list[dict]] | None = None
    tick_interval: float = 30.0
    context: str = STADTLINK_CONTEXT_URL
    #: Entities derived from state shared by the replicas (Redis), computed by one replica at a
    #: time: an :class:`stadtlink.adapters.core.shared.DeriveHook` (e.g. parking site aggregates). Optional.
    derive: Any = None
    #: Smart Data Models this package brings (not bundled with stadtlink): registered when the
    #: spec is loaded; declare the same tuple under the ``stadtlink.models`` entry point too, so
    #: the local broker, the context server and ``stadtlink validate`` find them without loading
    #: the adapter (docs/adding-a-model.md).
    models: tuple[SmartDataModel, ...] = ()
    #: How ``stadtlink demo`` simulates this family's devices and feeds (:class:`DemoSimulators`);
    #: None = the family is not part of the demo.
    demo: DemoSimulators | None = None

    def validate_settings(self, raw: Any = None) -> Any:
        """The config's ``settings:`` section as an instance of ``settings_model`` — the one place a
        family's settings are validated (the runtime does it before any mapper runs, so a mapper reads
        ``ctx.settings`` typed and never falls back to defaults). ``None`` gives the model's defaults;
        an instance passes as it is; anything invalid is a :class:`ConfigError` naming the key."""
        model = self.settings_model
        if model is None or isinstance(raw, model):
            return raw
        try:
            return model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            problems = "; ".join(f"settings.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"adapter {self.name!r}: {problems}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"adapter {self.name!r}: settings must be a mapping ({exc})") from None

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise DecodeError("unknown-profile",
                              f"adapter {self.name!r} has no profile {name!r} (has: {', '.join(sorted(self.profiles))})") from None
