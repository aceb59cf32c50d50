"""Validated reading of configuration documents (scenarios, profiles).

Every error names the file and the dotted key, says what was expected, and suggests the nearest
valid key for an unknown one.
"""

from __future__ import annotations

import difflib
import math
from typing import Any


class InputError(ValueError):
    """Bad input from the user (a file, a flag, a path, an argument): the CLI prints the message,
    which names the file, field or line and what was expected, and exits 2."""


class ConfigError(InputError):
    """A configuration file is malformed; the message names the file and the key."""


class Reader:
    """Typed access to one table of a TOML or JSON document, recording the key path for messages."""

    def __init__(
        self,
        data: dict[str, Any],
        source: str,
        prefix: str,
        allowed: set[str],
        error: type[ConfigError] = ConfigError,
    ) -> None:
        self.data, self.source, self.prefix, self.error = data, source, prefix, error
        for key in data:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"; did you mean {self.path(near[0])!r}?" if near else ""
                raise self.error(f"{source}: unknown key {self.path(key)!r}{hint}")

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, expected: str) -> ConfigError:
        return self.error(
            f"{self.source}: {self.path(key)} = {self.data.get(key)!r}: expected {expected}"
        )

    def number(
        self, key: str, default: float | None = None, *, low: float = 0.0, strict: bool = True
    ) -> float:
        if key not in self.data:
            if default is None:
                raise self.error(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(key, "a number")
        if (strict and v <= low) or (not strict and v < low):
            raise self.fail(key, f"a number {'>' if strict else '>='} {low:g}")
        return float(v)

    def optional_number(self, key: str) -> float | None:
        return self.number(key) if key in self.data else None

    def integer(self, key: str, default: int | None = None, *, low: int = 0) -> int:
        if key not in self.data:
            if default is None:
                raise self.error(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise self.fail(key, f"an integer >= {low}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.data:
            return default
        v = self.data[key]
        if not isinstance(v, bool):
            raise self.fail(key, "true or false")
        return v

    def string(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.error(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if v not in choices:
            raise self.fail(key, "one of " + ", ".join(repr(c) for c in choices))
        return str(v)

    def text(self, key: str, default: str | None = None) -> str:
        if key not in self.data:
            if default is None:
                raise self.error(f"{self.source}: missing key {self.path(key)!r}")
            return default
        v = self.data[key]
        if not isinstance(v, str):
            raise self.fail(key, "a string")
        return v

    def array(self, key: str) -> list[Any]:
        if key not in self.data:
            raise self.error(f"{self.source}: missing key {self.path(key)!r}")
        v = self.data[key]
        if not isinstance(v, list):
            raise self.fail(key, "an array")
        return v

    def numbers(self, key: str) -> list[float]:
        v = self.array(key)
        if not v or any(
            isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) for x in v
        ):
            raise self.fail(key, "a non-empty array of numbers")
        return [float(x) for x in v]

    def table(self, key: str, allowed: set[str], required: bool = False) -> Reader:
        v = self.data.get(key, {} if not required else None)
        if v is None:
            raise self.error(f"{self.source}: missing table {self.path(key)!r}")
        if not isinstance(v, dict):
            raise self.fail(key, "a table")
        return Reader(v, self.source, self.path(key), allowed, self.error)
