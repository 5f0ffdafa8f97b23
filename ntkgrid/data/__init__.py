"""Data layer: images and meshes turned into coordinate/value datasets (pure NumPy).

Submodules (imported lazily, so ``import ntkgrid.data`` stays cheap):

* :mod:`ntkgrid.data.images` -- image loading (8/16-bit, float, grey, palette, alpha, CMYK, EXIF),
  scikit-image's bundled photos, ImageNet-style folders, pixel-grid datasets.
* :mod:`ntkgrid.data.meshes` -- mesh loading and normalisation to the unit cube,
  occupancy labels (embree ray parity or generalised winding numbers), cached
  point pools, a procedural default shape, Stanford scan downloads.

Every recoverable problem with an input file is raised as :class:`DataError`,
whose message always starts with the offending file (or URL) and then says what
is wrong with it.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DataError", "images", "meshes"]


class DataError(ValueError):
    """An input file (or URL) is missing, unreadable, or unsuitable.

    ``DataError(source, problem)``; ``str(err)`` is ``"<source>: <problem>"``.
    The attributes :attr:`source` (``str``) and :attr:`problem` (``str``) are
    kept separately so reports can tabulate them.  Subclasses ``ValueError``.
    """

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = os.fspath(source)
        self.problem = str(problem)
        super().__init__(self.source, self.problem)

    def __str__(self) -> str:
        return f"{self.source}: {self.problem}"


def __getattr__(name: str) -> Any:  # lazy submodules (PEP 562)
    if name in ("images", "meshes"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
