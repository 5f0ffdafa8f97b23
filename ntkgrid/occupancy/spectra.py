"""Float64 NTK spectra of a finished occupancy run, of the logit and of the sigmoid
output, cached per checkpoint next to the run."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.config import TrainConfig
from ntkgrid.data import DataError
from ntkgrid.models import build_model
from ntkgrid.occupancy.setup import NTK_OUTPUTS
from ntkgrid.spectrum import ntk_spectrum, spectrum_from_kernel
from ntkgrid.training import checkpoint_path, load_checkpoint
from ntkgrid.training.runfolder import read_spectra, save_spectra

if TYPE_CHECKING:  # pragma: no cover
    from ntkgrid.spectrum import Spectrum


def checkpoint_spectra(cfg: TrainConfig, run_dir: str | os.PathLike, epochs: Sequence[int], ntk_x: np.ndarray
                       ) -> dict[str, dict[int, dict[str, Spectrum]]]:
    """Float64 NTK spectra of a finished :func:`ntkgrid.training.fit` run at ``epochs`` (read
    from its ``checkpoints/``), on ``ntk_x`` ``(P, 3)``, for both outputs.

    Returns ``{"logit": {epoch: {group: Spectrum}}, "sigmoid": {...}}``. ``logit``: the
    kernel ``K = J J^T`` of the network's last linear layer (before the sigmoid), from
    :func:`ntkgrid.spectrum.ntk_spectrum` (groups ``total``, ``grid``, ``no_grid`` for
    multigrid). ``sigmoid``: the kernel of ``sigmoid(logit)``, the output the loss sees,
    ``D K D`` with ``D = diag(s (1 - s))``, ``s = sigmoid(logit(ntk_x))`` (chain rule;
    computed in float64 from the same ``K``). Stored as ``<run_dir>/ntk/epoch_XXXXXX.npz`` by
    :func:`ntkgrid.training.runfolder.save_spectra` (groups ``<output>/<group>``, plus
    ``ntk_hash``) and reused when the points match.
    """
    run_dir = Path(run_dir)
    ntk_x = np.ascontiguousarray(ntk_x, np.float32)
    key = hashlib.sha256(ntk_x.tobytes() + str(ntk_x.shape).encode()).hexdigest()[:16] + cfg.ntk_method
    model = build_model(cfg, 3, 1)
    out: dict[str, dict[int, dict[str, Spectrum]]] = {o: {} for o in NTK_OUTPUTS}
    for epoch in epochs:
        cache = run_dir / "ntk" / f"epoch_{int(epoch):06d}.npz"
        if cache.exists():
            try:
                cached_key, (_, cached) = _spectra_hash(cache), read_spectra_file(cache)
            except DataError:  # a damaged cache: computed again below
                cached_key = None
            if cached_key == key:
                for o in NTK_OUTPUTS:
                    out[o][epoch] = cached[o]
                continue
        if not checkpoint_path(run_dir, epoch).exists():
            continue
        variables = load_checkpoint(run_dir, epoch)
        groups = cfg.ntk_method == "structured"
        specs, kernels = ntk_spectrum(model, variables, ntk_x, method=cfg.ntk_method, groups=groups)
        if not groups:
            specs, kernels = {"total": specs}, {"total": kernels}
        with jax.enable_x64(True):
            v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
            z64 = np.asarray(model.apply(v64, jnp.asarray(ntk_x, jnp.float64)), np.float64)[:, 0]
        sig = 1.0 / (1.0 + np.exp(-z64))
        d = sig * (1.0 - sig)
        out["logit"][epoch] = dict(specs)
        out["sigmoid"][epoch] = {g: spectrum_from_kernel(d[:, None] * np.asarray(k, np.float64) * d[None, :])
                                 for g, k in kernels.items()}
        save_spectra(cache, epoch, {f"{o}/{g}": sp for o in NTK_OUTPUTS for g, sp in out[o][epoch].items()},
                     extra={"ntk_hash": np.array(key)})
    return out



def _open_npz(path: Path):
    """``np.load`` of a spectra file, any failure a :class:`DataError` naming it."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(path, "no such file") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(path, f"not a readable .npz spectra file (garbage or truncated: {exc})") from exc


def _spectra_hash(path: Path) -> str:
    with _open_npz(path) as z:
        try:
            return str(z["ntk_hash"])
        except (KeyError, OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(path, f"damaged .npz spectra file (no readable ntk_hash: {exc})") from exc


def read_spectra_file(path: str | os.PathLike) -> tuple[int, dict[str, dict[str, Spectrum]]]:
    """One ``ntk/epoch_XXXXXX.npz`` written by :func:`checkpoint_spectra` (through
    :func:`ntkgrid.training.runfolder.read_spectra`, old files without ``groups`` too):
    ``(epoch, {output: {group: Spectrum}})``.

    Raises :class:`ntkgrid.data.DataError` naming the file when it is missing, not an
    ``.npz`` archive, truncated, or lacks the arrays a spectra file holds."""
    path = Path(path)
    spectra, extra = read_spectra(path)
    try:
        epoch = int(extra["epoch"]) if "epoch" in extra else int(path.stem.split("_")[-1])
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"damaged .npz spectra file (unreadable epoch: {exc})") from exc
    out = {o: {name.split("/", 1)[1]: s for name, s in spectra.items() if name.startswith(f"{o}/")}
           for o in NTK_OUTPUTS}
    if not any(out.values()):
        raise DataError(path, "not a spectra file (no eigenvalues/<output>/<group> arrays)")
    return epoch, out
