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
from chiron_gym.sim.report import ClassReport, InstanceStats, WindowReport
from chiron_gym.sim.request import (
    CLASS_NAMES,
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
from chiron_gym.sim.specs import ClusterConfig, ColdStart, InstanceSpec, InstanceState, PoolSpec

__all__ = [
    "CLASS_NAMES",
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
    "LinearPerfModel",
    "Outcome",
    "PerfModel",
    "Pool",
    "PoolSpec",
    "Request",
    "RequestClass",
    "WindowReport",
    "Workload",
]
