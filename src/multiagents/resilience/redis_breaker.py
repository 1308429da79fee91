"""Circuit breaker state in Redis, shared by every process that names the same breaker.

Each breaker is one JSON document under ``multiagents:breaker:<name>`` (the prefix is configurable)
holding a :class:`~multiagents.resilience.transitions.BreakerState` and its ``version``. ``apply`` computes
the transition in Python and writes it with a small Lua compare-and-set: the new document is stored only
if the version is still the one the transition started from; otherwise the script answers with the
current document, the transition is computed again on it, and the write retried after a short random
pause that doubles with each lost round (full jitter, from ``backoff`` up to ``max_backoff`` seconds of
real time: contention on a server is real, not a clock's), up to ``max_tries`` rounds, then
:class:`~multiagents.errors.ConcurrencyConflict`. So two processes can never both take the last half-open
probe slot, and no failure is lost to a concurrent writer. A transition that changes nothing on the
remembered state (see below) is computed again on a fresh read before ``apply`` believes it: the
remembered state may be old, and the outcome may count on the current one.

Round trips. A breaker adds at most one round trip to a call on the hot path (closed, call succeeds):

- ``allow()`` reads the state with one ``GET`` (so failures recorded by other processes are seen) and,
  when the breaker is closed, decides locally without writing.
- ``record_success`` on a closed breaker in consecutive mode with a failure count of 0 writes nothing.
- Only state changes write: a failure, opening, a probe, a probe's outcome, and every outcome in
  failure-rate mode (its window is shared, so a success is a change there). A write is one ``EVALSHA``:
  the store remembers the last state it read or wrote for each name and compares-and-sets against that,
  reading again only when the script reports a conflict, or when the remembered state calls for no write.
- An outcome reported to a breaker object that did not admit the call itself (a worker process whose
  orchestrator runs elsewhere calls only ``record_success``/``record_failure``) reads the state first,
  since what that object last saw may be old: one ``GET`` per success there, plus the write when the
  outcome changes something (closing a half-open breaker, resetting a failure count). Where one object
  both admits and records (``call()``, or the embedded engine), the admission's read is reused.

A consequence of not writing successes: a success resets the failure count only when this process knew
of failures, so with several processes "consecutive" failures are counted across all of them, with a
success resetting the count that its process last saw.

Time. States hold wall-clock timestamps (``opened_at``, probe times, window buckets) taken from each
process's injected clock, so the processes sharing a breaker need roughly synchronised clocks (NTP):
a process whose clock runs ahead half-opens the breaker early by that much.

Keys are never deleted by the store: deleting one would restart its version at 0 and let a writer with
an old cached version win a compare-and-set it should lose.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, TypeVar

from multiagents._json import dumps, loads
from multiagents.errors import ConcurrencyConflict, DefinitionError, StoreError
from multiagents.resilience.transitions import INITIAL, BreakerState

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("RedisBreakerStore needs the redis client: pip install 'multiagents[redis]'") from exc

__all__ = ["KEY_PREFIX", "RedisBreakerStore"]

T = TypeVar("T")

KEY_PREFIX = "multiagents:breaker:"

# KEYS[1] the breaker's key; ARGV[1] the version the new state was computed from; ARGV[2] the new state.
# Returns {1} when written, else {0, current document or ''}.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
local version = 0
if current then
  version = tonumber(cjson.decode(current)['version']) or 0
end
if version ~= tonumber(ARGV[1]) then
  return {0, current or ''}
end
redis.call('SET', KEYS[1], ARGV[2])
return {1}
"""


class RedisBreakerStore:
    """Breaker states in Redis. Give a ``redis.asyncio.Redis`` client (not closed here) or a URL.

    ``max_tries``, ``backoff`` and ``max_backoff`` bound the compare-and-set rounds lost to concurrent
    writers and the pauses between them (see the module docstring); ``rng`` draws the pauses.
    """

    def __init__(
        self,
        redis: aioredis.Redis | str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = KEY_PREFIX,
        max_tries: int = 64,
        backoff: float = 0.001,
        max_backoff: float = 0.05,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise DefinitionError(f"RedisBreakerStore max_tries must be an int >= 1, got {max_tries!r}")
        if not 0 <= backoff <= max_backoff:
            raise DefinitionError(
                f"RedisBreakerStore needs 0 <= backoff <= max_backoff, got {backoff!r} and {max_backoff!r}"
            )
        self._owned = isinstance(redis, str)
        self._client: Any = aioredis.from_url(redis) if isinstance(redis, str) else redis
        self._prefix = prefix
        self._max_tries = max_tries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._rng = rng if rng is not None else random.Random()
        self._cas = self._client.register_script(_COMPARE_AND_SET)
        self._seen: dict[str, BreakerState] = {}

    def key(self, name: str) -> str:
        return self._prefix + name

    async def load(self, name: str) -> BreakerState:
        try:
            raw = await self._client.get(self.key(name))
        except RedisError as exc:
            raise StoreError(f"could not read circuit breaker {name!r} from Redis: {exc}") from exc
        state = self._seen[name] = _decode(name, raw)
        return state

    async def apply(self, name: str, fn: Callable[[BreakerState], tuple[BreakerState, T]]) -> T:
        state = self._seen.get(name)
        fresh = state is None  # read from the server during this apply, not remembered from before
        if state is None:
            state = await self.load(name)
        for lost in range(self._max_tries):
            new, result = fn(state)
            if new is state or new == state:
                if fresh:
                    return result
                # Nothing to write on a remembered state proves nothing: it may have moved on.
                state, fresh = await self.load(name), True
                new, result = fn(state)
                if new is state or new == state:
                    return result
            new = BreakerState(
                new.state,
                new.failure_count,
                new.opened_at,
                new.half_open_in_flight,
                new.probe_at,
                new.window,
                state.version + 1,
            )
            try:
                reply = await self._cas(keys=[self.key(name)], args=[state.version, dumps(new.to_dict())])
            except RedisError as exc:
                raise StoreError(f"could not write circuit breaker {name!r} to Redis: {exc}") from exc
            if int(reply[0]) == 1:
                self._seen[name] = new
                return result
            state = self._seen[name] = _decode(name, reply[1])
            fresh = True
            await asyncio.sleep(self._rng.uniform(0, min(self._max_backoff, self._backoff * 2**lost)))
        raise ConcurrencyConflict(
            f"circuit breaker {name!r}: {self._max_tries} concurrent writers in a row won the compare-and-set"
        )

    async def close(self) -> None:
        """Close the client if this store created it from a URL."""
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> RedisBreakerStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _decode(name: str, raw: bytes | str | None) -> BreakerState:
    if not raw:
        return INITIAL
    try:
        data = loads(raw)
        return BreakerState.from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"circuit breaker {name!r}: the stored state is not valid: {raw!r}") from exc
