"""Build: compile the simulator core with mypyc (``chiron_gym/native.py`` lists the modules).

Everything else is in ``pyproject.toml``. The compiled modules are an optimisation only: if the
compiler fails (or ``CHIRON_NATIVE=0``), the package installs without them and runs the same
sources as pure Python, with the same results. When it compiles, this writes
``chiron_gym/native_build.json``: the SHA-256 of each source compiled, which ``native.py``
compares with the sources at import (an edited source runs as Python until rebuilt).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# setuptools runs this file for metadata too; compiling then would only repeat the work
METADATA_ONLY = ("egg_info", "dist_info", "sdist", "--version", "--name")


def _native() -> ModuleType:
    # native.py imports only the standard library: load it without importing chiron_gym
    spec = importlib.util.spec_from_file_location("_chiron_native", ROOT / "chiron_gym/native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _OptionalBuildExt(build_ext):
    """Build the extensions, or warn and go on without them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any compiler failure: fall back to sources
            sys.stderr.write(
                f"chiron-gym: compiling the simulator core failed ({exc}); it will run as "
                "pure Python (same results, slower)\n"
            )


def _ext_modules() -> list[Any]:
    if os.environ.get("CHIRON_NATIVE", "1") == "0" or any(a in sys.argv for a in METADATA_ONLY):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.stderr.write(
            "chiron-gym: mypyc is not available; the simulator core stays pure Python\n"
        )
        return []
    native = _native()
    modules = tuple(native.COMPILED)
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in modules]
    try:
        extensions = list(mypycify(paths, opt_level="3", group_name=native.GROUP))
    except (Exception, SystemExit) as exc:  # mypyc refused the sources
        sys.stderr.write(
            f"chiron-gym: mypyc failed ({exc}); the simulator core stays pure Python\n"
        )
        return []
    manifest = {"sources": {m: native.source_digest(m) for m in modules}}
    (ROOT / native.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return extensions


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _OptionalBuildExt})
