"""Real servers for integration tests: skipped on a laptop without them, required when CI=true."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

REDIS_URL = os.environ.get("MULTIAGENTS_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not reachable at {host}:{port}, and CI=true requires it")
    pytest.skip(f"{name} is not reachable at {host}:{port}")


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses, so tests on a shared server do not see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}"
