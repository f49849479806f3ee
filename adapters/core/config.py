"""The adapter process configuration: one YAML file, ``STADTLINK_*`` environment overrides, secrets.

The whole file is validated by one pydantic model built per adapter (its ``settings`` section is the
adapter's own ``settings_model``; ``sources`` is a discriminated union over every installed source
kind). Errors come back as :class:`ConfigError` naming each offending path, e.g.
``sources[0].port: Input should be a valid integer``.

Environment overrides use a double underscore for nesting: ``STADTLINK_BROKER__URL``,
``STADTLINK_OUTBOX__KIND``, ``STADTLINK_SOURCES__0__HOST``. Values are read as YAML scalars
(``42`` is a number, ``true`` a boolean). ``STADTLINK_CONFIG`` and ``STADTLINK_ADAPTER`` are not
overrides (the CLI reads them).

Secrets (tokens, passwords) are :class:`pydantic.SecretStr` and may be given as ``<name>_env``
(an environment variable name) or ``<name>_file`` (a mounted file) instead of inline.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, model_validator

from . import plugins
from .errors import ConfigError

ENV_PREFIX = "STADTLINK_"
_NOT_OVERRIDES = {"STADTLINK_CONFIG", "STADTLINK_ADAPTER", "STADTLINK_EXTRA_ADAPTERS", "STADTLINK_LOG_FORMAT"}


def redact_url(url: str) -> str:
    """``redis://:secret@host:6379/0`` → ``redis://:***@host:6379/0``, ``http://token@host`` →
    ``http://***@host`` (for messages and logs; an ``@`` inside the password is handled)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1:
            cut = min(cut, i)
    authority, tail = rest[:cut], rest[cut:]
    if "@" not in authority:
        return url
    userinfo, _, host = authority.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}://{masked}@{host}{tail}"


def _no_userinfo(url: str) -> str:
    """A URL the config takes for HTTP must not carry ``user:password@`` (use the auth block)."""
    if "@" in url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]:
        raise ValueError(f"user info (user:password@) is not allowed in the URL ({redact_url(url)}); "
                         "give the credentials as auth (token, oauth2 or basic, from a file or env)")
    return url


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def resolve_secret(value: SecretStr | str | None, env: str | None, file: str | None, *, what: str) -> SecretStr | None:
    """One of inline value / env var name / file path → the secret (or None if none given)."""
    given = [x for x in (value, env, file) if x is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of {what}, {what}_env, {what}_file")
    if value is not None:
        return value if isinstance(value, SecretStr) else SecretStr(value)
    if env is not None:
        found = os.environ.get(env)
        if found is None or found == "":
            raise ValueError(f"{what}_env: environment variable {env} is not set")
        return SecretStr(found)
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{what}_file: cannot read {file}: {exc.strerror}") from None
        return SecretStr(text)
    return None


class TokenAuth(_Strict):
    """A static bearer token (inline, env var or file; a file is re-read when it rotates)."""

    kind: Literal["token"]
    value: SecretStr | None = None
    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "TokenAuth":
        if sum(x is not None for x in (self.value, self.env, self.file)) != 1:
            raise ValueError("token auth needs exactly one of value, env, file")
        if self.env is not None and not os.environ.get(self.env):
            raise ValueError(f"env: environment variable {self.env} is not set")
        return self

    def build(self):
        from stadtlink.broker_client import StaticToken

        if self.value is not None:
            return StaticToken(self.value.get_secret_value())
        if self.env is not None:
            return StaticToken(env=self.env)
        return StaticToken(file=self.file)


class OAuth2Auth(_Strict):
    """OAuth2 client credentials (Keycloak style)."""

    kind: Literal["oauth2"]
    token_url: Annotated[str, AfterValidator(_no_userinfo)]
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    scope: str | None = None
    audience: str | None = None

    @model_validator(mode="after")
    def _secret(self) -> "OAuth2Auth":
        secret = resolve_secret(self.client_secret, self.client_secret_env, self.client_secret_file,
                                what="client_secret")
        if secret is None:
            raise ValueError("oauth2 auth needs client_secret, client_secret_env or client_secret_file")
        self.client_secret = secret
        return self

    def build(self):
        from stadtlink.broker_client import OAuth2ClientCredentials

        assert self.client_secret is not None
        return OAuth2ClientCredentials(self.token_url, self.client_id, self.client_secret.get_secret_value(),
                                       scope=self.scope, audience=self.audience)


class BasicAuth(_Strict):
    """HTTP Basic (FROST-Server's BasicAuthProvider; kind sensorthings)."""

    kind: Literal["basic"]
    username: str = Field(min_length=1, pattern=r"^[^:]+$")
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "BasicAuth":
        if sum(x is not None for x in (self.password, self.password_env, self.password_file)) != 1:
            raise ValueError("basic auth needs exactly one of password, password_env, password_file")
        if self.password_env is not None and not os.environ.get(self.password_env):
            raise ValueError(f"password_env: environment variable {self.password_env} is not set")
        return self

    def build(self):
        from stadtlink.broker_client.sensorthings.basic_auth import BasicAuth as _Basic

        if self.password is not None:
            return _Basic(self.username, self.password.get_secret_value())
        if self.password_env is not None:
            return _Basic(self.username, password_env=self.password_env)
        return _Basic(self.username, password_file=self.password_file)


class BrokerConfig(_Strict):
    kind: Literal["orion-ld", "scorpio", "stellio", "ngsi-v2", "sensorthings"] = Field(
        "orion-ld", description="orion-ld | scorpio | stellio (NGSI-LD) or ngsi-v2 (classic Orion); docs/backends/")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$",
                             description="sink name (logs, readiness, metrics, its Redis stream); default: the kind")
    url: Annotated[str, AfterValidator(_no_userinfo)] = Field(description="broker base URL, e.g. http://orion-ld:1026 (the client appends /ngsi-ld/v1 or /v2)")
    tenant: str | None = Field(None, description="NGSILD-Tenant (ngsi-v2: the Fiware-Service unless service is set)")
    service: str | None = Field(None, description="ngsi-v2: Fiware-Service")
    service_path: str | None = Field(None, description="ngsi-v2: Fiware-ServicePath (default /)")
    ids: Literal["urn", "local"] = Field("urn", description="ngsi-v2: ids as in NGSI-LD (urn) or without "
                                                            "urn:ngsi-ld:<Type>: (local)")
    max_body_bytes: int | None = Field(None, ge=1024, description="request body budget (default per kind)")
    check_at_start: Literal["on", "strict", "off"] = Field(
        "on", description="one request at start: wrong url/tenant/credentials stop the adapter; a broker that "
                          "is down only logs (strict: stops too)")
    when_full: Literal["backpressure", "deadletter"] | None = Field(
        None, description="at outbox.max_length: hold the sources (default for the first sink) or dead-letter "
                          "for this sink only (default for the others)")
    context: str | None = Field(None, description="@context URL sent in the Link header (default: the adapter's)")
    auth: Annotated[Union[TokenAuth, OAuth2Auth, BasicAuth], Field(discriminator="kind")] | None = None
    data_array: bool | None = Field(None, description="sensorthings: write Observations with the dataArray "
                                                       "extension (default: if the server's conformance lists it)")
    batch_size: int = Field(200, ge=1, le=900, description="flush at this many entities …")
    flush_ms: int = Field(500, ge=1, description="… or this many milliseconds after the first entity of a batch")
    flush: Literal["adaptive", "fixed"] = Field(
        "adaptive", description="adaptive: paced by the broker — with no write in flight what is queued is "
                                "written at once; while writes are in flight (at most 2) the next batch fills "
                                "up to batch_size; flush_ms only bounds the wait; fixed: wait up to flush_ms "
                                "for a batch to fill, one write at a time")
    timeout_s: float = Field(10.0, gt=0)
    retry_base_s: float = Field(0.5, gt=0, description="first retry delay of failed entities (doubles, jittered)")
    retry_max_s: float = Field(30.0, gt=0, description="cap of the retry delay")
    health_interval_s: float = Field(10.0, gt=0, description="how often the broker is probed while idle")

    @model_validator(mode="after")
    def _url(self) -> "BrokerConfig":
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https:// (got {redact_url(self.url)!r})")

        if self.kind != "sensorthings":
            if self.data_array is not None:
                raise ValueError("data_array: only for kind sensorthings")
            if isinstance(self.auth, BasicAuth):
                raise ValueError("auth.kind: basic is for kind sensorthings (FROST-Server); "
                                 "NGSI brokers take token or oauth2")
        return self


class OutboxConfig(_Strict):
    kind: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "stadtlink"
    max_length: int = Field(100_000, ge=1, description="alarm + readiness false + back-pressure at this depth")
    backpressure_wait_s: float = Field(5.0, ge=0, description="how long emit() waits for room before it raises")
    consumer: str | None = Field(None, description="Redis consumer name (default: the host name, stable per pod)")
    group: str = "stadtlink"
    claim_min_idle_ms: int = Field(30_000, ge=0, description="pending entries idle this long are reclaimed")
    deadletter_max_length: int = Field(100_000, ge=1)
    startup_wait_s: float = Field(30.0, ge=0, description="how long start-up waits for Redis before giving up")


class HttpConfig(_Strict):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9100, ge=0, le=65535)
    device_last_seen: bool = Field(False, description="one stadtlink_device_last_seen_timestamp_seconds series "
                                                      "per device on /metrics (off: at city scale that is "
                                                      "thousands of series)")


class TimeAdmissionConfig(_Strict):
    """Which observation times a reading may carry (adapters/core/timecheck.py); outside → dead letter
    ``implausible-time``."""

    future_margin_s: float = Field(300.0, ge=0, description="a reading more than this many seconds ahead of "
                                                              "the adapter's clock is dead-lettered")
    not_before: datetime = Field(datetime(2000, 1, 1, tzinfo=timezone.utc),
                                 description="a reading observed before this time is dead-lettered "
                                             "(a clock reset to 1970, a GPS week rollover)")
    max_age_s: float | None = Field(None, gt=0, description="also dead-letter readings older than this many "
                                                            "seconds (off by default: a gateway may deliver a "
                                                            "backlog after an outage)")

    @model_validator(mode="after")
    def _utc(self) -> "TimeAdmissionConfig":
        if self.not_before.tzinfo is None:
            self.not_before = self.not_before.replace(tzinfo=timezone.utc)
        return self

    def build(self):
        from .timecheck import TimeAdmission

        return TimeAdmission(future_margin_s=self.future_margin_s, not_before=self.not_before,
                             max_age_s=self.max_age_s)


class StadtlinkConfigBase(_Strict):
    adapter: str | None = None
    namespace: str = Field(min_length=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    broker: BrokerConfig | None = None
    brokers: list[BrokerConfig] = Field(default_factory=list,
                                        description="several sinks at once, each with its own outbox (docs/backends/)")
    outbox: OutboxConfig = OutboxConfig()
    check: Literal["strict", "warn", "off"] = "strict"
    http: HttpConfig = HttpConfig()
    dedup_window_s: float = Field(600.0, ge=0)
    time_admission: TimeAdmissionConfig = TimeAdmissionConfig()
    shutdown_grace_s: float = Field(20.0, ge=0)
    heartbeat_timeout_s: float = Field(10.0, gt=0, description="/healthz fails when the loop heartbeat is older")
    devices: list[dict[str, Any]] = []
    registry_files: list[str] = []

    @model_validator(mode="after")
    def _one_or_more_sinks(self) -> "StadtlinkConfigBase":
        if self.broker is None and not self.brokers:
            raise ValueError("broker: required key is missing (or brokers: for several sinks)")
        if self.broker is not None and self.brokers:
            raise ValueError("give broker: (one sink) or brokers: (several), not both")
        seen: set[str] = set()
        for name, key, _ in self.sink_configs():
            if name in seen:
                raise ValueError(f"{key}.name: {name!r} names two sinks; give each a different name")
            seen.add(name)
        return self

    def sink_configs(self) -> list[tuple[str, str, BrokerConfig]]:
        """``(name, config key, BrokerConfig)`` of every sink, the first one first."""
        if self.broker is not None:
            return [(self.broker.name or "broker", "broker", self.broker)]
        kinds = [b.kind for b in self.brokers]
        return [(b.name or (b.kind if kinds.count(b.kind) == 1 else f"{b.kind}-{i}"), f"brokers[{i}]", b)
                for i, b in enumerate(self.brokers)]

    @property
    def primary_broker(self) -> BrokerConfig:
        return self.sink_configs()[0][2]

    @model_validator(mode="before")
    @classmethod
    def _log_level_upper(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("log_level"), str):
            data = dict(data)
            data["log_level"] = data["log_level"].upper()
        return data


# --- sources --------------------------------------------------------------------------------------

def source_configs() -> tuple[type[BaseModel], ...]:
    """Every installed source config model: the built-in ones plus those registered in plugins.

    The built-in sources are imported here, not at the top: reading a config file must not pull in
    the MQTT, HTTP and Modbus clients. A built-in source that fails to import is a broken
    installation, and the ImportError propagates."""
    from .sources import SOURCE_CONFIGS

    return (*SOURCE_CONFIGS, *(m for m, _ in plugins.extra_sources().values()))


@lru_cache(maxsize=64)
def _config_model(settings_model: type | None, sources: tuple[type[BaseModel], ...]) -> type[BaseModel]:
    # keyed by the source models too: a source kind registered later gets a new model, no cache reset
    if sources:
        union = sources[0] if len(sources) == 1 else Annotated[Union[sources], Field(discriminator="kind")]
        source_type: Any = list[union]  # type: ignore[valid-type]
    else:
        source_type = list[dict[str, Any]]
    settings_type: Any = settings_model if settings_model is not None else dict[str, Any]
    settings_default: Any = Field(default_factory=dict) if settings_model is None else Field(default=None)
    return create_model(
        "StadtlinkConfig",
        __base__=StadtlinkConfigBase,
        sources=(source_type, Field(default_factory=list)),
        settings=(settings_type | None if settings_model is not None else settings_type, settings_default),
    )


def config_model(adapter=None) -> type[BaseModel]:
    """The pydantic model of a whole config file for ``adapter`` (an AdapterSpec, or None)."""
    settings_model = getattr(adapter, "settings_model", None) if adapter is not None else None
    return _config_model(settings_model, source_configs())


# --- loading --------------------------------------------------------------------------------------

def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str],
                        known: set[str] | None = None) -> dict[str, Any]:
    """``STADTLINK_BROKER__URL=...`` → ``data["broker"]["url"]``; numeric segments index lists.

    Only variables whose first segment is a config key (``known``) apply; other ``STADTLINK_*``
    variables (tools, tests) are ignored.
    """
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in _NOT_OVERRIDES:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not path or (known is not None and path[0] not in known):
            continue
        node: Any = data
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, list):
                if not part.isdigit():
                    raise ConfigError(f"{name}: {'.'.join(path[:i]) or 'config'} is a list; use an index")
                idx = int(part)
                if idx >= len(node):
                    raise ConfigError(f"{name}: index {idx} is out of range ({len(node)} items)")
                if last:
                    node[idx] = _scalar(env[name])
                else:
                    if not isinstance(node[idx], (dict, list)):
                        node[idx] = {}
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = _scalar(env[name])
                else:
                    nxt = node.get(part)
                    if not isinstance(nxt, (dict, list)):
                        nxt = {}
                        node[part] = nxt
                    node = nxt
            else:
                raise ConfigError(f"{name}: cannot set {'.'.join(path)}")
    return data


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "config"


def _clean_loc(loc: tuple, data: Any) -> tuple:
    """Drop the discriminator/union tags pydantic inserts (``sources.0.mqtt.port`` → ``sources[0].port``)."""
    out: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and part not in ("settings",) \
                and node.get("kind") == part:
            continue
        if isinstance(part, str) and ("[" in part or "function-" in part):
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def format_validation_error(exc: ValidationError, data: Any) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        where = _loc(_clean_loc(tuple(err["loc"]), data))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown source kind {err.get('input', {}).get('kind') if isinstance(err.get('input'), dict) else ''!r}; " \
                  + err["msg"].split("does not match any of the expected tags: ")[-1].join(("installed kinds: ", ""))
        elif err["type"] == "union_tag_not_found":
            kinds = ", ".join(repr(plugins.source_kind(m)) for m in source_configs())
            where, msg = f"{where}.kind", f"required key is missing (one of {kinds})"
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys")
    return data


def load_config(source: str | Path | Mapping[str, Any], *, adapter=None, env: Mapping[str, str] | None = None,
                base_dir: str | Path | None = None):
    """Read, override from the environment and validate a config → ``(config, base_dir)``.

    Raises :class:`ConfigError` with one ``path: problem`` line per error.
    """
    import copy

    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        data = read_config_file(source)
        base = Path(base_dir) if base_dir is not None else Path(source).resolve().parent
    model = config_model(adapter)
    data = apply_env_overrides(data, os.environ if env is None else env, set(model.model_fields))
    if adapter is not None and data.get("adapter") not in (None, adapter.name):
        raise ConfigError(f"adapter: the config is for {data['adapter']!r}, not {adapter.name!r}")
    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data)) from None
    if adapter is not None and getattr(adapter, "settings_model", None) is not None and config.settings is None:
        try:
            config.settings = adapter.settings_model()
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, {}).replace("\n", "\nsettings.").join(("settings.", ""))) \
                from None
    return config, base


def config_json_schema(adapters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a config file.

    With ``adapters`` (name → AdapterSpec), ``adapter`` is an enum of their names and ``settings``
    is typed per adapter: an ``allOf`` of ``if adapter == NAME then settings: <its settings model>``.
    ``x-adapter-settings`` maps each name to its settings ``$ref`` (for the Helm values schema).
    """
    from pydantic.json_schema import models_json_schema

    base_model = config_model(None)
    models: list[tuple[type[BaseModel], str]] = [(base_model, "validation")]
    named: dict[str, type[BaseModel]] = {}
    for name, spec in sorted((adapters or {}).items()):
        sm = getattr(spec, "settings_model", None)
        if isinstance(sm, type) and issubclass(sm, BaseModel):
            named[name] = sm
            if (sm, "validation") not in models:
                models.append((sm, "validation"))
    keys, defs = models_json_schema(models, ref_template="#/$defs/{model}")
    root_ref = keys[(base_model, "validation")]["$ref"].split("/")[-1]
    all_defs = defs.get("$defs", {})
    schema = dict(all_defs.pop(root_ref))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "stadtlink adapter configuration"
    schema["$defs"] = all_defs
    if adapters:
        props = schema.setdefault("properties", {})
        props["adapter"] = {"anyOf": [{"enum": sorted(adapters)}, {"type": "null"}], "default": None,
                            "description": "the adapter this file configures"}
        branches = []
        x_settings = {}
        for name in sorted(adapters):
            if name in named:
                ref = keys[(named[name], "validation")]
                x_settings[name] = ref
                settings_schema: dict[str, Any] = {"anyOf": [ref, {"type": "null"}]}
            else:
                x_settings[name] = {"type": "object"}
                settings_schema = {"type": "object"}
            branches.append({"if": {"properties": {"adapter": {"const": name}}, "required": ["adapter"]},
                             "then": {"properties": {"settings": settings_schema}}})
        schema["allOf"] = branches
        schema["x-adapter-settings"] = x_settings
    return schema
