"""Secrets in source configs: given inline, as an environment variable name or as a file path.

Values are kept as :class:`pydantic.SecretStr` so that a config dump, a repr or a log line never
shows them.
"""
from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from ..errors import ConfigError


def resolve_secret(value: SecretStr | str | None, env: str | None, file: str | None, *, what: str) -> str | None:
    """The secret's text, or None when none of the three forms is given.

    Raises :class:`ConfigError` naming the key (never the value) when more than one form is given,
    the variable is unset or the file cannot be read. A file's trailing newline is stripped.
    """
    given = [name for name, v in (("", value), ("_env", env), ("_file", file)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"{what}: give only one of {', '.join(what + g for g in given)}")
    if value is not None:
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    if env is not None:
        text = os.environ.get(env)
        if text is None:
            raise ConfigError(f"{what}_env: environment variable {env!r} is not set")
        return text
    if file is not None:
        try:
            return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{what}_file: cannot read {file!r}: {exc.strerror or exc}") from None
    return None


__all__ = ["resolve_secret"]
