"""``chiron tune ppo``: Ray Tune over PPO's hyperparameters, then the best trial against Chiron.

The search space is a YAML mapping of hyperparameter to a distribution (default
``agents/hyperparams/tune-ppo.yml``)::

    learning_rate: {loguniform: [1.0e-5, 1.0e-3]}
    n_steps: {choice: [120, 240, 480]}
    gamma: {uniform: [0.95, 0.999]}
    n_epochs: {randint: [4, 11]}      # upper bound excluded, as numpy and Tune do
    clip_range: {grid: [0.1, 0.2]}    # every value, times --trials samples of the rest
    normalize: true                   # a plain value is fixed

Keys are ``agents.train.ppo.TUNABLE`` (PPO's arguments and ``normalize``); the rest of each
trial's hyperparameters come from ``agents/hyperparams/ppo.yml``. Each trial is a Tune function
trainable (one CPU) that trains PPO with ``agents.train.ppo.train``, scores it on evaluation seeds,
and reports ``eval_reward`` (mean episode reward) with the trained model as its checkpoint. Trials
are drawn by Tune's ``BasicVariantGenerator`` seeded with ``--seed``, so the same seed draws the
same configurations. Outputs in ``out``: ``ray/`` (Tune's experiment folder), ``trials.csv``,
``best/`` (the best trial's model, loadable as ``ppo:out/best``), ``best.json`` and
``vs-chiron/`` (``chiron evaluate`` of the best model and Chiron on the comparison seeds).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.model_files import TrainError
from agents.train.ppo import HYPERPARAM_DIR, TUNABLE

SPACE = HYPERPARAM_DIR / "tune-ppo.yml"
KINDS = ("uniform", "loguniform", "randint", "choice", "grid")
METRIC = "eval_reward"


@dataclass(frozen=True)
class TuneReport:
    """What ``tune_ppo`` found."""

    out: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any]
    comparison: list[dict[str, Any]]


def _domain(tune: Any, where: str, kind: str, arg: Any) -> Any:
    if kind in ("choice", "grid"):
        if not isinstance(arg, list) or not arg:
            raise TrainError(f"{where}: {kind}: expected a non-empty list of values")
        return tune.choice(arg) if kind == "choice" else tune.grid_search(arg)
    ok = (
        isinstance(arg, list)
        and len(arg) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in arg)
        and arg[0] < arg[1]
    )
    if not ok:
        raise TrainError(f"{where}: {kind}: expected [low, high] numbers with low < high")
    if kind == "loguniform" and arg[0] <= 0:
        raise TrainError(f"{where}: loguniform: the low bound must be > 0")
    if kind == "randint":
        if not all(isinstance(v, int) for v in arg):
            raise TrainError(f"{where}: randint: expected integer bounds")
        return tune.randint(arg[0], arg[1])
    return getattr(tune, kind)(float(arg[0]), float(arg[1]))


def load_space(path: Path | None = None) -> dict[str, Any]:
    """The YAML search space as Tune domains; errors name the file, key and what was expected."""
    import yaml

    from agents.run.executors import import_ray

    import_ray()
    from ray import tune

    p = path or SPACE
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TrainError(f"{p}: cannot read the search space: {e}") from e
    if not isinstance(doc, dict) or not doc:
        raise TrainError(f"{p}: expected a mapping of hyperparameter to distribution")
    space: dict[str, Any] = {}
    for key, spec in doc.items():
        where = f"{p}: {key}"
        if key not in TUNABLE:
            raise TrainError(f"{where}: unknown hyperparameter; known: {sorted(TUNABLE)}")
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in KINDS:
                raise TrainError(f"{where}: expected one of {{{', '.join(KINDS)}: ...}}")
            kind, arg = next(iter(spec.items()))
            space[key] = _domain(tune, where, kind, arg)
        else:
            space[key] = spec
    return space


def trial(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """One Tune trial: train, score on the evaluation seeds, report with the model."""
    import tempfile

    from ray import tune

    from agents import make_agent
    from agents.train.ppo import train
    from agents.train.scoring import evaluation_episode

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        train(
            settings["scenario"],
            settings["timesteps"],
            settings["seed"],
            run,
            hyperparams=settings["hyperparams"],
            eval_freq=0,
            checkpoint_freq=0,
            progress=False,
            env_kwargs=settings["env_kwargs"],
            overrides=config,
        )
        scores = [
            evaluation_episode(
                lambda ctx: make_agent(f"ppo:{run}", ctx),
                settings["scenario"],
                "full",
                s,
                settings["env_kwargs"],
            )
            for s in settings["eval_seeds"]
        ]
        n = len(scores)
        metrics = {
            METRIC: sum(x["reward"] for x in scores) / n,
            "interactive_attainment": sum(x["interactive_attainment"] for x in scores) / n,
            "gpu_hours": sum(x["gpu_hours"] for x in scores) / n,
        }
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _plain(v: Any) -> Any:
    """A JSON/CSV-friendly form of a sampled value (numpy scalars to Python)."""
    return v.item() if hasattr(v, "item") else v


def tune_ppo(
    scenario: str,
    trials: int,
    out: Path,
    *,
    space: Path | None = None,
    timesteps: int | None = None,
    seed: int = 0,
    eval_seeds: tuple[int, ...] = (1000, 1001),
    compare_seeds: tuple[int, ...] = (0, 1),
    hyperparams: Path | None = None,
    ray_address: str | None = None,
    storage: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> TuneReport:
    """Run ``trials`` Tune trials of PPO on ``scenario``; compare the best with Chiron.

    ``storage`` is Tune's ``storage_path`` (default ``out/ray``): on a multi-node cluster a
    folder every node can write, or a cloud URI.
    """
    from agents.run.evaluate import evaluate
    from agents.run.executors import ray_session
    from chiron_gym.scenario import load

    load(scenario)
    if trials < 1:
        raise TrainError(f"--trials must be >= 1, got {trials}")
    domains = load_space(space)
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "scenario": str(Path(scenario).resolve()) if Path(scenario).is_file() else scenario,
        "timesteps": timesteps,
        "seed": seed,
        "hyperparams": hyperparams.resolve() if hyperparams else None,
        "eval_seeds": list(eval_seeds),
        "env_kwargs": env_kwargs,
    }
    with ray_session(ray_address):
        from ray import tune
        from ray.tune.search.basic_variant import BasicVariantGenerator

        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trial, settings=settings), {"cpu": 1}),
            param_space=domains,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                num_samples=trials,
                search_alg=BasicVariantGenerator(random_state=seed),
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=storage or str(out / "ray"),
                verbose=1 if progress else 0,
            ),
        )
        grid = tuner.fit()
        rows: list[dict[str, Any]] = []
        for r in grid:
            if r.error is not None:
                rows.append({"trial": r.path, "error": str(r.error).strip().splitlines()[-1]})
                continue
            row = {k: _plain(v) for k, v in r.config.items()}
            row.update({k: r.metrics.get(k) for k in (METRIC, "interactive_attainment")})
            row["gpu_hours"] = r.metrics.get("gpu_hours")
            row["trial"] = r.metrics.get("trial_id")
            rows.append(row)
        ok = [r for r in grid if r.error is None and r.checkpoint is not None]
        if not ok:
            errors = "; ".join(str(r.get("error")) for r in rows)
            raise TrainError(f"every trial failed ({len(rows)}): {errors}")
        best_result = grid.get_best_result(metric=METRIC, mode="max", filter_nan_and_inf=True)
        best_dir = out / "best"
        best_result.checkpoint.to_directory(str(best_dir))
    rows.sort(key=lambda r: str(r.get("trial")))
    keys = sorted({k for r in rows for k in r} - {"trial"})
    with (out / "trials.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", *keys])
        for r in rows:
            w.writerow([r.get("trial"), *(r.get(k, "") for k in keys)])
    best = {
        "trial": best_result.metrics.get("trial_id"),
        "hyperparams": {k: _plain(v) for k, v in best_result.config.items()},
        METRIC: best_result.metrics[METRIC],
        "interactive_attainment": best_result.metrics["interactive_attainment"],
        "gpu_hours": best_result.metrics["gpu_hours"],
        "model": str(best_dir),
    }
    (out / "best.json").write_text(json.dumps(best, indent=1, sort_keys=True) + "\n")
    comparison = evaluate(
        ["chiron", f"ppo:{best_dir}"],
        [scenario],
        list(compare_seeds),
        out / "vs-chiron",
        plots=True,
        tensorboard=False,
        progress=progress,
        env_kwargs=env_kwargs,
    )
    if not math.isfinite(best[METRIC]):
        raise TrainError(f"the best trial's {METRIC} is not finite: {best[METRIC]}")
    return TuneReport(out, rows, best, comparison)


__all__ = ["KINDS", "METRIC", "SPACE", "TuneReport", "load_space", "trial", "tune_ppo"]
