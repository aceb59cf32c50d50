"""Composed FP8 now against composed FP8 as issue 40 measured it (issue 40):
``python -m benchmarks.fp8_projection [--out DIR]``.

Issue 40 measured composed FP8 profiles against published H100 serving runs that we do not hold
and found TPOT +36 % and TTFT +81 % (median signed errors, 45 Llama-3.1-70B FP8 cases: TP 2/4/8,
concurrency 4-128, input 1k-8k, output 128-1k, steady state). Those profiles took the kernel
table's fp8 rows as timed, their input's quantisation included; stop 50 fused it
(``kernels.fused_fp8``). This composes Llama-3.1-70B FP8 on H100 both ways
(``BuildSpec.fp8_unfused``) and sweeps both over a grid of the issue's shape (the issue's own
case list is not ours): TP 2/4/8 x concurrency 4/16/32/64/128 x (input, output) of (1,024, 128),
(1,024, 1,024), (4,096, 512), (8,192, 128), (8,192, 1,024), steady state (``chiron sweep``'s
default counting). It prints the now / then ratio of mean TTFT and mean TPOT, per TP and over
the grid, and what the issue's medians become if every case moved by the grid's median ratio:
a projection, not a measurement. Writes ``fp8-projection.csv`` (one row per case) to ``--out``
(default ``runs/fp8-projection``). About a minute.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from chiron_gym.profiles.compose import BuildSpec, build
from chiron_gym.profiles.fit import dumps
from chiron_gym.profiles.models import resolve
from chiron_gym.scenario.paths import data_root
from chiron_gym.sweep import sweep

TPS = (2, 4, 8)
CONCURRENCY = [4, 16, 32, 64, 128]
LENGTHS = ((1024, 128), (1024, 1024), (4096, 512), (8192, 128), (8192, 1024))
ISSUE_MEDIAN = {"ttft": 0.81, "tpot": 0.36}  # issue 40's median signed errors, composed FP8


def cases(data: Path, out: Path) -> list[dict[str, float]]:
    """One row per (TP, lengths, concurrency): mean TTFT and TPOT, fused and unfused (the two
    profiles of each TP are written to ``out``)."""
    rows: list[dict[str, float]] = []
    bar = tqdm(total=len(TPS) * len(LENGTHS), desc="fp8 grid", unit="sweep pair")
    for tp in TPS:
        files = []
        for unfused in (False, True):
            spec = BuildSpec(resolve("llama-3.1-70b"), "h100", tp, "fp8", "bf16")
            spec = replace(spec, fp8_unfused=unfused)
            path = out / f"{spec.name}{'-unfused' if unfused else ''}.json"
            path.write_text(dumps(build(spec, data).to_document()))
            files.append(str(path))
        now, then = files
        for isl, osl in LENGTHS:
            a = sweep(now, CONCURRENCY, isl=isl, osl=osl, progress=False)
            b = sweep(then, CONCURRENCY, isl=isl, osl=osl, progress=False)
            for x, y in zip(a, b, strict=True):
                rows.append(
                    {
                        "tp": tp,
                        "isl": isl,
                        "osl": osl,
                        "concurrency": x.concurrency,
                        "ttft_now_s": x.ttft_mean_s,
                        "ttft_then_s": y.ttft_mean_s,
                        "tpot_now_s": x.tpot_mean_s,
                        "tpot_then_s": y.tpot_mean_s,
                    }
                )
            bar.update()
    bar.close()
    return rows


def summary(rows: list[dict[str, float]]) -> str:
    lines = ["| cases | TTFT now / then (median, range) | TPOT now / then (median, range) |"]
    lines.append("|---|---|---|")
    groups = [(f"TP {tp}", [r for r in rows if r["tp"] == tp]) for tp in TPS]
    med: dict[str, float] = {}
    for label, rs in [*groups, ("all", rows)]:
        cells = []
        for q in ("ttft", "tpot"):
            ratio = [r[f"{q}_now_s"] / r[f"{q}_then_s"] for r in rs]
            med[q] = statistics.median(ratio)
            cells.append(f"{med[q]:.3f} ({min(ratio):.3f}-{max(ratio):.3f})")
        lines.append(f"| {label} ({len(rs)}) | {cells[0]} | {cells[1]} |")
    lines.append("")
    for q, err in ISSUE_MEDIAN.items():
        lines.append(
            f"issue 40's median {q.upper()} error {err:+.0%} moved by the grid's median ratio: "
            f"{(1 + err) * med[q] - 1:+.0%} (a projection, not a measurement)"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fp8_projection")
    ap.add_argument("--out", default="runs/fp8-projection")
    ap.add_argument("--data", help="the shared data folder (default: ../shared/data)")
    args = ap.parse_args(argv)
    data = Path(args.data) if args.data else data_root()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = cases(data, out)
    with open(out / "fp8-projection.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(summary(rows))
    print(f"cases: {out / 'fp8-projection.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
