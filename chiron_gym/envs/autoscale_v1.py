"""``chiron_gym/Autoscale-v1``: ``Autoscale-v0`` with prefill and decode pools, and the capacity
the cluster loses (failures, spot reclaims, stockouts) in its observation.

A new version because the spaces are larger. ``Autoscale-v0`` keeps working unchanged: its
models and datasets read 57 features. Gymnasium's ``make`` warns that v0 is out of date beside
v1 (a ``DeprecationWarning``, hidden outside tests by Python's default filters)."""

from __future__ import annotations

from typing import Any, ClassVar

from chiron_gym.control.chiron_pd import ChironRoles
from chiron_gym.envs.autoscale import AutoscaleEnv
from chiron_gym.envs.feature_table import FEATURES_V1, Feature
from chiron_gym.scenario import Scenario, family_of, load
from chiron_gym.sim import ALL_POOLS, Pool


class AutoscaleEnvV1(AutoscaleEnv):
    """Autoscale a cluster whose pools may include prefill and decode pools, and whose capacity
    may fail, be reclaimed or be refused.

    Everything of ``chiron_gym/Autoscale-v0`` holds (reward, episode end, arguments, snapshots),
    with five pools where ``Autoscale-v0`` has three, always in the order interactive, mixed,
    batch, prefill, decode (an absent pool accepts only "no change"), so that a policy runs on
    aggregated and disaggregated scenarios alike.

    ## Action Space

    ``MultiDiscrete``, start 0: ``action_mode="full"``: ``[2k+1] * 5 + [4] * 5`` (instance
    changes, then cap changes, per pool); ``"global"`` and ``"local"`` as in v0. In
    ``"local"``, the prefill and decode pools' instance counts follow Chiron's global rule
    applied to each role (ours: ``chiron_gym/control/chiron_pd.py``).

    ## Observation Space

    ``Box(0, 10, (113,), float32)``: ``Autoscale-v0``'s 57 features (unchanged, so ``decode``
    and a policy's first layers read them alike), then per prefill and decode pool the features
    every pool has (instances by state, cap, running and waiting requests, KV usage, tokens/s,
    hardware, prefix-cache hit rate), then the prompt tokens queued on prefill instances, the
    requests in transfer on each side, the window's TTFT and ITL medians over their SLOs, and
    the mean prompt (window) and output (episode) lengths of interactive requests; then per
    pool (all five) the instances that failed, the reclaim notices and the stockouts of the
    window, the instances under a reclaim notice now, and the pool's GPU price. Table:
    ``docs/env.md``.

    ## Version History

    - v1: first release (issues 41 and 42). Backends: the simulator; the real backend serves
      aggregated pools only (it refuses a disaggregated scenario) and reports its servers that
      died as failures.
    """

    observed_pools: ClassVar[tuple[Pool, ...]] = ALL_POOLS
    feature_table: ClassVar[tuple[Feature, ...]] = FEATURES_V1

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        out = super().reset(seed=seed, options=options)
        self._chiron_roles = ChironRoles(self._global_params, self.agent_context().cluster_facts())
        return out

    def _global_deltas(self, raw: dict[str, float]) -> list[int]:
        """Chiron's global loop on the aggregated pools, and its rule per role on P/D pools."""
        return self._chiron_roles.after(super()._global_deltas(raw), raw)


def is_disaggregated(scenario: str | Scenario) -> bool:
    """Whether ``scenario`` (a name, path, family or ``Scenario``) has prefill and decode pools."""
    family = family_of(scenario)
    if family is not None:
        return family.nominal.cluster.disaggregated
    sc = scenario if isinstance(scenario, Scenario) else load(scenario)
    return sc.cluster.disaggregated


def make_env(scenario: str | Scenario, **kwargs: Any) -> AutoscaleEnv:
    """The environment for ``scenario``: ``Autoscale-v1`` where it has prefill and
    decode pools, ``Autoscale-v0`` otherwise (what ``chiron evaluate`` runs an agent in)."""
    cls = AutoscaleEnvV1 if is_disaggregated(scenario) else AutoscaleEnv
    return cls(scenario, **kwargs)


__all__ = ["AutoscaleEnvV1", "is_disaggregated", "make_env"]
