"""Regular expressions from clients (``idPattern``, ``q`` with ``~=`` / ``!~=``), matched in linear time.

Python's ``re`` backtracks: ``(a+)+$`` against thirty ``a`` and a ``!`` takes minutes, and the
broker serves every request on one event loop. Client patterns are therefore compiled with RE2
(``google-re2``), whose matching time is linear in the subject whatever the pattern. RE2 has no
backreferences and no lookaround (the POSIX regular expressions Orion-LD documents have neither):
such a pattern, one longer than :data:`MAX_PATTERN` characters, or one whose compiled program
exceeds :data:`MAX_PROGRAM_BYTES` is a 400 BadRequestData.
"""

from __future__ import annotations

from typing import Protocol

import re2

from .errors import bad_request

MAX_PATTERN = 1024
MAX_PROGRAM_BYTES = 4 * 1024 * 1024

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False        # an invalid client pattern is the client's 400, not a log line
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class UserRegex(Protocol):
    def search(self, text: str): ...


def compile_user_regex(pattern: str, *, title: str = "Invalid regular expression") -> UserRegex:
    """A linear-time matcher for ``pattern``; 400 (``title``) when it is too long or not RE2 syntax."""
    if not isinstance(pattern, str):
        raise bad_request(title, "the pattern must be a string")
    if len(pattern) > MAX_PATTERN:
        raise bad_request(title, f"the pattern is longer than {MAX_PATTERN} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise bad_request(title, f"{pattern}: {detail}") from None
