"""Exponential backoff with jitter, shared by every source's reconnect and retry loop.

Jitter spreads the reconnect attempts of many replicas (or many polled devices) so that they do not
hit a recovering broker or a rebooting inverter in the same instant.
"""
from __future__ import annotations

import random
from typing import Callable


class Backoff:
    """``next()`` returns the delay before the next attempt: ``initial * factor**n``, capped at
    ``maximum``, multiplied by a random factor in ``[1 - jitter, 1 + jitter]``. ``reset()`` after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, *, factor: float = 2.0, jitter: float = 0.2,
                 rng: Callable[[], float] = random.random):
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1 and 0 <= jitter < 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self.attempt = 0

    def peek(self) -> float:
        """The un-jittered delay the next call to :meth:`next` is based on."""
        return min(self.maximum, self.initial * self.factor ** self.attempt)

    def next(self) -> float:
        base = self.peek()
        self.attempt += 1
        return base * (1.0 + self.jitter * (2.0 * self._rng() - 1.0))

    def reset(self) -> None:
        self.attempt = 0


def jittered(interval: float, jitter: float, rng: Callable[[], float] = random.random) -> float:
    """``interval`` spread by ±``jitter`` (a fraction): polling cadence that does not synchronise."""
    return max(0.0, interval * (1.0 + jitter * (2.0 * rng() - 1.0)))


__all__ = ["Backoff", "jittered"]
