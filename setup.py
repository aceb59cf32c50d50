"""Build: compile the simulator core with mypyc (``chiron_gym/native.py`` lists the modules).

Everything else is in ``pyproject.toml``. The compiled modules are an optimisation only: if the
compiler fails (or ``CHIRON_NATIVE=0``), the package installs without them and runs the same
sources as pure Python, with the same results.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _compiled_modules() -> tuple[str, ...]:
    # native.py is read as text: importing chiron_gym here would need its dependencies
    namespace: dict[str, Any] = {}
    text = (ROOT / "chiron_gym" / "native.py").read_text()
    start = text.index("COMPILED:")
    end = text.index(")\n", start) + 2
    exec(text[start:end].replace("COMPILED: tuple[str, ...] =", "COMPILED ="), namespace)
    return tuple(namespace["COMPILED"])


class _OptionalBuildExt(build_ext):
    """Build the extensions, or warn and go on without them."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            sys.stderr.write(
                f"chiron-gym: compiling the simulator core failed ({exc}); it will run as "
                "pure Python (same results, slower)\n"
            )


def _ext_modules() -> list[Any]:
    if os.environ.get("CHIRON_NATIVE", "1") == "0":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.stderr.write(
            "chiron-gym: mypyc is not available; the simulator core stays pure Python\n"
        )
        return []
    paths = [str(Path(*m.split(".")).with_suffix(".py")) for m in _compiled_modules()]
    try:
        return list(mypycify(paths, opt_level="3", group_name="chiron_gym.native"))
    except (Exception, SystemExit) as exc:  # mypyc refused the sources
        sys.stderr.write(
            f"chiron-gym: mypyc failed ({exc}); the simulator core stays pure Python\n"
        )
        return []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _OptionalBuildExt})
