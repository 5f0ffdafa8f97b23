"""What every module of :mod:`ntkgrid.sweep` shares: its error, its format number, the
length of mean spectra and the type of its log callbacks."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ntkgrid import files
from ntkgrid.spectrum import SPECTRUM_LENGTH  # re-exported: its home is ntkgrid.spectrum

__all__ = ["FORMAT", "SPECTRUM_LENGTH", "Log", "SweepError", "read_json"]

#: Format number written into ``manifest.json`` and every ``results/<image_id>.json``.
FORMAT = 1

#: Where progress lines go (``print`` by default).
Log = Callable[[str], None]


class SweepError(RuntimeError):
    """A sweep cannot go on: bad settings, an output folder holding another sweep, or
    inputs that do not fit together. The message names the file and the problem."""


def read_json(path: str | os.PathLike) -> Any:
    """:func:`ntkgrid.files.read_json` raising :class:`SweepError` (naming the file)."""
    return files.read_json(path, error=SweepError)
