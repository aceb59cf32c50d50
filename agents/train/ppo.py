"""Training PPO (Stable-Baselines3) on ``chiron_gym/Autoscale-v0``.

``train(...)`` (``chiron train ppo``) trains SB3's PPO with parallel environments
(``SubprocVecEnv`` when ``n_envs > 1``), ``VecNormalize`` saved beside the model, hyperparameters
per scenario from ``agents/hyperparams/ppo.yml`` (rl-baselines3-zoo format), checkpoints, and an
evaluation every ``eval_freq`` steps that scores PPO beside Chiron on the same seeds.

TensorBoard (``<out>/tb``): SB3's standard scalars; per finished episode (averaged per rollout)
``episode/interactive_attainment``, ``episode/batch_attainment``, ``episode/gpu_hours`` and
``reward_terms/<term>``; at each evaluation ``eval/ppo_reward``, ``eval/chiron_reward``,
``eval/ppo_minus_chiron``, ``eval/ppo_interactive_attainment``, ``eval/ppo_gpu_hours`` and the
figure ``eval/episode`` (one evaluation episode's time series).

Plain PPO, not MaskablePPO: the environment clips what exceeds bounds or the budget (and reports
it), so an invalid action is a no-op rather than an error, and plain PPO keeps VecNormalize,
SubprocVecEnv and the SB3 save format without sb3-contrib. We did not compare the two.

The trained model acts as ``agents.ppo.PPOAgent`` (``chiron evaluate --agents ppo:PATH``).

Why one module of about 570 lines: one training run is one pipeline (its hyperparameters, its
environments, the model, a warm start, the record it writes) and ``train_seeds`` runs that same
pipeline per seed; its callbacks, model files, residual environment and scoring are modules of
their own.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.model_files import (
    ObsNormalizer,
    TrainError,
    checkpoint_name,
    load_normalizer,
    save_normalizer,
)
from agents.ppo import PPOAgent, algo_class
from chiron_gym.envs import FEATURES, AutoscaleEnv

HYPERPARAM_DIR = Path(__file__).resolve().parents[1] / "hyperparams"
HYPERPARAMS = HYPERPARAM_DIR / "ppo.yml"
PPO_KEYS = {
    "n_steps",
    "batch_size",
    "n_epochs",
    "gamma",
    "gae_lambda",
    "learning_rate",
    "ent_coef",
    "clip_range",
    "vf_coef",
    "max_grad_norm",
    "policy_kwargs",
}
TUNABLE = PPO_KEYS | {"normalize"}  # what a Tune trial or ``train(overrides=...)`` may set


def _policy_kwargs(value: Any, source: str) -> dict[str, Any]:
    """A mapping, or the zoo's ``"dict(net_arch=[64, 64])"`` string (parsed, never evaluated)."""
    if isinstance(value, dict):
        return value
    try:
        node = ast.parse(str(value), mode="eval").body
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "dict"
            and not node.args
        ):
            raise ValueError
        return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except (SyntaxError, ValueError):
        raise TrainError(
            f"{source}: policy_kwargs = {value!r}: expected a mapping or 'dict(key=literal, ...)'"
        ) from None


def load_hyperparams(scenario: str, path: Path | None = None) -> dict[str, Any]:
    """The hyperparameters of ``scenario`` (or of ``default``) from a zoo-format YAML file."""
    import yaml

    p = path or HYPERPARAMS
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TrainError(f"{p}: cannot read hyperparameters: {e}") from e
    if not isinstance(doc, dict) or ("default" not in doc and scenario not in doc):
        raise TrainError(f"{p}: expected a mapping with a {scenario!r} or 'default' entry")
    if scenario.startswith("family:") and scenario not in doc:
        import warnings

        # a family is a training mix chosen on purpose: its network and rollout length silently
        # becoming the default's confounded one comparison already (docs/study-benchmark.md,
        # Lever 2)
        warnings.warn(
            f"{p}: no entry for {scenario}: training with the 'default' hyperparameters (give "
            "the family an entry; a YAML alias shares another's)",
            stacklevel=2,
        )
    entry = doc.get(scenario, doc.get("default"))
    if not isinstance(entry, dict):
        raise TrainError(f"{p}: {scenario}: expected a mapping of hyperparameters")
    hp = dict(entry)
    known = TUNABLE | {"n_timesteps", "policy"}
    unknown = set(hp) - known
    if unknown:
        raise TrainError(
            f"{p}: {scenario}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    if "policy_kwargs" in hp:
        hp["policy_kwargs"] = _policy_kwargs(hp["policy_kwargs"], f"{p}: {scenario}")
    return hp


def check_scenario(scenario: str) -> str:
    """Load ``scenario`` (a scenario or a family) for its errors; its hyperparameter key (its
    name when bundled, else ``default``)."""
    import scenarios as bundled
    from chiron_gym.scenario import check_spec

    check_spec(scenario)
    return scenario if scenario in bundled.names() or scenario.startswith("family:") else "default"


def env_factory(
    scenario: str,
    action_mode: str,
    env_kwargs: dict[str, Any] | None = None,
    residual_step: int | None = None,
    residual_penalty: float = 0.0,
    features: int | None = None,
    relative_reward: bool = False,
) -> Callable[[], Any]:
    """A picklable environment constructor (``make_vec_env`` adds the Monitor); with
    ``residual_step``, the environment as a residual policy on Chiron sees it (charged
    ``residual_penalty`` per instance of correction, a training-only term); with
    ``relative_reward``, paid its reward relative to Chiron's on the same draw; with
    ``features``, the policy reads only the observation's first ``features`` (an earlier
    release's)."""

    def build() -> AutoscaleEnv:
        return AutoscaleEnv(scenario, action_mode=action_mode, **(env_kwargs or {}))

    def make() -> Any:
        env: Any = build()
        if residual_step is not None:
            from agents.train.residual_env import ResidualWrapper

            env = ResidualWrapper(env, residual_step, residual_penalty, features)
        if relative_reward:  # Chiron plays the same draw: a residual's settings are its own
            from agents import agent_env_kwargs
            from agents.train.residual_env import RelativeToChiron

            if residual_step is not None:
                chiron_env = build()
            else:
                own = {k: v for k, v in (env_kwargs or {}).items() if k != "max_target"}
                chiron_env = AutoscaleEnv(scenario, **{**own, **agent_env_kwargs("chiron")})
            env = RelativeToChiron(env, chiron_env)
        if residual_step is not None:
            return env
        if features is not None:
            import gymnasium as gym

            box = env.observation_space
            assert isinstance(box, gym.spaces.Box)
            return gym.wrappers.TransformObservation(
                env,
                lambda obs: obs[:features],
                gym.spaces.Box(box.low[:features], box.high[:features], dtype=np.float32),
            )
        return env

    return make


VEC_ENVS = ("subproc", "inline", "shards")


def _inline(
    scenario: str,
    action_mode: str,
    env_kwargs: dict[str, Any] | None,
    n_envs: int,
    seed: int,
    shards: bool = False,
) -> Any:
    """``n_envs`` environments in this process (``InlineVecEnv``), or split over one process per
    core (``ShardedVecEnv``), with episode statistics."""
    from stable_baselines3.common.vec_env import VecMonitor

    from agents.train.callbacks import MONITOR_KEYS
    from agents.train.vector import InlineVecEnv, ShardedVecEnv

    kw = {"scenario": scenario, "action_mode": action_mode, **(env_kwargs or {})}
    workers = min(n_envs, os.cpu_count() or 1)
    inline = ShardedVecEnv(n_envs, workers, **kw) if shards else InlineVecEnv(n_envs, **kw)
    inline.seed(seed)
    return VecMonitor(inline, info_keywords=MONITOR_KEYS)


@dataclass
class TrainResult:
    """What ``train`` did."""

    out: Path
    timesteps: int
    wall_s: float

    @property
    def steps_per_s(self) -> float:
        return self.timesteps / self.wall_s if self.wall_s > 0 else float("nan")


def train(
    scenario: str,
    timesteps: int | None,
    seed: int,
    out: Path,
    *,
    n_envs: int = 1,
    action_mode: str = "full",
    hyperparams: Path | None = None,
    eval_freq: int = 10_000,
    eval_seeds: tuple[int, ...] = (1000, 1001),
    checkpoint_freq: int = 20_000,
    progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    algo: str = "ppo",
    residual: str | None = None,
    residual_step: int = 1,
    residual_penalty: float = 0.0,
    observation_features: int | None = None,
    relative_reward: bool = False,
    init: Path | None = None,
    vec_env: str = "subproc",
) -> TrainResult:
    """Train PPO; write ``model.zip``, ``vecnormalize.pkl``, ``train.json`` and TensorBoard runs.

    ``scenario`` is a scenario or a family (``family:train``: a new draw every episode).
    ``overrides`` replace entries of the hyperparameter file (a Tune trial's sample).
    ``residual="chiron"`` trains a correction of Chiron's global loop (``agents/residual.py``);
    ``residual_penalty`` charges each instance of correction that many reward units per decision
    during training (not in evaluation). ``observation_features`` trains on the observation's
    first N features (an earlier release's; ``docs/env.md``), e.g. to reproduce a model trained
    before features were appended; the model then reads that prefix wherever it plays.
    ``relative_reward`` pays the policy (residual or standalone) its reward relative to Chiron's
    on the same draw, per step, in units of Chiron's mean per-step reward there
    (``agents/residual.py``; a standalone policy's Chiron plays in Chiron's own settings).
    ``init`` (a trained model's folder or ``.zip``) starts from that model's weights, optimiser
    state and observation statistics instead of a fresh policy (fine-tuning; ``warm_start``).
    ``vec_env``: ``"subproc"`` (one process per environment when ``n_envs > 1``),
    ``"inline"`` (all of them in this process, ``agents/train/vector.py``) or ``"shards"``
    (split over one process per core, each stepping its share inline); the last two play the
    plain environment only, not ``residual`` or ``observation_features``.
    """
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

    from agents.train.callbacks import MONITOR_KEYS, ProgressBar, training_callbacks

    cls = algo_class(algo)
    step: int | None = None
    if residual is None and residual_penalty != 0.0:
        raise TrainError("--residual-penalty goes with --residual")
    if observation_features is not None and not 1 <= observation_features <= len(FEATURES):
        raise TrainError(
            f"--observation-features {observation_features}: expected 1 to {len(FEATURES)} "
            "(the observation's features, docs/env.md)"
        )
    if residual is not None:
        from agents.residual import RESIDUAL_ENV_KWARGS, RESIDUALS
        from agents.train.residual_env import residual_penalty_error

        if residual not in RESIDUALS:
            raise TrainError(f"--residual {residual!r}: known: {', '.join(RESIDUALS)}")
        if action_mode != "global":
            raise TrainError(f"--residual runs in action mode global, not {action_mode!r}")
        if algo != "ppo":
            raise TrainError(f"--residual goes with --algo ppo, not {algo!r}")
        if residual_step < 1:
            raise TrainError(f"--residual-step must be >= 1, got {residual_step}")
        error = residual_penalty_error(residual_penalty)
        if error is not None:
            raise TrainError(f"--residual-penalty {error}")
        step = residual_step
        # Chiron's environment settings (its step limit), the action mode passed on its own
        merged = {**RESIDUAL_ENV_KWARGS, **(env_kwargs or {})}
        env_kwargs = {k: v for k, v in merged.items() if k != "action_mode"}
    if init is not None and residual is None and env_kwargs is None:
        # a fine-tuning run plays in the settings its model acted in (a clone, ``chiron train
        # bc``: its teacher's step limit)
        from agents.spec import acting

        env_kwargs = acting(PPOAgent.files(init)[2].get("env_kwargs") or {}) or None
    key = check_scenario(scenario)  # a clear error before any process starts
    if hyperparams is None and algo != "ppo":
        hyperparams = HYPERPARAM_DIR / f"{algo}.yml"
    hp = load_hyperparams(key, hyperparams)
    policy = str(hp.get("policy", "MlpLstmPolicy" if algo == "recurrent-ppo" else "MlpPolicy"))
    if ("Lstm" in policy) != (algo == "recurrent-ppo"):
        raise TrainError(
            f"{hyperparams or HYPERPARAMS}: policy {policy!r} does not go with --algo {algo} "
            "(recurrent-ppo takes an Lstm policy, e.g. MlpLstmPolicy; the others MlpPolicy)"
        )
    overrides = dict(overrides or {})
    unknown = set(overrides) - TUNABLE
    if unknown:
        raise TrainError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(TUNABLE)}")
    if "policy_kwargs" in overrides:  # the file's own entry was parsed by load_hyperparams
        overrides["policy_kwargs"] = _policy_kwargs(overrides["policy_kwargs"], "policy_kwargs")
    hp.update(overrides)
    steps = int(timesteps or hp.get("n_timesteps", 50_000))
    if n_envs < 1:
        raise TrainError(f"--n-envs must be >= 1, got {n_envs}")
    if vec_env not in VEC_ENVS:
        raise TrainError(f"--vec-env {vec_env!r}: known: {', '.join(VEC_ENVS)}")
    if vec_env != "subproc" and (
        residual is not None or observation_features is not None or relative_reward
    ):
        raise TrainError(
            f"--vec-env {vec_env} plays the plain environment: use --vec-env subproc with "
            "--residual, --observation-features or --relative-reward"
        )
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    venv = (
        _inline(scenario, action_mode, env_kwargs, n_envs, seed, vec_env == "shards")
        if vec_env != "subproc"
        else make_vec_env(
            env_factory(
                scenario,
                action_mode,
                env_kwargs,
                step,
                residual_penalty,
                observation_features,
                relative_reward,
            ),
            n_envs=n_envs,
            seed=seed,
            vec_env_cls=SubprocVecEnv if n_envs > 1 else DummyVecEnv,
            monitor_kwargs={"info_keywords": MONITOR_KEYS},
        )
    )
    if hp.get("normalize", True):
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=hp.get("gamma", 0.99))
    kwargs = {k: v for k, v in hp.items() if k in PPO_KEYS}
    model = cls(
        policy,
        venv,
        seed=seed,
        verbose=0,
        device="cpu",
        tensorboard_log=str(out / "tb"),
        **kwargs,
    )
    started_from = warm_start(model, venv, init) if init is not None else None
    if step is not None and started_from is None:
        from agents.train.residual_env import bias_towards_zero

        bias_towards_zero(model, step)
    record: dict[str, Any] = {
        "scenario": scenario,
        "seed": seed,
        "algo": algo,
        "action_mode": action_mode,
        "env_kwargs": env_kwargs or {},
        "residual": residual,
        "residual_step": step,
        "residual_penalty": residual_penalty if step is not None else None,
        "n_envs": n_envs,
        "timesteps": None,
        "wall_s": None,
        "steps_per_s": None,
        "hyperparams": {k: v for k, v in hp.items()},
    }
    if vec_env != "subproc":  # recorded only when not the default: earlier records unchanged
        record["vec_env"] = vec_env
    if observation_features is not None:  # recorded only when given: earlier records unchanged
        record["observation_features"] = observation_features
    if relative_reward:
        record["relative_reward"] = True
    if started_from is not None:
        record["init"] = started_from
    # from the start, so that ``best_model.zip`` and ``checkpoints/ppo_<N>_steps.zip`` load as
    # trained even if the run is stopped (the final record replaces it)
    _write_record(out / "train.json", record)
    if checkpoint_freq > 0:
        _write_record(out / "checkpoints" / "train.json", record)
    callbacks = training_callbacks(
        out,
        scenario,
        action_mode,
        eval_freq // max(1, n_envs),
        list(eval_seeds),
        checkpoint_freq // max(1, n_envs),
        env_kwargs,
        step,
    )
    if progress:
        callbacks.append(ProgressBar(steps))
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=callbacks, tb_log_name="ppo")
    wall = time.perf_counter() - t0
    model.save(out / "model.zip")
    if isinstance(venv, VecNormalize):
        save_normalizer(venv, out / "vecnormalize.pkl")
    result = TrainResult(out, int(model.num_timesteps), wall)
    record["timesteps"] = result.timesteps
    record["wall_s"] = round(wall, 1)
    record["steps_per_s"] = round(result.steps_per_s, 1)
    _write_record(out / "train.json", record)
    venv.close()
    return result


def warm_start(model: Any, venv: Any, init: Path) -> dict[str, Any]:
    """Load the model at ``init`` (a training folder or ``.zip``) into ``model`` and its
    observation statistics into ``venv`` (a ``VecNormalize``), as SB3 users resume a run.

    The weights and the optimiser's state must match ``model``'s shapes (same network, same
    observation features, same action layout): a :class:`TrainError` names the first that does
    not. Nothing in the file is unpickled (``load_from_zip_file(load_data=False)`` reads the
    tensors with ``weights_only``). The observation statistics continue from the model's, counted
    as the steps it was trained for; the reward's scale starts afresh (the new run's reward may be
    another one, e.g. ``--relative-reward``). Returns what ``train.json`` records of the start.
    """
    import hashlib

    from stable_baselines3.common.running_mean_std import RunningMeanStd
    from stable_baselines3.common.save_util import load_from_zip_file
    from stable_baselines3.common.vec_env import VecNormalize

    zip_path, stats_path, meta = PPOAgent.files(init)
    if meta.get("ensemble"):
        raise TrainError(f"--init {init}: an ensemble; give one of its members")
    _, params, _ = load_from_zip_file(zip_path, device="cpu", load_data=False)
    own = model.get_parameters()
    if set(params) != set(own):
        raise TrainError(
            f"--init {zip_path}: holds {sorted(params)}, this run's model {sorted(own)} "
            "(another algorithm?)"
        )
    theirs, mine = params["policy"], own["policy"]
    for key, tensor in mine.items():
        if key not in theirs or tuple(theirs[key].shape) != tuple(tensor.shape):
            got = tuple(theirs[key].shape) if key in theirs else "nothing"
            raise TrainError(
                f"--init {zip_path}: policy.{key} is {got}, this run's is {tuple(tensor.shape)} "
                f"(the model was trained with {meta.get('observation_features', 'all its')} "
                "observation features, a residual, action mode and net_arch of its own: "
                "pass the same, e.g. --observation-features)"
            )
    model.set_parameters(params, exact_match=True, device="cpu")
    steps = _trained_steps(zip_path, meta)
    if isinstance(venv, VecNormalize):
        stats = load_normalizer(stats_path)
        if stats is None:
            raise TrainError(f"--init {zip_path}: no observation statistics beside it")
        vn = ObsNormalizer.of(stats) if not isinstance(stats, ObsNormalizer) else stats
        rms = venv.obs_rms
        if not isinstance(rms, RunningMeanStd):  # a dict observation: not this env's
            raise TrainError(f"--init {zip_path}: this run's observation is not one vector")
        if vn.mean.shape != rms.mean.shape:
            raise TrainError(
                f"--init {stats_path}: statistics of {vn.mean.shape[0]} features, this run's "
                f"observation has {rms.mean.shape[0]}"
            )
        rms.mean, rms.var, rms.count = vn.mean.copy(), vn.var.copy(), float(max(steps, 1))
    return {
        "model": str(zip_path),
        "sha256": hashlib.sha256(zip_path.read_bytes()).hexdigest(),
        "steps": steps,
    }


def _trained_steps(zip_path: Path, meta: dict[str, Any]) -> int:
    """How many steps the model at ``zip_path`` was trained for (a checkpoint's name says; a
    model's record says ``timesteps``)."""
    checkpoint = checkpoint_name(zip_path.name)
    if checkpoint:
        return int(checkpoint[1])
    # a clone (``chiron train bc``) took no environment step: its statistics are the
    # demonstrations' steps
    return int(meta.get("timesteps") or (meta.get("bc") or {}).get("steps") or 0)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def train_task(
    scenario: str,
    timesteps: int | None,
    seed: int,
    out: str,
    driver_host: str,
    kwargs: dict[str, Any],
) -> tuple[TrainResult, dict[str, bytes] | None]:
    """One training run as a task (``agents/run/executors.py``).

    On the driver's host it writes into ``out`` (TensorBoard can follow it live); elsewhere (a
    remote Ray node) into a temporary folder whose files it returns for the driver to write.
    """
    import socket
    import tempfile

    if socket.gethostname() == driver_host:
        return train(scenario, timesteps, seed, Path(out), **kwargs), None
    with tempfile.TemporaryDirectory() as tmp:
        result = train(scenario, timesteps, seed, Path(tmp), **kwargs)
        files = {
            str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()
        }
    return TrainResult(Path(out), result.timesteps, result.wall_s), files


def train_seeds(
    scenario: str,
    timesteps: int | None,
    seeds: list[int],
    out: Path,
    *,
    executor: str = "auto",
    ray_address: str | None = None,
    progress: bool = True,
    **kwargs: Any,
) -> tuple[list[TrainResult], list[dict[str, Any]]]:
    """Independent runs, one per seed, into ``out/seed<k>`` (each its own TensorBoard run).

    Returns the finished runs in seed order, and the failed ones (seed, error); a failed run
    does not stop the others.
    """
    import socket

    from tqdm import tqdm

    from agents.run.executors import resolve, run_tasks

    check_scenario(scenario)
    kind = resolve(executor, len(seeds))
    where = str(Path(scenario).resolve()) if Path(scenario).is_file() else scenario
    kw = dict(kwargs, progress=progress and kind == "local")
    host = socket.gethostname()
    calls = [(where, timesteps, k, str((out / f"seed{k}").resolve()), host, kw) for k in seeds]
    results: dict[int, TrainResult] = {}
    failures: list[dict[str, Any]] = []
    outcomes = run_tasks(train_task, calls, executor=kind, ray_address=ray_address)
    bar = tqdm(outcomes, total=len(seeds), unit="run", disable=not progress or kind == "local")
    for o in bar:
        seed = seeds[o.index]
        if not o.ok:
            failures.append({"seed": seed, "error": o.error})
            if progress:
                bar.write(
                    f"run failed: scenario {scenario}, seed {seed}: {o.error}", file=sys.stderr
                )
            continue
        result, files = o.value
        for rel, data in (files or {}).items():
            dest = result.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        results[seed] = result
    return [results[k] for k in seeds if k in results], sorted(failures, key=lambda f: f["seed"])
