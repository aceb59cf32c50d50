"""Speed benchmarks B1-B13 (``make bench``, ``chiron bench [NAME] --json``): figures, not tests.

Run one in this process with ``python -m benchmarks.suite B1``.

Each benchmark runs in a fresh Python process so that its peak resident memory is its own, and
prints one JSON line with its figure, its target (issue 17's), whether it was met and whether
the simulator core ran compiled (``core``; ``chiron_gym/native.py``). See ``docs/performance.md``.

- **B1** the Azure conversation trace (1 h, from ``../shared/data``, or its synthetic twin
  ``azure-conv-like`` when absent) on 2 A100 Llama-3-8B instances, fixed policy: simulated seconds
  per wall second (target >= 10,000).
- **B2** 50 instances, about a million requests in a simulated hour: wall seconds (<= 30) and peak
  memory (<= 2 GB).
- **B3** environment steps per second, one process, on ``default`` (11 req/s on average, random
  actions): target >= 2,000 (issue 44; issue 17 asked 1,000).
- **B4** a batch flood: 700,000 queued batch requests with deadlines, drained by Chiron scaling
  the cluster: wall seconds and peak memory (<= 300 MB).
- **B5** the fast-forward speed-up over the per-iteration reference mode on B1.
- **B6** training throughput: SB3 PPO for 20,000 steps on ``default`` with two environments in
  subprocesses (``SubprocVecEnv``), no evaluations or checkpoints: steps per second (>= 400).
  Needs the ``rl`` extra (torch, SB3).
- **B7** a model nobody profiled, end to end: ``chiron profile build --model qwen3-32b --gpu h100
  --tp 2`` (composed from the kernel tables in ``../shared/data``, no cache) and ``chiron sweep``
  of it at concurrency 8, 32 and 128 (closed loop, 1,024 in / 1,024 out, 8 requests per client):
  wall seconds of each (target: seconds, <= 10 together).
- **B10** training throughput in one process: B6 with 8 environments in Gymnasium's vector API
  (``--vec-env inline``, ``agents/train/vector.py``): PPO steps per second (>= 1,000, issue 44).
- **B13** training throughput on every core: B10's 8 environments split over one worker process
  per core, each stepping its share inline (``--vec-env shards``, ``ShardedVecEnv``): PPO steps
  per second (>= 1,000, issue 44: "B6, or a new row with the vectorised env and 8
  environments").
- **B11** ``snapshot()`` plus ``restore()`` of ``default`` 30 decisions in with its own pools
  (the planners' fork; the state the issue measured): milliseconds, the median of 200 (target
  < 1); and after 30 random decisions, reported (a snapshot costs what the live state holds).
- **B12** the hindsight planner's speed on ``default`` (first 30 min, ``static`` as its only
  base): plan decisions per wall second, and decisions simulated per wall second counting every
  fork (reported, no target).
- **B9** disaggregation's cost in speed: the Azure conversation trace (1 h; the scenario's own
  traffic when the trace is absent) through ``disaggregated/pd-llama70b-h100`` (2 prefill + 2
  decode Llama-3.1-70B TP4 instances, every prompt's KV sent over RDMA) and its aggregated twin
  ``disaggregated/agg-llama70b-h100``, fixed policy: simulated seconds per wall second of each,
  and their ratio (target: disaggregated >= 0.5 x aggregated; issue 41). Composes its profile
  from ``../shared/data``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

AZURE_CONV = "azure-llm-2023/AzureLLMInferenceTrace_conv.csv"
NAMES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "B13")


def data_root() -> Path:
    """``$CHIRON_DATA``, else ``../shared/data`` beside the working directory."""
    return Path(os.environ.get("CHIRON_DATA", Path.cwd().parent / "shared" / "data"))


def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def _machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def _b1_scenario(name: str = "azure-conv-like") -> tuple[Any, str]:
    from chiron_gym.scenario import TraceSpec, load
    from chiron_gym.workload.trace import ClassAssignment

    scenario = load(name)
    path = data_root() / AZURE_CONV
    if not path.exists():
        return scenario, f"{name}'s own traffic (the trace is absent)"
    spec = TraceSpec(
        path=path,
        fmt="azure",
        columns=None,
        start_s=0.0,
        end_s=None,
        time_scale=1.0,
        rate_scale=1.0,
        classes=ClassAssignment(batch_fraction=0.0),
    )
    return scenario.with_trace(spec), f"{AZURE_CONV} (real trace)"


def _static_run(scenario: Any, fast_forward: bool) -> tuple[float, float, int]:
    """``(simulated seconds, wall seconds, requests)`` of a fixed-policy run, workload included."""
    from chiron_gym.backends.simulate import run_static

    t0 = time.perf_counter()
    cluster, _ = run_static(scenario, 0, fast_forward=fast_forward)
    return cluster.now, time.perf_counter() - t0, len(cluster.workload)


def b1(fast_forward: bool = True) -> dict[str, Any]:
    scenario, source = _b1_scenario()
    sim_s, wall, n = _static_run(scenario, fast_forward)
    speed = sim_s / wall
    return {
        "bench": "B1",
        "what": "Azure conversation trace, 1 h, 2 x A100 Llama-3-8B, fixed policy",
        "source": source,
        "mode": "fast-forward" if fast_forward else "per-iteration",
        "requests": n,
        "wall_s": round(wall, 3),
        "sim_s_per_wall_s": round(speed, 1),
        "target": ">= 10000",
        "met": speed >= 10_000,
    }


def _b2_scenario() -> Any:
    from chiron_gym.scenario import load

    s = load("azure-conv-like")
    pools = tuple(replace(p, initial_instances=50, initial_batch_cap=128) for p in s.cluster.pools)
    src = replace(s.sources[0], arrival={"kind": "poisson", "rate_per_s": 278.0})
    return replace(
        s, name="b2-50-instances", cluster=replace(s.cluster, pools=pools), sources=(src,)
    )


def b2() -> dict[str, Any]:
    sim_s, wall, n = _static_run(_b2_scenario(), True)
    rss = _peak_rss_mb()
    return {
        "bench": "B2",
        "what": "50 x A100 Llama-3-8B, Poisson 278 req/s with Azure-conversation lengths, 1 h",
        "requests": n,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(rss, 1),
        "sim_s_per_wall_s": round(sim_s / wall, 1),
        "target": "wall <= 30 s, peak <= 2048 MB",
        "met": wall <= 30 and rss <= 2048,
    }


def b3(steps: int = 3000) -> dict[str, Any]:
    from benchmarks.env import env_steps_per_second

    row = env_steps_per_second("default", max_steps=steps)
    return {
        "bench": "B3",
        "what": "env steps/s, one process, scenario default (11 req/s), random actions",
        "steps": row["steps"],
        "steps_per_s": row["steps_per_s"],
        "target": ">= 2000",
        "met": (row["steps_per_s"] or 0) >= 2000,
    }


def b4(count: int = 700_000) -> dict[str, Any]:
    from agents import agent_env_kwargs, make_agent
    from agents.run.episode import play
    from chiron_gym.envs import AutoscaleEnv
    from chiron_gym.scenario import load
    from chiron_gym.sim import RequestClass

    s = load("batch-flood")
    sources = tuple(
        replace(src, arrival={**src.arrival, "count": count})
        if src.klass == RequestClass.BATCH and src.arrival.get("kind") == "bulk"
        else src
        for src in s.sources
    )
    s = replace(s, sources=sources)
    t0 = time.perf_counter()
    env = AutoscaleEnv(s, **agent_env_kwargs("chiron"))  # its per-instance local loop included
    steps = play(env, lambda ctx: make_agent("chiron", ctx), 0).steps
    wall = time.perf_counter() - t0
    summary = env.backend.summary()["batch"]
    env.close()
    rss = _peak_rss_mb()
    return {
        "bench": "B4",
        "what": f"batch flood: {count} batch requests with deadlines, Chiron scaling",
        "batch_requests": summary.arrived,
        "batch_met": summary.met,
        "steps": steps,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(rss, 1),
        "target": "peak <= 300 MB",
        "met": rss <= 300,
    }


def b5() -> dict[str, Any]:
    scenario, source = _b1_scenario()
    ff_sim, ff_wall, _ = _static_run(scenario, True)
    ref_sim, ref_wall, _ = _static_run(scenario, False)
    speedup = (ff_sim / ff_wall) / (ref_sim / ref_wall)
    return {
        "bench": "B5",
        "what": "fast-forward over per-iteration reference mode, B1",
        "source": source,
        "fast_forward_wall_s": round(ff_wall, 3),
        "per_iteration_wall_s": round(ref_wall, 3),
        "speedup": round(speedup, 1),
        "target": "reported (no fixed target)",
        "met": True,
    }


def b6(timesteps: int = 20_000, n_envs: int = 2, vec_env: str = "subproc") -> dict[str, Any]:
    import importlib.util
    import tempfile

    if importlib.util.find_spec("stable_baselines3") is None:
        raise RuntimeError(
            'B6 trains PPO: it needs the rl extra (pip install -e ".[rl]"; make bench)'
        )
    from agents.train.ppo import train

    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            "default",
            timesteps,
            0,
            Path(tmp),
            n_envs=n_envs,
            eval_freq=0,
            checkpoint_freq=0,
            progress=False,
            vec_env=vec_env,
        )
    if vec_env != "subproc":
        one = vec_env == "inline"
        workers = min(n_envs, os.cpu_count() or 1)
        where = "one process (vector API)" if one else f"{workers} processes (one per core)"
        return {
            "bench": "B10" if one else "B13",
            "what": f"SB3 PPO training on default, {n_envs} envs in {where}",
            "timesteps": result.timesteps,
            "wall_s": round(result.wall_s, 1),
            "steps_per_s": round(result.steps_per_s, 1),
            "target": ">= 1000",
            "met": result.steps_per_s >= 1000,
        }
    return {
        "bench": "B6",
        "what": f"SB3 PPO training on default, {n_envs} envs (SubprocVecEnv), no evaluations",
        "timesteps": result.timesteps,
        "wall_s": round(result.wall_s, 1),
        "steps_per_s": round(result.steps_per_s, 1),
        "target": ">= 400",
        "met": result.steps_per_s >= 400,
    }


def b7() -> dict[str, Any]:
    from chiron_gym.profiles.compose import BuildSpec, build
    from chiron_gym.profiles.models import resolve
    from chiron_gym.sweep import run_point, sweep_scenario

    data = data_root()
    if not (data / "aiconfigurator").is_dir():
        raise RuntimeError(f"B7 composes a profile from {data}/aiconfigurator: not found")
    import tempfile

    os.environ["CHIRON_CACHE"] = tempfile.mkdtemp(prefix="chiron-b7-")  # nothing cached, or kept
    t0 = time.perf_counter()
    build(BuildSpec(resolve("qwen3-32b"), "h100", 2), data)
    build_s = time.perf_counter() - t0
    profile = {"model": "qwen3-32b", "gpu": "h100", "tp": 2}
    t1 = time.perf_counter()
    points = [
        run_point(sweep_scenario(profile, c, isl=1024, osl=1024, max_num_seqs=1024))
        for c in (8, 32, 128)
    ]
    sweep_s = time.perf_counter() - t1
    return {
        "bench": "B7",
        "what": "profile build qwen3-32b h100 TP2 (uncached) + closed-loop sweep at 8/32/128",
        "build_wall_s": round(build_s, 2),
        "sweep_wall_s": round(sweep_s, 2),
        "requests": sum(p.requests for p in points),
        "target": "<= 10 s together",
        "met": build_s + sweep_s <= 10.0,
    }


def b8() -> dict[str, Any]:
    """The real backend's streaming client: CPU seconds per 1,000 streamed tokens, against the
    httpx client it replaced (``benchmarks/client_cost.py``: a stand-in server streams 16
    completions at once, 200 tokens each, 10 ms apart, five times)."""
    from benchmarks.client_cost import run_clients

    rows = {r["client"]: r for r in run_clients(["httpx-json", "lean"])}
    lean = rows["lean"]["cpu_s_per_1k_tokens"]
    old = rows["httpx-json"]["cpu_s_per_1k_tokens"]
    return {
        "bench": "B8",
        "what": "streaming client: CPU s per 1,000 tokens, lean (chiron_gym/http_lean.py) vs httpx",
        "lean_cpu_s_per_1k_tokens": lean,
        "httpx_json_cpu_s_per_1k_tokens": old,
        "ratio": round(old / lean, 1),
        "target": "lean <= 0.05 CPU s per 1,000 tokens (50 us a token)",
        "met": lean <= 0.05,
    }


def b9() -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for kind in ("pd", "agg"):
        scenario, source = _b1_scenario(f"disaggregated/{kind}-llama70b-h100")
        _static_run(scenario, True)  # the profile composed and cached, the core warm
        sim_s, wall, n = _static_run(scenario, True)
        rows[kind] = {"requests": n, "wall_s": round(wall, 3), "speed": sim_s / wall}
    ratio = rows["pd"]["speed"] / rows["agg"]["speed"]
    return {
        "bench": "B9",
        "what": "1 h through 2 prefill + 2 decode Llama-3.1-70B TP4 vs its aggregated twin",
        "source": source,
        "requests": rows["pd"]["requests"],
        "disaggregated_sim_s_per_wall_s": round(rows["pd"]["speed"], 1),
        "aggregated_sim_s_per_wall_s": round(rows["agg"]["speed"], 1),
        "ratio": round(ratio, 2),
        "target": "disaggregated >= 0.5 x aggregated",
        "met": ratio >= 0.5,
    }


def b10() -> dict[str, Any]:
    return b6(n_envs=8, vec_env="inline")


def b13() -> dict[str, Any]:
    return b6(n_envs=8, vec_env="shards")


def b11(repeats: int = 200) -> dict[str, Any]:
    from benchmarks.env import fork_ms

    snap, restore, both, size = fork_ms(False, repeats)
    *_, random_both, random_size = fork_ms(True, repeats)
    return {
        "bench": "B11",
        "what": "snapshot() + restore() of default 30 decisions in, its own pools and caps "
        f"(median of "
        f"{repeats}); random_*: after 30 random decisions (3x the instances and requests)",
        "snapshot_ms": round(snap, 3),
        "restore_ms": round(restore, 3),
        "snapshot_restore_ms": round(both, 3),
        "snapshot_kb": round(size / 1024, 1),
        "random_snapshot_restore_ms": round(random_both, 3),
        "random_snapshot_kb": round(random_size / 1024, 1),
        "target": "< 1 ms",
        "met": both < 1.0,
    }


def b12() -> dict[str, Any]:
    from agents.hindsight import plan

    p = plan("default", 0, bases=("static",), env_kwargs={"horizon_s": 1800.0})
    return {
        "bench": "B12",
        "what": "hindsight planner on default (30 min, base static): its speed",
        "decisions": p.decisions,
        "simulated_decisions": p.simulated_decisions,
        "wall_s": round(p.wall_s, 2),
        "plan_decisions_per_s": round(p.decisions / p.wall_s, 2),
        "simulated_decisions_per_s": round(p.simulated_decisions / p.wall_s, 1),
        "target": "reported (no fixed target)",
    }


BENCHES = {
    "B1": b1,
    "B2": b2,
    "B3": b3,
    "B4": b4,
    "B5": b5,
    "B6": b6,
    "B7": b7,
    "B8": b8,
    "B9": b9,
    "B10": b10,
    "B11": b11,
    "B12": b12,
    "B13": b13,
}


def run_one(name: str) -> dict[str, Any]:
    """Run benchmark ``name`` in this process."""
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(NAMES)}")
    row = BENCHES[name]()
    row.setdefault("peak_rss_mb", round(_peak_rss_mb(), 1))
    row["machine"] = _machine()
    from chiron_gym import native

    row["core"] = native.mode()
    return row


def run_isolated(name: str) -> dict[str, Any]:
    """Run benchmark ``name`` in a fresh interpreter (its peak memory is its own)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.suite", name],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"bench": name, "error": proc.stderr.strip()[-2000:] or f"exit {proc.returncode}"}
    row: dict[str, Any] = json.loads(lines[-1])
    return row


if __name__ == "__main__":
    sys.stdout.write(json.dumps(run_one(sys.argv[1])) + "\n")
