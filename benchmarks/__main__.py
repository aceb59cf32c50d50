"""Run the benchmarks and print one JSON line per figure.

Speed targets live here, not in timed tests. Today: the simulator's speed on the default
scenario in fast-forward and per-iteration modes, and the fast-forward speed-up. The full set
(B1-B5: the Azure conversation trace, a 50-instance cluster, env steps per second, a batch flood)
arrives with the speed issue.
"""

from __future__ import annotations

import json
import platform
import resource
import time

from chiron_gym.episode import run_static
from chiron_gym.scenario import load


def sim_speed(scenario_name: str, seed: int, fast_forward: bool) -> tuple[float, float]:
    """Simulated seconds per wall-clock second, and wall seconds, of one static episode."""
    scenario = load(scenario_name)
    t0 = time.perf_counter()
    cluster, _ = run_static(scenario, seed, fast_forward=fast_forward)
    wall = time.perf_counter() - t0
    return cluster.now / wall, wall


def main() -> None:
    machine = f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    ff, ff_wall = sim_speed("default", 0, True)
    ref, ref_wall = sim_speed("default", 0, False)
    rows = [
        {
            "bench": "default-sim-speed",
            "mode": "fast-forward",
            "sim_s_per_wall_s": round(ff, 1),
            "wall_s": round(ff_wall, 3),
            "machine": machine,
        },
        {
            "bench": "default-sim-speed",
            "mode": "per-iteration",
            "sim_s_per_wall_s": round(ref, 1),
            "wall_s": round(ref_wall, 3),
            "machine": machine,
        },
        {"bench": "fast-forward-speedup", "scenario": "default", "speedup": round(ff / ref, 2)},
        {
            "bench": "peak-rss",
            "mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        },
    ]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
