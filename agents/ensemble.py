"""An ensemble of PPO models: several training seeds' policies vote on each action.

Seeds of one PPO configuration differ more from each other than configurations do
(docs/study-benchmark.md): one seed over-provisions everywhere while another stays near Chiron. An
ensemble plays, per action dimension, the median of its members' actions (an odd number of
members, so the median is one of their actions): a member that alone wants more instances is
outvoted. The vote may instead be a quantile (``"combine": "quantile:Q"``, ``vote``): the
members' actions sorted and the one at rank round(Q (n - 1)) played, so Q = 0.25 of five members
adds an instance only when four of them want it (``median`` is Q = 0.5); or, for residual models,
a consensus (``"consensus:Q"``): a correction of Chiron only as far as all but round(Q (n - 1))
members on its side want it (``consensus:0``: only where all agree).
For residual models on Chiron (``agents/residual.py``) Chiron proposes once per decision, every
member sees the same observation (the environment's plus Chiron's proposal, each normalised by
the member's own statistics) and the voted correction is applied to Chiron's proposal.

An ensemble is a folder (``write_ensemble``; ``chiron ensemble OUT MEMBER...``):

    train.json          the members' shared acting settings (algorithm, action mode, residual,
                        the environment settings that define how they act) and "ensemble":
                        {"combine": "median", "quantile:Q" or "consensus:Q",
                        "members": ["member-0", ...], "sources": [...]}
    member-<i>/         model.zip, vecnormalize.npz and train.json of each member

``ppo:FOLDER`` plays it like any model (``agents.make_agent``).
"""

from __future__ import annotations

import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agents.base import BaseAgent, Observation, Prediction
from agents.defer import DEFER_KEY, Deferral
from agents.model_files import load_model, load_normalizer, normalizer_name
from agents.offline import OfflineAgent, is_offline_folder
from agents.ppo import PPOAgent, algo_class
from chiron_gym.config import InputError
from chiron_gym.envs import AgentContext

ENSEMBLE_KEY = "ensemble"
# what must be equal across members for them to vote on the same actions
ACTING = ("algo", "action_mode", "env_kwargs", "residual", "residual_step")


def ensemble_record(path: str | Path) -> dict[str, Any] | None:
    """The ensemble's ``train.json`` if ``path`` is an ensemble folder, else None."""
    record = Path(path) / "train.json"
    if not record.is_file():
        return None
    try:
        meta = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{record}: not a JSON training record ({e})") from None
    return meta if isinstance(meta, dict) and ENSEMBLE_KEY in meta else None


MEDIAN = "median"
# how the members' actions become one (``vote``; docs/study-benchmark.md, levers 8 and 9)
VOTES = ("quantile", "consensus")


def parse_combine(combine: object) -> tuple[str, float]:
    """The vote ``combine`` names, as (kind, Q): ``"median"`` is ("quantile", 0.5);
    ``"quantile:Q"`` with Q in [0, 1]; ``"consensus:Q"`` with Q in [0, 0.5]. ValueError naming
    what was expected otherwise."""
    parsed = _parse_vote(combine) if isinstance(combine, str) else None
    if parsed is None:
        raise ValueError(
            f"{combine!r}: expected 'median', 'quantile:Q' with Q in [0, 1] or 'consensus:Q' "
            "with Q in [0, 0.5]"
        )
    return parsed


@lru_cache(maxsize=64)
def _parse_vote(text: str) -> tuple[str, float] | None:
    """``parse_combine`` of a string, or None; cached, since an ensemble reads its vote at every
    decision."""
    if text == MEDIAN:
        return "quantile", 0.5
    kind, sep, value = text.partition(":")
    try:
        q = float(value) if kind in VOTES and sep else float("nan")
    except ValueError:
        return None
    top = 0.5 if kind == "consensus" else 1.0
    return (kind, q) if 0.0 <= q <= top else None  # nan fails too


def check_combine(combine: object, residual: object) -> str:
    """``combine`` if it names a vote that members with this ``residual`` (a record's value:
    ``"chiron"`` or None) can play; ValueError saying what was expected otherwise."""
    if parse_combine(combine)[0] == "consensus" and not residual:
        raise ValueError(f"{combine!r}: a consensus leans towards Chiron: residual models only")
    return str(combine)


def combine_rank(combine: object, n: int) -> int:
    """The rank (0 = fewest instances) of the member action a vote reads among ``n`` sorted ones:
    round(Q (n - 1)), halves up; the median's is (n - 1) / 2 for an odd ``n``."""
    return int(np.floor(parse_combine(combine)[1] * (n - 1) + 0.5))


def vote(votes: npt.NDArray[np.int64], combine: str, zero: int) -> npt.NDArray[np.int64]:
    """One action from the members' ``votes`` (one row each), per dimension.

    ``quantile:Q`` plays the action at rank round(Q (n - 1)) of the sorted votes. ``consensus:Q``
    bounds the votes by the ranks round(Q (n - 1)) and n - 1 - round(Q (n - 1)) and plays the
    action in that range nearest ``zero`` (a residual's "no correction"): a correction is made
    only as far as all but round(Q (n - 1)) members on either side want it (Q = 0.25 of five:
    four members must agree to add an instance, and four to remove one)."""
    kind, _ = parse_combine(combine)
    if kind == "consensus" and len(votes) % 2 == 0:
        raise ValueError(f"a consensus needs an odd number of votes, got {len(votes)}")
    ranked = np.sort(votes, axis=0)
    k = combine_rank(combine, len(votes))
    out: npt.NDArray[np.int64]
    if kind == "quantile":
        out = ranked[k].astype(np.int64)
    else:
        out = np.clip(zero, ranked[k], ranked[len(votes) - 1 - k]).astype(np.int64)
    return out


def _members(path: Path, meta: dict[str, Any]) -> list[Path]:
    spec = meta[ENSEMBLE_KEY]
    names = spec.get("members") if isinstance(spec, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"{path / 'train.json'}: ensemble.members: expected a list of folders")
    try:
        check_combine(spec.get("combine", MEDIAN), meta.get("residual"))
    except ValueError as e:
        raise InputError(f"{path / 'train.json'}: ensemble.combine = {e}") from None
    if len(names) % 2 == 0:
        raise InputError(
            f"{path / 'train.json'}: ensemble.members: an odd number of members (so that the "
            f"median is one of their actions), got {len(names)}"
        )
    return [path / n for n in names]


def _bare(path: Path) -> PPOAgent:
    """A member as a bare policy: its model and statistics, no Chiron of its own (the ensemble
    proposes once for all)."""
    zip_path, stats, meta = PPOAgent.files(path)
    return PPOAgent(
        load_model(zip_path, algo_class(meta.get("algo", "ppo"))), load_normalizer(stats)
    )


class EnsembleAgent(BaseAgent):
    """Several PPO models' actions, voted: median, quantile or consensus (module docstring)."""

    name = "ppo-ensemble"

    def __init__(
        self,
        members: list[PPOAgent],
        ctx: AgentContext,
        residual_step: int | None = None,
        combine: str = MEDIAN,
    ) -> None:
        if not members or len(members) % 2 == 0:
            raise ValueError(f"an ensemble needs an odd number of members, got {len(members)}")
        # the first member checks the layout against the environment and holds Chiron (for a
        # residual); the others act on the observation it builds
        self.lead = PPOAgent(members[0].model, members[0].vn, ctx, residual_step)
        super().__init__(ctx)
        self.members = members
        want = tuple(int(n) for n in self.lead.model.action_space.nvec)
        shape = self.lead.model.observation_space.shape
        for i, m in enumerate(members):
            got = tuple(int(n) for n in m.model.action_space.nvec)
            if got != want:
                raise ValueError(
                    f"ensemble member {i} acts on {list(got)}, member 0 on {list(want)}"
                )
            # every member reads the observation the lead builds (a residual's proposal last)
            if m.model.observation_space.shape != shape:
                raise ValueError(
                    f"ensemble member {i} reads observations of shape "
                    f"{m.model.observation_space.shape}, member 0 {shape}"
                )
        self.set_combine(combine)  # ValueError for a vote these members cannot play

    @classmethod
    def load(cls, path: str | Path, ctx: AgentContext) -> EnsembleAgent:
        p = Path(path)
        meta = ensemble_record(p)
        if meta is None:
            raise InputError(f"{p}: not an ensemble folder (no train.json with 'ensemble')")
        members = [_bare(m) for m in _members(p, meta)]
        step = meta.get("residual_step") if meta.get("residual") else None
        # the vote was checked against the record by ``_members``
        agent = cls(members, ctx, step, meta[ENSEMBLE_KEY].get("combine", MEDIAN))
        agent.set_defer(Deferral.from_record(meta.get(DEFER_KEY), str(p)))
        return agent

    def set_combine(self, combine: str) -> None:
        """Vote by ``combine`` (``vote``'s rules) instead of the record's."""
        self.combine = check_combine(combine, self.lead.residual is not None)

    def set_defer(self, defer: Deferral | None) -> None:
        """Play Chiron's action while ``defer`` is active (``agents/defer.py``)."""
        self.lead.set_defer(defer)

    def defer_above(self, above: float, feature: str | None = None) -> None:
        self.lead.defer_above(above, feature)

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Fail before any episode if a member is missing or needs ``--trust-model``."""
        p = Path(path)
        meta = ensemble_record(p)
        if meta is None:
            raise InputError(f"{p}: not an ensemble folder (no train.json with 'ensemble')")
        for m in _members(p, meta):
            PPOAgent.check(m)

    def reset(self) -> None:
        pass  # a residual's Chiron is reset by ``propose`` at the episode's start

    def params(self) -> dict[str, Any]:
        """How often the vote's action was not Chiron's this episode (residual ensembles)."""
        return self.lead.params()

    def act(self, obs: Observation, state: Any, start: Any, deterministic: bool) -> Prediction:
        x = self.lead.policy_input(obs, start)  # Chiron proposes once, for every member
        if self.lead.defer is not None and self.lead.defer.active(obs):
            return self.lead.residual.chiron_action(), None
        votes = np.stack([m.act(x, None, None, deterministic)[0] for m in self.members])
        # per dimension, the member action at the vote's rank (the median's: the middle one), or
        # a consensus's correction towards Chiron
        zero = self.lead.residual.step if self.lead.residual is not None else 0
        action = vote(votes, self.combine, zero)
        if self.lead.residual is not None:
            return self.lead.residual.compose(action), None
        return action, None


def model_class(path: str | Path) -> type[PPOAgent] | type[EnsembleAgent] | type[OfflineAgent]:
    """What plays ``ppo:PATH``: an ensemble folder's ``EnsembleAgent``, a ``chiron train
    offline`` folder's ``OfflineAgent``, else ``PPOAgent`` (each has ``load(path, ctx)`` and
    ``check(path)``)."""
    if is_offline_folder(path):
        return OfflineAgent
    return EnsembleAgent if ensemble_record(path) is not None else PPOAgent


def write_ensemble(
    members: list[str | Path],
    out: str | Path,
    selected_by: str | None = None,
    defer: Deferral | None = None,
    defer_source: str | None = None,
    combine: str = MEDIAN,
) -> Path:
    """An ensemble folder at ``out`` from trained models (folders or checkpoint ``.zip`` files,
    each with its ``.npz`` statistics): their files copied in, their records kept."""
    if not members or len(members) % 2 == 0:
        raise InputError(f"an ensemble needs an odd number of members, got {len(members)}")
    dest = Path(out)
    records: list[dict[str, Any]] = []
    files: list[tuple[Path, Path]] = []
    for m in members:
        zip_path, pkl, meta = PPOAgent.files(m)
        npz = pkl.with_name(normalizer_name(pkl.name))
        if not npz.is_file():
            raise InputError(f"{m}: no observation statistics {npz.name} beside the model")
        if "action_mode" not in meta:
            raise InputError(f"{m}: no train.json with its action_mode beside the model")
        if meta.get("algo") == "recurrent-ppo":
            raise InputError(
                f"{m}: a recurrent policy keeps a state per episode: not in an ensemble"
            )
        # older records lack the residual fields: they mean no residual
        records.append(
            {
                "algo": "ppo",
                "env_kwargs": {},
                "residual": None,
                "residual_step": None,
                **meta,
                "source": str(m),
            }
        )
        files.append((zip_path, npz))
    for i, r in enumerate(records[1:], start=1):
        diff = [k for k in ACTING if r[k] != records[0][k]]
        if diff:
            raise InputError(
                f"{members[i]}: acts differently from {members[0]} ({', '.join(diff)} differ)"
            )
    try:
        check_combine(combine, records[0]["residual"])
    except ValueError as e:
        raise InputError(f"--combine {e}") from None
    if defer is not None and not records[0]["residual"]:
        raise InputError(f"{members[0]}: not a residual model: it has no Chiron to defer to")
    if dest.exists() and any(dest.iterdir()):
        raise InputError(f"{dest}: exists and is not empty")
    names = [f"member-{i}" for i in range(len(members))]
    for name, (zip_path, npz), record in zip(names, files, records, strict=True):
        folder = dest / name
        folder.mkdir(parents=True)
        shutil.copyfile(zip_path, folder / "model.zip")
        shutil.copyfile(npz, folder / "vecnormalize.npz")
        (folder / "train.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    top: dict[str, Any] = {k: records[0][k] for k in ACTING}
    top[ENSEMBLE_KEY] = {
        "combine": combine,
        "members": names,
        "sources": [str(m) for m in members],
    }
    if selected_by:
        top[ENSEMBLE_KEY]["selected_by"] = selected_by
    if defer is not None:
        top[DEFER_KEY] = defer.record(defer_source)
    (dest / "train.json").write_text(json.dumps(top, indent=1, sort_keys=True) + "\n")
    return dest


__all__ = [
    "EnsembleAgent",
    "check_combine",
    "combine_rank",
    "ensemble_record",
    "model_class",
    "parse_combine",
    "vote",
    "write_ensemble",
]
