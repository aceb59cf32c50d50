"""The discrete-event core of chiron-gym: instances, queues, KV memory, lifecycle.

Units, once for the whole package: time is ``float`` seconds of simulated time (fields end in
``_s``); lengths are tokens (``_tokens``); KV memory is counted in blocks of ``block_size_tokens``
tokens (``_blocks``); GPU cost in GPU-seconds. Nothing here imports gymnasium, torch,
stable-baselines3 or an HTTP library (``tests/test_layering.py`` checks it), and nothing draws
randomness except from a ``numpy.random.Generator`` handed in by the caller.
"""

from chiron_gym.sim.cluster import Cluster
from chiron_gym.sim.events import EventQueue
from chiron_gym.sim.instance import Instance
from chiron_gym.sim.perf_model import BatchComposition, LinearPerfModel, PerfModel
from chiron_gym.sim.report import ClassReport, InstanceStats, PoolReport, WindowReport
from chiron_gym.sim.request import (
    ALL_POOL_NAMES,
    ALL_POOLS,
    CLASS_NAMES,
    DISAGGREGATED,
    POOL_NAMES,
    POOLS,
    SLO,
    UNBOUNDED_INSTANCES,
    Outcome,
    Pool,
    Request,
    RequestClass,
    Workload,
)
from chiron_gym.sim.specs import (
    ClusterConfig,
    ColdStart,
    InstanceSpec,
    InstanceState,
    KVLink,
    PoolSpec,
)

__all__ = [
    "ALL_POOLS",
    "ALL_POOL_NAMES",
    "CLASS_NAMES",
    "DISAGGREGATED",
    "POOLS",
    "POOL_NAMES",
    "SLO",
    "UNBOUNDED_INSTANCES",
    "BatchComposition",
    "ClassReport",
    "Cluster",
    "ClusterConfig",
    "ColdStart",
    "EventQueue",
    "Instance",
    "InstanceSpec",
    "InstanceState",
    "InstanceStats",
    "KVLink",
    "LinearPerfModel",
    "Outcome",
    "PerfModel",
    "Pool",
    "PoolReport",
    "PoolSpec",
    "Request",
    "RequestClass",
    "WindowReport",
    "Workload",
]
