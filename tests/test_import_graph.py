"""No import cycles in ``multiconnect`` or ``harness`` (issue 17), type-only ones included, and
the harness's imports flow down its pipeline (``docs/architecture.md``).

Model: a module's imports are every ``import``/``from ... import`` statement anywhere in its
source (``if TYPE_CHECKING:`` blocks and function bodies included), resolved to the
package's own modules: ``from p import name`` is an import of ``p.name`` when that is a
module, else of ``p``; relative imports are resolved against the module's package; imports
of other packages are ignored, and so are the implicit imports of parent packages (importing
``p.q`` runs ``p/__init__``, which is not counted as an edge). A cycle is reported as its
path ``a -> b -> a``.

The simulator's node modules see the cluster only through ``sim.protocols.ClusterView``;
only the modules that build a cluster import ``sim.cluster``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from multiconnect.sim.protocols import CheckHooks, ClusterView

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "multiconnect"
HARNESS = ROOT / "harness"
#: the harness's stages in pipeline order (docs/architecture.md); a module may import from its
#: own stage or an earlier one, never a later one
HARNESS_LAYERS: tuple[tuple[str, ...], ...] = (
    ("harness.spec", "harness.history", "harness.wait"),
    ("harness.cluster",),
    ("harness.run", "harness.nemesis"),
    ("harness.judge",),
    ("harness.report",),
    ("harness.verdict", "harness.failover", "harness.chaos"),
    ("harness.pytest_plugin",),
    ("harness.mutation", "harness.cli", "harness.doctor", "harness.__main__", "harness"),
)
#: the modules that use a cluster through ClusterView (each names it ``cl``)
CLUSTER_USERS = ("master", "coreapp", "webapp", "faults", "invariants")
#: the modules that build a cluster, and so import sim.cluster
CLUSTER_BUILDERS = {"multiconnect.sim.runner", "multiconnect.sim.scenario"}


# --------------------------------------------------------------------------- the graph
def module_names(package_dir: Path, package_name: str) -> dict[str, Path]:
    """Dotted name → file, for every ``.py`` under ``package_dir``."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` (source at ``path``) imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                     for a in node.names]
        for name in names:
            while name and name not in known:  # a name inside a module → the module
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(package_dir: Path, package_name: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports (see the module docstring)."""
    known = module_names(package_dir, package_name)
    return {m: _imported(m, p, known) for m, p in known.items()}


def find_cycles(package_dir: Path, package_name: str) -> list[list[str]]:
    """Import cycles among the modules under ``package_dir`` (``package_name`` is its dotted
    name), each as a path ``[a, b, ..., a]``; one per back edge of a depth-first search, so
    every module on a cycle appears in at least one. Empty when there is none."""
    graph = import_graph(package_dir, package_name)
    state: dict[str, int] = {}   # 1 on the current path, 2 done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def layer_of(module: str, layers: tuple[tuple[str, ...], ...]) -> int:
    """The index of the layer whose longest prefix names ``module``; KeyError if none."""
    best: tuple[int, int] | None = None
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    if best is None:
        raise KeyError(f"{module} is in no layer")
    return best[0]


def upward_imports(package_dir: Path, package_name: str,
                   layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """Every import of a module from a later layer than the importer's, as ``a -> b``."""
    graph = import_graph(package_dir, package_name)
    return [f"{m} -> {n}" for m in sorted(graph) for n in sorted(graph[m])
            if layer_of(n, layers) > layer_of(m, layers)]


def _render(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


# --------------------------------------------------------------------------- the project
def test_simulator_modules_import_without_cycles() -> None:
    cycles = find_cycles(PACKAGE / "sim", "multiconnect.sim")
    assert not cycles, "import cycles in multiconnect.sim:\n" + _render(cycles)


def test_multiconnect_package_imports_without_cycles() -> None:
    cycles = find_cycles(PACKAGE, "multiconnect")
    assert not cycles, "import cycles in multiconnect:\n" + _render(cycles)


def test_harness_imports_without_cycles() -> None:
    cycles = find_cycles(HARNESS, "harness")
    assert not cycles, "import cycles in harness:\n" + _render(cycles)


def test_harness_imports_flow_down_the_pipeline() -> None:
    assert upward_imports(HARNESS, "harness", HARNESS_LAYERS) == []


def test_every_harness_module_is_in_a_layer() -> None:
    for m in import_graph(HARNESS, "harness"):
        layer_of(m, HARNESS_LAYERS)


def test_upward_imports_names_an_import_back_up_the_pipeline(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "spec.py": "X = 1\n",
        "cluster/__init__.py": "", "cluster/bringup.py": "from pkg.spec import X\n",
        "judge/__init__.py": "", "judge/bounds.py": "from pkg.cluster import bringup\n",
        "report.py": "def f():\n    from pkg.judge.bounds import B\n",
    })
    layers = (("pkg.spec",), ("pkg.cluster",), ("pkg.judge", "pkg.report"), ("pkg",))
    assert upward_imports(pkg, "pkg", layers) == []
    (pkg / "cluster" / "bringup.py").write_text("from pkg.judge import bounds\n")
    assert upward_imports(pkg, "pkg", layers) == ["pkg.cluster.bringup -> pkg.judge.bounds"]


def test_only_the_cluster_builders_import_the_cluster_module() -> None:
    graph = import_graph(PACKAGE, "multiconnect")
    importers = {m for m, deps in graph.items() if "multiconnect.sim.cluster" in deps}
    assert importers == CLUSTER_BUILDERS


def _protocol_members(proto: type) -> set[str]:
    return set(getattr(proto, "__annotations__", {})) | {
        name for name, value in vars(proto).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))}


def test_cluster_view_lists_exactly_what_its_users_use() -> None:
    """Every ``cl.<name>`` / ``<x>.cl.<name>`` in the modules that take a ClusterView."""
    used: set[str] = set()
    for name in CLUSTER_USERS:
        tree = ast.parse((PACKAGE / "sim" / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (
                    isinstance(node.value, ast.Name) and node.value.id == "cl"
                    or isinstance(node.value, ast.Attribute) and node.value.attr == "cl"):
                used.add(node.attr)
    assert used == _protocol_members(ClusterView)


def test_a_built_cluster_has_every_member_of_the_view() -> None:
    from multiconnect.sim.cluster import Cluster
    from multiconnect.sim.simconfig import SimConfig

    cl = Cluster(SimConfig())
    assert [m for m in sorted(_protocol_members(ClusterView)) if not hasattr(cl, m)] == []
    assert [m for m in sorted(_protocol_members(CheckHooks))
            if not callable(getattr(cl.check, m, None))] == []


# --------------------------------------------------------------------------- find_cycles
def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_find_cycles_reports_a_type_only_cycle_with_its_path(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "a.py": "from .b import B\n",
        "b.py": ("from typing import TYPE_CHECKING\nB = 1\n"
                 "if TYPE_CHECKING:\n    from .a import A\n"),
    })
    assert find_cycles(pkg, "pkg") == [["pkg.a", "pkg.b", "pkg.a"]]
    with pytest.raises(AssertionError, match=r"pkg\.a -> pkg\.b -> pkg\.a"):
        cycles = find_cycles(pkg, "pkg")
        assert not cycles, "import cycles:\n" + _render(cycles)


@pytest.mark.parametrize("b_imports_a", [
    "import pkg.a\n",
    "from pkg import a\n",
    "from pkg.a import A\n",
    "from . import a\n",
    "def f():\n    from .a import A\n",          # inside a function
    "from .sub import c\n",                      # through a sub-package: b -> c -> a
])
def test_find_cycles_resolves_every_import_form(tmp_path: Path, b_imports_a: str) -> None:
    pkg = _package(tmp_path, {"a.py": "from .b import B\nA = 1\n", "b.py": b_imports_a,
                              "sub/__init__.py": "", "sub/c.py": "from ..a import A\n"})
    cycles = find_cycles(pkg, "pkg")
    assert len(cycles) == 1 and cycles[0][0] == cycles[0][-1] == "pkg.a", cycles


def test_find_cycles_finds_none_in_a_chain(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "a.py": "from .b import B\nimport os\n",
        "b.py": "from .c import C\nfrom . import c\nB = 1\n",
        "c.py": "import json\nC = 1\n",
        "__init__.py": "from .a import *\n",  # the package importing its modules: no cycle
    })
    assert find_cycles(pkg, "pkg") == []
    assert import_graph(pkg, "pkg") == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"},
                                        "pkg.b": {"pkg.c"}, "pkg.c": set()}
