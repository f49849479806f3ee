"""Result types of the entity check."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

Stage = Literal["structure", "schema"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason why an entity is not acceptable.

    ``path`` is a JSON path (``$.relativeHumidity``, ``$.location.coordinates[0]``). Attribute
    paths address the attribute and the position inside its (reduced) value, sub-attributes are
    addressed as ``$.<attribute>.observedAt``.
    """

    path: str
    message: str
    stage: Stage

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class UnknownModel(LookupError):
    """No Smart Data Model (or @context) of that name is shipped with this package."""


class InvalidEntity(ValueError):
    """Raised by :func:`schemas.assert_valid`; ``problems`` holds every reason."""

    def __init__(self, problems: Sequence[Problem], entity_id: object = None) -> None:
        self.problems = list(problems)
        self.entity_id = entity_id
        label = entity_id if isinstance(entity_id, str) else "entity"
        lines = [f"{label} is invalid ({len(self.problems)} problem(s)):"]
        lines += [f"  {p.path}: {p.message} [{p.stage}]" for p in self.problems]
        super().__init__("\n".join(lines))


def json_path(parts: Iterable[str | int]) -> str:
    """Format path segments as a JSON path: ``$.a.b[0]["@value"]``."""
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)
