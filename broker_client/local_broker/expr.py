"""The one parser of the boolean grammar shared by ``q``, ``scopeQ`` and type expressions.

    expression := and-term (OR and-term)*
    and-term   := factor (";" factor)*            (";" = AND binds tighter than OR)
    factor     := "(" expression ")" | atom

What an atom is, which characters mean OR (``|`` in ``q``; ``|`` or ``,`` in ``scopeQ`` and type
expressions) and whether blanks around factors are skipped (``q``) is the caller's: the atom reader
is handed the parser and reads from ``parser.text`` at ``parser.pos``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: the longest expression taken (what fits in a URL): the cost of a query is its terms times the
#: entities it scans, so a megabyte of ORed terms in a POST body must not get that far
MAX_EXPRESSION = 8192

#: the most entity selectors of one query or subscription (each may carry an idPattern)
MAX_SELECTORS = 100
Pred = Callable[[T], bool]


class BoolParser(Generic[T]):
    """Recursive-descent parser of ``;`` (AND), OR and parentheses around caller-defined atoms."""

    def __init__(self, text: str, *, or_chars: str, error: Callable[[str], Exception],
                 skip_spaces: bool = False, missing_paren: str = "missing ')'",
                 max_depth: int = 100) -> None:
        if len(text) > MAX_EXPRESSION:
            raise error(f"longer than {MAX_EXPRESSION} characters")
        self.text = text
        self.pos = 0
        self.or_chars = or_chars
        self.error = error
        self.spaces = skip_spaces
        self.missing_paren = missing_paren
        self.max_depth = max_depth
        self._depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def parse(self, atom: Callable[[BoolParser[T]], Pred[T]], *,
              trailing: Callable[[str], str] | None = None) -> Pred[T]:
        """The predicate of the whole text; ``trailing(rest)`` words the error for unparsed text."""
        self._atom = atom
        pred = self._or()
        if self.pos != len(self.text):
            rest = self.text[self.pos:]
            raise self.error(trailing(rest) if trailing else self.text)
        return pred

    def _or(self) -> Pred[T]:
        parts = [self._and()]
        while self.peek() and self.peek() in self.or_chars:
            self.pos += 1
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda v: any(p(v) for p in parts)

    def _and(self) -> Pred[T]:
        parts = [self._factor()]
        while self.peek() == ";":
            self.pos += 1
            parts.append(self._factor())
        if len(parts) == 1:
            return parts[0]
        return lambda v: all(p(v) for p in parts)

    def _factor(self) -> Pred[T]:
        if self.spaces:
            self.skip_spaces()
        if self.peek() != "(":
            return self._atom(self)
        self._depth += 1
        if self._depth > self.max_depth:
            raise self.error(f"more than {self.max_depth} nested parentheses")
        self.pos += 1
        inner = self._or()
        if self.spaces:
            self.skip_spaces()
        if self.peek() != ")":
            raise self.error(self.missing_paren)
        self.pos += 1
        if self.spaces:
            self.skip_spaces()
        self._depth -= 1
        return inner


def read_until(parser: BoolParser, stops: str) -> str:
    """The atom text from the parser's position up to (not including) a character of ``stops``."""
    start = parser.pos
    text = parser.text
    while parser.pos < len(text) and text[parser.pos] not in stops:
        parser.pos += 1
    return text[start:parser.pos]
