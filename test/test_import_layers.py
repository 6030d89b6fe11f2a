"""The package's layer order, read from the source of every module (not from a list of known offenders).

Layers, lowest first: core (``molmomotion_ros`` without its ROS/CLI front ends) ← harness
(``molmomotion_sim``) ← policies (``molmomotion_policies``) ← interface (``molmomotion_ros.nodes``,
``.cli``, ``.graph``, ``.node_specs``, ``.launcher``, ``.launch_support``). A module may import its own
layer and the layers below; nothing imports upward, and there are no import cycles, neither between
modules nor between the subpackages of a layer (``forecasting`` ⇄ ``planning`` would be one). Every
import counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import still ties the two
modules together. Plugins (agents, forecast backends) are named by import path strings, which are not
imports.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Import name → source folder (setup.py's package_dir).
PACKAGES = {"molmomotion_ros": ROOT / "molmomotion_ros", "molmomotion_sim": ROOT / "sim",
            "molmomotion_policies": ROOT / "policies"}
INTERFACE = ("molmomotion_ros.nodes", "molmomotion_ros.cli", "molmomotion_ros.graph", "molmomotion_ros.node_specs",
             "molmomotion_ros.launcher", "molmomotion_ros.launch_support")
LAYERS = ("core", "harness", "policies", "interface")


def layer_of(module: str) -> int:
    if any(module == p or module.startswith(p + ".") for p in INTERFACE):
        return 3
    return {"molmomotion_ros": 0, "molmomotion_sim": 1, "molmomotion_policies": 2}[module.split(".")[0]]


def discover(packages: dict[str, Path]) -> dict[str, Path]:
    """Module name → file, for every .py file of the packages."""
    modules = {}
    for name, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((name, *parts))] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that ``module`` imports anywhere in its source."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from a import b`: the module a.b where b is one, else a (b is one of a's attributes).
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            # The nearest known module: `import a.b.c` imports a.b.c (or its package when c is not a module).
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    modules = discover(packages)
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def subpackage(module: str) -> str:
    """The unit of the subpackage-level check: ``molmomotion_ros.planning`` for its modules; a top-level
    module (``molmomotion_ros.camera``) is its own unit."""
    return ".".join(module.split(".")[:2])


def violations(packages: dict[str, Path]) -> list[str]:
    """Every upward import and every cycle, as sentences."""
    edges = import_graph(packages)
    problems = []
    for module, targets in sorted(edges.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                problems.append(f"upward import: {module} ({LAYERS[layer_of(module)]}) imports {target} "
                                f"({LAYERS[layer_of(target)]})")
    problems += [f"import cycle between modules: {' ⇄ '.join(c)}" for c in cycles(edges)]
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in edges.items():
        for target in targets:
            a, b = subpackage(module), subpackage(target)
            if a != b:
                units[a].add(b)
    problems += [f"import cycle between subpackages: {' ⇄ '.join(c)}" for c in cycles(units)]
    return problems


def test_the_package_has_no_upward_or_circular_import():
    problems = violations(PACKAGES)
    assert not problems, "\n".join(problems)


def test_the_check_sees_every_package_module():
    modules = discover(PACKAGES)
    assert "molmomotion_ros.forecasting.pipeline" in modules
    assert "molmomotion_sim.tasks.base" in modules
    assert "molmomotion_policies.controller" in modules
    assert len(modules) > 80


def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"molmomotion_ros": root / "core", "molmomotion_sim": root / "sim", "molmomotion_policies": root / "pol"}


CLEAN = {
    "core/__init__.py": "",
    "core/camera.py": "import numpy\n",
    "core/planning/__init__.py": "",
    "core/planning/skills.py": "from ..camera import x\n",
    "core/nodes/__init__.py": "",
    "core/nodes/node.py": "from molmomotion_policies import agent\nfrom molmomotion_sim.world import W\n",
    "sim/__init__.py": "",
    "sim/world.py": "from molmomotion_ros.camera import PinholeCamera\n",
    "pol/__init__.py": "",
    "pol/agent.py": "from molmomotion_sim import world\nfrom molmomotion_ros.planning.skills import s\n",
}


def test_a_clean_fixture_tree_passes(tmp_path):
    assert violations(_write(tmp_path, CLEAN)) == []


def test_one_lazy_upward_import_fails(tmp_path):
    tree = dict(CLEAN)
    tree["sim/world.py"] += "def make():\n    from molmomotion_policies.agent import Agent\n"
    problems = violations(_write(tmp_path, tree))
    assert any("upward import: molmomotion_sim.world (harness) imports molmomotion_policies.agent" in p
               for p in problems), problems


def test_core_importing_the_harness_fails(tmp_path):
    tree = dict(CLEAN)
    tree["core/camera.py"] += "if TYPE_CHECKING:\n    from molmomotion_sim.world import World\n"
    problems = violations(_write(tmp_path, tree))
    assert any("molmomotion_ros.camera (core) imports molmomotion_sim.world (harness)" in p for p in problems)


def test_a_cycle_inside_a_layer_fails(tmp_path):
    tree = dict(CLEAN)
    tree["core/camera.py"] += "from .planning import skills\n"
    problems = violations(_write(tmp_path, tree))
    assert any("import cycle between modules" in p and "molmomotion_ros.camera" in p for p in problems), problems


def test_a_cycle_between_subpackages_fails(tmp_path):
    tree = dict(CLEAN)
    tree["core/forecasting/__init__.py"] = ""
    tree["core/forecasting/pipeline.py"] = "from ..planning.geometry import rigid_fit\n"
    tree["core/planning/geometry.py"] = "import numpy\n"
    tree["core/planning/manipulator.py"] = "from ..forecasting.grounding import ground\n"
    tree["core/forecasting/grounding.py"] = "import numpy\n"
    problems = violations(_write(tmp_path, tree))
    assert problems == ["import cycle between subpackages: molmomotion_ros.forecasting ⇄ molmomotion_ros.planning"]


def test_the_architecture_doc_names_only_files_that_exist():
    """docs/architecture.md's file names (the data path, the one-home table) follow the code."""
    import re

    text = (ROOT / "docs" / "architecture.md").read_text()
    names = set(re.findall(r"[\w/]+\.(?:py|yaml)\b", text))
    assert len(names) > 20
    missing = [n for n in sorted(names)
               if not any((base / n).exists() for base in (ROOT, ROOT / "molmomotion_ros", ROOT / "config"))]
    assert not missing, f"docs/architecture.md names files that do not exist: {missing}"
