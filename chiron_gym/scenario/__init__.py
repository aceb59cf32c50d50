"""Scenarios: TOML files describing the cluster, its SLOs and its traffic, loaded by name or path.

The scenario layer, one module per job:

- ``spec``: what a scenario says (``Scenario``, ``TraceSpec``, ``Source``, ``REWARD_DEFAULTS``)
  and the workload it generates for a seed;
- ``parse``: a TOML document to a validated ``Scenario`` (every message names file and key);
- ``families``: families of scenarios (domain randomisation), drawn per seed;
- ``paths``: ``data:`` paths, bundled files by name, reading a document;
- ``streams``: the named random streams of a seed;
- ``load``: ``load(name_or_path)`` and ``load_any(spec, seed)``, the one scenario-or-family
  resolver every caller uses,
  and ``check_spec(spec)``, which loads either for its errors before anything runs, and
  ``check_traces(scenario)``, which looks for the trace files it replays.

Imports point one way: ``streams`` <- ``spec`` <- ``paths`` <- ``parse`` <- ``families`` <-
``load``. This package re-exports the names callers use.
"""

from __future__ import annotations

from chiron_gym.scenario.families import Family, FamilyError, family_of, is_family, load_family
from chiron_gym.scenario.load import check_spec, check_traces, load, load_any
from chiron_gym.scenario.parse import parse
from chiron_gym.scenario.paths import DATA_PREFIX, data_path, data_root, read_document
from chiron_gym.scenario.spec import REWARD_DEFAULTS, Scenario, ScenarioError, Source, TraceSpec
from chiron_gym.scenario.streams import stream

__all__ = [
    "DATA_PREFIX",
    "REWARD_DEFAULTS",
    "Family",
    "FamilyError",
    "Scenario",
    "ScenarioError",
    "Source",
    "TraceSpec",
    "check_spec",
    "check_traces",
    "data_path",
    "data_root",
    "family_of",
    "is_family",
    "load",
    "load_any",
    "load_family",
    "parse",
    "read_document",
    "stream",
]
