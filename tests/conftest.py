"""Shared fixtures: a fake clock and a Runtime on the in-memory store."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from multiagents import FakeClock, Runtime


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_runtime(clock: FakeClock) -> Callable[..., Runtime]:
    """Build a Runtime on memory:// with the fake clock and a seeded RNG unless told otherwise."""

    def make(**kwargs: Any) -> Runtime:
        kwargs.setdefault("store", "memory://")
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", random.Random(7))
        return Runtime(**kwargs)

    return make
