"""Calibrate a profile from a live vLLM endpoint: ``chiron profile measure``.

A probe workload runs against an OpenAI-compatible vLLM server and is fitted into the functional
form of ``forms.py``, so the result loads with ``profiles.load(path)`` like the shipped profiles.
The probes, and what each one times, are described in ``probe.py``.

An endpoint gives end-to-end times, not per-kernel ones, so the fit fills the form's terms that
these measurements identify and leaves the GEMM, LM-head and embedding terms at zero:

- decode gaps at each probed batch size ``b``: ``D0(b) + D1(b) * sum ctx`` (affine fit);
- times to first token: ``TTFT(b, p) = A + B * b + k_tok * b * p + c_pair * b * p * (p + 1) / 2``;
- the engine's fixed cost per iteration ``c0 = D0(b_min) - k_tok * b_min`` (scheduling, input
  preparation, sampling: paid by prefill and decode iterations alike) goes to ``cpu``;
- ``k_tok / L`` per token of the iteration to ``elementwise``, ``c_pair / L`` per query-key pair
  to ``prefill_attention``, and ``(D0(b) - c0 - k_tok * b) / L`` plus ``D1(b) / L`` per context
  token to ``decode_attention``, tabulated over ``b``;
- the interference cost per arrival less its prompt's token and pair costs, ``c_seq``, is the
  engine's time per prefilled sequence: ``prefill_attention.per_seq_s = c_seq / L``;
- what a lone request's first token costs beyond its engine iteration, ``A + B - c0 - c_seq``, is
  latency outside the engine loop (HTTP, IPC, detokenization, streaming, in the API server
  process): ``frontend.latency_s``, which the simulator adds to first-token and finish times
  without occupying the engine. Counting it as engine time would stall every running request's
  decode by it at each arrival, which overestimates latency badly under load (docs/fidelity.md).

A decode-only iteration is then ``D0(b) + D1(b) * sum ctx``; a lone prefill plus the front-end
latency is ``TTFT(1, p)``. A random 20% of the points (fixed seed) is held out and its mean
absolute percentage error reported per component, as for the shipped profiles.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from chiron_gym.config import Reader
from chiron_gym.profiles.forms import Affine, DecodeAttention, FlatThenLinear, PrefillAttention
from chiron_gym.profiles.leastsq import robust_fit
from chiron_gym.profiles.parts import GEMMS, IterationCoefficients, KvCache, ModelShape, Record
from chiron_gym.profiles.probe import (
    DecodePoint,
    InterferencePoint,
    MeasureError,
    Measurements,
    PrefillPoint,
)
from chiron_gym.profiles.profile import Profile, ProfileError, parse
from chiron_gym.sim import ColdStart

HELDOUT_FRACTION = 0.2
SEED = 0
P = TypeVar("P", DecodePoint, PrefillPoint)


@dataclass(frozen=True, slots=True)
class EndpointFit:
    """End-to-end coefficients (seconds, whole model) of the measured engine."""

    per_token_s: float  # k_tok
    prefill_const_s: float  # P0
    prefill_per_seq_s: float  # P1
    prefill_per_pair_s: float  # c_pair
    decode_seqs: tuple[int, ...]
    decode_base_s: tuple[float, ...]  # D0(b)
    decode_per_context_token_s: tuple[float, ...]  # D1(b)
    engine_per_seq_s: float = 0.0  # engine time per prefilled sequence beyond its tokens

    @property
    def engine_const_s(self) -> float:
        """``c0``: the engine's fixed cost per iteration."""
        b = self.decode_seqs[0]
        return max(0.0, self.decode_base_s[0] - self.per_token_s * b)

    @property
    def frontend_latency_s(self) -> float:
        """What a lone request's first token costs beyond its engine iteration."""
        engine = self.engine_const_s + self.engine_per_seq_s
        return max(0.0, self.prefill_const_s + self.prefill_per_seq_s - engine)

    def prefill_s(self, batch: int, prompt: int) -> float:
        pairs = batch * prompt * (prompt + 1) / 2.0
        return (
            self.prefill_const_s
            + self.prefill_per_seq_s * batch
            + self.per_token_s * batch * prompt
            + self.prefill_per_pair_s * pairs
        )

    def decode_s(self, batch: int, context_sum: float) -> float:
        i = self.decode_seqs.index(batch)
        return self.decode_base_s[i] + self.decode_per_context_token_s[i] * context_sum


def _timed(points: list[P], seconds: list[float], what: str) -> list[P]:
    keep = [p for p, s in zip(points, seconds, strict=True) if math.isfinite(s) and s > 0]
    if len(keep) < len(points):
        bad = sorted({s for s in seconds if not (math.isfinite(s) and s > 0)})
        warnings.warn(
            f"{len(points) - len(keep)} {what} samples dropped: {bad[:4]} s are not positive "
            f"times; fitting on the {len(keep)} that are",
            stacklevel=3,
        )
    return keep


def _prefill_rows(pts: list[PrefillPoint]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array(
        [[1.0, p.batch, p.batch * p.prompt, p.batch * p.prompt * (p.prompt + 1) / 2.0] for p in pts]
    )
    return a, np.array([p.ttft_s for p in pts])


def fit_endpoint(
    decode: list[DecodePoint],
    prefill: list[PrefillPoint],
    interference: list[InterferencePoint] | None = None,
) -> EndpointFit:
    """Fit the end-to-end coefficients (see the module docstring). A timing that is not a
    positive number of seconds measures nothing: it is dropped with a warning."""
    decode = _timed(decode, [p.gap_s for p in decode], "decode gap")
    prefill = _timed(prefill, [p.ttft_s for p in prefill], "prefill time to first token")
    if len(prefill) < 4:
        raise MeasureError("need at least 4 prefill points to fit")
    a, y = _prefill_rows(prefill)
    p0, p1, k_tok, c_pair = robust_fit(a, y)
    seqs = sorted({p.batch for p in decode})
    if not seqs:
        raise MeasureError("no decode points to fit")
    bases, slopes = [], []
    for b in seqs:
        pts = [p for p in decode if p.batch == b]
        ad = np.array([[1.0, p.context_sum] for p in pts])
        yd = np.array([p.gap_s for p in pts])
        if len({p.context_sum for p in pts}) < 2:
            d0, d1 = float(np.median(yd)), 0.0
        else:
            d0, d1 = robust_fit(ad, yd)
            top = d0 + d1 * max(p.context_sum for p in pts)
            if d0 < 0.5 * float(np.median(yd)) or top > 2.0 * float(np.max(yd)):
                # a context slope that eats the intercept, or overshoots every sample, is noise
                # (a stall in a window), not the engine: every iteration pays its fixed cost
                d0, d1 = float(np.median(yd)), 0.0
        if not d0 + d1 * min(p.context_sum for p in pts) > 0:
            raise MeasureError(
                f"decode probe at {b} sequences: the fitted iteration time is not positive "
                f"(samples {sorted(round(1e3 * v, 3) for v in yd)[:8]}... ms); "
                "the host is too noisy or the client too slow to time the server"
            )
        bases.append(float(d0))
        slopes.append(float(d1))
    per_seq = 0.0
    points = interference or []
    timed = [p for p in points if math.isfinite(p.engine_s_per_arrival)]
    for p in points:
        if not math.isfinite(p.engine_s_per_arrival):
            warnings.warn(
                f"interference probe at {p.rate_per_s:g} arrivals/s dropped: its decode gaps "
                f"(quiet {p.quiet_gap_s!r} s, busy {p.busy_gap_s!r} s) are not positive times; "
                f"fitting on the {len(timed)} that are",
                stacklevel=2,
            )
    if timed:
        # engine time per arrival, less its prompt's token and pair costs
        costs = [
            p.engine_s_per_arrival - k_tok * p.prompt - c_pair * p.prompt * (p.prompt + 1) / 2.0
            for p in timed
        ]
        per_seq = max(0.0, float(np.median(costs)))
    return EndpointFit(
        float(k_tok),
        float(p0),
        float(p1),
        float(c_pair),
        tuple(seqs),
        tuple(bases),
        tuple(slopes),
        per_seq,
    )


def _mape(pred: np.ndarray, real: np.ndarray) -> float:
    """Mean absolute percentage error over the points with a positive, finite timing (a
    degenerate one, NaN or 0, is dropped from the fit too); NaN if none remains."""
    ok = np.isfinite(real) & (real > 0) & np.isfinite(pred)
    if not ok.any():
        return math.nan
    return float(100.0 * np.mean(np.abs(pred[ok] - real[ok]) / real[ok]))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MeasureError(f"{path}: cannot read the model's config.json: {e}") from e
    if not isinstance(cfg, dict):
        raise MeasureError(f"{path}: expected a JSON object")
    return cfg


def model_shape(config: dict[str, Any], name: str, source: str) -> tuple[ModelShape, int]:
    """The profile's model shape from a Hugging Face ``config.json``, and the bytes per weight."""
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        kv_heads = int(config.get("num_key_value_heads", heads))
        head_dim = int(config.get("head_dim") or hidden // heads)
        ffn = int(config["intermediate_size"])
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise MeasureError(f"{source}: missing or bad field {e} (a Llama-style config)") from e
    dtype_bytes = {"float32": 4, "float16": 2, "bfloat16": 2}.get(
        str(config.get("torch_dtype", "bfloat16")), 2
    )
    shape = ModelShape(name, layers, heads, kv_heads, head_dim, hidden, ffn, vocab)
    return shape.with_llama_weights(dtype_bytes, norms=False), dtype_bytes


def build_profile(
    m: Measurements,
    *,
    name: str,
    config: dict[str, Any],
    config_source: str,
    gpu_name: str = "cpu",
    memory_bytes: int = 1 << 30,
    cold_start_s: float = 40.0,
) -> dict[str, Any]:
    """The profile document: fit on 80% of the points, held-out error on the rest."""
    shape, dtype_bytes = model_shape(config, m.model, config_source)
    rng = np.random.default_rng(SEED)
    held_d = rng.random(len(m.decode)) < HELDOUT_FRACTION
    held_p = rng.random(len(m.prefill)) < HELDOUT_FRACTION
    fit = fit_endpoint(
        [p for p, h in zip(m.decode, held_d, strict=True) if not h],
        [p for p, h in zip(m.prefill, held_p, strict=True) if not h],
        m.interference,
    )

    def errors(held: bool) -> dict[str, float]:
        """The fit's error on the held-out points (``held``) or on the fitted ones."""
        ds = [p for p, h in zip(m.decode, held_d, strict=True) if h == held]
        ds = [p for p in ds if p.batch in fit.decode_seqs]
        ps = [p for p, h in zip(m.prefill, held_p, strict=True) if h == held]
        pred_d = np.array([fit.decode_s(p.batch, p.context_sum) for p in ds])
        real_d = np.array([p.gap_s for p in ds])
        pred_p = np.array([fit.prefill_s(p.batch, p.prompt) for p in ps])
        real_p = np.array([p.ttft_s for p in ps])
        return {
            "decode_iteration": _mape(pred_d, real_d),
            "prefill_ttft": _mape(pred_p, real_p),
            "pooled": _mape(np.concatenate([pred_d, pred_p]), np.concatenate([real_d, real_p])),
        }

    mape = errors(held=True)
    in_sample = [key for key, value in mape.items() if not math.isfinite(value)]
    if in_sample:
        # no usable held-out point for a component (a busy host's probes dropped or
        # degenerate): its error on the fitted points, said so, rather than a profile that
        # fails its own validation
        own = errors(held=False)
        mape.update({key: own[key] for key in in_sample})
        warnings.warn(
            f"no usable held-out point for {', '.join(in_sample)}: its error is the fitted "
            "points' own (in-sample), and the profile says so",
            stacklevel=2,
        )
        if not all(math.isfinite(v) for v in mape.values()):
            raise MeasureError(
                "too few usable timings to state the fit's error: probe again on a quieter host"
            )
    source = f"<measured profile {name}>"
    layers = shape.layers
    block = m.block_size or 16
    bytes_per_token = shape.kv_bytes_per_token(dtype_bytes)
    blocks = m.kv_blocks or max(1, memory_bytes // (bytes_per_token * block))
    zero = FlatThenLinear(0.0, 0.0, 0.0, 1)
    # the loader's own message for a cold start it would reject (ColdStart raises a bare one)
    Reader({"median_s": cold_start_s}, source, "cold_start", {"median_s"}, ProfileError).number(
        "median_s"
    )
    profile = Profile(
        name=name,
        gpu_name=gpu_name,
        gpu_memory_bytes=int(memory_bytes),
        tensor_parallel=1,
        model=shape,
        kv=KvCache(
            block_size_tokens=block,
            gpu_memory_utilization=1.0,
            reserve_bytes=0,
            bytes_per_token=bytes_per_token,
            capacity_tokens=blocks * block,
            capacity_blocks=blocks,
        ),
        frontend_latency_s=fit.frontend_latency_s,
        iteration=IterationCoefficients(
            cpu=Affine(fit.engine_const_s, 0.0),
            embedding=Affine(0.0, 0.0),
            lm_head=zero,
            gemm={g: zero for g in GEMMS},
            elementwise=Affine(0.0, fit.per_token_s / layers),
            allreduce=None,
            prefill_attention=PrefillAttention(
                0.0, fit.engine_per_seq_s / layers, 0.0, fit.prefill_per_pair_s / layers, 0.0
            ),
            decode_attention=DecodeAttention(
                fit.decode_seqs,
                (0.0,) * len(fit.decode_seqs),
                tuple(
                    (d0 - fit.engine_const_s - fit.per_token_s * b) / layers
                    for b, d0 in zip(fit.decode_seqs, fit.decode_base_s, strict=True)
                ),
                tuple(d1 / layers for d1 in fit.decode_per_context_token_s),
            ),
        ),
        cold_start=ColdStart("fixed", cold_start_s, 0.0),
        record=Record(
            sources=[
                {
                    "endpoint": m.endpoint,
                    "model": m.model,
                    "used_for": "every term: end-to-end probe timings (chiron profile measure)",
                },
                {"path": config_source, "used_for": "model shape"},
            ],
            notes=[
                "measured from a live endpoint: whole-iteration times, client side; GEMM, LM head "
                "and embedding terms are folded into the per-iteration, per-token, per-pair and "
                "decode terms (chiron_gym/profiles/measure.py)",
                f"{len(m.decode)} decode-gap samples, {len(m.prefill)} prefill probes, "
                f"probed in {m.wall_s:.0f} s",
                "KV capacity: vllm:cache_config_info of the endpoint"
                if m.kv_blocks
                else "KV capacity: estimated from --memory-bytes (the endpoint did not report it)",
                *(
                    [f"validation: {', '.join(in_sample)} in-sample (no usable held-out point)"]
                    if in_sample
                    else []
                ),
            ],
            heldout_fraction=HELDOUT_FRACTION,
            seed=SEED,
            mape_pct=mape,
            points={"decode": len(m.decode), "prefill": len(m.prefill)},
            cold_start_observations_s=[cold_start_s],
            cold_start_source=(
                "given to chiron profile measure (--cold-start-s), not measured by it"
            ),
            frontend_source=(
                "TTFT of a lone request minus its engine iteration (chiron profile measure)"
            ),
        ),
    )
    doc = profile.to_document()
    parse(doc, source)  # the document must load like a shipped one
    return doc


def model_config(m: Measurements, given: str | None) -> tuple[dict[str, Any], str]:
    """The model's ``config.json``: the given path, or the served model's own folder."""
    candidates = [Path(given)] if given else [Path(m.root) / "config.json"]
    for p in candidates:
        if p.is_dir():
            p = p / "config.json"
        if p.exists():
            return _read_config(p), str(p)
    raise MeasureError(
        f"cannot find the model's config.json (tried {', '.join(map(str, candidates))}); "
        "pass --model-config PATH"
    )
