"""Loading what a user names: a bundled scenario, a scenario file, one draw of a family
(``family:NAME@SEED``), or a scenario-or-family spec resolved for a seed (``load_any``): the one
resolver the CLI, training, datasets and the environment use; ``check_spec`` and ``check_traces``,
the checks before anything runs."""

from __future__ import annotations

from pathlib import Path

import scenarios as bundled
from chiron_gym.scenario.families import draw, family_of
from chiron_gym.scenario.parse import parse
from chiron_gym.scenario.paths import bundled_path, read_document
from chiron_gym.scenario.spec import Scenario, ScenarioError


def load(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name, a scenario file by path, or one draw of a family,
    ``family:NAME@SEED`` (the scenario ``NAME@SEED``, the same for the same seed)."""
    text = str(name_or_path)
    if text.startswith("family:") and "@" in text:
        return draw(text)
    p = Path(name_or_path)
    if p.suffix != ".toml" and p.is_dir():
        raise ScenarioError(f"{p}: a folder; expected a scenario name or a .toml file")
    if p.suffix != ".toml":
        known = bundled.names() + bundled.disaggregated_names()
        p = bundled_path("scenario", str(name_or_path), known, bundled.path)
    return parse(read_document(p), name=p.stem, source=str(p))


def load_any(spec: str, seed: int) -> Scenario:
    """A scenario, or for a family (``family:NAME`` or a file with draws) its draw for ``seed``
    (what ``reset(seed=seed)`` runs)."""
    fam = family_of(spec)
    return load(spec) if fam is None else fam.sample(seed)[0]


def check_spec(spec: str) -> None:
    """Load what ``spec`` names (a scenario, or a family: its nominal scenario) for its errors,
    before anything runs; ``ScenarioError`` naming the file and key otherwise."""
    if family_of(spec) is None:
        load(spec)


def check_traces(scenario: Scenario) -> None:
    """Look for the trace files ``scenario`` replays, before anything runs (a replay reads its
    file only when its workload is generated); ``ScenarioError`` naming the missing one."""
    for src in scenario.sources:
        if src.trace is not None and not src.trace.path.is_file():
            raise ScenarioError(
                f"trace {src.trace.path} not found (../shared/data beside the repository, or "
                "set CHIRON_DATA)"
            )
