"""Requests: classes, SLOs, the columnar workload table and the in-flight ``Request`` object.

A workload of a million requests is a handful of numpy columns (``Workload``); a ``Request``
object exists only while the request is held by an instance, and its outcome is written back into
the cluster's ledger (``sim/ledger.py``) when it ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from mypy_extensions import mypyc_attr


class RequestClass(IntEnum):
    """The two traffic classes of Chiron: tight interactive SLOs, relaxed batch deadlines."""

    INTERACTIVE = 0
    BATCH = 1


class Pool(IntEnum):
    """Instance types. Aggregated (each instance prefills and decodes): interactive, mixed (both
    classes) and batch. Disaggregated: prefill and decode, both classes each (a request is
    prefilled on a prefill instance, its KV cache sent to a decode instance, decoded there)."""

    INTERACTIVE = 0
    MIXED = 1
    BATCH = 2
    PREFILL = 3
    DECODE = 4


# The one vocabulary of names (observations, reports, scenario tables, agents all use these):
# index ``i`` of each tuple is the enum member of value ``i``. ``POOLS`` are the aggregated
# pools, those the ``chiron_gym/Autoscale-v0`` environment observes and act on.
CLASS_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in RequestClass)
ALL_POOLS: tuple[Pool, ...] = tuple(Pool)
ALL_POOL_NAMES: tuple[str, ...] = tuple(p.name.lower() for p in Pool)
POOLS: tuple[Pool, ...] = (Pool.INTERACTIVE, Pool.MIXED, Pool.BATCH)
POOL_NAMES: tuple[str, ...] = ALL_POOL_NAMES[: len(POOLS)]
# The disaggregated pools: a cluster has both or neither.
DISAGGREGATED: tuple[Pool, ...] = (Pool.PREFILL, Pool.DECODE)
# An instance bound that is not set: large enough never to bind, small enough to stay an int.
UNBOUNDED_INSTANCES = 1 << 30


class Outcome(IntEnum):
    """The one state every arrived request is in at the end of a window or episode."""

    PENDING = 0  # queued or in flight; its deadline says whether it can still make it
    MET = 1  # finished within its SLO
    LATE = 2  # finished, SLO missed
    REJECTED = 3  # refused, with a reason (see ``RejectReason``)


class RejectReason(IntEnum):
    """Why a request was refused."""

    NONE = 0
    TOO_LONG = (
        1  # prompt + output do not fit in the KV cache of any instance type that may serve it
    )
    QUEUE_FULL = 2  # the class's global queue was at its configured limit
    NO_POOL = 3  # the cluster has no pool that may serve the class
    INSTANCE_FAILED = 4  # its instance failed and the scenario refuses such requests


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class SLO:
    """Latency objectives of one class.

    ``ttft_s``: time to first token; ``itl_s``: mean inter-token latency (time per output token
    after the first). ``None`` means no objective on that figure. Batch requests carry their
    completion deadline per request (``Workload.deadline_s``).
    """

    ttft_s: float | None = None
    itl_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "itl_s"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"SLO.{name} must be a positive number of seconds, got {value!r}")


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True, eq=False)
class Workload:
    """Requests of one episode as columns, sorted by arrival time.

    ``deadline_s`` is the absolute completion deadline of batch requests and NaN for interactive
    ones (their objective is the class SLO).

    A closed-loop workload (``clients > 0``, as benchmark tools drive a server with
    ``--max-concurrency``) holds its requests in the order they will be sent: the first
    ``clients`` arrive at their ``arrival_s``, every other one (``arrival_s`` = inf here) when an
    earlier request finishes or is refused (the cluster sets its time). Its first ``warmup``
    requests are served but left out of the latency statistics.

    ``prefix_blocks`` (optional) gives each request's prompt as a chain of content hashes, one
    per ``prefix_block_tokens`` tokens (the last may be partial): equal hashes are equal prefixes,
    which an instance with prefix caching reuses (``sim/prefix_cache.py``).
    """

    arrival_s: npt.NDArray[np.float64]
    klass: npt.NDArray[np.int8]
    prompt_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    deadline_s: npt.NDArray[np.float64]
    clients: int = 0
    warmup: int = 0
    prefix_blocks: tuple[tuple[int, ...], ...] | None = None
    prefix_block_tokens: int = 0

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if self.prefix_blocks is not None:
            if len(self.prefix_blocks) != n:
                raise ValueError(
                    f"Workload.prefix_blocks has {len(self.prefix_blocks)} rows, expected {n}"
                )
            if self.prefix_block_tokens < 1:
                raise ValueError("Workload.prefix_block_tokens must be >= 1 with prefix_blocks")
        for name in ("klass", "prompt_tokens", "output_tokens", "deadline_s"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"Workload.{name} has {len(getattr(self, name))} rows, expected {n}"
                )
        if n and np.any(self.arrival_s[1:] < self.arrival_s[:-1]):
            raise ValueError("Workload.arrival_s must be sorted in time")
        if n and (self.prompt_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("Workload prompt_tokens and output_tokens must be >= 1")
        batch = self.klass == RequestClass.BATCH
        if np.any(np.isnan(self.deadline_s[batch])):
            raise ValueError("Workload.deadline_s must be set for every batch request")
        if self.clients < 0 or self.warmup < 0:
            raise ValueError("Workload.clients and Workload.warmup must be >= 0")
        if self.clients and np.any(batch):
            raise ValueError("a closed-loop workload carries interactive requests only")
        if self.warmup and not self.clients:
            raise ValueError("Workload.warmup applies to a closed-loop workload (clients > 0)")
        if self.clients and not np.all(np.isinf(self.arrival_s[self.clients :])):
            raise ValueError(
                "a closed-loop workload's requests after the first `clients` have arrival inf "
                "(the cluster sends them when earlier ones end)"
            )

    def __len__(self) -> int:
        return len(self.arrival_s)

    @classmethod
    def from_columns(
        cls,
        *,
        arrival_s: npt.ArrayLike,
        klass: npt.ArrayLike,
        prompt_tokens: npt.ArrayLike,
        output_tokens: npt.ArrayLike,
        deadline_s: npt.ArrayLike | None = None,
        prefix_blocks: tuple[tuple[int, ...], ...] | None = None,
        prefix_block_tokens: int = 0,
    ) -> Workload:
        """Build a workload from array-likes, sorting by arrival time (stable)."""
        arrival = np.asarray(arrival_s, dtype=np.float64)
        order = np.argsort(arrival, kind="stable")
        n = len(arrival)
        deadline = (
            np.full(n, np.nan) if deadline_s is None else np.asarray(deadline_s, dtype=np.float64)
        )
        return cls(
            arrival_s=arrival[order],
            klass=np.asarray(klass, dtype=np.int8)[order],
            prompt_tokens=np.asarray(prompt_tokens, dtype=np.int64)[order],
            output_tokens=np.asarray(output_tokens, dtype=np.int64)[order],
            deadline_s=deadline[order],
            prefix_blocks=None
            if prefix_blocks is None
            else tuple(prefix_blocks[i] for i in order.tolist()),
            prefix_block_tokens=prefix_block_tokens if prefix_blocks is not None else 0,
        )

    def rows(self, start: int, stop: int) -> Workload:
        """Requests ``start`` to ``stop - 1`` (of an open loop: a closed loop's arrival times are
        set as it runs)."""
        if self.clients:
            raise ValueError("a closed-loop workload's requests have no arrival times to cut at")
        return Workload(
            arrival_s=self.arrival_s[start:stop],
            klass=self.klass[start:stop],
            prompt_tokens=self.prompt_tokens[start:stop],
            output_tokens=self.output_tokens[start:stop],
            deadline_s=self.deadline_s[start:stop],
            prefix_blocks=None if self.prefix_blocks is None else self.prefix_blocks[start:stop],
            prefix_block_tokens=self.prefix_block_tokens,
        )

    @classmethod
    def concat(cls, parts: list[Workload]) -> Workload:
        """Merge workloads into one sorted by arrival (ties keep the order of ``parts``)."""
        if not parts:
            return cls.from_columns(arrival_s=[], klass=[], prompt_tokens=[], output_tokens=[])
        if any(p.clients for p in parts):
            if len(parts) > 1:
                raise ValueError("a closed-loop workload cannot be merged with another")
            return parts[0]
        units = {p.prefix_block_tokens for p in parts if p.prefix_blocks is not None}
        if len(units) > 1:
            raise ValueError(
                f"sources hash prompt blocks of different sizes ({sorted(units)} tokens)"
            )
        blocks: tuple[tuple[int, ...], ...] | None = None
        if units:
            blocks = tuple(
                row
                for p in parts
                for row in (p.prefix_blocks if p.prefix_blocks is not None else ((),) * len(p))
            )
        return cls.from_columns(
            arrival_s=np.concatenate([p.arrival_s for p in parts]),
            klass=np.concatenate([p.klass for p in parts]),
            prompt_tokens=np.concatenate([p.prompt_tokens for p in parts]),
            output_tokens=np.concatenate([p.output_tokens for p in parts]),
            deadline_s=np.concatenate([p.deadline_s for p in parts]),
            prefix_blocks=blocks,
            prefix_block_tokens=units.pop() if units else 0,
        )


NO_UNITS: list[int] = []


@mypyc_attr(serializable=True, allow_interpreted_subclasses=True)  # pickled by attributes
class Request:
    """A request held by an instance: vLLM-V1 token accounting and lifecycle timestamps.

    As in vLLM V1 there is no separate prefill phase: a request has ``num_tokens = prompt +
    generated`` known tokens, of which ``computed`` have their KV in the cache. Each iteration
    schedules ``num_tokens - computed`` tokens (capped by the chunked-prefill budget); when the
    cache catches up with ``num_tokens`` at the end of an iteration, one token is sampled. A
    request with exactly one token to compute is decoding. Preemption by recompute sets
    ``computed`` back to 0.
    """

    __slots__ = (
        "admitted_s",
        "arrival_s",
        "blocks",
        "cached",
        "computed",
        "deadline_s",
        "finish_s",
        "first_token_s",
        "generated",
        "hashed",
        "hashes",
        "idx",
        "klass",
        "mark",
        "order",
        "output_tokens",
        "preemptions",
        "prompt_tokens",
        "routed_s",
        "scheduled",
        "swaps",
    )

    def __init__(
        self,
        idx: int,
        klass: int,
        arrival_s: float,
        prompt_tokens: int,
        output_tokens: int,
        deadline_s: float,
        hashes: tuple[int, ...] = (),
    ) -> None:
        self.idx = idx
        self.klass = klass
        self.arrival_s = arrival_s
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.deadline_s = deadline_s
        self.generated = 0
        self.computed = 0
        self.blocks = 0
        self.scheduled = 0
        self.preemptions = 0
        self.swaps = 0
        self.mark = (
            -1
        )  # while steady on an instance: the tick its counts are as of (``SteadyDecoders.tick``)
        self.order = 0  # admission number on its instance: the running order
        self.routed_s = math.nan  # when an instance took it (its TTFT there counts from this)
        self.admitted_s = math.nan
        self.first_token_s = math.nan
        self.finish_s = math.nan
        # prefix caching (``sim/prefix_cache.py``): the prompt's block hashes, the cached units
        # this request references, and how many of its units registration has looked at
        self.hashes = hashes
        self.cached: list[int] = NO_UNITS  # never mutated: replaced by a list of its own
        self.hashed = 0

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickled as its fields in a tuple (``_request_of``): a snapshot holds hundreds of
        requests, and a tuple costs half what the attribute dict of ``serializable`` does."""
        return (
            _request_of,
            (
                (
                    self.idx,
                    self.klass,
                    self.arrival_s,
                    self.prompt_tokens,
                    self.output_tokens,
                    self.deadline_s,
                    self.hashes,
                ),
                self.generated,
                self.computed,
                self.blocks,
                self.scheduled,
                self.preemptions,
                self.swaps,
                self.mark,
                self.order,
                self.routed_s,
                self.admitted_s,
                self.first_token_s,
                self.finish_s,
                self.cached,
                self.hashed,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"Request(idx={self.idx}, class={RequestClass(self.klass).name}, "
            f"prompt={self.prompt_tokens}, output={self.output_tokens}, "
            f"generated={self.generated}, computed={self.computed})"
        )

    @property
    def num_tokens(self) -> int:
        """Known tokens: the prompt plus what has been generated."""
        return self.prompt_tokens + self.generated

    @property
    def ttft_s(self) -> float:
        """Time to first token (NaN before it)."""
        return self.first_token_s - self.arrival_s

    @property
    def mean_itl_s(self) -> float:
        """Mean inter-token latency after the first token (0 for a one-token output)."""
        if self.output_tokens <= 1:
            return 0.0
        return (self.finish_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float:
        """End-to-end latency, arrival to last token."""
        return self.finish_s - self.arrival_s


def _request_of(
    made: tuple[int, int, float, int, int, float, tuple[int, ...]],
    generated: int,
    computed: int,
    blocks: int,
    scheduled: int,
    preemptions: int,
    swaps: int,
    mark: int,
    order: int,
    routed_s: float,
    admitted_s: float,
    first_token_s: float,
    finish_s: float,
    cached: list[int],
    hashed: int,
) -> Request:
    """A request from the fields ``Request.__reduce__`` gives (unpickling): those it was made
    with (``made``, ``__init__``'s arguments), then those that change."""
    r = Request(made[0], made[1], made[2], made[3], made[4], made[5], made[6])
    r.generated = generated
    r.computed = computed
    r.blocks = blocks
    r.scheduled = scheduled
    r.preemptions = preemptions
    r.swaps = swaps
    r.mark = mark
    r.order = order
    r.routed_s = routed_s
    r.admitted_s = admitted_s
    r.first_token_s = first_token_s
    r.finish_s = finish_s
    r.cached = cached
    r.hashed = hashed
    return r
