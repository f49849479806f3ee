"""Credentials stadtlink sent, removed from what a remote endpoint answers.

A broker's 400 detail may repeat the request's ``Authorization`` header, a token endpoint's
``error_description`` the ``client_secret`` of the form, a proxy's error page a cookie. Everything
the client reads back is an untrusted text that ends up in exceptions, dead letters and logs, so
each answer body is passed through a :class:`Redactor` built from the credentials of *that*
request before anything else sees it.

A secret is replaced in the forms an echo takes: as sent, URL-encoded (form and query), and
JSON-escaped. A Basic credential is redacted as the Base64 blob and as the decoded password.
Secrets shorter than :data:`MIN_SECRET_LEN` characters are not searched for (masking every
``a`` in a text would make it unreadable while protecting nothing).
"""
from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

import orjson

MASK = "***"
MIN_SECRET_LEN = 4
_SECRET_HEADER_WORDS = ("authorization", "token", "secret", "password", "api-key", "apikey", "cookie")


def secret_forms(secret: str) -> set[str]:
    """The spellings in which an endpoint may echo ``secret``."""
    if not secret:
        return set()
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
             orjson.dumps(secret).decode()[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET_LEN}


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credentials in request headers: the ``Authorization`` value and its parts, and the value
    of any header whose name says token, secret, password, API key or cookie."""
    out: list[str] = []
    for name, value in headers.items():
        if not isinstance(value, str) or not value:
            continue
        lname = name.lower()
        if lname in ("authorization", "proxy-authorization"):
            scheme, _, credential = value.strip().partition(" ")
            credential = credential.strip()
            if not credential:
                out.append(value)
            else:                   # the scheme word stays readable: "Bearer ***"
                out.append(credential)
                if scheme.lower() == "basic":
                    try:
                        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
                    except (binascii.Error, UnicodeDecodeError):
                        continue
                    out.append(decoded)
                    out.append(decoded.partition(":")[2])
        elif any(word in lname for word in _SECRET_HEADER_WORDS):
            out.append(value)
    return out


class Redactor:
    """Replaces the given secrets (in every :func:`secret_forms` spelling) by ``***``."""

    __slots__ = ("_text", "_bytes")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {f for s in secrets if isinstance(s, str) for f in secret_forms(s)}
        ordered = sorted(forms, key=len, reverse=True)     # longest first: a secret inside another form
        self._text = tuple(ordered)
        self._bytes = tuple(f.encode("utf-8") for f in ordered)

    @classmethod
    def for_headers(cls, headers: Mapping[str, str]) -> "Redactor":
        return cls(header_secrets(headers))

    def __bool__(self) -> bool:
        return bool(self._text)

    def text(self, value: str) -> str:
        for form in self._text:
            if form in value:
                value = value.replace(form, MASK)
        return value

    def bytes(self, value: bytes) -> bytes:
        mask = MASK.encode()
        for form in self._bytes:
            if form in value:
                value = value.replace(form, mask)
        return value

    def any(self, value):
        """Text, bytes, or JSON-like containers of them, redacted (other values as they are)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (bytes, bytearray)):
            return self.bytes(bytes(value))
        if isinstance(value, dict):
            return {self.any(k): self.any(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.any(v) for v in value)
        return value


def url_without_userinfo(url: str) -> str:
    """``http://user:pass@host/x`` → ``http://***@host/x`` (for messages about a URL)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def has_userinfo(url: str) -> bool:
    """True when the URL's authority carries ``user[:password]@``."""
    _, sep, rest = url.partition("://")
    if not sep:
        return False
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "@" in authority
