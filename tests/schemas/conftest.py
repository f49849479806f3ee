"""Fixtures of the schemas tests (entity builders live in sdm_entities.py)."""

from __future__ import annotations

import copy
from typing import Callable

import pytest

from sdm_entities import BUILDERS


@pytest.fixture
def build() -> Callable[[str], dict]:
    """``build("WeatherObserved")`` → a fresh valid normalized entity."""
    return lambda model: copy.deepcopy(BUILDERS[model]())
