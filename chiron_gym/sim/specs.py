"""The specs of a simulated cluster: frozen values that say what it is made of.

An instance type (``InstanceSpec``: the model's performance model, KV cache and limits) and its
start-up delay (``ColdStart``); a pool of such instances (``PoolSpec``: its size, bounds, price and
warm pool); the cluster (``ClusterConfig``: its pools, per-class SLOs and queue settings). Beside
them the lifecycle of an instance (``InstanceState``). ``sim/instance.py`` and ``sim/cluster.py``
simulate what these describe; ``chiron_gym/scenario`` builds them from a scenario file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from mypy_extensions import mypyc_attr

from chiron_gym.sim.perf_model import PerfModel
from chiron_gym.sim.request import SLO, UNBOUNDED_INSTANCES, Pool, RequestClass


class InstanceState(IntEnum):
    """Lifecycle: starting (cold start, billed; or waiting for GPUs after a stockout, not billed)
    -> ready -> draining (billed) -> stopped."""

    STARTING = 0
    READY = 1
    DRAINING = 2
    STOPPED = 3


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class ColdStart:
    """Start-up delay of a new instance, seconds: ``fixed`` or ``lognormal`` (median, sigma).

    ``phases`` (optional) says what the median is made of, in order (e.g. container, weights,
    compile, CUDA graphs, as vLLM's start-up logs time them): the median is then their sum.
    """

    kind: str = "fixed"
    median_s: float = 60.0
    sigma: float = 0.0
    phases: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        for name, seconds in self.phases:
            if not (seconds >= 0 and math.isfinite(seconds)):
                raise ValueError(f"ColdStart phase {name!r} must be >= 0 seconds, got {seconds!r}")
        if self.kind not in ("fixed", "lognormal"):
            raise ValueError(f"ColdStart.kind must be 'fixed' or 'lognormal', got {self.kind!r}")
        if not (self.median_s >= 0 and math.isfinite(self.median_s)):
            raise ValueError(f"ColdStart.median_s must be >= 0, got {self.median_s!r}")
        if self.sigma < 0:
            raise ValueError(f"ColdStart.sigma must be >= 0, got {self.sigma!r}")
        if self.phases and not math.isclose(
            sum(s for _, s in self.phases), self.median_s, rel_tol=1e-12, abs_tol=1e-12
        ):
            raise ValueError("ColdStart.median_s must be the sum of its phases")

    @classmethod
    def of_phases(
        cls, phases: tuple[tuple[str, float], ...], kind: str = "fixed", sigma: float = 0.0
    ) -> ColdStart:
        """A cold start whose median is the sum of ``phases``."""
        return cls(kind=kind, median_s=sum(s for _, s in phases), sigma=sigma, phases=phases)

    def sample(self, rng: np.random.Generator) -> float:
        """One start-up delay; always draws one number so streams stay aligned."""
        z = float(rng.standard_normal())
        if self.kind == "fixed" or self.sigma == 0.0:
            return self.median_s
        return float(self.median_s * math.exp(self.sigma * z))


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """An instance type: one model on ``gpus`` GPUs with its performance model and KV cache."""

    perf_model: PerfModel
    kv_capacity_blocks: int
    block_size_tokens: int = 16
    max_num_batched_tokens: int = 2048
    max_batch_cap: int = 256
    gpus: int = 1
    kv_bytes_per_token: int = 131_072  # Llama-3-8B: 2 (K,V) x 32 layers x 8 heads x 128 x 2 B
    pcie_bytes_per_s: float = 25e9  # PCIe 4.0 x16, effective
    cold_start: ColdStart = field(default_factory=ColdStart)
    # Latency a client sees outside the engine loop (HTTP, tokenization, IPC in and out): added to
    # each request's first-token and finish times; it does not occupy the engine.
    frontend_latency_s: float = 0.0
    # vLLM's automatic prefix caching (``--enable-prefix-caching``): prompt blocks whose hashes
    # the workload gives are reused across requests (``sim/prefix_cache.py``)
    prefix_caching: bool = False

    def __post_init__(self) -> None:
        if not (self.frontend_latency_s >= 0 and math.isfinite(self.frontend_latency_s)):
            raise ValueError("InstanceSpec.frontend_latency_s must be a finite number >= 0")
        positive = ("kv_capacity_blocks", "block_size_tokens", "max_num_batched_tokens")
        for name in (*positive, "max_batch_cap", "gpus", "kv_bytes_per_token"):
            if getattr(self, name) < 1:
                raise ValueError(f"InstanceSpec.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.pcie_bytes_per_s <= 0:
            raise ValueError("InstanceSpec.pcie_bytes_per_s must be > 0")

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens the KV cache holds."""
        return self.kv_capacity_blocks * self.block_size_tokens


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class PoolSpec:
    """One pool: its instance type, how many instances it starts with (ready) and their cap, and
    the bounds an autoscaler may scale it within (the simulator itself never enforces them)."""

    pool: Pool
    instance: InstanceSpec
    initial_instances: int = 1
    initial_batch_cap: int = 64
    min_instances: int = 0
    max_instances: int = UNBOUNDED_INSTANCES
    # price of one of its GPUs per hour, relative to the reward's ``gpu_cost`` (1: the reference)
    gpu_price: float = 1.0
    # A warm pool (vLLM's sleep mode, level 1: weights offloaded to CPU memory, the engine's
    # process, CUDA graphs and compiled kernels kept): up to ``warm_instances`` instances sleep
    # (the pool starts with that many), each billed ``sleep_cost`` of its GPUs' price; a scale-up
    # wakes a sleeping one first, ready ``wake_s`` later instead of after a cold start, and a
    # ready instance that stops goes to sleep while the warm pool has room.
    warm_instances: int = 0
    wake_s: float = 5.0
    sleep_cost: float = 0.1
    # Unexpected instance failures (GPU or HBM faults): a rate per GPU-hour of each GPU of an
    # instance, from the moment the instance is requested (a start can fail too); 0: none.
    failures_per_gpu_hour: float = 0.0
    # Spot capacity (price it with ``gpu_price``): reclaims per instance-hour (0: on-demand),
    # each announced ``reclaim_notice_s`` ahead (AWS: 120 s, GCP: 30 s): the instance drains
    # (takes nothing new) until it is taken, and its requests then go as a failure's do.
    reclaims_per_hour: float = 0.0
    reclaim_notice_s: float = 120.0
    # A stockout: each instance a scale-up asks of the provider (a warm pool's sleeping
    # instances wake first and are not asked) is not granted with this probability; with
    # ``stockout_wait_s > 0`` it waits for GPUs instead (an exponential time of that mean, not
    # billed, counted as starting), then starts its cold start.
    stockout_probability: float = 0.0
    stockout_wait_s: float = 0.0

    def __post_init__(self) -> None:
        if not (self.gpu_price > 0 and math.isfinite(self.gpu_price)):
            raise ValueError(
                f"PoolSpec.gpu_price must be a positive number ({self.pool.name}), "
                f"got {self.gpu_price!r}"
            )
        if self.initial_instances < 0:
            raise ValueError(f"PoolSpec.initial_instances must be >= 0 ({self.pool.name})")
        if self.warm_instances < 0:
            raise ValueError(f"PoolSpec.warm_instances must be >= 0 ({self.pool.name})")
        if not (self.wake_s >= 0 and math.isfinite(self.wake_s)):
            raise ValueError(f"PoolSpec.wake_s must be a finite number >= 0 ({self.pool.name})")
        if not 0 <= self.sleep_cost <= 1:
            raise ValueError(f"PoolSpec.sleep_cost must be in [0, 1] ({self.pool.name})")
        if not 0 <= self.stockout_probability <= 1:
            raise ValueError(f"PoolSpec.stockout_probability must be in [0, 1] ({self.pool.name})")
        for name in (
            "failures_per_gpu_hour",
            "reclaims_per_hour",
            "reclaim_notice_s",
            "stockout_wait_s",
        ):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(
                    f"PoolSpec.{name} must be a finite number >= 0 ({self.pool.name}), got {v!r}"
                )
        if not 0 <= self.min_instances <= self.max_instances:
            raise ValueError(
                f"PoolSpec bounds must satisfy 0 <= min_instances <= max_instances "
                f"({self.pool.name}), got {self.min_instances} and {self.max_instances}"
            )
        if not 1 <= self.initial_batch_cap <= self.instance.max_batch_cap:
            raise ValueError(
                f"PoolSpec.initial_batch_cap must be in [1, {self.instance.max_batch_cap}] "
                f"({self.pool.name}), got {self.initial_batch_cap}"
            )


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class KVLink:
    """The link a disaggregated cluster sends a prompt's KV cache over, prefill to decode.

    A prompt of ``p`` tokens is ``p x kv_bytes_per_token`` bytes (the model's shape and KV dtype:
    ``InstanceSpec.kv_bytes_per_token`` of the prefill instance), split over the ``min(prefill
    GPUs, decode GPUs)`` GPU pairs that each send their share of the attention heads; it takes
    ``latency_s + bytes / (pairs x bytes_per_s)``. The decode instance allocates the blocks first
    and then reads them, once the prefill has ended (vLLM's ``NixlConnector``): no overlap with
    the prefill's layers. Presets: ``LINKS``."""

    bytes_per_s: float = 50e9  # per GPU pair: one 400 Gb/s RDMA NIC per GPU
    latency_s: float = 100e-6

    def __post_init__(self) -> None:
        if not (self.bytes_per_s > 0 and math.isfinite(self.bytes_per_s)):
            raise ValueError(f"KVLink.bytes_per_s must be a positive number: {self.bytes_per_s!r}")
        if not (self.latency_s >= 0 and math.isfinite(self.latency_s)):
            raise ValueError(f"KVLink.latency_s must be a finite number >= 0: {self.latency_s!r}")

    def transfer_s(self, prompt_tokens: int, src: InstanceSpec, dst: InstanceSpec) -> float:
        """Seconds to send the KV cache of a prompt of ``prompt_tokens`` from ``src`` to ``dst``."""
        pairs = min(src.gpus, dst.gpus)
        return self.latency_s + prompt_tokens * src.kv_bytes_per_token / (pairs * self.bytes_per_s)


# Nominal link rates per GPU pair, one direction: RDMA across nodes (ConnectX-7, 400 Gb/s per
# GPU) and NVLink within an H100 node (900 GB/s both directions). Latencies are ours, stated.
LINKS: dict[str, KVLink] = {
    "rdma": KVLink(bytes_per_s=50e9, latency_s=100e-6),
    "nvlink": KVLink(bytes_per_s=450e9, latency_s=10e-6),
}


@mypyc_attr(native_class=False)  # frozen: pickled as a plain class (see native.py)
@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Pools, per-class SLOs and queue settings of a cluster."""

    pools: tuple[PoolSpec, ...]
    interactive_slo: SLO = field(default_factory=lambda: SLO(ttft_s=1.0, itl_s=0.1))
    batch_slo: SLO = field(default_factory=SLO)  # a relaxed ITL, if any; deadlines per request
    group_granularity_s: float = 60.0  # request groups: deadlines rounded to this window
    max_queue: tuple[int | None, int | None] = (None, None)  # per class; None: unbounded
    fast_forward: bool = True
    # A batch request swapped out of a mixed instance (for interactive work) that has not resumed
    # there after this many seconds goes back to the global batch queue, where any instance that
    # serves batch may take it (recomputing its KV); None keeps it on its instance for good.
    swap_requeue_s: float | None = 30.0
    # Prefix-aware routing: among the instances with room, the one holding the longest cached
    # prefix of the request's prompt (ties: the least loaded); off, the least loaded.
    prefix_routing: bool = False
    # Scripted instance failures: at each time, the oldest live instance of the pool fails.
    failures_at: tuple[tuple[float, Pool], ...] = ()
    # What becomes of the requests a failed instance held: back to the global queue, to start
    # again from their prompt ("requeue"), or refused ("reject", reason instance_failed).
    on_failure: str = "requeue"
    # Disaggregated pools (prefill and decode) send KV caches over this link.
    kv_link: KVLink = field(default_factory=KVLink)

    def __post_init__(self) -> None:
        seen = [p.pool for p in self.pools]
        if len(set(seen)) != len(seen):
            raise ValueError("ClusterConfig.pools lists a pool twice")
        if (Pool.PREFILL in seen) != (Pool.DECODE in seen):
            raise ValueError(
                "ClusterConfig.pools: a disaggregated cluster needs both a prefill and a decode "
                f"pool, got {', '.join(p.name.lower() for p in seen)}"
            )
        if not self.group_granularity_s > 0:
            raise ValueError("ClusterConfig.group_granularity_s must be > 0")
        if self.swap_requeue_s is not None and not self.swap_requeue_s >= 0:
            raise ValueError("ClusterConfig.swap_requeue_s must be >= 0 or None")
        if self.on_failure not in ("requeue", "reject"):
            raise ValueError(
                f"ClusterConfig.on_failure must be 'requeue' or 'reject', got {self.on_failure!r}"
            )
        for t, _ in self.failures_at:
            if not (t >= 0 and math.isfinite(t)):
                raise ValueError(f"ClusterConfig.failures_at: time {t!r} is not a time >= 0")

    @property
    def has_failures(self) -> bool:
        """Whether any instance may fail, be reclaimed or be refused (scripted, or a rate)."""
        return bool(self.failures_at) or any(
            p.failures_per_gpu_hour > 0 or p.reclaims_per_hour > 0 or p.stockout_probability > 0
            for p in self.pools
        )

    @property
    def disaggregated(self) -> bool:
        """Whether the cluster has prefill and decode pools."""
        return any(p.pool == Pool.PREFILL for p in self.pools)

    def slo(self, klass: int) -> SLO:
        """The SLO of a class."""
        return self.interactive_slo if klass == RequestClass.INTERACTIVE else self.batch_slo
