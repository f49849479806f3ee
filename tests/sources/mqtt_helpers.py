"""What the MQTT source tests share: a quickly reconnecting source config, a collecting emit and a
throw-away PKI for TLS brokers."""
from __future__ import annotations

from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.core.sources import MqttSourceConfig
from stadtlink.adapters.core.testing import SHARED_MQTT


def quick_config(topic: str, host: str = SHARED_MQTT[0], port: int = SHARED_MQTT[1], **kw) -> MqttSourceConfig:
    """A source on ``topic`` that reconnects within half a second (tests stop and start brokers)."""
    return MqttSourceConfig(host=host, port=port, topics=[topic], reconnect_min_s=0.05, reconnect_max_s=0.5,
                            connect_timeout_s=2, **kw)


class Collector:
    """An ``emit`` that keeps every message."""

    def __init__(self):
        self.messages: list[RawMessage] = []

    async def __call__(self, message: RawMessage) -> None:
        self.messages.append(message)

    @property
    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]


def make_pki(d) -> dict[str, str]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    import subprocess

    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=stadtlink-test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext")
    return {k: str(d / k) for k in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}
