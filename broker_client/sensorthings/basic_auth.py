"""HTTP Basic authentication, as FROST-Server's ``BasicAuthProvider`` asks for it
(docs/settings/auth.md of FROST-Server). Same interface as :mod:`stadtlink.broker_client.auth`."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import aiohttp

from ..errors import AuthenticationError


class BasicAuth:
    """User name and password; the password given directly, by environment variable or by file
    (read at each request, so a rotated secret is followed). Never shown in ``repr``."""

    def __init__(self, username: str, password: str | None = None, *, password_env: str | None = None,
                 password_file: str | os.PathLike[str] | None = None) -> None:
        if not username or ":" in username:
            raise ValueError("basic auth needs a user name without ':'")
        if sum(x is not None for x in (password, password_env, password_file)) != 1:
            raise ValueError("basic auth needs exactly one of password, password_env, password_file")
        self.username = username
        self._password = password
        self._env = password_env
        self._file = Path(password_file) if password_file is not None else None

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=***)"

    def _secret(self) -> str:
        if self._password is not None:
            return self._password
        if self._env is not None:
            value = os.environ.get(self._env)
            if not value:
                raise AuthenticationError(title="Password missing", detail=f"environment variable {self._env} is empty or unset")
            return value
        assert self._file is not None
        try:
            value = self._file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthenticationError(title="Password file unreadable", detail=f"{self._file}: {exc.strerror}") from None
        if not value:
            raise AuthenticationError(title="Password missing", detail=f"password file {self._file} is empty")
        return value

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        token = base64.b64encode(f"{self.username}:{self._secret()}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    async def invalidate(self) -> None:
        return None
