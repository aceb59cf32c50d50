"""``chiron trace`` (real request traces: their statistics, the length tables derived from
them) and ``chiron profile`` (calibrated performance profiles: fit, build, list, measure,
compare): the data the simulator is calibrated on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chiron_gym.cli.args import Subparsers, fmt, print_paths

# ------------------------------------------------------------------------------------------ trace


def trace_stats_parser(tsub: Subparsers) -> None:
    ts = tsub.add_parser("stats", help="requests, span, rate, burstiness and lengths of a trace")
    ts.add_argument("path")
    ts.add_argument("--format", choices=("azure", "mooncake", "burstgpt", "generic"))
    ts.add_argument("--columns", help="generic CSV: time=COL,prompt=COL,output=COL")
    ts.add_argument("--json", action="store_true")
    ts.set_defaults(func=_cmd_trace_stats)


def _cmd_trace_stats(args: argparse.Namespace) -> int:
    from chiron_gym.scenario import data_path
    from chiron_gym.workload.trace import ColumnMap, read_trace, stats

    columns = ColumnMap.parse(args.columns) if args.columns else None
    fmt_ = args.format or ("generic" if columns else None)
    s = stats(read_trace(data_path(args.path, Path.cwd()), fmt_, columns))  # data:REL too
    if args.json:
        print(json.dumps(s, sort_keys=True))
        return 0
    print(
        f"requests {s['requests']}  span {s['span_s']:.1f} s  mean rate "
        f"{fmt(s['mean_rate_per_s'])} req/s  inter-arrival CV {fmt(s['interarrival_cv'])}"
    )
    for name in ("prompt", "output"):
        c = s[f"{name}_tokens"]
        print(
            f"{name:<7} tokens: mean {fmt(c['mean'])}  median {fmt(c['median'])}  "
            f"p99 {fmt(c['p99'])}"
        )
    if s.get("prefix_block_reuse") is not None:
        print(f"prefix blocks seen before in the trace: {100 * s['prefix_block_reuse']:.1f}%")
    return 0


def trace_tables_parser(tsub: Subparsers) -> None:
    tt = tsub.add_parser("tables", help="derive the shipped length tables from real traces")
    tt.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    tt.add_argument("--out", required=True)
    tt.set_defaults(func=_cmd_trace_tables)


def _cmd_trace_tables(args: argparse.Namespace) -> int:
    from chiron_gym.workload.tables import derive

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in derive(Path(args.data)).items():
        (out / name).write_text(text)
        written.append(out / name)
    return print_paths(written)


# ---------------------------------------------------------------------------------------- profile


def profile_fit_parser(psub: Subparsers) -> None:
    fit = psub.add_parser("fit", help="fit profiles from raw profiling data")
    fit.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    fit.add_argument("--out", required=True, help="folder to write <profile>.json into")
    fit.add_argument("--only", action="append", help="fit only this profile (repeatable)")
    fit.set_defaults(func=_cmd_profile_fit)


def _cmd_profile_fit(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.fit import write_all

    return print_paths(write_all(Path(args.data), Path(args.out), args.only or None))


def profile_build_parser(psub: Subparsers) -> None:
    b = psub.add_parser(
        "build",
        help="compose a profile for any dense model from the kernel tables (A100/H100)",
        description="Compose a profile from AIConfigurator's kernel tables and Vidur's tables: "
        "see chiron_gym/profiles/compose.py and docs/profiles.md.",
    )
    b.add_argument("--model", help="a config.json path, or a registry name (--list-models)")
    b.add_argument("--gpu", choices=("a100", "h100"))
    b.add_argument("--tp", type=int, default=1, help="tensor parallelism: 1, 2, 4 or 8")
    b.add_argument("--dtype", choices=("bf16", "fp8"), default="bf16", help="GEMM weights")
    b.add_argument("--kv-dtype", choices=("bf16", "fp8"), default="bf16", help="KV cache")
    b.add_argument("--out", help="the profile JSON to write (default: print a summary only)")
    b.add_argument(
        "--data", help="the shared data folder (default: $CHIRON_DATA or ../shared/data)"
    )
    b.add_argument("--list-models", action="store_true", help="the registry's models and sources")
    b.add_argument(
        "--check",
        action="store_true",
        help="compose the shipped model/GPU pairs and compare them with measurements (tables)",
    )
    b.set_defaults(func=_cmd_profile_build)


def _cmd_profile_build(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.compose import BuildSpec, build
    from chiron_gym.profiles.fit import dumps
    from chiron_gym.profiles.models import REGISTRY, resolve
    from chiron_gym.profiles.profile import ProfileError
    from chiron_gym.scenario import data_root

    if args.list_models:
        for key, m in REGISTRY.items():
            s = m.shape
            print(
                f"{key:<20}{s.layers:>4} layers {s.hidden:>6} hidden {s.heads:>3}/{s.kv_heads:<3}"
                f"heads {s.ffn:>6} ffn {s.vocab:>7} vocab  {m.source}"
            )
        return 0
    data = Path(args.data) if args.data else data_root()
    try:
        if args.check:
            from chiron_gym.profiles.compose_check import tables

            print(tables(data))
            return 0
        if not args.model or not args.gpu:
            print("chiron profile build: --model and --gpu are required", file=sys.stderr)
            return 2
        spec = BuildSpec(resolve(args.model), args.gpu, args.tp, args.dtype, args.kv_dtype)
        profile = build(spec, data)
    except ProfileError as e:  # an InputError too: this command names itself
        print(f"chiron profile build: {e}", file=sys.stderr)
        return 2
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps(profile.to_document()))
    fig = profile.figures()
    decode, prefill = fig["decode_32x1024_s"], fig["prefill_2048_s"]
    print(
        f"{profile.name}: {profile.model.name}, {profile.gpu_name} x {profile.tensor_parallel}; "
        f"KV {profile.kv.capacity_tokens:,} tokens; decode of 32 x 1,024 tokens "
        f"{decode * 1e3:.2f} ms, prefill of 2,048 tokens {prefill * 1e3:.1f} ms"
        + (f"; written to {args.out}" if args.out else "")
    )
    if args.out:
        print(f'use it: [instance] profile = "{args.out}" in a scenario')
    return 0


def profile_list_parser(psub: Subparsers) -> None:
    lst = psub.add_parser("list", help="list the shipped profiles")
    lst.set_defaults(func=_cmd_profile_list)


def _cmd_profile_list(args: argparse.Namespace) -> int:
    from chiron_gym.profiles import load, names

    print(f"{'profile':<24}{'GPUs':>5}{'KV tokens':>11}{'cold start':>12}{'held-out MAPE':>15}")
    for n in names():
        p = load(n)
        print(
            f"{n:<24}{p.tensor_parallel:>5}{p.kv.capacity_tokens:>11}"
            f"{p.cold_start.median_s:>11.0f}s{p.mape_pct['pooled']:>14.2f}%"
        )
    return 0


def profile_measure_parser(psub: Subparsers) -> None:
    mea = psub.add_parser("measure", help="calibrate a profile from a live vLLM endpoint")
    mea.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:8000")
    mea.add_argument("--out", required=True, help="the profile JSON to write")
    mea.add_argument("--name", help="profile name (default: the file's stem)")
    mea.add_argument(
        "--model-config", help="the model's config.json (default: from the served model's folder)"
    )
    mea.add_argument("--device-name", default="cpu", help="recorded as the profile's gpu.name")
    mea.add_argument("--cold-start-s", type=float, default=40.0, help="recorded cold start")
    mea.add_argument("--token-id", type=int, default=5, help="prompt token id (repeated)")
    mea.add_argument("--save-raw", help="also write the raw probe timings (JSON) here")
    mea.add_argument("--quick", action="store_true", help="a smaller probe plan (tests)")
    mea.set_defaults(func=_cmd_profile_measure)


def _cmd_profile_measure(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.measure import build_profile, model_config
    from chiron_gym.profiles.probe import MeasureError, ProbePlan, probe

    plan = ProbePlan.quick() if args.quick else ProbePlan()
    out = Path(args.out)
    name = args.name or out.stem
    try:
        m = probe(args.endpoint, plan, token_id=args.token_id)
        if args.save_raw:
            Path(args.save_raw).write_text(json.dumps(m.to_json(), indent=1) + "\n")
        config, source = model_config(m, args.model_config)
        doc = build_profile(
            m,
            name=name,
            config=config,
            config_source=source,
            gpu_name=args.device_name,
            cold_start_s=args.cold_start_s,
        )
    except MeasureError as e:  # the server, not the input: exit 1
        print(f"chiron profile measure: {e}", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    mape = doc["validation"]["mape_pct"]
    print(
        f"{out}: {len(m.decode)} decode samples, {len(m.prefill)} prefill probes in "
        f"{m.wall_s:.0f} s; held-out MAPE decode {mape['decode_iteration']:.1f}%, "
        f"prefill {mape['prefill_ttft']:.1f}%; KV {doc['kv']['capacity_tokens']} tokens"
    )
    print(f'use it: [instance] profile = "{out}" in a scenario, or chiron fidelity --profile')
    return 0


def profile_compare_parser(psub: Subparsers) -> None:
    cmp_ = psub.add_parser("compare", help="compare profiles with end-to-end measurements")
    cmp_.add_argument("--data", required=True, help="the shared data folder (../shared/data)")
    cmp_.add_argument("--json", action="store_true")
    cmp_.set_defaults(func=_cmd_profile_compare)


def _cmd_profile_compare(args: argparse.Namespace) -> int:
    from chiron_gym.profiles.compare import as_dicts, compare_all, comparison_table

    rows = compare_all(Path(args.data))
    print(json.dumps(as_dicts(rows), sort_keys=True) if args.json else comparison_table(rows))
    return 0
