"""Scenario families: draws per episode from the reset seed, validated like scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import chiron_gym  # noqa: F401  (registers the environment)
from chiron_gym.scenario.families import FamilyError, is_family, load_family, names


def test_bundled_training_family_draws_valid_varied_scenarios() -> None:
    fam = load_family("family:train")
    assert "train" in names()
    kinds = set()
    for seed in range(60):
        sc, drawn = fam.sample(seed)
        kinds.add(sc.sources[0].arrival["kind"])
        assert "instance.profile" in drawn and "workload[1].deadline_s" in drawn
    assert kinds == {"poisson", "gamma", "diurnal", "flash_crowd"}


def test_the_wide_family_adds_on_off_arrivals_long_prompts_and_4k_chunks() -> None:
    """``family:wide`` is ``family:train`` plus on/off arrivals, prompts to 16k tokens and 4k
    prefill chunks (its header says where each comes from)."""
    fam = load_family("family:wide")
    assert "wide" in names()
    kinds, chunks, longest = set(), set(), 0
    for seed in range(80):
        sc, drawn = fam.sample(seed)
        kinds.add(sc.sources[0].arrival["kind"])
        chunks.add(drawn["instance.max_num_batched_tokens"])
        longest = max(longest, int(sc.workload(seed).prompt_tokens.max()))
    assert kinds == {"poisson", "gamma", "diurnal", "flash_crowd", "onoff"}
    assert chunks == {2048, 4096}
    assert 8000 < longest <= 16000


def test_the_wide_prod_family_is_as_bursty_as_production() -> None:
    """``family:wide-prod`` draws fewer bursty episodes than ``family:wide``: about 19% burstier
    than a CV of 4.3 (on/off, or a Gamma CV above it), as ServeGen's traffic is (15%)."""

    def bursty_share(name: str) -> float:
        fam = load_family(name)
        bursty = 0
        for seed in range(400):
            arrival = fam.sample(seed)[0].sources[0].arrival
            bursty += arrival["kind"] == "onoff" or (
                arrival["kind"] == "gamma" and arrival["cv"] > 4.3
            )
        return bursty / 400

    prod, wide = bursty_share("family:wide-prod"), bursty_share("family:wide")
    assert 0.12 < prod < 0.26 and wide > 0.25 and prod < wide - 0.07


def test_the_wide_peak_family_draws_production_sized_surges() -> None:
    """``family:wide-peak`` draws surges above 25 req/s (``family:wide``'s ceiling) in about one
    episode of six, up to 100 req/s, and is ``family:wide`` otherwise."""

    def peak(arrival: dict[str, Any]) -> float:
        key = {"flash_crowd": "peak_rate_per_s", "onoff": "rate_on_per_s"}.get(arrival["kind"])
        return float(arrival[key]) if key else 0.0

    fam, wide = load_family("family:wide-peak"), load_family("family:wide")
    peaks = [peak(fam.sample(seed)[0].sources[0].arrival) for seed in range(400)]
    assert 0.10 < np.mean(np.array(peaks) > 25.0) < 0.25 and 25.0 < max(peaks) <= 100.0
    assert max(peak(wide.sample(seed)[0].sources[0].arrival) for seed in range(400)) <= 25.0
    a, b = fam.sample(3)[0], wide.sample(3)[0]  # the deployment's bounds are family:wide's

    def bounds(sc: Any) -> list[tuple[int, int]]:
        return [(p.min_instances, p.max_instances) for p in sc.cluster.pools]

    assert bounds(a) == bounds(b) and a.horizon_s == b.horizon_s and a.max_gpus == b.max_gpus


def test_same_seed_same_scenario() -> None:
    fam = load_family("family:train")
    (a, da), (b, db) = fam.sample(11), fam.sample(11)
    assert da == db
    wa, wb = a.workload(0), b.workload(0)
    assert np.array_equal(wa.arrival_s, wb.arrival_s)
    assert fam.sample(12)[1] != da


def test_env_samples_a_scenario_per_reset(tmp_path: Path) -> None:
    env = gym.make("chiron_gym/Autoscale-v0", scenario="family:train", horizon_s=60.0)
    obs_a, info_a = env.reset(seed=3)
    obs_b, info_b = env.reset(seed=3)
    _, info_c = env.reset(seed=4)
    assert info_a["scenario"]["family"] == "train"
    assert info_a["scenario"]["draws"] == info_b["scenario"]["draws"]
    assert info_a["scenario"]["draws"] != info_c["scenario"]["draws"]
    assert obs_a.tobytes() == obs_b.tobytes()
    env.reset(seed=3)
    obs, _, _, _, _ = env.step(env.action_space.sample())
    assert obs.shape == env.observation_space.shape
    env.close()


def test_bad_draws_name_the_file_and_key(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parents[1] / "scenarios" / "default.toml"
    text = base.read_text().replace("rate_per_s = 6.0", "rate_per_s = { range = [9.0, 2.0] }")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert is_family(bad)
    with pytest.raises(FamilyError, match=r"bad\.toml: workload\[0\]\.arrival\.rate_per_s"):
        load_family(bad)
    assert not is_family(base)


def test_a_range_reaching_an_invalid_value_fails_at_load(tmp_path: Path) -> None:
    """Each end of every range is parsed when the family loads: a range that reaches an
    invalid value fails there, naming the key, not in the rare episode that draws it."""
    base = Path(__file__).resolve().parents[1] / "scenarios" / "default.toml"
    text = base.read_text().replace("rate_per_s = 6.0", "rate_per_s = { range = [-1.0, 6.0] }")
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(FamilyError, match=r"rate_per_s = -1.0.*low end"):
        load_family(bad)
    ok = base.read_text().replace("count = 3000", "count = { int_range = [0, 10] }")
    bad.write_text(ok)  # a batch job of 0 requests is no job: valid
    fam = load_family(bad)
    sizes = {d["workload[1].arrival.count"] for _, d in map(fam.sample, range(40))}
    assert 0 in sizes


def test_one_draw_by_name_is_a_fixed_scenario() -> None:
    """``family:train@SEED``: the draw the family makes for reset seed SEED, as a scenario."""
    from chiron_gym.scenario import ScenarioError, load

    sc = load("family:train@7")
    drawn, _ = load_family("family:train").sample(7)
    assert sc.name == "train@7"
    for p, q in zip(sc.cluster.pools, drawn.cluster.pools, strict=True):
        assert (p.initial_instances, p.instance.cold_start) == (
            q.initial_instances,
            q.instance.cold_start,
        )
    assert not is_family("family:train@7")
    env = gym.make("chiron_gym/Autoscale-v0", scenario="family:train@7", horizon_s=60.0)
    _, a = env.reset(seed=0)
    _, b = env.reset(seed=1)  # another traffic seed, the same scenario
    assert a["scenario"]["name"] == b["scenario"]["name"] == "train@7"
    with pytest.raises(ScenarioError, match="SEED an integer >= 0"):
        load("family:train@-3")
