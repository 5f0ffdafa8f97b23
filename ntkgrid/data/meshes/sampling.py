"""Labelled point pools (uniform in a box and near the surface), cached per mesh and
settings, and :class:`FreshPoints`, a fresh uniform sample every epoch with cached labels."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkgrid.data.meshes.inside import occupancy
from ntkgrid.files import write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

_POOL_FORMAT = 1  # bump when sampling/labelling changes, to invalidate caches

def _sample_surface(mesh: trimesh.Trimesh, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniform on the surface (area-weighted faces, uniform barycentrics)."""
    areas = np.asarray(mesh.area_faces, dtype=np.float64)
    cdf = np.cumsum(areas)
    face = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face = np.minimum(face, len(areas) - 1)
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1.0
    u[flip], v[flip] = 1.0 - u[flip], 1.0 - v[flip]
    tri = np.asarray(mesh.triangles)[face]
    return tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])


def _pool_key(mesh: trimesh.Trimesh, params: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mesh.vertices, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(mesh.faces, dtype="<i8").tobytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:24]


_POOL_KEYS = ("points_uniform", "labels_uniform", "points_surface", "labels_surface")


def sample_pools(
    mesh: trimesh.Trimesh,
    n_uniform: int,
    n_surface: int,
    sigma: float = 0.01,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    method: str = "auto",
    bounds: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Training/evaluation point pools with occupancy labels.

    * ``points_uniform`` ``(n_uniform, 3)`` float32: uniform in the box ``bounds``
      (``(2, 3)``: min and max corner; default ``[0, 1]^3``);
    * ``points_surface`` ``(n_surface, 3)`` float32: area-uniform surface samples plus
      ``N(0, sigma^2 I)`` jitter (``sigma`` in normalised units), clipped to ``[0, 1]``;
    * ``labels_uniform`` / ``labels_surface`` ``(n,)`` float32 in ``{0, 1}`` (1 = inside),
      computed by :func:`occupancy` (``method``) on the float32 points returned.

    Deterministic in ``seed``.  With ``cache_dir`` the pools are stored as
    ``pools_<hash>.npz``, the hash covering the mesh's vertices and faces and all
    parameters, and later calls load them instead of recomputing.
    """
    n_uniform, n_surface = int(n_uniform), int(n_surface)
    if n_uniform < 0 or n_surface < 0:
        raise ValueError("n_uniform and n_surface must be >= 0")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    params = dict(
        format=_POOL_FORMAT, n_uniform=n_uniform, n_surface=n_surface,
        sigma=float(sigma), seed=int(seed), method=method,
    )
    if bounds is not None:
        box = _box(bounds)
        params["bounds"] = box.tolist()
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"pools_{_pool_key(mesh, params)}.npz"
        pools = _load_pools(cache_path, n_uniform, n_surface)
        if pools is not None:
            return pools

    rng = np.random.default_rng(seed)
    pu = rng.random((n_uniform, 3))
    pu = (pu if bounds is None else box[0] + pu * (box[1] - box[0])).astype(np.float32)
    if n_surface:
        ps = _sample_surface(mesh, n_surface, rng) + rng.normal(0.0, sigma, (n_surface, 3))
        ps = np.clip(ps, 0.0, 1.0).astype(np.float32)
    else:
        ps = np.zeros((0, 3), dtype=np.float32)
    labels = occupancy(mesh, np.concatenate([pu, ps]).astype(np.float64), method=method)
    labels = labels.astype(np.float32)
    pools = {
        "points_uniform": pu,
        "labels_uniform": labels[:n_uniform],
        "points_surface": ps,
        "labels_surface": labels[n_uniform:],
    }
    if cache_path is not None:
        buf = io.BytesIO()
        np.savez(buf, **pools)
        write_bytes(cache_path, buf.getvalue())
    return pools


def _load_pools(cache_path: Path, n_uniform: int, n_surface: int) -> dict[str, np.ndarray] | None:
    """The pools cached at ``cache_path``, or None (with a warning when the file exists but
    is unreadable or holds pools of other sizes)."""
    if not cache_path.exists():
        return None
    try:
        with np.load(cache_path) as z:
            pools = {k: z[k] for k in _POOL_KEYS}
        ok = (
            pools["points_uniform"].shape == (n_uniform, 3)
            and pools["labels_uniform"].shape == (n_uniform,)
            and pools["points_surface"].shape == (n_surface, 3)
            and pools["labels_surface"].shape == (n_surface,)
        )
        if ok:
            return pools
        warnings.warn(f"{cache_path}: cached pools have wrong shapes; recomputing", stacklevel=3)
    except Exception as exc:
        warnings.warn(f"{cache_path}: unreadable cache ({exc}); recomputing", stacklevel=3)
    return None


def _box(bounds) -> np.ndarray:
    box = np.asarray(bounds, dtype=np.float64)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or np.any(box[1] < box[0]):
        raise ValueError(f"bounds must be finite (2, 3) [min corner, max corner], got {bounds!r}")
    return box


class FreshPoints:
    """Appendix E's sampling: every epoch ``size`` fresh points uniform in the box ``bounds``
    (the scaled mesh's bounding box), labelled on the fly by :func:`occupancy`.

    ``points(epoch)``: ``(size, 3)`` float32, a deterministic function of ``(seed, epoch)``
    (``numpy.random.default_rng([seed, epoch])``, the same on every platform).
    ``self(epoch)``: ``(points, labels (size, 1) float32)``, the form
    :func:`ntkgrid.training.fit` takes as ``epoch_data``. Labels are computed in batches of
    ``batch_size`` points (Embree ray parity for a watertight mesh).

    With ``cache_dir``, labels are cached per seed as packed bits
    (``<cache_dir>/fresh_<key>/epoch_XXXXXX.npy``, ``size / 8`` bytes an epoch). This is
    exact: only labels are stored; the points are regenerated bit for bit from
    ``(seed, epoch)``, and the key covers the mesh's vertices and faces, ``bounds``,
    ``size``, ``seed`` and ``method``, so a cached label is the label the mesh gives that
    very point. ``seconds_labelling`` / ``labelled`` count the labelling work done (cache
    hits excluded).
    """

    def __init__(self, mesh: trimesh.Trimesh, bounds, size: int, seed: int = 0,
                 cache_dir: str | os.PathLike[str] | None = None, method: str = "auto",
                 batch_size: int = 200_000) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.mesh, self.box, self.size, self.seed = mesh, _box(bounds), int(size), int(seed)
        self.method, self.batch_size = method, int(batch_size)
        self.cache = None
        if cache_dir is not None:
            key = _pool_key(mesh, dict(format=_POOL_FORMAT, fresh=True, bounds=self.box.tolist(), size=self.size,
                                       seed=self.seed, method=method))
            self.cache = Path(cache_dir) / f"fresh_{key}"
        self.seconds_labelling = 0.0
        self.labelled = 0

    def points(self, epoch: int) -> np.ndarray:
        u = np.random.default_rng([self.seed, int(epoch)]).random((self.size, 3))
        return (self.box[0] + u * (self.box[1] - self.box[0])).astype(np.float32)

    def labels(self, epoch: int, points: np.ndarray | None = None) -> np.ndarray:
        """``(size,)`` bool labels of :meth:`points` ``(epoch)`` (from the cache when there)."""
        path = None if self.cache is None else self.cache / f"epoch_{int(epoch):06d}.npy"
        if path is not None and path.exists():
            try:
                bits = np.load(path)
            except (OSError, ValueError) as exc:  # an unreadable cache entry is recomputed
                warnings.warn(f"{path}: unreadable label cache ({exc}); recomputing", stacklevel=2)
            else:
                if bits.shape == ((self.size + 7) // 8,) and bits.dtype == np.uint8:
                    return np.unpackbits(bits, count=self.size).astype(bool)
                warnings.warn(f"{path}: label cache of the wrong shape; recomputing", stacklevel=2)
        pts = self.points(epoch) if points is None else points
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            if self.labelled:  # warn (e.g. "not watertight") once, not every epoch
                warnings.simplefilter("ignore")
            lab = occupancy(self.mesh, pts.astype(np.float64), batch_size=self.batch_size, method=self.method)
        self.seconds_labelling += time.perf_counter() - t0
        self.labelled += len(pts)
        if path is not None:
            buf = io.BytesIO()
            np.save(buf, np.packbits(lab))
            write_bytes(path, buf.getvalue())
        return lab

    def __call__(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        pts = self.points(epoch)
        return pts, self.labels(epoch, pts).astype(np.float32)[:, None]


