"""Calibration from a live server and sim-versus-real fidelity, on a real vLLM CPU server."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from chiron_gym import profiles
from chiron_gym.cli import main
from tests.real.conftest import vllm_server

SCENARIO = Path(__file__).with_name("real-fidelity.toml")
pytestmark = pytest.mark.slow


def test_measure_a_live_server_then_the_simulator_matches_it(
    vllm_python: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cpu-tiny.json"
    with vllm_server(vllm_python, tiny_model, tmp_path / "logs") as url:
        rc = main(["profile", "measure", "--endpoint", url, "--out", str(out), "--quick"])
        assert rc == 0, capsys.readouterr().err
        prof = profiles.load(out)
        assert prof.model.layers == 2 and prof.model.head_dim == 64  # read from the model folder
        assert prof.kv.capacity_blocks > 0
        raw = json.loads(out.read_text())
        assert raw["provenance"]["sources"][0]["endpoint"] == url
        for component in ("decode_iteration", "prefill_ttft"):  # held out and recorded (the
            assert math.isfinite(prof.mape_pct[component])  # host's noise sets its size)
        # the measured engine: a decode iteration takes time at every probed batch size
        pm = prof.perf_model()
        for n in (1, 4, 16):
            base, slope, _ = pm.decode_cost(n, 100.0 * n)
            assert base + slope * 100.0 * n > 0

        report = tmp_path / "fidelity.json"
        args = ["fidelity", "--scenario", str(SCENARIO), "--profile", str(out)]
        rc = main([*args, "--endpoint", url, "--drain-s", "120", "--out", str(report)])
        assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "| interactive | ttft |" in printed  # the table, sim beside real
    rep = json.loads(report.read_text())
    counts = rep["counts"]["interactive"]
    assert counts["finished_real"] == counts["requests"] == counts["compared"]
    rows = {(r["metric"]): r for r in rep["rows"]}
    assert set(rows) == {"ttft", "itl", "e2e"}
    for r in rows.values():
        for q in (50, 95):
            assert math.isfinite(r[f"sim_p{q}_s"]) and math.isfinite(r[f"real_p{q}_s"])
    # No accuracy bound here: on a loaded 2-core CI host the real side's streaming can fall
    # behind (one fresh-clone run saw whole responses arrive in one burst: TTFT 1.6 s, ITL
    # 0.02 ms at 8 req/s). The accuracy study and its misses are in docs/fidelity.md.
