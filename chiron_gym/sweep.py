"""``chiron sweep``: one instance under closed-loop load at several concurrencies, as
``vllm bench serve --max-concurrency N`` and AIConfigurator measure a deployment.

For each concurrency ``N`` a scenario of one instance of the profile (``max_num_seqs`` =
``--max-num-seqs``, no autoscaling) serves ``N`` clients, each sending its next request (``isl``
prompt tokens, ``osl`` output tokens, fixed) the moment the previous ends; ``requests_per_client``
requests per client in all, the first per client a warm-up that is not measured (or, with
``num_prompts``, as ``vllm bench serve --max-concurrency N --num-prompts M --request-rate inf``
counts: ``M`` requests in all, every one measured, the first wave included). The table gives
TTFT (mean, p50, p99), TPOT (mean time per output token after the first, per request, averaged;
p50), output tokens per second (per instance and per GPU) and the requests preempted because KV
memory ran out; the figure the curves users know from vLLM's benchmark and AIConfigurator.

A ``layout`` sweeps a deployment of several instances instead: ``N`` aggregated ones (``"N"``),
or ``X`` prefill and ``Y`` decode instances (``"XpYd"``, disaggregated, the KV cache sent over
``link``), each of the profile; throughput per GPU then counts all their GPUs.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.backends.simulate import run_static
from chiron_gym.scenario import Scenario, parse


def parse_layout(layout: str) -> dict[str, int]:
    """``"N"`` (N aggregated instances) or ``"XpYd"`` (X prefill, Y decode): the instances per
    pool (``{"interactive": N}`` or ``{"prefill": X, "decode": Y}``)."""
    m = re.fullmatch(r"(\d+)|(\d+)p(\d+)d", layout.strip().lower())
    counts = (
        None
        if m is None
        else {"interactive": int(m[1])}
        if m[1]
        else {"prefill": int(m[2]), "decode": int(m[3])}
    )
    if counts is None or min(counts.values()) < 1:
        raise ValueError(
            f"layout {layout!r}: expected N (aggregated instances) or XpYd (prefill and decode "
            "instances), each at least 1, e.g. 4 or 1p3d"
        )
    return counts


def serve_defaults(profile: Any) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` that ``vllm serve`` picks on the profile's GPU
    (``EngineArgs.get_batch_defaults``, API server: 8,192 and 1,024 on GPUs of 70 GiB or more
    other than the A100; 2,048 and 256 otherwise)."""
    if isinstance(profile, dict):
        big = str(profile.get("gpu", "")).lower() != "a100"
    else:
        from chiron_gym.profiles import load

        p = load(profile)
        big = p.gpu_memory_bytes >= 70 * 2**30 and "a100" not in p.gpu_name.lower()
    return (8192, 1024) if big else (2048, 256)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One concurrency's figures (seconds, tokens per second)."""

    concurrency: int
    requests: int
    measured: int
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_mean_s: float
    tpot_p50_s: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    preempted_requests: int
    rejected: int
    sim_seconds: float
    wall_seconds: float


def sweep_scenario(
    profile: Any,
    concurrency: int,
    *,
    isl: int,
    osl: int,
    requests_per_client: int = 8,
    max_num_seqs: int = 256,
    max_num_batched_tokens: int = 8192,
    horizon_s: float = 86_400.0,
    num_prompts: int | None = None,
    layout: str = "1",
    link: str = "rdma",
) -> Scenario:
    """The scenario of one sweep point; ``profile`` is a profile name, a file, or a composed
    profile's table (``{"model": ..., "gpu": ..., "tp": ...}``). ``num_prompts``: count as
    ``vllm bench serve`` does (that many requests, none left out as a warm-up) instead of
    ``requests_per_client`` with the first wave unmeasured."""
    if concurrency < 1 or isl < 1 or osl < 1 or requests_per_client < 2:
        raise ValueError(
            "concurrency, --isl and --osl must be >= 1 and --requests-per-client >= 2 "
            f"(got {concurrency}, {isl}, {osl}, {requests_per_client})"
        )
    if num_prompts is not None and num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1 (got {num_prompts})")
    requests, warmup = concurrency * requests_per_client, concurrency
    if num_prompts is not None:
        requests, warmup = num_prompts, 0
    doc: dict[str, Any] = {
        "description": f"closed loop: {concurrency} clients, isl {isl}, osl {osl}",
        "horizon_s": horizon_s,
        "decision_interval_s": 60.0,
        "slo": {"interactive": {"ttft_s": 3600.0, "itl_s": 3600.0}},
        "instance": {
            "profile": profile,
            "max_num_batched_tokens": max_num_batched_tokens,
            "max_batch_cap": max_num_seqs,
        },
        "pools": {
            pool: {"initial": n, "batch_cap": max_num_seqs, "min": n, "max": n}
            for pool, n in parse_layout(layout).items()
        },
        "workload": [
            {
                "class": "interactive",
                "arrival": {
                    "kind": "closed",
                    "concurrency": concurrency,
                    "requests": requests,
                    "warmup": warmup,
                },
                "prompt": {"kind": "fixed", "mean": isl},
                "output": {"kind": "fixed", "mean": osl},
            }
        ],
    }
    if "prefill" in doc["pools"]:
        doc["transfer"] = {"link": link}
    return parse(doc, name=f"sweep-c{concurrency}", source="chiron sweep")


def run_point(scenario: Scenario, seed: int = 0) -> SweepPoint:
    t0 = time.perf_counter()
    cluster, _ = run_static(scenario, seed)
    wall = time.perf_counter() - t0
    rep = cluster.summary()["interactive"]
    w = cluster.workload
    gpus = sum(p.initial_instances * p.instance.gpus for p in scenario.cluster.pools)
    tput = rep.output_tokens_per_s
    return SweepPoint(
        concurrency=w.clients,
        requests=len(w),
        measured=len(w) - w.warmup,
        ttft_mean_s=rep.ttft_mean_s,
        ttft_p50_s=rep.ttft_s[0],
        ttft_p99_s=rep.ttft_s[2],
        tpot_mean_s=rep.tpot_mean_s,
        tpot_p50_s=rep.itl_s[0],
        output_tokens_per_s=tput,
        output_tokens_per_s_per_gpu=tput / gpus if math.isfinite(tput) else math.nan,
        preempted_requests=int(np.count_nonzero(cluster.ledger.preemptions)),
        rejected=rep.rejected,
        sim_seconds=float(np.nanmax(cluster.ledger.finish_s)) if len(w) else 0.0,
        wall_seconds=wall,
    )


def sweep(
    profile: Any,
    concurrencies: list[int],
    *,
    isl: int,
    osl: int,
    requests_per_client: int = 8,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    progress: bool = True,
    num_prompts: int | None = None,
    layout: str = "1",
    link: str = "rdma",
) -> list[SweepPoint]:
    """Every point, in the order given (engine limits: ``vllm serve``'s defaults for the GPU
    unless given; ``num_prompts``: counted as ``vllm bench serve`` counts, above)."""
    from tqdm import tqdm

    tokens, seqs = serve_defaults(profile)
    max_num_batched_tokens = max_num_batched_tokens or tokens
    max_num_seqs = max_num_seqs or seqs
    scenarios = [
        sweep_scenario(
            profile,
            c,
            isl=isl,
            osl=osl,
            requests_per_client=requests_per_client,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens,
            num_prompts=num_prompts,
            layout=layout,
            link=link,
        )
        for c in concurrencies
    ]
    out = []
    for sc in tqdm(scenarios, unit="point", disable=not progress, desc="sweep"):
        out.append(run_point(sc))
    return out


def table(points: list[SweepPoint]) -> str:
    """Markdown: one row per concurrency."""
    lines = [
        "| concurrency | TTFT mean | TTFT p50 | TTFT p99 | TPOT mean | TPOT p50 | output tok/s |"
        " tok/s per GPU | preempted | rejected |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p.concurrency} | {p.ttft_mean_s * 1e3:.1f} ms | {p.ttft_p50_s * 1e3:.1f} ms | "
            f"{p.ttft_p99_s * 1e3:.1f} ms | {p.tpot_mean_s * 1e3:.2f} ms | "
            f"{p.tpot_p50_s * 1e3:.2f} ms | {p.output_tokens_per_s:,.0f} | "
            f"{p.output_tokens_per_s_per_gpu:,.0f} | {p.preempted_requests} | {p.rejected} |"
        )
    return "\n".join(lines)


def plot(points: list[SweepPoint], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = [p.concurrency for p in points]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    ax[0].plot(c, [p.ttft_mean_s * 1e3 for p in points], "o-", label="mean")
    ax[0].plot(c, [p.ttft_p99_s * 1e3 for p in points], "s--", label="p99")
    ax[0].set(ylabel="TTFT (ms)", title="time to first token", yscale="log")
    ax[0].legend()
    ax[1].plot(c, [p.tpot_mean_s * 1e3 for p in points], "o-")
    ax[1].set(ylabel="TPOT (ms)", title="time per output token")
    ax[2].plot(c, [p.output_tokens_per_s for p in points], "o-")
    ax[2].set(ylabel="output tokens / s", title="throughput")
    for a in ax[:3]:
        a.set_xscale("log", base=2)
        a.set_xlabel("concurrency")
        a.grid(alpha=0.3)
    per_user = [1.0 / p.tpot_mean_s if p.tpot_mean_s > 0 else math.nan for p in points]
    ax[3].plot(per_user, [p.output_tokens_per_s_per_gpu for p in points], "o-")
    for x, y, k in zip(per_user, [p.output_tokens_per_s_per_gpu for p in points], c, strict=True):
        ax[3].annotate(str(k), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax[3].set(
        xlabel="tokens / s per user (1 / TPOT)",
        ylabel="output tokens / s per GPU",
        title="throughput against speed",
    )
    ax[3].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(points: list[SweepPoint], out: Path, title: str, meta: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rows = [asdict(p) for p in points]
    with (out / "sweep.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    (out / "sweep.json").write_text(json.dumps({**meta, "points": rows}, indent=1) + "\n")
    (out / "sweep.md").write_text(f"# {title}\n\n{table(points)}\n")
    plot(points, title, out / "sweep.png")
    return [out / n for n in ("sweep.md", "sweep.csv", "sweep.json", "sweep.png")]


__all__ = [
    "SweepPoint",
    "parse_layout",
    "plot",
    "run_point",
    "serve_defaults",
    "sweep",
    "sweep_scenario",
    "table",
    "write",
]
