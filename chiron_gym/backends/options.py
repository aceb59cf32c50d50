"""The real vLLM backend's options as a user writes them: ``KEY=VALUE`` server options and
``POOL=URL`` endpoints, parsed into ``make_backend``'s ``backend``/``backend_options``.

``parse_endpoints`` is the one reader of ``POOL=URL`` endpoints: ``chiron evaluate --backend
vllm`` and ``chiron fidelity`` (``chiron_gym.fidelity``) both use it. Errors are ``InputError``
naming the flag and the item (``--server-option``, ``--endpoint``, ``--executor``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from chiron_gym.config import InputError
from chiron_gym.sim import POOL_NAMES


def server_option_types() -> dict[str, type]:
    """The ``ServerConfig`` fields ``--server-option`` may set (the scalar ones), with their
    types; ``argv`` and ``env`` are set from Python."""
    from typing import get_type_hints

    from chiron_gym.backends.vllm_servers import ServerConfig

    scalar = {str: str, int: int, float: float, str | None: str}
    return {k: scalar[t] for k, t in get_type_hints(ServerConfig).items() if t in scalar}


def parse_server_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` items (``--server-option``) to ``ServerConfig`` fields, each of its type
    and numbers positive."""
    kinds = server_option_types()
    server: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in kinds:
            raise InputError(
                f"--server-option {item!r}: expected KEY=VALUE with KEY one of {', '.join(kinds)}"
            )
        kind = kinds[key]
        try:
            server[key] = kind(value)
        except ValueError:
            raise InputError(f"--server-option {key}={value!r}: expected {kind.__name__}") from None
        if kind is not str and not (isinstance(server[key], int | float) and server[key] > 0):
            raise InputError(f"--server-option {key}={value}: expected a positive number")
    return server


def parse_endpoints(
    items: Sequence[str],
    *,
    default_pool: str | None = None,
    pools: Collection[str] = POOL_NAMES,
) -> dict[str, list[str]]:
    """``POOL=http://HOST:PORT`` items (``--endpoint``, repeatable) to pool -> URLs.

    With ``default_pool``, a bare URL is that pool's. ``pools``: the pools that may be named
    (a scenario's); any other is an error naming the item.
    """
    form = "POOL=http://HOST:PORT"
    if default_pool is not None:
        form = f"http://HOST:PORT or {form}"
    out: dict[str, list[str]] = {}
    for item in items:
        pool, sep, url = item.partition("=")
        if default_pool is not None and (not sep or "://" in pool):
            pool, sep, url = default_pool, "=", item  # a bare URL
        if not sep or pool not in POOL_NAMES or not url.startswith("http://"):
            raise InputError(
                f"--endpoint {item!r}: expected {form} with POOL one of {', '.join(POOL_NAMES)}"
            )
        if pool not in pools:
            raise InputError(f"--endpoint {item!r}: the scenario has no {pool!r} pool")
        out.setdefault(pool, []).append(url.rstrip("/"))
    return out


def backend_kwargs(
    backend: str, server_options: Sequence[str], endpoints: Sequence[str], executor: str
) -> dict[str, Any]:
    """The env's ``backend``/``backend_options`` for ``backend`` (``sim`` or ``vllm``), its
    server options and endpoints, and the executor the episodes would run on."""
    if backend == "sim":
        for flag, given in (("--server-option", server_options), ("--endpoint", endpoints)):
            if given:
                raise InputError(f"{flag}: only with --backend vllm")
        return {}
    if executor not in ("auto", "local"):
        raise InputError(
            f"--executor {executor}: --backend vllm runs episodes one at a time in this "
            "process (its servers hold ports and cores); use --executor local"
        )
    server = parse_server_options(server_options)
    adopted = parse_endpoints(endpoints)
    if "model" not in server and not adopted:
        raise InputError(
            "--backend vllm: give --server-option model=PATH (a model folder vLLM can load "
            "offline) to start servers, or --endpoint POOL=URL to adopt running ones"
        )
    for key in ("model", "python"):
        if key in server and not Path(server[key]).exists():
            raise InputError(f"--server-option {key}={server[key]}: no such file or folder")
    options: dict[str, Any] = {}
    if server:
        options["server"] = server
    if adopted:
        options["endpoints"] = adopted
    return {"backend": "vllm", "backend_options": options}
