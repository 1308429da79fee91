"""The worker SDK: ``@worker`` and ``step_info()``, and running one attempt of a worker."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast, overload

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from multiagents.clock import Clock
from multiagents.errors import DefinitionError, StepTimeoutError, ValidationError, classify
from multiagents.messages import DEFAULT_MAX_PAYLOAD, Command, Kind, Result, check_json, loads
from multiagents.policy import Duration, RetryPolicy, seconds
from multiagents.resilience.retry import is_async_callable
from multiagents.tracking import redact

__all__ = ["StepInfo", "Worker", "step_info", "worker"]

log = logging.getLogger("multiagents.worker")

WorkerFn = Callable[..., Any]


class BreakerHook(Protocol):
    """What the worker side needs of a circuit breaker: to be told how each guarded call went."""

    async def record_success(self, duration: float = 0.0, *, probe: bool | None = None) -> None: ...

    async def record_failure(
        self, exc: BaseException | None, duration: float = 0.0, *, probe: bool | None = None
    ) -> None: ...

    async def release(self, *, probe: bool | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the running attempt is: read it with :func:`step_info` inside a worker.

    ``idempotency_key`` is the same for every attempt and redelivery of one step (and, separately, of
    its compensation): use it to make side effects happen once under at-least-once delivery.
    For a compensation, ``compensating`` names the step being undone and ``cause`` is the error that
    made the saga roll back (``None`` when it was cancelled).
    """

    transaction_id: str
    workflow_id: str
    step: str
    worker: str
    attempt: int
    kind: str
    deadline: float | None
    idempotency_key: str
    compensating: str | None = None
    cause: dict[str, Any] | None = None


_current: contextvars.ContextVar[StepInfo] = contextvars.ContextVar("multiagents_step_info")


def step_info() -> StepInfo:
    """The metadata of the attempt this code runs in. Raises LookupError outside a worker attempt."""
    try:
        return _current.get()
    except LookupError:
        raise LookupError("step_info() is only available inside a worker run by multiagents") from None


async def _tell(report: Awaitable[None]) -> None:
    """Tell the breaker how a call went; failing to, it must never change the call's own outcome."""
    try:
        await report
    except Exception:
        log.exception("could not record a call's outcome on its circuit breaker")


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _format_pydantic(exc: PydanticValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]


class Worker:
    """A decorated worker function; calling it calls the function exactly as written."""

    def __init__(
        self,
        fn: WorkerFn,
        name: str,
        *,
        timeout: Duration | None = None,
        retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
        circuit_breaker: str | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"@worker({name!r}) must decorate a function, got {fn!r}")
        if not isinstance(name, str) or not name.strip():
            raise DefinitionError(f"a worker needs a non-empty name, got {name!r}")
        for what, model in (("input_model", input_model), ("output_model", output_model)):
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise DefinitionError(f"worker {name!r}: {what} must be a pydantic model class")
        self.fn = fn
        self.name = name
        self.timeout = seconds(timeout, f"worker {name!r} timeout", allow_none=True)
        if self.timeout == 0:
            raise DefinitionError(f"worker {name!r}: timeout must be > 0")
        self.retry_policy = RetryPolicy.coerce(retry_policy, f"worker {name!r} retry_policy")
        self.input_model = input_model
        self.output_model = output_model
        self.circuit_breaker = circuit_breaker
        self.is_async = is_async_callable(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<worker {self.name!r} {getattr(self.fn, '__qualname__', self.fn)!r}>"

    def _prepare_input(self, context: dict[str, Any]) -> Any:
        if self.input_model is None:
            return context
        try:
            return self.input_model.model_validate(context)
        except PydanticValidationError as exc:
            raise ValidationError(
                f"input to worker {self.name!r} does not match {self.input_model.__name__}",
                _format_pydantic(exc),
            ) from None

    def _check_output(self, output: Any) -> dict[str, Any]:
        if isinstance(output, BaseModel):
            output = output.model_dump(mode="json")
        if output is None:
            output = {}
        if not isinstance(output, dict):
            raise ValidationError(
                f"worker {self.name!r} returned {_article(type(output).__name__)}; workers return a dict"
            )
        if self.output_model is not None:
            try:
                self.output_model.model_validate(output)
            except PydanticValidationError as exc:
                raise ValidationError(
                    f"output of worker {self.name!r} does not match {self.output_model.__name__}",
                    _format_pydantic(exc),
                ) from None
        return output

    async def _invoke(self, arg: Any, clock: Clock) -> Any:
        if self.is_async:
            try:
                return await self.fn(arg)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # a real cancellation (a timeout, a shutdown): let it through
                # The worker's own code raised it: that is a failure of this attempt, not a cancellation.
                raise RuntimeError(f"worker {self.name!r} raised CancelledError itself") from exc
            except SystemExit as exc:
                raise RuntimeError(f"worker {self.name!r} called sys.exit({exc.code!r})") from exc
        # A sync worker runs in a thread so that it cannot block the event loop; the context
        # (step_info) is copied into the thread.
        hold = getattr(clock, "hold", None)
        ctx = contextvars.copy_context()
        with hold() if hold else contextlib.nullcontext():
            return await asyncio.to_thread(ctx.run, self._call_sync, arg)

    def _call_sync(self, arg: Any) -> Any:
        """Run a sync worker in its thread; an exit it asks for ends its attempt, never the process."""
        try:
            return self.fn(arg)
        except (SystemExit, KeyboardInterrupt) as exc:
            what = f"sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else "KeyboardInterrupt"
            raise RuntimeError(f"worker {self.name!r} raised {what}") from exc

    async def _guarded(
        self, arg: Any, clock: Clock, timeout: float | None, breaker: BreakerHook | None, probe: bool | None
    ) -> Any:
        """Invoke under the timeout; tell the step's circuit breaker how the call went."""
        if breaker is None:
            return await clock.wait_for(self._invoke(arg, clock), timeout)
        began = clock.now()
        try:
            raw = await clock.wait_for(self._invoke(arg, clock), timeout)
        except asyncio.CancelledError:
            # Neither a success nor a failure of the service: give back a half-open probe slot.
            await asyncio.shield(_tell(breaker.release(probe=probe)))
            raise
        except Exception as exc:
            await _tell(breaker.record_failure(exc, clock.now() - began, probe=probe))
            raise
        await _tell(breaker.record_success(clock.now() - began, probe=probe))
        return raw

    async def run(
        self,
        command: Command,
        clock: Clock,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        breaker: BreakerHook | None = None,
    ) -> Result:
        """Run one attempt and report it as a Result; never raises for the worker's own failures."""
        started = clock.now()
        info = StepInfo(
            transaction_id=command.transaction_id,
            workflow_id=command.workflow_id,
            step=command.step,
            worker=self.name,
            attempt=command.attempt,
            kind=command.kind.value,
            deadline=command.deadline,
            idempotency_key=command.idempotency_key,
            compensating=command.step if command.kind is Kind.COMPENSATE else None,
            cause=command.cause,
        )
        token = _current.set(info)
        timeout = command.timeout
        if command.deadline is not None:
            remaining = command.deadline - started
            timeout = remaining if timeout is None else min(timeout, remaining)
        try:
            try:
                arg = self._prepare_input(command.context)
            except Exception:
                if breaker is not None:  # the call never reached the service: free a probe slot it held
                    await _tell(breaker.release(probe=command.probe))
                raise
            try:
                raw = await self._guarded(arg, clock, timeout, breaker, command.probe)
            except TimeoutError as exc:
                if timeout is not None and clock.now() - started >= timeout * 0.999:
                    raise StepTimeoutError(
                        f"step {command.step!r} ({self.name}) exceeded its timeout of {timeout:g}s"
                    ) from exc
                raise
            output = self._check_output(raw)
            text = check_json(output, f"output of step {command.step!r} ({self.name})", max_payload)
            result_output: dict[str, Any] | None = loads(text)
            error = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every worker failure becomes data, classified
            result_output, error = None, classify(exc)
        finally:
            _current.reset(token)
        return Result(
            transaction_id=command.transaction_id,
            step=command.step,
            kind=command.kind,
            attempt_id=command.attempt_id,
            output=result_output,
            error=error,
            started_at=started,
            finished_at=clock.now(),
            context=None if error is None else redact(command.context),
        )


@overload
def worker(name: WorkerFn) -> Worker: ...


@overload
def worker(
    name: str | None = None,
    *,
    timeout: Duration | None = None,
    retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
    retry: RetryPolicy | Mapping[str, Any] | None = None,
    input_model: type[BaseModel] | None = None,
    output_model: type[BaseModel] | None = None,
    circuit_breaker: str | None = None,
) -> Callable[[WorkerFn], Worker]: ...


def worker(
    name: str | WorkerFn | None = None,
    *,
    timeout: Duration | None = None,
    retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
    retry: RetryPolicy | Mapping[str, Any] | None = None,
    input_model: type[BaseModel] | None = None,
    output_model: type[BaseModel] | None = None,
    circuit_breaker: str | None = None,
) -> Worker | Callable[[WorkerFn], Worker]:
    """Declare a function as a worker named ``name`` (default: the function's name).

    The function takes the step's context dict (or an ``input_model`` instance) and returns a dict
    (or an ``output_model`` instance). Sync functions run in a thread. ``timeout`` and
    ``retry_policy`` are defaults that a step's own options override.
    """
    if retry is not None and retry_policy is not None:
        raise DefinitionError("give retry_policy or retry, not both")
    policy = retry_policy if retry_policy is not None else retry

    def decorate(fn: WorkerFn) -> Worker:
        return Worker(
            fn,
            cast(str, name) if name is not None else fn.__name__,
            timeout=timeout,
            retry_policy=policy,
            input_model=input_model,
            output_model=output_model,
            circuit_breaker=circuit_breaker,
        )

    if callable(name) and not isinstance(name, str):
        fn, name = name, None
        return decorate(fn)
    return decorate
