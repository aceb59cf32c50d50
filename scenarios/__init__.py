"""Bundled scenarios: TOML files beside this module, loaded by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def names() -> list[str]:
    """Names of the bundled scenarios, sorted."""
    root = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def disaggregated_names() -> list[str]:
    """Names of the bundled disaggregated scenarios and their aggregated twins
    (``disaggregated/*.toml``, named ``disaggregated/NAME``), sorted: ``chiron simulate`` runs
    them; the environment does not take prefill and decode pools yet (issue 41)."""
    root = resources.files(__name__).joinpath("disaggregated")
    return sorted(
        f"disaggregated/{p.name[: -len('.toml')]}"
        for p in root.iterdir()
        if p.name.endswith(".toml")
    )


def path(name: str) -> Path:
    """Path of a bundled scenario file."""
    return Path(str(resources.files(__name__).joinpath(f"{name}.toml")))


def family_names() -> list[str]:
    """Names of the bundled scenario families (``families/*.toml``), sorted."""
    root = resources.files(__name__).joinpath("families")
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def family_path(name: str) -> Path:
    """Path of a bundled family file."""
    return Path(str(resources.files(__name__).joinpath("families", f"{name}.toml")))
