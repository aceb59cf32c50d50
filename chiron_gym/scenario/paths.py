"""Where scenario files and their data live: ``data:`` paths under the real-data folder, bundled
files by name (with the nearest name when one is unknown), and reading a TOML document."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chiron_gym.scenario.spec import ScenarioError

DATA_PREFIX = "data:"


def data_root() -> Path:
    """The folder of real data that ``data:`` paths name: ``$CHIRON_DATA``, else ``shared/data``
    beside the repository (``../shared/data``; the tests' ``require_data`` looks there too)."""
    env = os.environ.get("CHIRON_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_path(text: str, base: Path) -> Path:
    """A trace path of a scenario file: ``data:REL`` under ``data_root()``, else relative to the
    file's folder ``base``."""
    if text.startswith(DATA_PREFIX):
        return (data_root() / text[len(DATA_PREFIX) :]).resolve()
    return (base / text).resolve()


def bundled_path(what: str, name: str, known: list[str], path_of: Callable[[str], Path]) -> Path:
    """The file of a bundled ``what`` (scenario, family) called ``name``; ``ScenarioError`` with
    the nearest known name and the list otherwise."""
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ScenarioError(f"unknown {what} {name!r}{hint}; known: {', '.join(known)}")
    return path_of(name)


def read_document(p: Path) -> dict[str, Any]:
    """A scenario (or family) file's TOML document; ``ScenarioError`` naming the file if it
    cannot be read or parsed."""
    try:
        return tomllib.loads(p.read_bytes().decode("utf-8-sig"))  # a BOM is allowed
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{p}: not valid TOML: {e}") from e
    except UnicodeDecodeError as e:
        raise ScenarioError(
            f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); expected a TOML file"
        ) from None
