"""Agent specs: the strings that name an agent (``chiron``, ``chiron[headroom_instances=4;z=2.33]``,
``ppo:PATH[defer_above=20;combine=median]``), parsed, checked and built in one place.

``split_spec`` and ``split_ppo_spec`` parse a spec; ``check_specs`` checks a list of them before
anything runs (what ``chiron evaluate``, ``benchmark`` and ``dataset`` do first), with the same
parsers ``make_agent`` builds from; ``agent_env_kwargs`` is the environment a spec assumes.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from agents.base import Agent
from agents.baselines import BASELINES
from agents.chiron import CHIRON_AGENTS
from agents.chiron_tuned import ChironTunedAgent
from agents.disaggregated import PD_AGENTS
from agents.llumnix_tuned import LlumnixTunedAgent
from agents.spot import SPOT_AGENTS
from chiron_gym.config import InputError
from chiron_gym.control.chiron import GlobalParams, LocalParams
from chiron_gym.envs import AgentContext

AGENTS: dict[str, Any] = {
    **CHIRON_AGENTS,
    "chiron-tuned": ChironTunedAgent,
    **BASELINES,
    "llumnix-tuned": LlumnixTunedAgent,
    **PD_AGENTS,
    **SPOT_AGENTS,
}


def agent_env_kwargs(spec: str) -> dict[str, Any]:
    """The environment settings agent ``spec`` assumes (action mode, step limit, engine caps).

    ``run_episode`` applies them under any the caller gives. PPO models carry theirs in
    ``train.json``.
    """
    base, overrides = split_spec(spec)
    cls = AGENTS.get(base)
    out = dict(getattr(cls, "env_kwargs", {})) if cls is not None else {}
    if base not in CHIRON_AGENTS:
        return out  # a rule agent's parameters are its own, not the environment's
    local = {k: v for k, v in overrides.items() if k in _LOCAL_FIELDS}
    if local:  # Chiron's local loop runs in the environment
        out["local_params"] = {**out.get("local_params", {}), **local}
    if "z" in overrides:
        out["z"] = overrides["z"]
    return out


ACTING_KWARGS = ("max_step_change", "local_params", "max_target")


def acting(env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``env_kwargs`` a model acts in (``ACTING_KWARGS``), in their order."""
    return {k: v for k, v in env_kwargs.items() if k in ACTING_KWARGS}


def portable(spec: str) -> str:
    """An agent or scenario spec whose path (``ppo:PATH``, a ``.toml``) is absolute.

    Workers (spawned processes, Ray workers, other nodes) may not share this process's
    working directory; bundled names pass through.
    """
    if spec.startswith("ppo:"):
        path = split_ppo_spec(spec)[0]
        return f"ppo:{Path(path).resolve()}{spec[4 + len(path) :]}"
    return str(Path(spec).resolve()) if spec.endswith(".toml") else spec


def env_kwargs_for(agent: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The environment settings ``agent`` runs under, the caller's ``env_kwargs`` on top.

    A ``ppo:PATH`` agent runs in the action mode it was trained in (``train.json``): PPO-global
    with Chiron's local loop, PPO-local with Chiron's global loop.
    """
    kwargs = {**agent_env_kwargs(agent), **(env_kwargs or {})}
    if agent.startswith("ppo:"):
        record = Path(split_ppo_spec(agent)[0])
        record = (record if record.is_dir() else record.parent) / "train.json"
        if record.is_file():
            meta = json.loads(record.read_text())
            kwargs.setdefault("action_mode", meta["action_mode"])
            # the settings that define how the model acts (a residual's step limit, Chiron's
            # local loop, the target mode's largest count), not the training scenario's horizon
            # or reward weights: every agent
            # of a table is scored in the caller's environment
            for k, v in acting(meta.get("env_kwargs") or {}).items():
                kwargs.setdefault(k, v)
    return kwargs


_LOCAL_FIELDS = {f.name for f in fields(LocalParams)}
_GLOBAL_FIELDS = {f.name for f in fields(GlobalParams)}


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``chiron[headroom_instances=4;z=2.33]`` -> ``("chiron", {...})``: parameter overrides of
    a Chiron agent (its ``GlobalParams`` and ``LocalParams`` fields, and the estimator's ``z``),
    or of a rule agent with a parameter record (``dynamo-sla[load_predictor=constant]``: the
    fields of its ``Params``, typed as their defaults), for sensitivity sweeps."""
    if spec.startswith("ppo:") or not spec.endswith("]") or "[" not in spec:
        return spec, {}  # a model's options: ``split_ppo_spec``
    base, _, inner = spec[:-1].partition("[")
    # a record the class declares itself (``llumnix-tuned`` inherits Llumnix's, but is built
    # from its tuned table, not from it)
    params = vars(AGENTS[base]).get("Params") if base in AGENTS else None
    if base not in CHIRON_AGENTS and params is None:
        raise ValueError(
            f"agent {spec!r}: parameters apply to Chiron agents and to rule agents with "
            "parameters only"
        )
    chiron = base in CHIRON_AGENTS
    typed = {f.name: f.default for f in fields(params)} if params is not None and not chiron else {}
    known_keys = set(typed) if typed else _LOCAL_FIELDS | _GLOBAL_FIELDS | {"z"}
    out: dict[str, Any] = {}
    for item in filter(None, inner.split(";")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"agent {spec!r}: expected key=value, got {item!r}")
        key = key.strip()
        if key not in known_keys:
            known = ", ".join(sorted(known_keys))
            raise ValueError(f"agent {spec!r}: unknown parameter {key!r}; known: {known}")
        v = value.strip()
        if typed:
            out[key] = _typed(spec, key, v, typed[key])
        else:
            out[key] = v.lower() == "true" if v.lower() in ("true", "false") else float(v)
    return base, out


def _typed(spec: str, key: str, value: str, default: Any) -> Any:
    """``value`` as the type of the parameter's ``default`` (bool, int, float or str)."""
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false"):
                raise ValueError
            return value.lower() == "true"
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        kind = type(default).__name__
        raise ValueError(f"agent {spec!r}: {key} = {value!r}: expected a {kind}") from None
    return value


# ``ppo:PATH[defer_above=X;defer_feature=NAME]``: agents/defer.py; ``[combine=VOTE]``, an
# ensemble's vote (median, quantile:Q, consensus:Q): agents/ensemble.py
PPO_OPTIONS = ("defer_above", "defer_feature", "combine")


def split_ppo_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``ppo:PATH[defer_above=20]`` -> ``("PATH", {"defer_above": 20.0})``: a PPO model's path
    and its acting options (``PPO_OPTIONS``; ``defer_above`` a number, ``defer_feature`` a name,
    ``combine`` an ensemble's vote: ``median``, ``quantile:Q`` or ``consensus:Q``)."""
    if not spec.startswith("ppo:"):
        raise ValueError(f"agent {spec!r}: not a ppo:PATH spec")
    body = spec[4:]
    if not body.endswith("]") or "[" not in body:
        return body, {}
    path, _, inner = body[:-1].rpartition("[")
    out: dict[str, Any] = {}
    for item in filter(None, inner.split(";")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in PPO_OPTIONS:
            raise ValueError(
                f"agent {spec!r}: expected key=value with a key of {', '.join(PPO_OPTIONS)}, "
                f"got {item!r}"
            )
        if key in ("defer_feature", "combine"):
            out[key] = value.strip()
            continue
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"agent {spec!r}: {key}: expected a number, got {value!r}") from None
    if "defer_feature" in out and "defer_above" not in out:
        raise ValueError(f"agent {spec!r}: defer_feature needs defer_above (its threshold)")
    return path, out


# references that plan by forking the simulator: plans, not policies; ``run_any`` plays them.
# ``planner`` and ``static-best`` know the episode's future (``agents/hindsight.py``);
# ``planner-forecast`` only its past (``agents/forecast.py``).
PLANNERS = ("planner", "planner-forecast", "static-best")


def split_planner_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """``planner[also=A|B]`` -> ``("planner", ("A", "B"))``: the planner with agents ``A`` and
    ``B`` among its bases besides its default ones (``chiron benchmark`` adds every agent of its
    table, so that none is above the ceiling); any other planning reference as it is."""
    if not spec.startswith("planner[") or not spec.endswith("]"):
        return spec, ()
    inner = spec[len("planner[") : -1]
    if not inner.startswith("also="):
        raise ValueError(f"agent {spec!r}: expected planner[also=SPEC|SPEC...]")
    extra = tuple(filter(None, inner[len("also=") :].split("|")))
    if not extra:
        raise ValueError(f"agent {spec!r}: planner[also=...] names no agent")
    return "planner", extra


def is_planner(spec: str) -> bool:
    """Whether ``spec`` is a planning reference (``PLANNERS``, or ``planner[also=...]``)."""
    try:
        return split_planner_spec(spec)[0] in PLANNERS
    except ValueError:
        return False


def names() -> list[str]:
    """Agent names ``make_agent`` knows (and any ``ppo:PATH``), and the planning references."""
    return [*AGENTS, *PLANNERS]


def check_specs(specs: list[str]) -> None:
    """Check agent specs before anything runs: each names a known agent (with parameters its
    parser accepts: ``split_spec``, as ``make_agent``), or a ``ppo:PATH`` model that exists, may
    be loaded, and can play its options (an ensemble's vote, a deferral); ``InputError`` naming
    the spec otherwise."""
    for a in specs:
        if a.startswith("ppo:"):
            _check_ppo_spec(a)
            continue
        if a.startswith("planner["):
            try:
                check_specs(list(split_planner_spec(a)[1]))
            except ValueError as e:
                raise InputError(str(e)) from None
            continue
        try:
            base, _ = split_spec(a)
        except ValueError as e:
            raise InputError(str(e)) from None
        if base not in AGENTS and a not in PLANNERS:
            raise InputError(f"unknown agent {a!r}; known: {', '.join(names())}")


def _check_ppo_spec(spec: str) -> None:
    """``check_specs`` of one ``ppo:PATH[...]`` spec."""
    try:
        path, options = split_ppo_spec(spec)
    except ValueError as e:
        raise InputError(str(e)) from None
    if not Path(path).exists():
        raise InputError(f"agent {spec!r}: {path} does not exist")
    from agents.ensemble import check_combine, ensemble_record, model_class
    from agents.offline import OfflineAgent

    cls = model_class(path)
    cls.check(path)  # an InputError if it needs --trust-model
    if options and cls is OfflineAgent:
        raise InputError(
            f"agent {spec!r}: an offline policy (chiron train offline) takes no options "
            f"({', '.join(options)}): they apply to PPO models and ensembles"
        )
    record = ensemble_record(path)
    if "combine" in options:  # a vote: an ensemble's, by a rule its members can play
        problem = "combine applies to an ensemble folder only" if record is None else ""
        try:
            check_combine(options["combine"], record and record.get("residual"))
        except ValueError as e:
            problem = problem or f"combine = {e}"
        if problem:
            raise InputError(f"agent {spec!r}: {problem}")
    if "defer_above" in options:  # a readable quantity, and a model with Chiron beneath
        from agents.defer import DEFER_FEATURE, Deferral, check_defer
        from agents.ppo import PPOAgent

        meta = record or PPOAgent.files(path)[2]
        defer = Deferral(options["defer_above"], options.get("defer_feature", DEFER_FEATURE))
        check_defer(defer, meta.get("residual"))  # InputError, before any episode


def make_agent(spec: str, ctx: AgentContext, seed: int = 0) -> Agent:
    """The agent called ``spec`` for an environment with context ``ctx``.

    ``ppo:PATH`` loads a trained model: a ``chiron train ppo`` or ``bc`` folder or a ``.zip``, an
    ensemble folder, or a ``chiron train offline`` folder.
    """
    if is_planner(spec):
        raise ValueError(
            f"{spec!r} is a reference that plans by forking the simulator, not a policy: "
            "run it by name through chiron evaluate or chiron benchmark "
            "(agents.run.tasks.run_any), not as a policy"
        )
    if spec.startswith("ppo:"):
        from agents.ensemble import model_class  # a model, or an ensemble of models

        path, options = split_ppo_spec(spec)
        agent = model_class(path).load(path, ctx)
        from agents.offline import OfflineAgent

        if isinstance(agent, OfflineAgent):
            if options:
                raise ValueError(f"agent {spec!r}: an offline policy takes no options")
            return agent
        if "defer_above" in options:
            agent.defer_above(options["defer_above"], options.get("defer_feature"))
        if "combine" in options:
            from agents.ensemble import EnsembleAgent

            if not isinstance(agent, EnsembleAgent):
                raise ValueError(f"agent {spec!r}: combine applies to an ensemble folder only")
            try:
                agent.set_combine(options["combine"])
            except ValueError as e:
                raise ValueError(f"agent {spec!r}: combine = {e}") from None
        return agent
    spec, overrides = split_spec(spec)
    if overrides and spec not in CHIRON_AGENTS:  # a rule agent's parameter record
        cls = AGENTS[spec]
        try:
            params = cls.Params(**overrides)
        except ValueError as e:
            raise ValueError(f"agent {spec!r}: {e}") from None
        return cls(ctx, params)  # type: ignore[no-any-return]
    if overrides:
        gp = {
            k: (int(v) if isinstance(getattr(GlobalParams(), k), int) else v)
            for k, v in overrides.items()
            if k in _GLOBAL_FIELDS
        }
        lp = {k: v for k, v in overrides.items() if k in _LOCAL_FIELDS}
        return CHIRON_AGENTS[spec].build(ctx, LocalParams(**lp), GlobalParams(**gp))
    if spec not in AGENTS:
        import difflib

        near = difflib.get_close_matches(spec, list(AGENTS), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"unknown agent {spec!r}{hint}; known: {', '.join(AGENTS)}")
    cls = AGENTS[spec]
    if spec == "random":
        return cls(ctx, seed=seed)  # type: ignore[no-any-return]
    return cls(ctx)  # type: ignore[no-any-return]
