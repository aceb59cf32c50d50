"""Deference outside the training support (agents/defer.py): a residual policy plays Chiron's
own action while the last minute's interactive arrival rate is above its threshold, and its own
correction below it; the threshold comes from ``chiron support`` and travels in ``train.json``.

The model is the shipped residual member made to answer +1 on every pool (as in
``test_ensemble.py``): a policy whose every action we know, so each step tells which branch ran.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents import make_agent, split_ppo_spec
from agents.defer import DEFER_FEATURE, Deferral
from agents.run.episode import run_episode
from agents.run.support import support_quantile
from chiron_gym.cli import main
from chiron_gym.config import InputError
from chiron_gym.envs import AutoscaleEnv
from tests.agents.test_ensemble import fixed

KW = {"horizon_s": 600.0}


def _steps(spec: str, seed: int = 2) -> list[tuple[float, bool]]:
    """(the rate the deferral reads, whether the action was Chiron's) for every decision."""
    env = AutoscaleEnv("default", action_mode="global", max_step_change=16, **KW)
    obs, _ = env.reset(seed=seed)
    agent = make_agent(spec, env.agent_context())
    out, done, start = [], False, True
    while not done:
        action, _ = agent.predict(obs, episode_start=np.array([start]))
        start = False
        lead = getattr(agent, "lead", agent)
        rate = Deferral(0.0).raw(obs)
        out.append((rate, bool((action == lead.residual.chiron_action()).all())))
        obs, _, term, trunc, _ = env.step(action)
        done = term or trunc
    return out


def test_the_policy_defers_to_chiron_exactly_while_the_rate_is_above_the_threshold(
    tmp_path: Path,
) -> None:
    up = fixed(tmp_path, "up", 1)
    rates = [r for r, _ in _steps(f"ppo:{up}")]
    above = float(np.median(rates))  # both branches occur
    steps = _steps(f"ppo:{up}[defer_above={above}]")
    assert [r for r, _ in steps] == rates  # the deferral does not change what the policy sees
    deferred = [r > above for r, _ in steps]
    assert 0 < sum(deferred) < len(steps)
    # Chiron's action exactly when deferring; +1 (never Chiron's here) otherwise
    assert [chiron for _, chiron in steps] == deferred
    # an unreachable threshold is the model; a zero threshold plays Chiron whenever traffic came
    model = run_episode(f"ppo:{up}", "default", 2, env_kwargs=KW).row
    never = run_episode(f"ppo:{up}[defer_above=1e9]", "default", 2, env_kwargs=KW).row
    assert never["reward"] == model["reward"]
    chiron = run_episode("chiron", "default", 2, env_kwargs=KW).row
    mostly = run_episode(f"ppo:{up}[defer_above=0]", "default", 2, env_kwargs=KW).row
    assert model["gpu_hours"] > mostly["gpu_hours"] >= chiron["gpu_hours"]


def test_an_ensemble_carries_its_deferral_in_train_json(tmp_path: Path) -> None:
    up = fixed(tmp_path, "up", 1)
    rates = [r for r, _ in _steps(f"ppo:{up}")]
    above = float(np.median(rates))
    code = main(
        ["ensemble", str(tmp_path / "ens"), str(up), str(up), str(up), "--defer-above",
         str(above), "--defer-source", "a test"]
    )  # fmt: skip
    assert code == 0
    record = json.loads((tmp_path / "ens" / "train.json").read_text())
    assert record["defer"] == {"feature": DEFER_FEATURE, "above": above, "source": "a test"}
    from_file = _steps(f"ppo:{tmp_path / 'ens'}")
    assert from_file == _steps(f"ppo:{up}[defer_above={above}]")
    # the spec's threshold overrides the file's
    assert all(not c for _, c in _steps(f"ppo:{tmp_path / 'ens'}[defer_above=1e9]"))
    # and its quantity: on the five-minute peak, at the same threshold, it defers at least as often
    peak = _steps(
        f"ppo:{tmp_path / 'ens'}[defer_above={above};defer_feature=interactive.arrival_peak_5m]"
    )
    assert sum(c for _, c in peak) > sum(c for _, c in from_file)


def test_bad_deferrals_are_refused_with_where_and_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    up = fixed(tmp_path, "up", 1)
    for spec, match in (
        (f"ppo:{up}[defer_abov=3]", "key of defer_above"),
        (f"ppo:{up}[defer_above=fast]", "expected a number"),
        (f"ppo:{up}[defer_feature=interactive.arrival_peak_5m]", "needs defer_above"),
    ):
        with pytest.raises(ValueError, match=match):
            split_ppo_spec(spec)
    with pytest.raises(InputError, match="finite number >= 0"):
        Deferral(-1.0)
    with pytest.raises(InputError, match="not an observation feature"):
        Deferral(1.0, "interactive.arrival_rate_2m")
    with pytest.raises(InputError, match="fixed scale"):
        Deferral(1.0, "interactive.waiting")  # a per-pool feature the deferral cannot decode
    record = json.loads((up / "train.json").read_text())
    (up / "train.json").write_text(json.dumps({**record, "defer": {"above": "high"}}))
    env = AutoscaleEnv("default", action_mode="global", max_step_change=16)
    env.reset(seed=0)
    with pytest.raises(InputError, match=f"{up}: defer: expected"):
        make_agent(f"ppo:{up}", env.agent_context())
    # a model that acts alone has no Chiron to defer to
    direct = Path(__file__).resolve().parents[2] / "agents" / "models" / "ppo-general-direct"
    ctx = AutoscaleEnv("default", **_direct_env(direct)).agent_context()
    with pytest.raises(InputError, match="only a residual policy"):
        make_agent(f"ppo:{direct}[defer_above=3]", ctx)
    # and the command line says so before any episode runs
    out = tmp_path / "eval"
    for spec, says in (
        (f"ppo:{direct}[defer_above=3]", "only a residual policy"),
        (f"ppo:{up}[defer_above=3;defer_feature=batch.queue_2m]", "not an observation feature"),
        (f"ppo:{up}[defer_abov=3]", "key of defer_above"),
    ):
        args = ["evaluate", "--agents", spec, "--scenarios", "default", "--out", str(out)]
        assert main(args) == 2
        assert says in capsys.readouterr().err
    assert not out.exists()


def _direct_env(folder: Path) -> dict[str, object]:
    meta = json.loads((folder / "train.json").read_text())
    return {"action_mode": meta["action_mode"], **meta.get("env_kwargs", {})}


def test_support_reads_the_feature_over_every_decision_of_each_draw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = support_quantile("default", [0, 1], [0.0, 0.5, 1.0], progress=False)
    assert out["decisions"] == 2 * 60  # two 600-s episodes of 10-s decisions
    q = out["quantiles"]
    assert q["0"] <= q["0.5"] <= q["1"] == out["max"] > 0
    assert (
        support_quantile("default", [0, 1], [0.5], progress=False)["quantiles"]["0.5"] == (q["0.5"])
    )  # same draws, same figure
    assert main(["support", "default", "--seeds", "0-1", "--quantiles", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quantiles"]["0.5"] == q["0.5"]
    assert main(["support", "default", "--quantiles", "1.5"]) == 2
    assert "each in [0, 1]" in capsys.readouterr().err


def test_the_five_minute_peak_is_read_from_the_observation_as_the_env_computed_it() -> None:
    """The derived quantity (the busiest window's rate in the last 5 minutes) decoded from the
    float32 observation equals the one from the environment's raw values, and stays up for five
    minutes after a burst while the one-minute rate falls."""
    peak, rate = Deferral(0.0, "interactive.arrival_peak_5m"), Deferral(0.0)
    assert peak.inputs == ("interactive.arrival_rate_5m", "interactive.arrival_peak_over_mean_5m")
    env = AutoscaleEnv("default", action_mode="global", max_step_change=16)
    obs, _ = env.reset(seed=0)
    seen = []
    for _ in range(40):
        obs, _, _, _, info = env.step(np.full(3, 16, dtype=np.int64))
        seen.append((peak.raw(obs), peak.value(info["raw"]), rate.raw(obs)))
    assert all(abs(a - b) <= 1e-4 * max(1.0, b) for a, b, _ in seen)
    assert all(p >= r - 1e-3 for p, _, r in seen[6:])  # the peak window is at least the mean
    out = support_quantile("default", [0], [1.0], feature=peak.feature, progress=False)
    assert out["max"] >= max(r for _, _, r in seen) > 0
