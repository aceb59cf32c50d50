"""Import rules of design.md: the simulator knows nothing of RL, torch or HTTP; no global RNG."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN_IN_CORE = {
    "gymnasium",
    "gym",
    "torch",
    "stable_baselines3",
    "sb3_contrib",
    "tensorboard",
    "requests",
    "httpx",
    "aiohttp",
    "urllib3",
    "http",
    "urllib",
    "socket",
    "agents",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def core_files() -> list[Path]:
    return sorted((REPO / "chiron_gym" / "sim").rglob("*.py")) + sorted(
        (REPO / "chiron_gym" / "workload").rglob("*.py")
    )


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_core_imports_no_rl_torch_or_http(path: Path) -> None:
    """Nothing under chiron_gym/sim or chiron_gym/workload imports gymnasium, torch, SB3 or HTTP."""
    bad = {name for name in imports_of(path) if name.split(".")[0] in FORBIDDEN_IN_CORE}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_the_ledger_is_held_to_the_core_rules() -> None:
    """The request ledger both backends keep is a core module (the rules above cover it)."""
    assert REPO / "chiron_gym" / "sim" / "ledger.py" in core_files()


HTTP_LIBRARIES = {"httpx", "aiohttp", "requests", "urllib3", "http", "urllib"}


def test_backends_speak_http_only_through_the_client() -> None:
    """Of the backend modules, only the vLLM client imports an HTTP library."""
    for path in sorted((REPO / "chiron_gym" / "backends").rglob("*.py")):
        if path.name == "vllm_client.py":
            continue
        bad = {name for name in imports_of(path) if name.split(".")[0] in HTTP_LIBRARIES}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_sim_does_not_import_upper_layers() -> None:
    """sim/ imports only the standard library, numpy and itself."""
    for path in sorted((REPO / "chiron_gym" / "sim").rglob("*.py")):
        for name in imports_of(path):
            if name.startswith("chiron_gym"):
                assert name.startswith("chiron_gym.sim"), f"{path.name} imports {name}"


def test_package_never_imports_agents() -> None:
    """chiron_gym never imports agents (only the CLI may, lazily: inside its handlers)."""
    cli = REPO / "chiron_gym" / "cli"
    for path in sorted((REPO / "chiron_gym").rglob("*.py")):
        if path.parent == cli:  # module level only
            tree = ast.parse(path.read_text(), filename=str(path))
            top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
            top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
            assert not any(n.split(".")[0] == "agents" for n in top), path
            continue
        assert not any(n.split(".")[0] == "agents" for n in imports_of(path)), path


def test_no_global_randomness_in_the_package() -> None:
    """No ``import random``, no ``np.random.<sampler>(...)``: every draw takes a Generator."""
    allowed = {"Generator", "PCG64", "SeedSequence", "default_rng", "BitGenerator"}
    for path in sorted((REPO / "chiron_gym").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name != "random" for a in node.names), f"{path}: import random"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                inner = node.value
                if (
                    inner.attr == "random"
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id in ("np", "numpy")
                ):
                    assert node.attr in allowed, f"{path}:{node.lineno}: np.random.{node.attr}"


def env_files() -> list[Path]:
    return sorted((REPO / "chiron_gym" / "envs").rglob("*.py"))


@pytest.mark.parametrize("path", env_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_env_sees_the_cluster_only_through_the_backend(path: Path) -> None:
    """chiron_gym/envs never reaches into the simulator: no Cluster, no sim submodules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert not node.module.startswith("chiron_gym.sim."), node.module
            assert node.module not in ("chiron_gym.backends.simulate", "chiron_gym.backends.sim")
            if node.module == "chiron_gym.sim":
                names = {a.name for a in node.names}
                assert not names & {"Cluster", "Instance", "EventQueue"}, names


def _receiver(node: ast.expr) -> str:
    """The last name of what a method is called on (``self.optimizer`` -> ``optimizer``)."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _calls_step(path: Path) -> list[int]:
    """Lines of ``<something>.step(...)`` calls (an environment being stepped), except inside a
    method called ``step`` or ``step_wait`` (a Gymnasium wrapper or an SB3 ``VecEnv``
    forwarding its step: no loop of its own) and a torch optimiser's (``opt.step()``,
    ``<...>.optimizer.step()``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    forwarding = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef) and f.name in ("step", "step_wait")
        for n in ast.walk(f)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "step"
        and not isinstance(node.func.value, ast.Subscript)  # matplotlib's ``axes[0].step``
        and _receiver(node.func.value) not in ("opt", "optimizer")
        and id(node) not in forwarding
    ]


def test_one_episode_loop() -> None:
    """Agents and benchmarks step environments only in ``agents/run/episode.py`` (the runner every
    evaluation, PPO callback, Tune trial and tuning grid uses) and in the random-action speed
    benchmark ``benchmarks/env.py``."""
    allowed = {REPO / "agents" / "run" / "episode.py", REPO / "benchmarks" / "env.py"}
    for path in sorted((REPO / "agents").rglob("*.py")) + sorted(
        (REPO / "benchmarks").rglob("*.py")
    ):
        if path in allowed:
            continue
        assert not _calls_step(path), f"{path.relative_to(REPO)} steps an environment"


def test_reporting_writes_rows_and_series_only() -> None:
    """``agents/run/reporting.py`` never builds an environment or backend: it writes what episodes
    returned, so the files do not depend on where the episodes ran."""
    names = imports_of(REPO / "agents" / "run" / "reporting.py")
    assert not {n for n in names if n.startswith(("chiron_gym.envs", "chiron_gym.backends"))}
    assert "agents.run.evaluate" not in names


def test_sb3_callbacks_are_imported_only_when_training() -> None:
    """``agents/train/callbacks.py`` imports SB3 at module level: only ``agents/train/ppo.py`` may
    import it, and only inside a function (``chiron evaluate`` must not pay for SB3)."""
    cli = sorted((REPO / "chiron_gym" / "cli").glob("*.py"))
    for path in [*sorted((REPO / "agents").rglob("*.py")), *cli]:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:  # module level only
            if isinstance(node, ast.ImportFrom) and node.module == "agents.train.callbacks":
                raise AssertionError(
                    f"{path.relative_to(REPO)} imports agents.train.callbacks at import"
                )


PACKAGES = ("chiron_gym", "agents", "benchmarks")


def _modules() -> dict[str, Path]:
    files = [p for d in PACKAGES for p in sorted((REPO / d).rglob("*.py"))]
    return {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
        for p in files
    }


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in its file (inside functions and
    ``TYPE_CHECKING`` blocks too), relative imports resolved; an import of a package's
    ``__init__`` (a re-export) is not an edge, as in ``shared/tools/mutual_imports.py``."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m and mods[n].name != "__init__.py":
                    edges[m].add(n)
    return edges


def test_no_two_modules_import_each_other() -> None:
    """No pair of modules imports each other, not even inside a function: one of them owns the
    shared piece, or a third, lower module does (design.md)."""
    edges = _import_graph()
    pairs = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges[b]})
    assert not pairs, " ".join(f"{a}<->{b}" for a, b in pairs)


def test_the_graph_sees_imports_inside_functions() -> None:
    """The check above reads imports inside functions (a mutual import hidden there is found)."""
    edges = _import_graph()
    # agents/run/benchmark.py imports the evaluation only inside a function
    text = (REPO / "agents" / "run" / "benchmark.py").read_text()
    assert "    from agents.run.evaluate import" in text
    assert "agents.run.evaluate" in edges["agents.run.benchmark"]


@pytest.mark.parametrize("path", list(_modules().values()), ids=lambda p: str(p.relative_to(REPO)))
def test_module_size(path: Path) -> None:
    """No module over 600 lines; one over 450 says in its docstring why (a sentence naming its
    lines)."""
    n = len(path.read_text().splitlines())
    assert n <= 600, f"{path.relative_to(REPO)}: {n} lines (at most 600)"
    if n > 450:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        why = re.search(r"\b\d+ lines\b", doc)  # "Why one module of over 450 lines: ..."
        assert why, f"{path.relative_to(REPO)}: {n} lines, and no word on why"


def test_agents_run_does_not_reach_into_training() -> None:
    """``agents/run/`` (episodes, evaluation, reporting) never imports ``agents/train/``:
    training builds on running, not the other way round."""
    for path in sorted((REPO / "agents" / "run").rglob("*.py")):
        bad = {n for n in imports_of(path) if n.startswith("agents.train")}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_scenario_layer_imports_only_lower_layers() -> None:
    """``chiron_gym/scenario/`` builds on sim, workload, profiles and config only: never the
    backends, environments, controllers or the CLI above it."""
    above = ("chiron_gym.backends", "chiron_gym.envs", "chiron_gym.control", "chiron_gym.cli")
    for path in sorted((REPO / "chiron_gym" / "scenario").rglob("*.py")):
        bad = {n for n in imports_of(path) if n.startswith(above)}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"
