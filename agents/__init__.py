"""Agents for ``chiron_gym/Autoscale-v0`` and ``Autoscale-v1``: Chiron, production
baselines, planners of prefill and decode pools, and trained PPO models.

``make_agent("chiron", env.unwrapped.agent_context())`` builds one by name; every agent has
SB3's ``predict(obs, state, episode_start, deterministic)``. Agent specs (names, parameters,
``ppo:PATH`` options) are parsed, checked and built in ``agents/spec.py``; this package
re-exports what callers use.
"""

from __future__ import annotations

from agents.base import Agent
from agents.spec import (
    AGENTS,
    PPO_OPTIONS,
    agent_env_kwargs,
    check_specs,
    make_agent,
    names,
    split_ppo_spec,
    split_spec,
)

__all__ = [
    "AGENTS",
    "PPO_OPTIONS",
    "Agent",
    "agent_env_kwargs",
    "check_specs",
    "make_agent",
    "names",
    "split_ppo_spec",
    "split_spec",
]
