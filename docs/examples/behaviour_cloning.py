"""Behaviour cloning from a ``chiron dataset`` (Minari): an MLP that imitates Chiron.

    chiron dataset --agents chiron --family train --episodes 50 --out runs/datasets
    python docs/examples/behaviour_cloning.py --data runs/datasets --dataset chiron/train-chiron-v0

Loads the dataset with Minari, trains a small torch MLP (one softmax head per action dimension,
cross-entropy) on 80% of the episodes, prints its accuracy per dimension on the other 20% beside
the majority-class baseline, then plays it on the dataset's own environment
(``recover_environment``) beside the agent that made the data, on traffic seeds the data did
not hold.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn


def load(data: str, dataset: str) -> tuple[object, list[object]]:
    os.environ["MINARI_DATASETS_PATH"] = data
    import minari

    ds = minari.load_dataset(dataset)
    return ds, list(ds.iterate_episodes())


def arrays(episodes: list[object]) -> tuple[np.ndarray, np.ndarray]:
    # an episode holds one more observation than actions (the last one, after the last step)
    obs = np.concatenate([e.observations[:-1] for e in episodes])  # type: ignore[attr-defined]
    act = np.concatenate([e.actions for e in episodes])  # type: ignore[attr-defined]
    return obs.astype(np.float32), act.astype(np.int64)


class Policy(nn.Module):
    def __init__(self, n_obs: int, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = nvec
        self.body = nn.Sequential(nn.Linear(n_obs, 128), nn.Tanh(), nn.Linear(128, 128), nn.Tanh())
        self.head = nn.Linear(128, sum(nvec))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(self.head(self.body(x)), self.nvec, dim=-1))

    def act(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self(torch.as_tensor(obs, dtype=torch.float32)[None])
        return np.array([int(x.argmax()) for x in logits])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="runs/datasets", help="MINARI_DATASETS_PATH")
    ap.add_argument("--dataset", default="chiron/train-chiron-v0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--play", type=int, default=2, help="episodes to play after training")
    args = ap.parse_args()
    torch.manual_seed(0)
    ds, episodes = load(args.data, args.dataset)
    cut = max(1, int(0.8 * len(episodes)))
    train, held = episodes[:cut], episodes[cut:] or episodes[-1:]
    x, y = arrays(train)
    xh, yh = arrays(held)
    nvec = [int(n) for n in ds.spec.action_space.nvec]  # type: ignore[attr-defined]
    policy = Policy(x.shape[1], nvec)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(args.epochs):
        for idx in torch.randperm(len(xt)).split(256):
            logits = policy(xt[idx])
            loss = sum(nn.functional.cross_entropy(lg, yt[idx, i]) for i, lg in enumerate(logits))
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            opt.step()
    with torch.no_grad():
        pred = [lg.argmax(-1).numpy() for lg in policy(torch.as_tensor(xh))]
    for i in range(len(nvec)):
        majority = np.bincount(y[:, i]).argmax()
        print(
            f"action[{i}]: held-out accuracy {np.mean(pred[i] == yh[:, i]):.3f} "
            f"(majority class {np.mean(yh[:, i] == majority):.3f})"
        )
    from agents import make_agent

    env = ds.recover_environment()  # type: ignore[attr-defined]
    teacher = ds.storage.metadata["algorithm_name"]  # type: ignore[attr-defined]
    for seed in range(10_000, 10_000 + args.play):
        totals = []
        for who in ("clone", teacher):
            obs, _ = env.reset(seed=seed)
            ctx = env.unwrapped.agent_context()
            agent = make_agent(who, ctx, seed=seed) if who != "clone" else None
            total, done = 0.0, False
            while not done:
                action = policy.act(obs) if agent is None else agent.predict(obs)[0]
                obs, r, term, trunc, _ = env.step(action)
                total += float(r)
                done = term or trunc
            totals.append(total)
        print(f"seed {seed}: reward of the clone {totals[0]:.0f}, of {teacher} {totals[1]:.0f}")


if __name__ == "__main__":
    main()
