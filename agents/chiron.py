"""Chiron (Patke et al., arXiv 2501.08090) as an agent: the local and global loops together.

The loops themselves live in ``chiron_gym/control/chiron.py`` (the environment runs one of them
when ``action_mode`` leaves a level to Chiron); every parameter is named there with its default
and its source. This agent decodes the observation by feature name and composes both loops. With
``action_mode="global"`` it returns only instance changes, and the environment's own local loop
sets the caps; the reverse with ``"local"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from chiron_gym.control.chiron import ChironGlobal, ChironLocal, GlobalParams, LocalParams
from chiron_gym.envs import AgentContext, decode


class ChironAgent:
    """Hierarchical backpressure: batch caps per pool (local), instance counts (global)."""

    name = "chiron"

    def __init__(
        self,
        ctx: AgentContext,
        local: LocalParams | None = None,
        global_: GlobalParams | None = None,
    ) -> None:
        self.ctx = ctx
        gp = global_ or GlobalParams()
        gp.max_step = ctx.max_step_change
        self.local = ChironLocal(local)
        self.global_ = ChironGlobal(gp)

    def reset(self) -> None:
        self.local.reset()
        self.global_.reset()

    def params(self) -> dict[str, Any]:
        """Every parameter, for logs and tables."""
        from dataclasses import asdict

        return {"local": asdict(self.local.p), "global": asdict(self.global_.p)}

    def predict(
        self,
        observation: npt.NDArray[np.float32],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[npt.NDArray[np.int64], Any]:
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        raw = decode(observation, self.ctx.pools)
        k = self.ctx.max_step_change
        action: list[int] = []
        if self.ctx.action_mode in ("full", "global"):
            action += [d + k for d in self.global_.deltas(raw)]
        if self.ctx.action_mode in ("full", "local"):
            action += self.local.choices(raw)
        return np.asarray(action, dtype=np.int64), state
