"""chiron evaluate: outputs, determinism, TensorBoard tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.run.reporting import COLUMNS, TB_EPISODE, TB_SCALARS
from chiron_gym.cli import main


def grid_args(out: Path, *extra: str) -> list[str]:
    """``chiron evaluate`` of Chiron and static on default, seeds 0-1, into ``out``."""
    grid = ["--agents", "chiron,static", "--scenarios", "default", "--seeds", "0-1"]
    return ["evaluate", *grid, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval")
    assert main(grid_args(out)) == 0
    return out


def test_outputs_exist(grid: Path) -> None:
    for rel in (
        "results.csv",
        "results.json",
        "results.md",
        "plots/compare_default.png",
        "plots/default/chiron_seed0.png",
        "plots/default/static_seed1.png",
    ):
        assert (grid / rel).is_file(), rel
    rows = json.loads((grid / "results.json").read_text())
    assert len(rows) == 4 and set(COLUMNS) <= set(rows[0])
    header = (grid / "results.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS)
    md = (grid / "results.md").read_text()
    assert "### default (2 seeds)" in md and "| static |" in md and "x)" in md


def test_same_seeds_same_results_csv(grid: Path, tmp_path: Path) -> None:
    args = grid_args(tmp_path, "--no-plots", "--no-tensorboard", "--json")
    assert main(args) == 0
    assert (tmp_path / "results.csv").read_bytes() == (grid / "results.csv").read_bytes()


def test_tensorboard_has_the_documented_tags(grid: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(
        str(grid / "tb" / "default" / "chiron" / "seed0"),
        size_guidance={"scalars": 0, "images": 0, "tensors": 0},
    )
    acc.Reload()
    tags = acc.Tags()
    assert set(TB_SCALARS) | set(TB_EPISODE) <= set(tags["scalars"])
    assert "episode/summary" in tags["images"]
    text_tags = {t for t in tags["tensors"]}
    assert {"config/scenario/text_summary", "config/agent/text_summary"} <= text_tags
    steps = [e.step for e in acc.Scalars("cluster/instances_interactive")]
    assert steps[0] == 10 and steps[-1] == 600  # simulated seconds


def test_bad_arguments_are_clear(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["evaluate", "--agents", "chiorn", "--out", str(tmp_path)]) == 2
    assert "unknown agent 'chiorn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--seeds", "a-b"])


def test_agent_specs_become_safe_file_names() -> None:
    from agents.run.reporting import slug

    assert slug("ppo:agents/models/ppo-default") == "ppo_agents_models_ppo-default"
    assert slug("chiron") == "chiron"
