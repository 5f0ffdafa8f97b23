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
