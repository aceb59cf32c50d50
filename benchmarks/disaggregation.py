"""Issue 41's study: where disaggregated serving beats aggregated serving at equal GPUs.

``python -m benchmarks.disaggregation [--out DIR]`` serves Poisson traffic of fixed prompt and
output lengths with four instances of a model on H100s, laid out as 4 aggregated instances or as
1p3d, 2p2d and 3p1d prefill/decode instances (KV over RDMA), at rates from 0.0125 to 3.2 requests
per second per GPU (a geometric grid of ratio 2^(1/4); ten minutes of arrivals each, then the
requests in flight finish), for four prompt/output shapes. Per shape and SLA it reports each
layout's goodput as DistServe defines it: the highest rate per GPU at which at least 90 % of the
requests that arrived met both the TTFT and the TPOT objective; and the best disaggregated
layout's against aggregated. Two SLAs, fixed before any run: Dynamo's SLA
planner's defaults (TTFT 500 ms, ITL 50 ms) and a tight-TPOT one (TTFT 2 s, TPOT 20 ms).
``--seeds 0,1,2`` repeats every run on other traffic seeds: cells give the median and the ratio
its range over seeds. Composes its profiles from ``../shared/data``. Writes ``study.md``,
``points.csv`` and ``study.png``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from chiron_gym.cli.args import parse_seeds

MODELS = (("llama-3.1-70b", 4), ("qwen3-32b", 2))
SHAPES = ((8192, 256), (3000, 150), (1024, 1024), (256, 2048))  # (isl, osl)
LAYOUTS = ("4", "1p3d", "2p2d", "3p1d")
RATES_PER_GPU = tuple(0.0125 * 2 ** (k / 4) for k in range(37))  # 0.0125 .. 3.2 req/s per GPU
SLAS = {
    "dynamo (TTFT 0.5 s, TPOT 50 ms)": (0.5, 0.05),
    "tight TPOT (TTFT 2 s, TPOT 20 ms)": (2.0, 0.02),
}
HORIZON_S = 600.0  # arrivals for ten minutes, then
DRAIN_S = 1800.0  # half an hour more for the requests still in flight
GOOD = 0.9  # DistServe's goodput: the share of requests that meet both objectives


def point(
    model: str, tp: int, isl: int, osl: int, layout: str, rate: float, seed: int = 0
) -> dict[str, Any]:
    """One run: the share of arrived requests meeting each SLA, and the throughput."""
    from chiron_gym.backends.simulate import run_static
    from chiron_gym.scenario import parse
    from chiron_gym.sweep import parse_layout

    pools = {
        p: {"initial": n, "batch_cap": 1024, "min": n, "max": n}
        for p, n in parse_layout(layout).items()
    }
    doc: dict[str, Any] = {
        "horizon_s": HORIZON_S,
        "decision_interval_s": HORIZON_S,
        "instance": {
            "profile": {"model": model, "gpu": "h100", "tp": tp},
            "max_num_batched_tokens": 8192,
            "max_batch_cap": 1024,
        },
        "pools": pools,
        "workload": [
            {
                "class": "interactive",
                "arrival": {"kind": "poisson", "rate_per_s": rate},
                "prompt": {"kind": "fixed", "mean": isl},
                "output": {"kind": "fixed", "mean": osl},
            }
        ],
    }
    scenario = parse(doc, name="pd-study", source="benchmarks/disaggregation.py")
    cluster, _ = run_static(scenario, seed)
    cluster.run_until(HORIZON_S + DRAIN_S)  # requests that arrived late finish (or miss)
    n = cluster.num_arrived
    arrival = cluster.workload.arrival_s[:n]
    first, finish = cluster.first_token_s[:n], cluster.finish_s[:n]
    ttft = first - arrival
    tpot = (finish - first) / max(osl - 1, 1)
    gpus = 4 * tp
    row: dict[str, Any] = {
        "model": model,
        "tp": tp,
        "isl": isl,
        "osl": osl,
        "layout": layout,
        "seed": seed,
        "rate_per_gpu": rate / gpus,
        "arrived": n,
        "finished": int(np.count_nonzero(~np.isnan(finish))),
        "ttft_p50_s": float(np.nanmedian(ttft)) if n else math.nan,
        "tpot_p50_s": float(np.nanmedian(tpot)) if n else math.nan,
        "kv_transfer_mean_s": cluster.kv_transfer_s / cluster.kv_transfers
        if cluster.kv_transfers
        else 0.0,
    }
    for k, (t, p) in enumerate(SLAS.values()):
        met = np.nan_to_num(ttft, nan=math.inf) <= t
        met &= np.nan_to_num(tpot, nan=math.inf) <= p
        row[f"good_{k}"] = float(np.count_nonzero(met)) / n if n else 0.0
    return row


def run(seeds: tuple[int, ...] = (0,)) -> list[dict[str, Any]]:
    """Every point of the study, one row each (each traffic seed its own). Each series of rates
    stops once two rates in a row leave fewer than half the requests within either SLA: past
    its knee a layout's goodput cannot move (and an overloaded run is the slowest to simulate)."""
    from tqdm import tqdm

    series = [
        (m, tp, isl, osl, lay, seed)
        for m, tp in MODELS
        for isl, osl in SHAPES
        for lay in LAYOUTS
        for seed in seeds
    ]
    rows: list[dict[str, Any]] = []
    with tqdm(total=len(series) * len(RATES_PER_GPU), unit="run", desc="disaggregation") as bar:
        for m, tp, isl, osl, lay, seed in series:
            low = 0
            for k, r in enumerate(RATES_PER_GPU):
                row = point(m, tp, isl, osl, lay, r * 4 * tp, seed)
                rows.append(row)
                low = low + 1 if max(row[f"good_{j}"] for j in range(len(SLAS))) < 0.5 else 0
                if low == 2:
                    bar.update(len(RATES_PER_GPU) - k)
                    break
                bar.update(1)
    return rows


def best(rows: list[dict[str, Any]], k: int) -> float:
    """Goodput: the highest rate per GPU among ``rows`` at which SLA ``k`` holds for 90 % of the
    requests (0: none)."""
    return max((r["rate_per_gpu"] for r in rows if r[f"good_{k}"] >= GOOD), default=0.0)


def summary(rows: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str, str, float]]]:
    """The study's table (markdown): per (model, shape, SLA) each layout's goodput (the median
    over the traffic seeds) and the best disaggregated layout's over aggregated (the median over
    seeds, with its range when there are several); and those medians."""
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        "| model | isl / osl | SLA | 4 agg | 1p3d | 2p2d | 3p1d | best P/D / agg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios: list[tuple[str, str, str, float]] = []
    for model, tp in MODELS:
        for isl, osl in SHAPES:
            for k, sla in enumerate(SLAS):
                got = {  # goodput per layout, per seed
                    lay: [
                        best([r for r in rows if _key(r) == (model, isl, osl, lay, seed)], k)
                        for seed in seeds
                    ]
                    for lay in LAYOUTS
                }
                per_seed = [
                    _ratio(got["4"][i], max(got[lay][i] for lay in LAYOUTS[1:]))
                    for i in range(len(seeds))
                ]
                ratio = float(np.median(per_seed))
                ratios.append((model, f"{isl}/{osl}", sla, ratio))
                med = {lay: float(np.median(v)) for lay, v in got.items()}
                cells = " | ".join(f"{med[lay]:.3f}" if med[lay] else "-" for lay in LAYOUTS)
                shown = _shown(ratio)
                spread = [x for x in per_seed if not math.isnan(x)]
                if len(spread) > 1 and min(spread) != max(spread):
                    shown += f" [{_shown(min(spread))}, {_shown(max(spread))}]"
                lines.append(f"| {model} TP{tp} | {isl} / {osl} | {sla} | {cells} | {shown} |")
    return "\n".join(lines), ratios


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["model"], r["isl"], r["osl"], r["layout"], r["seed"])


def _ratio(agg: float, pd: float) -> float:
    return pd / agg if agg > 0 else (math.inf if pd > 0 else math.nan)


def _shown(ratio: float) -> str:
    if math.isnan(ratio):
        return "-"
    if math.isinf(ratio):
        return "P/D only"
    return "P/D none" if ratio == 0 else f"{ratio:.2f}x"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = min(r["seed"] for r in rows)  # the figure shows one traffic seed
    fig, axes = plt.subplots(len(MODELS) * 2, len(SHAPES), figsize=(18, 13), squeeze=False)
    for i, (model, tp) in enumerate(MODELS):
        for k, sla in enumerate(SLAS):
            for j, (isl, osl) in enumerate(SHAPES):
                ax = axes[2 * i + k][j]
                for lay in LAYOUTS:
                    key = (model, isl, osl, lay)
                    pts = [r for r in rows if _key(r) == (*key, first)]
                    x = [r["rate_per_gpu"] for r in pts]
                    ax.plot(x, [r[f"good_{k}"] for r in pts], "o-", ms=3, label=lay)
                ax.axhline(GOOD, color="grey", lw=0.8, ls=":")
                ax.set(xscale="log", ylim=(0, 1.02), xlabel="requests / s per GPU")
                ax.set_title(f"{model} TP{tp}, {isl}/{osl}, {sla}", fontsize=8)
                ax.set_ylabel("share meeting the SLA")
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7, title="layout", title_fontsize=7)
    fig.suptitle("SLA attainment against load: 4 aggregated instances vs prefill/decode layouts")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.disaggregation", description=__doc__)
    ap.add_argument("--out", default="runs/disaggregation", help="folder for study.md/csv/png")
    ap.add_argument(
        "--seeds",
        type=parse_seeds,
        default="0",
        help="traffic seeds, e.g. 0,1,2 or 0-2 (the figure: the first)",
    )
    args = ap.parse_args(argv)
    seeds = tuple(args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run(seeds)
    with (out / "points.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text, _ = summary(rows)
    (out / "study.md").write_text(f"# Aggregated vs disaggregated at equal GPUs\n\n{text}\n")
    plot(rows, out / "study.png")
    print(text)
    print(f"written: {out}/study.md, points.csv, study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
