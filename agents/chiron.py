"""Chiron (Patke et al., arXiv 2501.08090) as agents: the reference, and its ablations.

The loops live in ``chiron_gym/control/chiron.py``, every parameter named there with its default
and source. Chiron's local loop runs on each instance at its own, faster period, which only the
environment can do: so ``chiron`` asks for ``action_mode="global"`` (``env_kwargs``), returns the
global loop's instance changes, and the environment's per-instance local loop sets the caps. In
an environment of another mode it still works: in ``"full"`` (and ``"local"``) it sets each
aggregated pool's cap with the same rule on the pool's aggregate (prefill and decode pools keep
theirs). In
``chiron_gym/Autoscale-v1`` the prefill and decode pools follow the global rule
applied per role (ours, the paper serves aggregated instances only:
``chiron_gym/control/chiron_pd.py``).

Ablations (``docs/results.md``): ``chiron-global-only`` (caps fixed at the scenario's),
``chiron-local-only`` (instance counts fixed), ``chiron-no-tbp`` (no throughput backpressure).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from agents.base import N_POOLS, RULE_MAX_STEP, BaseAgent, Observation, Prediction
from chiron_gym.control.chiron import ChironGlobal, ChironLocal, GlobalParams, LocalParams
from chiron_gym.control.chiron_pd import ChironRoles
from chiron_gym.envs import AgentContext, decode
from chiron_gym.envs.actions import KEEP


class ChironAgent(BaseAgent):
    """Hierarchical backpressure: instance counts (global); batch caps per instance (local)."""

    name = "chiron"
    decides_changes = True
    env_kwargs: ClassVar[dict[str, Any]] = {
        "action_mode": "global",
        "max_step_change": RULE_MAX_STEP,
    }

    def __init__(
        self,
        ctx: AgentContext,
        local: LocalParams | None = None,
        global_: GlobalParams | None = None,
    ) -> None:
        super().__init__(ctx)
        gp = global_ or GlobalParams()
        gp.max_step = ctx.max_step_change
        self.local = ChironLocal(local, ctx.decision_interval_s)
        self.global_ = ChironGlobal(gp, ctx.cluster_facts())
        self.roles = self._roles(gp)
        self.max_caps = {n: s.max_batch_cap for n, s in ctx.pools.items()}

    def _roles(self, gp: GlobalParams) -> ChironRoles | None:
        """The rule per role for prefill and decode pools (the disaggregated env), or None."""
        return ChironRoles(gp, self.ctx.cluster_facts()) if len(self.ctx.pools) > N_POOLS else None

    @classmethod
    def build(cls, ctx: AgentContext, local: LocalParams, global_: GlobalParams) -> ChironAgent:
        """This agent with the given parameters (``chiron[key=value;...]`` specs)."""
        agent = cls(ctx)
        global_.max_step = ctx.max_step_change
        agent.local = ChironLocal(local, ctx.decision_interval_s)
        agent.global_ = ChironGlobal(global_, ctx.cluster_facts())
        agent.roles = agent._roles(global_)
        return agent

    def reset(self) -> None:
        self.local.reset()
        self.global_.reset()
        if self.roles is not None:
            self.roles.reset()

    def params(self) -> dict[str, Any]:
        """Every parameter, for logs and tables."""
        return {"local": asdict(self.local.p), "global": asdict(self.global_.p)}

    def deltas(self, raw: dict[str, float]) -> list[int]:
        agg = self.global_.deltas(raw)
        return agg if self.roles is None else self.roles.after(agg, raw)

    def caps(self, raw: dict[str, float]) -> list[int]:
        return self.local.choices(raw, self.max_caps)

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        raw = decode(obs, self.ctx.pools)
        deltas = self.deltas(raw) if self.layout.has_global else None
        caps = self.caps(raw) if self.layout.has_local else None
        return self.layout.join(deltas, caps), state


class ChironGlobalOnly(ChironAgent):
    """Ablation: the global loop; every cap stays at the scenario's."""

    name = "chiron-global-only"
    env_kwargs: ClassVar[dict[str, Any]] = {"action_mode": "full", "max_step_change": RULE_MAX_STEP}

    def caps(self, raw: dict[str, float]) -> list[int]:
        return [KEEP] * N_POOLS


class ChironLocalOnly(ChironAgent):
    """Ablation: the per-instance local loop; instance counts stay at the scenario's."""

    name = "chiron-local-only"

    def deltas(self, raw: dict[str, float]) -> list[int]:
        return [0] * N_POOLS


class ChironNoTbp(ChironAgent):
    """Ablation: the local loop on latency backpressure alone (no throughput signal)."""

    name = "chiron-no-tbp"
    env_kwargs: ClassVar[dict[str, Any]] = {
        **ChironAgent.env_kwargs,
        "local_params": {"use_throughput": False},
    }

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx, local=LocalParams(use_throughput=False))


CHIRON_AGENTS: dict[str, type[ChironAgent]] = {
    a.name: a for a in (ChironAgent, ChironGlobalOnly, ChironLocalOnly, ChironNoTbp)
}
