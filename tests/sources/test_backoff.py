"""Backoff and jitter used by every source's retry loop."""
from __future__ import annotations

import pytest

from stadtlink.adapters.core.sources.backoff import Backoff, jittered
from stadtlink.adapters.core.sources.secrets import resolve_secret
from stadtlink.adapters.core.errors import ConfigError


def test_exponential_capped_and_reset():
    b = Backoff(0.5, 4.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


def test_jitter_bounds():
    low = Backoff(1.0, 10.0, jitter=0.2, rng=lambda: 0.0)
    high = Backoff(1.0, 10.0, jitter=0.2, rng=lambda: 0.999999)
    assert low.next() == pytest.approx(0.8) and high.next() == pytest.approx(1.2, rel=1e-5)
    values = {round(Backoff(1.0, 10.0, jitter=0.3).next(), 6) for _ in range(50)}
    assert len(values) > 10 and all(0.7 <= v <= 1.3 for v in values)
    assert jittered(10.0, 0.1, rng=lambda: 0.0) == pytest.approx(9.0)
    assert jittered(10.0, 0.0) == 10.0


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, 0.5), (1, 2, 2.0, 1.0)])
def test_invalid_parameters(args):
    initial, maximum, *rest = args
    kwargs = {}
    if rest:
        kwargs["factor"] = rest[0]
    if len(rest) > 1:
        kwargs["jitter"] = rest[1]
    with pytest.raises(ValueError):
        Backoff(initial, maximum, **kwargs)


def test_resolve_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET_TEST_VAR", "env-value")
    (tmp_path / "s").write_text("file-value\n")
    assert resolve_secret("v", None, None, what="password") == "v"
    assert resolve_secret(None, "SECRET_TEST_VAR", None, what="password") == "env-value"
    assert resolve_secret(None, None, str(tmp_path / "s"), what="password") == "file-value"
    assert resolve_secret(None, None, None, what="password") is None
    with pytest.raises(ConfigError, match="password_env"):
        resolve_secret(None, "SECRET_TEST_UNSET_VAR", None, what="password")
    with pytest.raises(ConfigError, match="password_file"):
        resolve_secret(None, None, str(tmp_path / "missing"), what="password")
    with pytest.raises(ConfigError, match="only one"):
        resolve_secret("v", "SECRET_TEST_VAR", None, what="password")
