"""Rendering: ``ansi`` (a status line) and ``rgb_array`` (a small dashboard, numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from chiron_gym.sim import ALL_POOL_NAMES, CLASS_NAMES, POOL_NAMES

WIDTH, HEIGHT = 320, 200
_COLORS = {
    "ready": (46, 139, 87),
    "starting": (240, 180, 40),
    "draining": (150, 150, 150),
    "queue": (70, 110, 200),
    "ok": (46, 139, 87),
    "bad": (200, 60, 60),
}


def _shown(raw: dict[str, float]) -> list[str]:
    """The pools drawn: the aggregated three; with prefill and decode pools, those that exist."""
    if raw.get("prefill.exists", 0.0) < 0.5:
        return list(POOL_NAMES)
    return [p for p in ALL_POOL_NAMES if raw[f"{p}.exists"] > 0.5]


def ansi(raw: dict[str, float], t: float, reward: float) -> str:
    """One status line."""
    pools = " ".join(
        f"{p[:3]}={int(raw[f'{p}.ready'])}+{int(raw[f'{p}.starting'])}@{int(raw[f'{p}.batch_cap'])}"
        for p in _shown(raw)
        if raw[f"{p}.exists"] > 0.5
    )
    return (
        f"t={t:7.0f}s {pools} q=i{int(raw['interactive.queue'])}/b{int(raw['batch.queue'])} "
        f"ttft95/slo={raw['interactive.ttft_p95_over_slo']:.2f} "
        f"att=i{raw['interactive.attainment']:.2f}/b{raw['batch.attainment']:.2f} "
        f"batch_wait/slack={raw['batch.wait_over_slack']:.2f} r={reward:.2f}"
    )


def _bar(
    img: npt.NDArray[np.uint8], x: int, y0: int, h: int, w: int, color: tuple[int, ...]
) -> None:
    h = max(0, min(h, y0))
    img[y0 - h : y0, x : x + w] = color


def rgb(raw: dict[str, float]) -> npt.NDArray[np.uint8]:
    """A dashboard frame: instances per pool (stacked), queues (log), latency vs SLO."""
    img = np.full((HEIGHT, WIDTH, 3), 250, dtype=np.uint8)
    base = HEIGHT - 20
    img[base, :] = 0
    x = 10
    shown = _shown(raw)
    step = 40 if len(shown) <= 3 else 120 // len(shown)  # the same 120 pixels for 4 or 5
    for p in shown:
        y = base
        for part in ("ready", "starting", "draining"):
            h = int(raw[f"{p}.{part}"] * 8)
            _bar(img, x, y, h, step - 10, _COLORS[part])
            y -= h
        x += step
    x += 10
    for c in CLASS_NAMES:
        h = int(np.log1p(raw[f"{c}.queue"]) * 12)
        _bar(img, x, base, h, 20, _COLORS["queue"])
        x += 28
    x += 10
    slo_line = base - 60  # 1.0 x SLO
    img[slo_line, x : WIDTH - 5] = (0, 0, 0)
    for key in (
        "interactive.ttft_p95_over_slo",
        "interactive.itl_p95_over_slo",
        "batch.itl_p95_over_slo",
        "batch.wait_over_slack",
    ):
        v = raw[key]
        color = _COLORS["bad"] if v > 1 else _COLORS["ok"]
        _bar(img, x, base, int(min(v, 2.9) * 60), 18, color)
        x += 24
    return img
