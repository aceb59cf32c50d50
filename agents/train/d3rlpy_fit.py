"""The d3rlpy side of ``chiron train offline`` (issue 43, item 3): run in ``.venv-offline``.

d3rlpy 2.8 pins gymnasium 1.0.0 and imports gym 0.26, which the gym's own environment cannot
share, so this file runs there as a script (``python agents/train/d3rlpy_fit.py DATA.npz OUT
...``), importing numpy, torch and d3rlpy only: nothing of chiron_gym or agents. It reads the
transitions ``agents/train/offline.py`` wrote, fits the algorithm, prints one line per epoch
(``@@chiron {json}``: the step and the losses, which the caller shows as progress and writes to
TensorBoard) and exports the greedy policy as TorchScript (``policy.pt``, on observations the
caller normalised) with d3rlpy's ``save_policy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

PREFIX = "@@chiron "
ALGOS = ("iql", "cql", "td3+bc")


def _say(msg: dict[str, object]) -> None:
    sys.stdout.write(PREFIX + json.dumps(msg) + "\n")
    sys.stdout.flush()


def _config(algo: str, hidden: list[int], batch: int) -> object:
    import d3rlpy

    enc = d3rlpy.models.VectorEncoderFactory(hidden_units=hidden)
    common = {  # the observations come normalised (agents/offline.py's ObsScaling)
        "actor_encoder_factory": enc,
        "critic_encoder_factory": enc,
        "batch_size": batch,
    }
    if algo == "iql":
        return d3rlpy.algos.IQLConfig(value_encoder_factory=enc, **common)
    if algo == "cql":
        return d3rlpy.algos.CQLConfig(**common)
    return d3rlpy.algos.TD3PlusBCConfig(**common)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", help=".npz of observations, actions, rewards, terminals, timeouts")
    ap.add_argument("out", help="folder for policy.pt")
    ap.add_argument("--algo", choices=ALGOS, default="iql")
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--epochs", type=int, default=20, help="progress lines (steps split evenly)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", default="256,256")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args(argv)

    import d3rlpy
    import structlog
    import torch

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    torch.set_num_threads(1)  # one core, and the same numbers every run
    d3rlpy.seed(args.seed)
    z = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=z["observations"].astype(np.float32),
        actions=z["actions"].astype(np.float32),
        rewards=z["rewards"].astype(np.float32),
        terminals=z["terminals"].astype(np.float32),
        timeouts=z["timeouts"].astype(np.float32),
    )
    hidden = [int(h) for h in args.hidden.split(",") if h]
    algo = _config(args.algo, hidden, args.batch_size).create(device="cpu")  # type: ignore[attr-defined]
    per_epoch = max(1, args.steps // max(1, args.epochs))
    trained = 0
    for epoch, metrics in algo.fitter(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=per_epoch,
        show_progress=False,
        save_interval=10**9,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    ):
        losses = {k: float(v) for k, v in metrics.items() if not k.startswith("time_")}
        trained = int(epoch) * per_epoch
        line = {"epoch": int(epoch), "step": trained, "metrics": losses}
        _say(line)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    algo.save_policy(str(out / "policy.pt"))
    versions = {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__}
    _say({"done": True, "steps": trained, "versions": versions})
    return 0


if __name__ == "__main__":
    sys.exit(main())
