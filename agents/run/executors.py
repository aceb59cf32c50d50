"""Where independent tasks run: in this process, on a local process pool, or as Ray tasks.

An evaluation grid (agent x scenario x seed) and a set of training seeds are lists of independent
calls of one module-level function. ``run_tasks`` runs them and yields an ``Outcome`` per call as
it finishes, in whatever order; callers put results back in call order, so the output does not
depend on the executor. A call that raises gives an ``Outcome`` with the error text and the
others go on.

- ``local``: one after another, in this process.
- ``process``: a ``concurrent.futures`` pool of spawned processes, one per free core.
- ``ray``: Ray tasks of one CPU each, on an existing cluster (``ray_address``, or ``RAY_ADDRESS``
  in the environment) or on a local Ray started for the run. An already initialised Ray (a test,
  a notebook) is used as it is and left running.
- ``auto``: ``process`` when more than one core is free and there is more than one call, else
  ``local``.

We do not schedule anything ourselves: the pool and Ray do.
"""

from __future__ import annotations

import os
import signal
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from chiron_gym.config import InputError

EXECUTORS = ("auto", "local", "process", "ray")
RAY_INSTALL = (
    'Ray is not installed: pip install "chiron-gym[ray]" (or "ray[tune,rllib]==2.60.0"), '
    "or run without --executor ray"
)


class ExecutorError(InputError, RuntimeError):
    """An executor that cannot run here (unknown name, Ray missing or unreachable)."""


@dataclass(frozen=True)
class Outcome:
    """One finished call: its index in the call list, and its value or its error."""

    index: int
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def free_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def resolve(executor: str, n_calls: int) -> str:
    """The executor ``auto`` stands for here; an unknown name is an ``ExecutorError``."""
    if executor not in EXECUTORS:
        raise ExecutorError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if executor == "auto":
        return "process" if free_cores() > 1 and n_calls > 1 else "local"
    return executor


def _error_text(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()


def import_ray() -> Any:
    """The ``ray`` module, or an ``ExecutorError`` that says how to install it."""
    try:
        import ray
    except ImportError as e:
        raise ExecutorError(RAY_INSTALL) from e
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, initialised: connected to ``address`` (or ``RAY_ADDRESS``), else a local Ray.

    A Ray that is already initialised is used and left running; one started here is shut down.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    where = address or os.environ.get("RAY_ADDRESS")
    try:
        if where:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new Ray for this run, even when `ray start` left one on this machine
            ray.init(
                address="local",
                num_cpus=free_cores(),
                include_dashboard=False,
                log_to_driver=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        hint = (
            "; a cluster started with token authentication (on by default for `ray start` in "
            "Ray 2.60) also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or "
            "~/.ray/auth_token) here"
            if where and os.environ.get("RAY_AUTH_MODE") is None
            else ""
        )
        raise ExecutorError(f"could not start or reach Ray ({where or 'local'}): {e}{hint}") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def _local(fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> Iterator[Outcome]:
    for i, args in enumerate(calls):
        try:
            value = fn(*args)
        except Exception as e:  # a failed call is reported, the others go on
            yield Outcome(i, error=_error_text(e))
        else:
            yield Outcome(i, value)


def _worker_init() -> None:
    # One core per worker: torch and BLAS must not each start a thread per core.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    # Ctrl-C is the driver's to handle (it keeps what finished and stops the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], workers: int | None
) -> Iterator[Outcome]:
    n = max(1, min(workers or free_cores(), len(calls)))
    # spawn, not fork: the parent may hold torch's and tqdm's threads.
    pool = ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=_worker_init)
    try:
        pending = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                exc = fut.exception()
                yield Outcome(i, error=_error_text(exc)) if exc else Outcome(i, fut.result())
    except BaseException:  # an interrupt, or the caller stopped early: stop the workers now
        workers_ = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in workers_:
            proc.terminate()
        raise
    pool.shutdown(wait=True)


def _ray(
    fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], address: str | None
) -> Iterator[Outcome]:
    with ray_session(address) as ray:
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = {remote.remote(*args): i for i, args in enumerate(calls)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else e
                    yield Outcome(i, error=_error_text(cause))
                except ray.exceptions.RayError as e:  # a worker or node died
                    yield Outcome(i, error=_error_text(e))
                else:
                    yield Outcome(i, value)


def run_tasks(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    *,
    executor: str = "auto",
    ray_address: str | None = None,
    workers: int | None = None,
) -> Iterator[Outcome]:
    """Run ``fn(*args)`` for every ``args`` in ``calls``; yield outcomes as they finish.

    ``fn`` must be a module-level function and its arguments and result picklable (they cross
    process and machine boundaries under ``process`` and ``ray``).
    """
    kind = resolve(executor, len(calls))
    if ray_address and kind != "ray":
        raise ExecutorError(f"--ray-address is for --executor ray, not {kind}")
    if kind == "local":
        return _local(fn, calls)
    if kind == "process":
        return _process(fn, calls, workers)
    import_ray()  # the install hint before anything starts
    return _ray(fn, calls, ray_address)


__all__ = [
    "EXECUTORS",
    "ExecutorError",
    "Outcome",
    "free_cores",
    "import_ray",
    "ray_session",
    "resolve",
    "run_tasks",
]
