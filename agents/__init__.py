"""Agents for ``chiron_gym/Autoscale-v0``: Chiron, production baselines, and (later) PPO.

``make_agent("chiron", env.unwrapped.agent_context())`` builds one by name; every agent has
SB3's ``predict(obs, state, episode_start, deterministic)``.
"""

from __future__ import annotations

from typing import Any

from agents.base import Agent
from agents.baselines import BASELINES
from agents.chiron import CHIRON_AGENTS
from agents.llumnix_tuned import LlumnixTunedAgent
from chiron_gym.envs import AgentContext

AGENTS: dict[str, Any] = {**CHIRON_AGENTS, **BASELINES, "llumnix-tuned": LlumnixTunedAgent}


def agent_env_kwargs(spec: str) -> dict[str, Any]:
    """The environment settings agent ``spec`` assumes (action mode, step limit, engine caps).

    ``run_episode`` applies them under any the caller gives. PPO models carry theirs in
    ``train.json``.
    """
    cls = AGENTS.get(spec)
    return dict(getattr(cls, "env_kwargs", {})) if cls is not None else {}


def names() -> list[str]:
    """Agent names ``make_agent`` knows (plus ``ppo:PATH`` once PPO lands)."""
    return list(AGENTS)


def make_agent(spec: str, ctx: AgentContext, seed: int = 0) -> Agent:
    """The agent called ``spec`` for an environment with context ``ctx``.

    ``ppo:PATH`` loads a trained PPO model (a ``chiron train ppo`` folder or a ``.zip``).
    """
    if spec.startswith("ppo:"):
        from agents.ppo import PPOAgent

        return PPOAgent.load(spec[4:], ctx)
    if spec not in AGENTS:
        import difflib

        near = difflib.get_close_matches(spec, list(AGENTS), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown agent {spec!r}{hint}; known: {', '.join(AGENTS)}")
    cls = AGENTS[spec]
    if spec == "random":
        return cls(ctx, seed=seed)  # type: ignore[no-any-return]
    return cls(ctx)  # type: ignore[no-any-return]


__all__ = ["AGENTS", "Agent", "agent_env_kwargs", "make_agent", "names"]
