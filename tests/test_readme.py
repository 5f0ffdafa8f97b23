"""The README's library example runs as written (on a smaller photo) and imports only names
that ``ntkgrid`` itself exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ntkgrid

README = Path(__file__).resolve().parents[1] / "README.md"


def _library_example() -> str:
    text = README.read_text()
    section = text[text.index("### As a library"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_library_example_imports_only_the_curated_api():
    tree = ast.parse(_library_example())
    names = [(node.module, a.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names]
    assert names, "the example imports nothing from ntkgrid"
    assert {m for m, _ in names} == {"ntkgrid"}
    assert {n for _, n in names} <= set(ntkgrid.__all__)


@pytest.mark.slow
def test_library_example_runs_and_the_grid_kernel_shares_nodes():
    code = _library_example()
    assert "(64, 64)" in code
    code = code.replace("(64, 64)", "(52, 52)")  # a third of the eigensolvers' work; pixels still finer than nodes
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["x"].shape == (52 * 52, 2) and scope["rgb"].shape == (52 * 52, 3)
    assert set(scope["spectra"]) >= {"total", "mlp", "grid", "no_grid"}
    # 50 nodes per side over 52 pixels per side: neighbouring pixels share nodes.
    assert ntkgrid.offdiag_fraction(scope["kernels"]["grid"]) > 0.1
    assert scope["spectra"]["total"].floor > 0


# ----------------------------------------------------------------------------- the Layout section

ROOT = README.parent

#: Library modules tested through their users, not by a test module of their own (the README says so).
THROUGH_USERS = {"ntkgrid": "the curated API: test_readme.py, test_nt_compat.py", "ntkgrid._taps": "the encodings",
                 "ntkgrid.data": "DataError, raised by data/images and data/meshes",
                 "ntkgrid.training": "re-exports", "ntkgrid.training.result": "RunResult, of fit and load_run",
                 "ntkgrid.sweep": "re-exports", "ntkgrid.sweep.common": "SweepError, the format number",
                 "ntkgrid.studies": "re-exports"}

#: Packages tested by one test module (test_<package>.py) rather than one per module.
PER_PACKAGE = {"ntkgrid.encodings": "test_encodings.py", "ntkgrid.occupancy": "test_occupancy.py",
               "ntkgrid.gtk_study": "test_gtk_study.py", "ntkgrid.data.images": "test_data_images.py",
               "ntkgrid.data.meshes": "test_data_meshes.py"}

#: Modules whose test module is another than test_<package>_<module>.py (the README names them).
SHARED_TESTS = {"ntkgrid.studies.runner": "test_studies.py", "ntkgrid.studies.activations": "test_studies.py",
                "ntkgrid.studies.ntk_evolution": "test_studies_scaling.py",
                "ntkgrid.studies.inspect_grid": "test_studies_scaling.py"}


def _layout_tree(text: str) -> dict[str, str]:
    """``{path: description}`` of the README's Layout block: nesting by indentation (two
    spaces per level), names and description apart by two or more spaces (several names
    separated by ", "), a line indented past the entries' column continuing the entry above."""
    block = re.search(r"## Layout\n\n```\n(.*?)```", text, re.S).group(1)
    entries: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if indent >= 16 and last is not None:  # a description's continuation
            entries[last] += " " + line.strip()
            continue
        names, desc = re.match(r"(\S.*?)(?:\s{2,}(.*))?$", line.strip()).groups()
        stack = [(i, n) for i, n in stack if i < indent]
        for name in names.split(", "):  # "a.py, b.py   what they are" names both
            last = "".join(n for _, n in stack) + name
            entries[last] = (desc or "").strip()
        if name.endswith("/"):
            stack.append((indent, name))
    return entries


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def undocumented_modules(text: str, root: Path = ROOT) -> list[str]:
    """Files under ``root/ntkgrid`` the Layout tree does not name: neither an entry of their
    own (a package by its folder) nor a file named in their folder's description."""
    tree = _layout_tree(text)
    missing = []
    for path in sorted((root / "ntkgrid").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        folder = rel.rpartition("/")[0] + "/"
        if rel in tree or (path.name == "__init__.py" and folder in tree):
            continue
        described = " ".join(d for p, d in tree.items() if folder.startswith(p) and p.endswith("/"))
        if not re.search(rf"(?<![\w/]){re.escape(path.name)}", described):
            missing.append(rel)
    return missing


def expected_test(module: str) -> str | None:
    """The test module the README promises for ``module`` (None: tested through its users)."""
    if module in THROUGH_USERS:
        return None
    if module in SHARED_TESTS:
        return SHARED_TESTS[module]
    for pkg, test in PER_PACKAGE.items():
        if module == pkg or module.startswith(pkg + "."):
            return test
    return "test_" + "_".join(module.split(".")[1:]).lstrip("_") + ".py"


def _defined(path: Path) -> set[str]:
    """Top-level names a module defines."""
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def uses_module(test: Path, module: str, source: Path) -> bool:
    """Does ``test`` import ``module`` (or, per package, any module of it): ``import m``,
    ``from m import ...``, ``from <package> import m``, or a name ``m`` defines taken from
    its package (``from ntkgrid.training import fit``, ``sweep.ordering``)? Code in strings
    (subprocesses) counts when it says ``import m`` / ``from m import``."""
    text = test.read_text()
    pkg = next((p for p in PER_PACKAGE if module == p or module.startswith(p + ".")), None)
    if pkg is not None:
        return re.search(rf"\b(import|from) {re.escape(pkg)}\b", text) is not None
    if re.search(rf"\bimport {re.escape(module)}\b|\bfrom {re.escape(module)} import\b", text):
        return True
    parent, _, leaf = module.rpartition(".")
    names = _defined(source)
    aliases = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and node.module == parent:
            if any(a.name == leaf or a.name in names for a in node.names):
                return True
        if isinstance(node, ast.ImportFrom):
            aliases |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" == parent}
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == parent and a.asname}
    return any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
               and n.attr in names for n in ast.walk(ast.parse(text)))


def modules_without_tests(root: Path = ROOT) -> list[str]:
    """``"module: why"`` for every library module without the test module the README promises."""
    bad = []
    for path in sorted((root / "ntkgrid").rglob("*.py")):
        module = _module_name(path, root)
        test = expected_test(module)
        if test is None:
            continue
        if not (root / "tests" / test).exists():
            bad.append(f"{module}: no tests/{test}")
        elif not uses_module(root / "tests" / test, module, path):
            bad.append(f"{module}: tests/{test} does not import it")
    return bad


def test_the_layout_tree_names_every_library_module():
    missing = undocumented_modules(README.read_text())
    assert not missing, f"README's Layout does not name: {missing}"


def test_every_library_module_has_its_test_module():
    bad = modules_without_tests()
    assert not bad, "README: 'test_<module>.py per library module' is not true:\n" + "\n".join(bad)


def test_the_layout_and_test_checks_can_fail(tmp_path):
    (tmp_path / "ntkgrid" / "sweep").mkdir(parents=True)
    (tmp_path / "tests").mkdir()
    for name in ("__init__.py", "sweep/__init__.py", "sweep/stats.py", "sweep/new.py", "files.py"):
        (tmp_path / "ntkgrid" / name).write_text("def ordering():\n    pass\n")
    readme = ("## Layout\n\n```\nntkgrid/   the library\n  sweep/   sweeps: new.py\n    stats.py   statistics\n"
              "```\n")
    assert undocumented_modules(readme, tmp_path) == ["ntkgrid/files.py"]
    (tmp_path / "tests" / "test_sweep_stats.py").write_text("from ntkgrid import sweep\n\nsweep.ordering()\n")
    (tmp_path / "tests" / "test_sweep_new.py").write_text("from ntkgrid import sweep\n\nsweep.other()\n")
    (tmp_path / "tests" / "test_files.py").write_text("import subprocess\n\nsubprocess.run(['python', '-c', "
                                                      "'from ntkgrid.files import ordering'])\n")
    assert modules_without_tests(tmp_path) == ["ntkgrid.sweep.new: tests/test_sweep_new.py does not import it"]
    (tmp_path / "tests" / "test_files.py").unlink()
    assert modules_without_tests(tmp_path)[0] == "ntkgrid.files: no tests/test_files.py"
