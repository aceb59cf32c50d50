"""``chiron_gym/Autoscale-v0``: autoscale an LLM-serving cluster.

About 560 lines: the environment's class docstring is its manual (Gymnasium's sections: spaces,
reward, episode end, arguments), a third of the module; ``step`` itself is short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from chiron_gym.backends import Backend, make_backend
from chiron_gym.backends.base import PoolBounds, PoolState
from chiron_gym.control.chiron import (
    ChironGlobal,
    ChironLocal,
    ClusterFacts,
    GlobalParams,
    InstanceLimits,
    LocalParams,
)
from chiron_gym.control.qlm import Z_DEFAULT
from chiron_gym.envs import render as _render
from chiron_gym.envs import snapshots
from chiron_gym.envs.actions import CAP_CHOICES, MAX_TARGET, ActionLayout, Decision, apply
from chiron_gym.envs.feature_table import FEATURES, Feature
from chiron_gym.envs.features import HIGH, FeatureBuilder
from chiron_gym.envs.snapshots import Snapshot
from chiron_gym.scenario import REWARD_DEFAULTS, Scenario, family_of, load
from chiron_gym.sim import ALL_POOL_NAMES, POOLS, Pool, WindowReport


@dataclass(frozen=True)
class AgentContext:
    """Static facts of an environment an agent is built for (``env.agent_context()``)."""

    feature_names: tuple[str, ...]
    action_mode: str
    max_step_change: int
    nvec: tuple[int, ...]
    decision_interval_s: float
    horizon_s: float
    max_gpus: int | None
    pools: dict[str, PoolBounds]
    interactive_ttft_s: float | None
    interactive_itl_s: float | None
    cold_start_s: float
    scenario: Scenario | None = None  # for agents tuned per workload (``llumnix-tuned``)
    # the pools of the action and the observation, in their order (the disaggregated env adds
    # prefill and decode)
    pool_order: tuple[Pool, ...] = POOLS

    def cluster_facts(self) -> ClusterFacts:
        """Chiron's global loop's static facts: the pools' bounds, budget, cold start and
        decision interval."""
        return ClusterFacts(
            pools=self.pools,
            max_gpus=self.max_gpus,
            cold_start_s=self.cold_start_s,
            decision_interval_s=self.decision_interval_s,
        )


# Left out of a snapshot: the spaces (and their sampling streams) and the render mode.
_NOT_SNAPSHOT = frozenset({"action_space", "observation_space", "render_mode"})
# Fixed when the environment is made and never changed in place: shared, not copied.
_SETTINGS = (
    "backend_options",
    "layout",
    "feature_names",
    "_global_params",
    "_local_params",
    "_overrides",
    "reward_weights",
    "_local_limits",
)


class AutoscaleEnv(gym.Env[npt.NDArray[np.float32], npt.NDArray[np.int64]]):
    """Autoscale a GPU cluster serving interactive and batch LLM requests.

    ## Description

    A cluster of continuous-batching LLM instances (vLLM V1-like, calibrated on real profiling
    data) in three pools: interactive, mixed (serving both classes; interactive requests evict
    batch ones) and batch. Interactive requests have TTFT and ITL SLOs of seconds; batch requests
    have deadlines of minutes to hours. Every decision interval the agent changes the number of
    instances of each pool (global level; new instances arrive after a cold start) and the batch
    size of each pool's instances (local level), as Chiron (arXiv 2501.08090) does. The traffic
    comes from a scenario (``chiron scenarios``).

    ## Action Space

    ``MultiDiscrete``, start 0, pools always in the order interactive, mixed, batch:

    - ``action_mode="full"`` (default): ``[2k+1] * 3 + [4] * 3``: per pool an instance change
      ``i - k`` (``k = max_step_change``, default 2), then per pool a batch-cap change
      ``0`` halve, ``1`` keep, ``2`` increase by a quarter, ``3`` double;
    - ``"global"``: the instance changes only; Chiron's local loop sets the batch caps;
    - ``"local"``: the cap changes only; Chiron's global loop sets the instance counts;
    - ``"target"``: ``[max_target+1] * 3 + [4] * 3``: per pool the instance count wanted (the
      pool moves towards it by at most ``k`` a decision), then the cap changes.

    ``action_masks()`` gives what is possible now (pool bounds, GPU budget, cap limits; an absent
    pool only accepts no change) for MaskablePPO. The env also clips what exceeds the bounds or
    the budget (scale-downs first) and reports it in ``info["clipped"]``.

    ## Observation Space

    ``Box(0, 10, (57,), float32)`` of named, roughly normalised features
    (``env.unwrapped.feature_names``; table with units and normalisation in ``docs/env.md``): per
    pool ready / starting / draining instances, batch cap, running and waiting requests, KV usage
    and token throughput; per class queue length, arrival rate, TTFT and ITL p95 over the SLO and
    SLO attainment in the last window; the batch queue's waiting-time estimate over the time to
    its nearest deadline; GPUs held over the budget; the share of the episode left; interactive
    work on mixed instances, the batch capacity, required rate and requests at risk (appended in
    the second release); each pool's hardware and prefix-cache hit rate; the interactive arrival
    rate over the last 1 and 5 minutes and the 5 minutes' peak over mean (appended in the fifth
    release). Raw values are in ``info["raw"]``.

    ## Rewards

    Per step, with the scenario's ``[reward]`` weights (or the ``reward_weights`` argument):
    ``slo_met_work`` x (thousands of output tokens of requests that met their SLO)
    - ``gpu_cost`` x GPU-hours - ``violation`` x requests that missed their SLO or were rejected
    - ``churn`` x instances started or stopped. Defaults 1, 1000, 5, 1 (a GPU-hour costs as
    much as a million good tokens: $2 per GPU-hour against $2 per million tokens). At
    truncation, ``at_risk``: - ``violation`` x the requests still pending that are judged
    misses (``info["at_risk"]`` per class: past their SLO already, or queued batch work that the
    waiting-time estimate says will finish after its deadline), so that deferring work past the
    horizon does not pay. ``info["reward_terms"]`` holds each term's weighted value.

    ## Starting State

    The scenario's initial pools and batch caps, an empty cluster at t = 0. ``reset(seed=s)``
    replays the traffic of ``chiron simulate --seed s``; ``reset()`` draws a seed from the env's
    generator.

    ## Episode End

    Serving never ends by itself: ``terminated`` is always False and the episode is truncated at
    the scenario's horizon (``info["sim_time_s"]``).

    ## Arguments

    ``scenario`` (name, path or ``Scenario``; default ``"default"``), ``backend`` (``"sim"`` or
    ``"vllm"``: real servers, see ``chiron_gym/backends/vllm.py``), ``backend_options``,
    ``action_mode``, ``max_step_change``, ``max_target`` (the target mode's largest count,
    40), ``decision_interval_s``, ``horizon_s``, ``reward_weights`` (dict), ``render_mode``
    (``"ansi"`` or ``"rgb_array"``). ``reset`` takes ``options={"scenario": ...,
    "decision_interval_s": ..., "horizon_s": ..., "reward_weights": {...}}``.

    ## Version History

    - v0: first release.
    - v0, second release: five observation features appended (40 -> 45; a model trained on 40
      reads the prefix); Chiron's local loop per instance in ``action_mode="global"``;
      ``info["batch_caps"]`` is each pool's cap after the step.
    - v0, third release: the episode's end is charged (the ``at_risk`` reward term, at
      truncation; ``info["at_risk"]`` every step); ``scenario`` may be a family, sampled per
      reset (``info["scenario"]``).
    - v0, fourth and fifth releases: each pool's hardware and prefix-cache hit rate (45 -> 54),
      then the interactive arrival history (54 -> 57: rate over 1 and 5 minutes, the 5 minutes'
      peak over mean). A model trained on fewer features reads the prefix.
    - ``chiron_gym/Autoscale-v1`` (issues 41, 42) adds the prefill and decode pools and the
      capacity each pool loses; v0 is unchanged and stays for the models trained on it.
    - Both, issues 43 and 44: ``action_mode="target"`` (a new mode; the others unchanged) and
      a vector entry point (``gymnasium.make_vec``).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012 (Gymnasium API)
    # the pools it observes and scales, and its feature table (the disaggregated env's are larger)
    observed_pools: ClassVar[tuple[Pool, ...]] = POOLS
    feature_table: ClassVar[tuple[Feature, ...]] = FEATURES

    def __init__(
        self,
        scenario: str | Scenario = "default",
        *,
        backend: str = "sim",
        backend_options: dict[str, Any] | None = None,
        action_mode: str = "full",
        max_step_change: int = 2,
        decision_interval_s: float | None = None,
        horizon_s: float | None = None,
        reward_weights: dict[str, float] | None = None,
        render_mode: str | None = None,
        global_params: GlobalParams | dict[str, Any] | None = None,
        local_params: LocalParams | dict[str, Any] | None = None,
        initial_batch_cap: int | None = None,
        z: float = Z_DEFAULT,
        max_target: int = MAX_TARGET,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.backend_name = backend
        self.backend_options = dict(backend_options or {})
        self.layout = ActionLayout(action_mode, max_step_change, self.observed_pools, max_target)
        self.action_mode = action_mode
        n_features = len(self.feature_table)
        self.observation_space = spaces.Box(0.0, HIGH, (n_features,), dtype=np.float32)
        # gymnasium 1.2's stubs type MultiDiscrete more loosely than 1.4's (RLlib pins 1.2)
        self.action_space = spaces.MultiDiscrete(self.layout.nvec)  # type: ignore[assignment,unused-ignore]
        self.feature_names: tuple[str, ...] = tuple(f.name for f in self.feature_table)
        gp = GlobalParams(**global_params) if isinstance(global_params, dict) else global_params
        self._global_params = replace(gp or GlobalParams(), max_step=max_step_change)
        lp = LocalParams(**local_params) if isinstance(local_params, dict) else local_params
        self._local_params = lp or LocalParams()
        if initial_batch_cap is not None and initial_batch_cap < 1:
            raise ValueError(f"initial_batch_cap must be >= 1, got {initial_batch_cap!r}")
        self._initial_batch_cap = initial_batch_cap
        self._z = z
        # a family (``family:NAME`` or a file with draws) is sampled anew at every reset, from the
        # episode's seed; until then, and for the spaces, its nominal scenario stands in
        self._overrides = (decision_interval_s, horizon_s, dict(reward_weights or {}))
        self._family = family_of(scenario)
        self._drawn: dict[str, Any] = {}
        if self._family is not None:
            scenario = self._family.nominal
        self._configure(scenario, decision_interval_s, horizon_s, reward_weights)
        self._backend: Backend | None = None
        self._raw: dict[str, float] = {}
        self._obs = np.zeros(n_features, dtype=np.float32)
        self._last_reward = 0.0
        self._steps = 0
        self._ended = True  # no episode yet: step() needs a reset() first
        self._episode_scenario: dict[str, Any] = {}

    # ------------------------------------------------------------------ configuration

    def _configure(
        self,
        scenario: str | Scenario,
        decision_interval_s: float | None,
        horizon_s: float | None,
        reward_weights: dict[str, float] | None,
    ) -> None:
        sc = scenario if isinstance(scenario, Scenario) else load(scenario)
        for p in sc.cluster.pools if self.layout.targets else ():
            if p.max_instances > self.layout.max_target:
                raise ValueError(
                    f"scenario {sc.name!r}: pool {p.pool.name.lower()} may hold "
                    f"{p.max_instances} instances, more than the target mode's max_target "
                    f"{self.layout.max_target}: pass max_target={p.max_instances} or more"
                )
        if sc.cluster.disaggregated and self.observed_pools == POOLS:
            raise ValueError(
                f"scenario {sc.name!r} has prefill and decode pools, which chiron_gym/"
                "Autoscale-v0 does not observe or scale: use chiron_gym/Autoscale-v1"
            )
        cap0 = self._initial_batch_cap
        if cap0 is not None:  # e.g. vLLM's default max_num_seqs (256) for a KV-driven baseline
            pools = tuple(
                replace(p, initial_batch_cap=min(cap0, p.instance.max_batch_cap))
                for p in sc.cluster.pools
            )
            sc = replace(sc, cluster=replace(sc.cluster, pools=pools))
        if horizon_s is not None:
            if not (horizon_s > 0 and math.isfinite(horizon_s)):
                raise ValueError(f"horizon_s must be a finite number > 0, got {horizon_s!r}")
            sc = replace(sc, horizon_s=float(horizon_s))
        if decision_interval_s is not None:
            if not (0 < decision_interval_s <= sc.horizon_s):
                raise ValueError(
                    f"decision_interval_s must be in (0, horizon_s], got {decision_interval_s!r}"
                )
            sc = replace(sc, decision_interval_s=float(decision_interval_s))
        weights = sc.reward_weights()
        for key, value in (reward_weights or {}).items():
            if key not in REWARD_DEFAULTS:
                raise ValueError(
                    f"unknown reward weight {key!r}; known: {', '.join(REWARD_DEFAULTS)}"
                )
            try:
                w = float(value)
            except (TypeError, ValueError):
                w = math.nan
            if not (w >= 0 and math.isfinite(w)):
                raise ValueError(f"reward weight {key!r} = {value!r}: expected a number >= 0")
            weights[key] = w
        self.scenario = sc
        self.reward_weights = weights
        self._features = FeatureBuilder(sc, z=self._z, pools=self.observed_pools)
        # the local loop's per-pool limits: the largest cap, the tightest class's ITL/TTFT SLOs
        self._local_limits: dict[int, InstanceLimits] = {}
        for p in sc.cluster.pools:
            tight = sc.cluster.batch_slo if p.pool == Pool.BATCH else sc.cluster.interactive_slo
            self._local_limits[int(p.pool)] = InstanceLimits(
                p.instance.max_batch_cap, tight.itl_s, tight.ttft_s
            )

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("call reset() first")
        return self._backend

    # ------------------------------------------------------------------ Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        opts = dict(options or {})
        unknown = set(opts) - {"scenario", "decision_interval_s", "horizon_s", "reward_weights"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}")
        if "scenario" in opts:
            self._family = family_of(opts["scenario"])
            if self._family is not None:
                opts["scenario"] = self._family.nominal
        if opts:
            # what an option does not set stays as the constructor (or an earlier reset) set it,
            # over the new scenario's own values
            self._overrides = (
                opts.get("decision_interval_s", self._overrides[0]),
                opts.get("horizon_s", self._overrides[1]),
                {**self._overrides[2], **opts.get("reward_weights", {})},
            )
            self._configure(opts.get("scenario", self.scenario), *self._overrides)
        episode_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self._drawn = {}
        if self._family is not None:
            drawn_scenario, self._drawn = self._family.sample(episode_seed)
            self._configure(drawn_scenario, *self._overrides)
        if self._backend is not None:
            self._backend.close()
        self._backend = make_backend(self.backend_name, self.scenario, self.backend_options)
        self._backend.reset(episode_seed)
        self._chiron_local = ChironLocal(self._local_params, self.scenario.decision_interval_s)
        self._chiron_global = ChironGlobal(
            self._global_params, self.agent_context().cluster_facts()
        )
        self.episode_seed = episode_seed
        self._steps = 0
        self._ended = False
        self._last_reward = 0.0
        # pools priced apart (``gpu_price``): the cost term bills each pool's GPUs at its price
        self._priced = any(p.gpu_price != 1.0 for p in self.scenario.cluster.pools)
        self._priced_before = 0.0
        self._features.reset()
        window = self.backend.advance(0.0)
        obs, info = self._observe(window, Decision())
        # what this episode runs: a family's draws by key path (none for a plain scenario)
        self._episode_scenario = {
            "name": self.scenario.name,
            "family": self._family.name if self._family is not None else None,
            "draws": dict(self._drawn),
        }
        info["scenario"] = self._episode_scenario
        return obs, info

    def step(
        self, action: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if self._ended:
            raise gym.error.ResetNeeded(
                "step() after the episode ended (truncated at its horizon) or before reset(): "
                "call reset() first"
                if self._backend is not None
                else "Cannot call env.step() before calling env.reset()"
            )
        deltas, caps = self.layout.split(action)
        if deltas is None:
            deltas = self._global_deltas(self._raw)
        decision = apply(
            self.backend,
            deltas,
            caps,
            self.scenario.max_gpus,
            pools=self.observed_pools,
            layout=self.layout,
        )
        t_end = min(self.backend.now + self.scenario.decision_interval_s, self.scenario.horizon_s)
        if caps is None:
            self._run_local_loop(t_end)
        window = self.backend.advance(t_end)
        self._steps += 1
        terms = self._reward_terms(window, decision)
        obs, info = self._observe(window, decision)
        truncated = self.backend.now >= self.scenario.horizon_s - 1e-9
        self._ended = truncated
        # The honest end: what is left at truncation and judged a miss is charged as violations
        # are, so deferring work past the horizon does not pay.
        terms["at_risk"] = (
            -self.reward_weights["violation"] * sum(info["at_risk"].values()) if truncated else 0.0
        )
        info["reward_terms"] = dict(terms)
        if truncated:  # for a training log of what each episode drew
            info["scenario"] = self._episode_scenario
        reward = float(sum(terms.values()))
        self._last_reward = reward
        return obs, reward, False, truncated, info

    def _global_deltas(self, raw: dict[str, float]) -> list[int]:
        """Chiron's global loop's instance changes (``action_mode="local"``), one per pool."""
        return self._chiron_global.deltas(raw)

    def _run_local_loop(self, t_end: float) -> None:
        """Chiron's local loop, per instance, every ``period_s`` up to ``t_end``."""
        period = self._local_params.period_s
        backend = self.backend
        limits = self._local_limits
        t = backend.now
        while True:
            # ticks on a grid from the episode start, so a decision interval may hold several
            t = min((math.floor(t / period + 1e-9) + 1) * period, t_end)
            if t >= t_end:
                return
            backend.run(t)
            stats = backend.instance_stats()
            changes = self._chiron_local.update(t, stats, limits, backend.queue_lengths())
            for iid, cap in changes.items():
                backend.set_instance_cap(iid, cap)

    def agent_context(self) -> AgentContext:
        """What an agent may know besides observations: names, layout, static pool facts."""
        pools = {
            ALL_POOL_NAMES[pool]: PoolBounds.of(self.scenario.pool_spec(pool))
            for pool in self.observed_pools
        }
        slo = self.scenario.cluster
        return AgentContext(
            feature_names=self.feature_names,
            action_mode=self.action_mode,
            max_step_change=self.layout.k,
            nvec=tuple(self.layout.nvec),
            decision_interval_s=self.scenario.decision_interval_s,
            horizon_s=self.scenario.horizon_s,
            max_gpus=self.scenario.max_gpus,
            pools=pools,
            interactive_ttft_s=slo.interactive_slo.ttft_s,
            interactive_itl_s=slo.interactive_slo.itl_s,
            cold_start_s=self._features.cold_start_s,
            scenario=self.scenario,
            pool_order=self.observed_pools,
        )

    def action_masks(self) -> npt.NDArray[np.bool_]:
        """Flat mask, ``sum(nvec)`` long, of the choices possible now (for MaskablePPO)."""
        states = [self.backend.pool_state(p) for p in self.observed_pools]
        return self.layout.masks(states, self.backend.gpus_in_use(), self.scenario.max_gpus)

    def render(self) -> str | npt.NDArray[np.uint8] | None:  # type: ignore[override,unused-ignore]
        if self.render_mode == "ansi":
            return _render.ansi(self._raw, self.backend.now, self._last_reward)
        if self.render_mode == "rgb_array":
            return _render.rgb(self._raw)
        return None

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Snapshot:
        """An exact copy of the episode in progress: ``restore`` it (as often as wanted) and the
        same actions give the same episode, bit for bit, as from here (``tests/envs``).

        Everything the episode holds is copied (the simulator, its random streams and future
        arrivals, the in-environment loops, the feature history); the spaces and their sampling
        streams are not. The simulator backend only: a live vLLM server cannot be copied.
        """
        if self._backend is None:
            raise RuntimeError("snapshot() needs an episode in progress: call reset() first")
        if self.backend_name != "sim":
            raise NotImplementedError(
                f"snapshot() needs the simulator backend, not {self.backend_name!r}: "
                "a live server's state cannot be copied"
            )
        state = {k: v for k, v in vars(self).items() if k not in _NOT_SNAPSHOT}
        shared = snapshots.distinct(
            [self.scenario, *self._backend.unchanging(), *(state[k] for k in _SETTINGS)]
        )
        return Snapshot(
            snapshots.dump(state, shared),
            shared,
            self._obs.copy(),
            self._steps,
            tuple(int(n) for n in self.layout.nvec),
            self.layout.mode,
        )

    def restore(self, snapshot: Snapshot) -> npt.NDArray[np.float32]:
        """Return to ``snapshot`` (taken by this environment or another one of the same settings)
        and give its observation; the snapshot stays unchanged, to be restored again."""
        if not isinstance(snapshot, Snapshot):
            raise TypeError(f"restore() takes a Snapshot from snapshot(), got {type(snapshot)!r}")
        if (
            snapshot.nvec != tuple(int(n) for n in self.layout.nvec)
            or snapshot.mode != self.layout.mode
            or snapshot.obs.shape != self._obs.shape
        ):
            raise ValueError(
                f"restore(): the snapshot was taken in an environment of action mode "
                f"{snapshot.mode!r} (MultiDiscrete {list(snapshot.nvec)}), this one is "
                f"{self.layout.mode!r} ({list(self.layout.nvec)}): restore it in one of the same "
                "settings"
            )
        if self._backend is not None:
            self._backend.close()
        vars(self).update(snapshots.load(snapshot.data, snapshot.shared))
        return snapshot.obs.copy()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _pool_caps(states: dict[str, PoolState]) -> dict[str, int]:
        return {name: st.batch_cap for name, st in states.items() if st.exists}

    def _reward_terms(self, window: WindowReport, decision: Decision) -> dict[str, float]:
        w = self.reward_weights
        met_tokens = sum(c.met_output_tokens for c in window.classes.values())
        violations = sum(c.late + c.rejected for c in window.classes.values())
        billed = window.gpu_seconds
        if self._priced:
            total = self.backend.priced_gpu_seconds()
            billed, self._priced_before = total - self._priced_before, total
        return {
            "slo_met_work": w["slo_met_work"] * met_tokens / 1000.0,
            "gpu_cost": -w["gpu_cost"] * billed / 3600.0,
            "violation": -w["violation"] * violations,
            "churn": -w["churn"] * decision.churn,
        }

    def _observe(
        self, window: WindowReport, decision: Decision
    ) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
        states = self._features.states(self.backend)
        raw, obs = self._features.observe(self.backend, window, self.scenario.horizon_s, states)
        self._raw = raw
        self._obs = obs.copy()  # the agent gets ``obs``; a snapshot keeps its own
        summary = self.backend.summary(latencies=False)  # info needs the counts only
        info: dict[str, Any] = {
            "sim_time_s": self.backend.now,
            "step": self._steps,
            "reward_terms": {},  # the step's, filled in by ``step``
            "raw": raw,
            "clipped": dict(decision.clipped),
            "applied_deltas": dict(decision.deltas),
            # each pool's cap now (the mean over its ready instances under the per-instance loop)
            "batch_caps": self._pool_caps(states),
            "gpus": self.backend.gpus_in_use(),
            "gpu_hours": self.backend.gpu_seconds() / 3600.0,
            "episode_seed": self.episode_seed,
            "backend_events": self.backend.drain_events(),
        }
        for name, rep in summary.items():
            att = rep.attainment
            info[f"{name}_attainment"] = 1.0 if math.isnan(att) else att
            info[f"{name}_arrived"] = rep.arrived
        # Requests still pending now that are judged misses if the episode ended here: past
        # their SLO already (``overdue``: a batch deadline passed, no first token within the
        # TTFT SLO), and queued batch groups the waiting-time estimate says will finish late.
        info["at_risk"] = {name: rep.overdue for name, rep in summary.items()}
        info["at_risk"]["batch"] += self._features.batch_predicted_late
        return obs, info


__all__ = ["CAP_CHOICES", "AgentContext", "AutoscaleEnv", "Snapshot"]
