"""The library's layers: no import circles and no import pointing up a floor.

Every module under ``ntkgrid/`` is parsed with :mod:`ast` (nothing is imported), and every
import of an ntkgrid module counts: at the top, inside functions, under ``TYPE_CHECKING``.
``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else at
``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "ntkgrid"

#: Floors, lowest (foundations) first: a module may import from its own floor or below,
#: never from above. The longest dotted prefix names a module's floor; ``"ntkgrid"`` (the
#: lazy public facade, ``ntkgrid/__init__.py``) matches itself only.
FLOORS = {
    # 0: no ntkgrid imports, or only each other
    "ntkgrid._taps": 0, "ntkgrid._nt_compat": 0, "ntkgrid.files": 0, "ntkgrid.interpolate": 0,
    "ntkgrid.metrics": 0, "ntkgrid.data": 0,
    # 1: encodings, the NTK itself, figures
    "ntkgrid.encodings": 1, "ntkgrid.ntk": 1, "ntkgrid.plots": 1,
    # 2: configs, spectra, renders
    "ntkgrid.config": 2, "ntkgrid.spectrum": 2, "ntkgrid.render": 2,
    # 3: paper settings and the readings of the recipe, models, the linear theory
    "ntkgrid.presets": 3, "ntkgrid.readings": 3, "ntkgrid.models": 3, "ntkgrid.theory": 3,
    # 4: training and its run folder; kernels of the GTK; stability; the public facade
    "ntkgrid.training": 4, "ntkgrid.gtk": 4, "ntkgrid.stability": 4, "ntkgrid": 4,
    # 5: analyses of finished run folders
    "ntkgrid.analysis": 5,
    # 6: evidence over runs; the occupancy study
    "ntkgrid.evidence": 6, "ntkgrid.occupancy": 6,
    # 7: sweeps and the studies built on the ones below
    "ntkgrid.sweep": 7, "ntkgrid.gtk_study": 7, "ntkgrid.studies": 7,
    # 8: analyses of whole sweeps
    "ntkgrid.ablation": 8,
}


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` under ``root`` (packages by their
    ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ntkgrid modules ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "ntkgrid")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ntkgrid":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    resolved = {_resolve(n, modules) for n in found}
    return {n for n in resolved if n is not None and n != module}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: {ntkgrid modules it imports}}`` for every module under ``root``."""
    modules = module_names(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan),
    and modules importing themselves."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def declared_floor(module: str, floors: dict[str, int] = FLOORS) -> int | None:
    """The floor of the longest prefix of ``module`` in ``floors`` (``"ntkgrid"`` only
    matches itself), or ``None`` for a module no entry covers."""
    if module in floors:
        return floors[module]
    parts = module.split(".")
    for n in range(len(parts) - 1, 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in floors:
            return floors[prefix]
    return None


def floors_of(graph: dict[str, set[str]], floors: dict[str, int] = FLOORS) -> dict[str, int]:
    """Every module's floor: declared, or for a module no entry covers (a new one) the
    highest floor among what it imports (0 if nothing), so that it never blocks by
    itself; importing it from a lower floor still counts as pointing up. Needs no cycles."""
    out: dict[str, int] = {}

    def floor(m, seen=()):
        if m not in out:
            f = declared_floor(m, floors)
            if f is None:
                f = max((floor(w, (*seen, m)) for w in graph.get(m, ()) if w not in seen), default=0)
            out[m] = f
        return out[m]

    for m in graph:
        floor(m)
    return out


def upward_imports(graph: dict[str, set[str]], floors: dict[str, int] = FLOORS) -> list[str]:
    """``"a (floor i) -> b (floor j)"`` for every import from a lower floor to a higher one."""
    level = floors_of(graph, floors)
    return [f"{m} (floor {level[m]}) -> {w} (floor {level[w]})"
            for m in sorted(graph) for w in sorted(graph[m]) if level[w] > level[m]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import circles in ntkgrid/: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_points_up_a_floor():
    bad = upward_imports(import_graph())
    assert not bad, "imports pointing up a floor (see FLOORS in tests/test_layers.py):\n" + "\n".join(bad)


def test_every_declared_floor_names_a_module():
    modules = module_names()
    missing = [p for p in FLOORS if p not in modules and p != "ntkgrid.studies"]
    assert not missing, f"FLOORS names modules that do not exist: {missing}"


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    # config imports the encodings inside functions only (its laziness is promised)
    assert "ntkgrid.encodings" in graph["ntkgrid.config"]
    # analysis reads run folders through the training package
    assert "ntkgrid.training.runfolder" in graph["ntkgrid.analysis"]
    # package __init__ files re-export their submodules
    assert "ntkgrid.sweep.common" in graph["ntkgrid.sweep"]


def test_checks_catch_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "ntkgrid"
    (pkg / "sweep").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sweep" / "__init__.py").write_text("from .common import SweepError\n")
    (pkg / "sweep" / "common.py").write_text("class SweepError(Exception):\n    pass\n")
    (pkg / "analysis.py").write_text("def f():\n    from ntkgrid.sweep import SweepError\n    return SweepError\n")
    (pkg / "newthing.py").write_text("import ntkgrid.analysis\n")
    graph = import_graph(pkg)
    assert graph["ntkgrid.analysis"] == {"ntkgrid.sweep"}
    assert graph["ntkgrid.sweep"] == {"ntkgrid.sweep.common"}
    bad = upward_imports(graph)
    assert bad == ["ntkgrid.analysis (floor 5) -> ntkgrid.sweep (floor 7)"]
    assert floors_of(graph)["ntkgrid.newthing"] == 5  # unlisted: the floor of what it imports
    assert cycles(graph) == []
    (pkg / "sweep" / "common.py").write_text("from ntkgrid.analysis import f\n")
    assert cycles(import_graph(pkg)) == [["ntkgrid.analysis", "ntkgrid.sweep", "ntkgrid.sweep.common"]]


def test_the_real_tree_fails_if_analysis_imports_the_sweep(tmp_path):
    graph = import_graph()
    graph["ntkgrid.analysis"] = graph["ntkgrid.analysis"] | {"ntkgrid.sweep.common"}
    assert upward_imports(graph) == ["ntkgrid.analysis (floor 5) -> ntkgrid.sweep.common (floor 7)"]


#: Modules that may import ntkgrid modules inside functions: laziness they promise and
#: tests/test_nt_compat.py tests (``import ntkgrid``, ``ntkgrid.config`` and
#: ``ntkgrid.presets`` load no JAX).
LAZY_MODULES = ("ntkgrid", "ntkgrid.config", "ntkgrid.presets")


def function_level_imports(root: Path = ROOT, allowed: tuple[str, ...] = LAZY_MODULES) -> list[str]:
    """``"module:line imports target"`` for every import of an ntkgrid module (absolute or
    relative) inside a function of a module not in ``allowed``."""
    modules = module_names(root)
    out = []
    for module, path in modules.items():
        if module in allowed:
            continue
        for fn in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names if a.name.split(".")[0] == "ntkgrid"]
                elif isinstance(node, ast.ImportFrom):
                    targets = [("." * node.level) + (node.module or "")]
                    targets = [t for t in targets if node.level or t.split(".")[0] == "ntkgrid"]
                else:
                    continue
                out += [f"{module}:{node.lineno} imports {t}" for t in targets]
    return sorted(set(out))


def test_library_modules_import_ntkgrid_at_the_top():
    bad = function_level_imports()
    assert not bad, ("ntkgrid imports inside functions (only " + ", ".join(LAZY_MODULES)
                     + " may: their laziness is promised):\n" + "\n".join(bad))


def test_the_function_level_check_finds_absolute_and_relative_imports(tmp_path):
    pkg = tmp_path / "ntkgrid"
    (pkg / "sweep").mkdir(parents=True)
    (pkg / "__init__.py").write_text("def __getattr__(name):\n    from ntkgrid import config\n    return config\n")
    (pkg / "sweep" / "__init__.py").write_text("from .common import f\n")
    (pkg / "sweep" / "common.py").write_text("import json\n\n\ndef f():\n    import numpy\n    from . import x\n"
                                             "    return numpy, x\n")
    (pkg / "analysis.py").write_text("class A:\n    def g(self):\n        import ntkgrid.sweep.common\n")
    assert function_level_imports(pkg) == ["ntkgrid.analysis:3 imports ntkgrid.sweep.common",
                                           "ntkgrid.sweep.common:6 imports ."]


# ----------------------------------------------------------------------------- experiments/: thin CLIs

CLI_ROOT = ROOT.parent / "experiments"


def cli_imports(path: Path) -> set[str]:
    """The ``experiments`` modules the file ``path`` imports anywhere (``from experiments import x``
    counts as ``experiments.x``; the package itself as ``experiments``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "experiments")
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:  # relative: inside the experiments package
                target = ".".join(["experiments", *([target] if target else [])])
            if target.split(".")[0] != "experiments":
                continue
            found.update(f"{target}.{a.name}" if target == "experiments" else target for a in node.names)
    return found


def cross_cli_imports(root: Path = CLI_ROOT) -> list[str]:
    """``"a -> b"`` for every program of ``root`` importing another program (or the package's
    ``__init__``): a program may import only ``experiments._cli`` of the experiments package."""
    bad = []
    for path in sorted(root.glob("*.py")):
        me = f"experiments.{path.stem}"
        for target in sorted(cli_imports(path)):
            if target != "experiments._cli" and target != me:
                bad.append(f"{me} -> {target}")
    return bad


def test_no_program_imports_another():
    bad = cross_cli_imports()
    assert not bad, "a CLI imports another CLI (move the shared code into ntkgrid/ or experiments/_cli.py):\n" + \
        "\n".join(bad)


def test_experiments_init_is_a_docstring_only():
    tree = ast.parse((CLI_ROOT / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value.value, str)


def test_the_cli_check_catches_each_form_of_import(tmp_path):
    (tmp_path / "_cli.py").write_text("import os\n")
    (tmp_path / "a.py").write_text("from experiments._cli import fail\nfrom experiments import _cli\n")
    assert cross_cli_imports(tmp_path) == []
    (tmp_path / "b.py").write_text("def main():\n    from experiments.a import x\n")
    (tmp_path / "c.py").write_text("from experiments import a, _cli\nimport experiments.b\nfrom . import a as aa\n")
    assert cross_cli_imports(tmp_path) == ["experiments.b -> experiments.a", "experiments.c -> experiments.a",
                                           "experiments.c -> experiments.b"]
