"""RLlib's PPO on ``chiron_gym/Autoscale-v0``, the environment as it is (docs/rllib.md).

    python -m agents.train.rllib_ppo --scenario default --iterations 20 [--num-env-runners 2]

RLlib builds the environment in its own worker processes from the Gymnasium id. The id is given
as ``chiron_gym:chiron_gym/Autoscale-v0``: Gymnasium imports the module before the ``:`` (which
registers the id) in whichever process makes the environment, so no ``register_env`` is needed.
``env_config`` is passed to the environment's constructor (``scenario``, ``action_mode``,
``horizon_s``...). Seeding goes through ``.debugging(seed=...)``: RLlib seeds each env runner's
environments from it through ``reset(seed=...)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.run.executors import ExecutorError, ray_session
from chiron_gym import ENV_ID

ENV = f"chiron_gym:{ENV_ID}"


def build_config(
    scenario: str = "default",
    *,
    env_config: dict[str, Any] | None = None,
    seed: int = 0,
    num_env_runners: int = 1,
    train_batch_size: int = 1200,
    minibatch_size: int = 120,
    num_epochs: int = 5,
) -> Any:
    """An RLlib ``PPOConfig`` (new API stack) for the environment on ``scenario``."""
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .environment(ENV, env_config={"scenario": scenario, **(env_config or {})})
        # wait for the runners' samples however long a busy host makes them: RLlib's default
        # (60 s) discards late ones, and the iteration then trains on nothing (seen under load)
        .env_runners(
            num_env_runners=num_env_runners, num_envs_per_env_runner=1, sample_timeout_s=None
        )
        .training(
            train_batch_size_per_learner=train_batch_size,
            minibatch_size=minibatch_size,
            num_epochs=num_epochs,
            lr=3e-4,
            gamma=0.99,
        )
        .debugging(seed=seed)
    )


def _summary(i: int, result: dict[str, Any]) -> dict[str, Any]:
    runners = result.get("env_runners", {})
    return {
        "iteration": i,
        "env_steps": runners.get("num_env_steps_sampled_lifetime"),
        "episodes": runners.get("num_episodes_lifetime"),
        "episode_return_mean": runners.get("episode_return_mean"),
        "episode_len_mean": runners.get("episode_len_mean"),
    }


def train(
    iterations: int,
    scenario: str = "default",
    *,
    checkpoint: Path | None = None,
    ray_address: str | None = None,
    **config_kwargs: Any,
) -> list[dict[str, Any]]:
    """Train RLlib's PPO for ``iterations`` iterations; one summary row per iteration."""
    rows: list[dict[str, Any]] = []
    with ray_session(ray_address):
        algo = build_config(scenario, **config_kwargs).build_algo()
        try:
            for i in range(1, iterations + 1):
                rows.append(_summary(i, algo.train()))
                print(json.dumps(rows[-1]), flush=True)
            if checkpoint is not None:
                algo.save_to_path(str(checkpoint.resolve()))
        finally:
            algo.stop()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m agents.train.rllib_ppo", description=__doc__.split("\n")[0]
    )
    p.add_argument("--scenario", default="default")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-env-runners", type=int, default=1)
    p.add_argument("--train-batch-size", type=int, default=1200)
    p.add_argument("--horizon-s", type=float, help="override the scenario's horizon")
    p.add_argument("--checkpoint", type=Path, help="save the trained algorithm here")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: a local Ray)")
    args = p.parse_args(argv)
    env_config = {"horizon_s": args.horizon_s} if args.horizon_s else None
    try:
        train(
            args.iterations,
            args.scenario,
            checkpoint=args.checkpoint,
            ray_address=args.ray_address,
            env_config=env_config,
            seed=args.seed,
            num_env_runners=args.num_env_runners,
            train_batch_size=args.train_batch_size,
            minibatch_size=min(120, args.train_batch_size),
        )
    except ExecutorError as e:
        print(f"rllib_ppo: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
