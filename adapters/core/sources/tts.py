"""The Things Stack (TTN, TTS Cloud, TTS Enterprise) as a first-class source: ``network: tts``.

What The Things Stack does, and what this module sets because of it (sources: lorawan-stack-docs
``a189a5255199ce9ac016abbcf66d69fd3a73fed9``, lorawan-stack ``1d2182161975e038d6634b7dd4dd15fda86b1d68``,
mystique ``80ab21781b6d29cee3f05905cb2842e4bef3834e``; the notes are in adapters/core/sources/README.md):

* Its MQTT server "supports the MQTT Standard Version 3.1.1 and QoS 0 only"
  (docs ``doc/content/integrations/other-integrations/mqtt/_index.md`` line 12). Every uplink is
  published at QoS 0 (lorawan-stack ``pkg/applicationserver/io/mqtt/mqtt.go`` line 42
  ``const qosUpstream byte = 0``), whatever QoS the SUBACK granted, and no session persists
  (mystique never reads ``CleanStart``; a fresh session per TCP connection). The preset therefore
  connects with MQTT 3.1.1 and subscribes at QoS 0; what is published while we are away is
  fetched from the Storage Integration (:mod:`.tts_storage`).
* An MQTT 5 CONNECT with username and password is not answered: mystique's 3.1.1-only parser
  (``pkg/packet/connect.go``) fails on the CONNECT's properties and the server closes the
  connection without a CONNACK; without credentials it answers CONNACK 0x01 (unacceptable
  protocol version). :func:`connect_hint` turns both into "set protocol: 3.1.1".
* Username ``{application id}@{tenant id}`` (``ttn`` on The Things Network; only the application
  id on an open-source deployment), an API key as password (docs lines 18–31), ports 1883 and
  8883 with TLS (docs ``doc/content/concepts/networking/_index.md`` line 21), uplink topic
  ``v3/{application id}@{tenant id}/devices/{device id}/up`` (docs lines 55–65, source
  ``pkg/applicationserver/io/mqtt/topics/v3.go``).
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .secrets import resolve_secret

#: ``ApplicationIdentifiers.application_id`` (lorawan-stack ``api/ttn/lorawan/v3/identifiers.proto`` line 32)
TTS_ID = re.compile(r"^[a-z0-9](?:[-]?[a-z0-9]){2,}$")
TTS_MQTT_TLS_PORT = 8883
TTS_MQTT_PORT = 1883


class TtsBackfillConfig(BaseModel):
    """Catching up from the Storage Integration (:mod:`.tts_storage`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: a catch-up also runs this often while connected (QoS 0 can drop silently); 0: only at start
    #: and after every reconnect
    period_s: float = Field(300.0, ge=0)
    #: every catch-up re-reads this far before the last one's newest uplink: the Storage
    #: Integration writes in batches, so the newest uplinks appear late (what was admitted already
    #: is skipped, see :class:`.tts_storage.TtsBackfill`)
    overlap_s: float = Field(120.0, ge=0)
    #: the first start (nothing stored yet) reads this far back
    initial_lookback_s: float = Field(3600.0, ge=0)
    #: never reads further back than this (TTS keeps 30 days on Cloud, 24 h on the Sandbox)
    max_lookback_s: float = Field(86400.0, gt=0)
    #: ``limit`` of one Storage API request (one page)
    page_size: int = Field(100, ge=1, le=1000)
    #: one page (request and reading the answer) may take this long
    timeout_s: float = Field(30.0, gt=0)
    #: a record (one line of the answer) longer than this is skipped and counted
    max_line_bytes: int = Field(1024 * 1024, ge=1024)
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    #: at most this many backfilled uplinks per second go into the pipeline (0: no limit); live
    #: messages are never held back behind a backfill, which hands over one uplink at a time
    max_rate_per_s: float = Field(500.0, ge=0)
    #: uplinks admitted within the overlap, remembered (durably with a Redis outbox) so a catch-up
    #: does not hand them over again — also after a restart
    max_seen: int = Field(100_000, ge=100)

    @model_validator(mode="after")
    def _checks(self):
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be >= retry_min_s")
        if self.initial_lookback_s > self.max_lookback_s:
            raise ValueError("initial_lookback_s must be <= max_lookback_s")
        return self


class TtsConfig(BaseModel):
    """One TTS application: ``tts:`` of an MQTT source with ``network: tts``, or of a webhook source."""

    model_config = ConfigDict(extra="forbid")

    application_id: str
    #: ``ttn`` on The Things Network; your tenant on TTS Cloud; null on an open-source deployment
    #: (username and topics then carry the application id alone)
    tenant_id: str | None = "ttn"
    #: an API key of the application with the right RIGHT_APPLICATION_TRAFFIC_READ (the MQTT
    #: password and the Storage Integration's bearer token)
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    api_key_file: str | None = None
    #: the cluster's HTTP API, e.g. ``https://eu1.cloud.thethings.network`` (``/api/v3`` is added);
    #: default ``https://<MQTT host>``; required for a webhook source's backfill
    api_url: str | None = None
    backfill: TtsBackfillConfig = Field(default_factory=TtsBackfillConfig)

    @field_validator("application_id")
    @classmethod
    def _app(cls, v: str) -> str:
        if len(v) > 36 or not TTS_ID.match(v):
            raise ValueError("application_id: lower-case letters, digits and single dashes, 3 to 36 characters "
                             "(as The Things Stack allows)")
        return v

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, v: str | None) -> str | None:
        if v is not None and v != "" and (len(v) > 36 or not TTS_ID.match(v)):
            raise ValueError("tenant_id: lower-case letters, digits and single dashes (ttn on The Things Network)")
        return v or None

    @field_validator("api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("api_url: an http(s) URL such as https://eu1.cloud.thethings.network")
        v = v.rstrip("/")
        return v[: -len("/api/v3")] if v.endswith("/api/v3") else v

    @model_validator(mode="after")
    def _one_key(self):
        if sum(x is not None for x in (self.api_key, self.api_key_env, self.api_key_file)) > 1:
            raise ValueError("give only one of api_key, api_key_env, api_key_file")
        return self

    @property
    def uid(self) -> str:
        """``app@tenant`` (or ``app``): the MQTT username and the application part of the topics."""
        return f"{self.application_id}@{self.tenant_id}" if self.tenant_id else self.application_id

    @property
    def uplink_topic(self) -> str:
        return f"v3/{self.uid}/devices/+/up"

    def resolve_api_key(self) -> str | None:
        """The API key's text (ConfigError naming the key when its variable or file is missing)."""
        return resolve_secret(self.api_key, self.api_key_env, self.api_key_file, what="tts.api_key")


def apply_tts_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Fill an MQTT source config (the raw mapping, before validation) for ``network: tts``.

    Sets what The Things Stack needs and refuses what it cannot do, with the reason:
    ``protocol: "3.1.1"``, ``qos: 0``, the ``{app}@{tenant}`` username and uplink topic, the API key
    as password, port 8883 with TLS (system CAs) unless a port or ``tls`` is given. An explicit
    ``port: 1883`` without ``tls`` connects in plain text (an open-source deployment on a private
    network; the API key then travels unencrypted)."""
    tts = values.get("tts")
    if tts is None:
        raise ValueError("network: tts needs a tts: block with at least application_id")
    if not isinstance(tts, (dict, TtsConfig)):
        raise ValueError("tts: must be a mapping (application_id, tenant_id, api_key_file …)")
    cfg = tts if isinstance(tts, TtsConfig) else TtsConfig.model_validate(tts)
    out = dict(values)
    out["tts"] = cfg
    protocol = out.get("protocol")
    if protocol is not None and str(protocol) != "3.1.1":
        raise ValueError("network: tts: The Things Stack speaks MQTT 3.1.1 only (its MQTT server does not "
                         "answer an MQTT 5 CONNECT): remove protocol or set protocol: \"3.1.1\"")
    out["protocol"] = "3.1.1"
    qos = out.get("qos")
    if qos is not None and int(qos) != 0:
        raise ValueError("network: tts: The Things Stack publishes uplinks at QoS 0 only (whatever a "
                         "subscription asks for); remove qos or set qos: 0 — uplinks missed while "
                         "disconnected come from the Storage Integration (tts.backfill)")
    out["qos"] = 0
    for key in ("username", "password", "password_env", "password_file"):
        if out.get(key) is not None:
            raise ValueError(f"network: tts sets {key} itself (username {cfg.uid}, password the tts.api_key): "
                             f"remove {key}")
    out["username"] = cfg.uid
    if cfg.api_key is not None:
        out["password"] = cfg.api_key
    elif cfg.api_key_env is not None:
        out["password_env"] = cfg.api_key_env
    elif cfg.api_key_file is not None:
        out["password_file"] = cfg.api_key_file
    else:
        raise ValueError("network: tts needs the application's API key: tts.api_key_file, tts.api_key_env "
                         "or tts.api_key (rights: RIGHT_APPLICATION_TRAFFIC_READ)")
    if out.get("topics") is None:
        out["topics"] = [cfg.uplink_topic]
    if "tls" not in out and out.get("port") in (None, TTS_MQTT_TLS_PORT):
        out["tls"] = {}
    if out.get("port") is None:
        out["port"] = TTS_MQTT_TLS_PORT if out.get("tls") is not None else TTS_MQTT_PORT
    if out.get("shared_group") is not None:
        raise ValueError("network: tts: The Things Stack's MQTT server has no shared subscriptions; run one "
                         "replica per application (remove shared_group)")
    return out


def apply_chirpstack_preset(values: dict[str, Any]) -> dict[str, Any]:
    """``network: chirpstack``: the v4 default event topic for uplinks (chirpstack ``src/config.rs``
    ``event_topic: "application/{{application_id}}/device/{{dev_eui}}/event/{{event}}"``)."""
    out = dict(values)
    if out.get("topics") is None:
        out["topics"] = ["application/+/device/+/event/up"]
    if out.get("tts") is not None:
        raise ValueError("tts: belongs to network: tts")
    return out


def connect_hint(error: str, *, protocol: str, network: str | None, username: str | None) -> str:
    """What to change, appended to a failed connect's log line (empty when we have no advice)."""
    text = error.lower()
    # paho reports a 3.1.1 CONNACK 0x01 to an MQTT 5 client as reason 0x84 (132, "Unsupported
    # protocol version"); older wording says it in words
    if protocol == "5" and ("closed before connack" in text or "protocol version" in text
                            or "reason code 0x84" in text or "reason code 0x1)" in text
                            or "unspecified error" in text):
        return ("; this server may speak MQTT 3.1.1 only (The Things Stack closes the connection without a "
                "CONNACK, or answers 'unacceptable protocol version', to an MQTT 5 CONNECT): "
                "set protocol: \"3.1.1\" (or network: tts)")
    if network == "tts":
        # CONNACK 0x04 bad user name or password, 0x05 not authorized (mystique maps TTS's
        # permission-denied to 0x05, lorawan-stack pkg/applicationserver/io/mqtt/mqtt.go lines
        # 158-163); paho reports them as the MQTT 5 reasons 0x86 and 0x87
        if ("not authori" in text or "bad user name or password" in text
                or any(f"reason code {c})" in text for c in ("0x4", "0x5", "0x86", "0x87"))):
            return (f"; The Things Stack refused the login {username!r}: the username is "
                    "{application id}@{tenant id} (tts.application_id, tts.tenant_id: ttn on The Things "
                    "Network, null on an open-source deployment) and the password an API key of that "
                    "application with the right RIGHT_APPLICATION_TRAFFIC_READ (tts.api_key_file)")
        if "server unavailable" in text or "reason code 0x3)" in text or "reason code 0x88)" in text:
            return "; The Things Stack answered 'server unavailable' (rate limit or overload): retrying"
    return ""


__all__ = ["TtsConfig", "TtsBackfillConfig", "apply_tts_preset", "apply_chirpstack_preset", "connect_hint",
           "TTS_ID"]
