"""The data that flows between a source, a decoder and a mapper.

``RawMessage`` is what a source hands over (bytes from MQTT/HTTP/webhook, registers from Modbus).
``Uplink`` is a parsed LoRaWAN envelope (The Things Stack v3 or ChirpStack v4).
``Reading`` is a decoder's output: typed values in SI units with a UTC observation time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class RawMessage:
    source: str                      # "mqtt" | "http" | "modbus" | "webhook" | "cli"
    payload: Any                     # bytes for mqtt/http/webhook; a RegisterMap (or dict) for modbus
    received_at: datetime            # adapter clock when the source got it (UTC); not the observation time
    topic: str | None = None         # MQTT topic, or the polled URL
    device_hint: str | None = None   # configured device / feed id for polled sources
    attributes: dict[str, Any] = field(default_factory=dict)  # e.g. content_type, role ("static"/"status"), http status


@dataclass(slots=True)
class Uplink:
    """A LoRaWAN uplink, independent of the network server that delivered it."""

    network: str                 # "tts-v3" | "chirpstack-v4"
    device_id: str               # TTS device_id / ChirpStack deviceName (falls back to dev EUI)
    dev_eui: str | None          # lower-case hex
    application_id: str | None
    tenant: str | None
    f_port: int | None
    f_cnt: int                   # absent in the envelope means 0
    payload: bytes
    received_at: datetime        # network-server receive time, UTC
    gateway_time: datetime | None
    rssi: float | None
    snr: float | None
    decoded: dict | None         # the network server's decoded object, when a codec ran
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def dedup_key(self) -> tuple[str, int, int | None]:
        """Same device, frame counter and port = a retransmission (or a second gateway path)."""
        return (self.dev_eui or self.device_id, self.f_cnt, self.f_port)


@dataclass(slots=True)
class Reading:
    """One decoded observation of one device.

    ``values`` hold numbers in SI units as each profile documents (metres, °C, W, fractions …);
    a value the device did not measure is absent, never None.
    """

    device_id: str
    profile: str
    observed_at: datetime
    values: dict[str, Any]
    kind: str = "measurement"    # profile-specific: "status", "heartbeat", "startup", "site", …
    meta: dict[str, Any] = field(default_factory=dict)  # rssi, snr, f_cnt, f_port, dev_eui, battery …

    def as_json(self) -> dict[str, Any]:
        from .timeutil import iso_ms

        return {
            "device_id": self.device_id,
            "profile": self.profile,
            "kind": self.kind,
            "observed_at": iso_ms(self.observed_at),
            "values": self.values,
            "meta": {k: (iso_ms(v) if isinstance(v, datetime) else v) for k, v in self.meta.items()},
        }
