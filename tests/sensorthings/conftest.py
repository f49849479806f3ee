"""A real SensorThings API server for these tests: django-ogc-sensorthings 1.2.0 (PyPI) on SQLite,
served by uvicorn on a free 127.0.0.1 port with its own database file."""

from __future__ import annotations

import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from stadtlink.adapters.core.testing import _ServerProcess

RUN = Path(__file__).resolve().parent / "sta_server" / "run.py"


class SensorThingsServer(_ServerProcess):
    kind = "sensorthings"

    @property
    def db(self) -> Path:
        return self.data_dir / "sta.sqlite3"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sensorthings/v1.1"

    def command(self) -> list[str]:
        return [sys.executable, str(RUN), str(self.port), str(self.db)]

    def start(self, timeout: float = 60.0) -> SensorThingsServer:
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while True:  # listening is not serving yet: wait for the root document
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise RuntimeError(f"SensorThings server did not answer: {self.log_tail()}") from None
                time.sleep(0.1)


@pytest.fixture(scope="session")
def sta_server():
    """One server for the session (each test uses its own entity ids)."""
    server = SensorThingsServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def own_sta_server():
    """A server of this test's own, which it may stop and start again (same port, same data)."""
    server = SensorThingsServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def ns() -> str:
    """A namespace unique to the test, for entity ids."""
    return "t" + uuid.uuid4().hex[:10]
