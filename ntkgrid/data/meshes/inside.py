"""Inside/outside tests: Embree ray parity for watertight meshes, generalised winding
numbers (exact, or a clustered far-field expansion) for the others."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

def winding_numbers(
    mesh: trimesh.Trimesh | np.ndarray,
    points: np.ndarray,
    max_pairs: int = 1 << 20,
    exact: bool | None = None,
    beta: float = 2.5,
) -> np.ndarray:
    """Generalised winding numbers of ``points`` with respect to a triangle soup.

    ``mesh``: a ``trimesh.Trimesh`` or triangles ``(F, 3, 3)``; ``points``: ``(N, 3)``.
    Returns ``(N,)`` float64: ``sum_t Omega_t(p) / (4 pi)`` with the signed solid angle
    ``tan(Omega/2) = a.(b x c) / (|a||b||c| + (a.b)|c| + (b.c)|a| + (c.a)|b|)``
    (Van Oosterom & Strackee 1983; ``a, b, c`` = corners minus ``p``).  It is 1 inside
    and 0 outside a closed outward-oriented mesh, -1 inside an inside-out one.

    ``exact=True``: the plain ``O(N * F)`` sum.  ``exact=False``: triangles are
    clustered (:class:`_WindingTree`); clusters farther than ``beta`` radii use a
    second-order dipole expansion (Barill et al. 2018), nearer ones the exact sum --
    about ``O(N * sqrt(F))``, absolute error about 0.01 at ``beta = 2.5`` (checked on
    the Stanford armadillo), harmless for a 0.5 threshold except right at holes.
    ``None`` (default): exact for ``F <= 4096``.  Work is split into blocks of at most
    ``max_pairs`` point-triangle (or point-cluster) pairs, bounding the temporaries to
    roughly ``200 * max_pairs`` bytes.
    """
    tri = np.asarray(mesh.triangles if hasattr(mesh, "triangles") else mesh, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    if tri.ndim != 3 or tri.shape[1:] != (3, 3):
        raise ValueError(f"triangles must be (F, 3, 3), got {tri.shape}")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {pts.shape}")
    n, f = len(pts), len(tri)
    if n == 0 or f == 0:
        return np.zeros(n, dtype=np.float64)
    if exact is None:
        exact = f <= 4096
    if not exact:
        return _WindingTree(tri, beta)(pts, max_pairs)
    out = np.zeros(n, dtype=np.float64)
    fc = int(min(f, max_pairs))
    pc = int(max(1, max_pairs // fc))
    corners = [[np.ascontiguousarray(tri[:, k, d]) for d in range(3)] for k in range(3)]
    for f0 in range(0, f, fc):
        (ax0, ay0, az0), (bx0, by0, bz0), (cx0, cy0, cz0) = (
            [c[f0 : f0 + fc][None, :] for c in corner] for corner in corners
        )
        for p0 in range(0, n, pc):
            p = pts[p0 : p0 + pc]
            px, py, pz = p[:, 0:1], p[:, 1:2], p[:, 2:3]
            ax, ay, az = ax0 - px, ay0 - py, az0 - pz
            bx, by, bz = bx0 - px, by0 - py, bz0 - pz
            cx, cy, cz = cx0 - px, cy0 - py, cz0 - pz
            la = np.sqrt(ax * ax + ay * ay + az * az)
            lb = np.sqrt(bx * bx + by * by + bz * bz)
            lc = np.sqrt(cx * cx + cy * cy + cz * cz)
            det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
            den = (
                la * lb * lc
                + (ax * bx + ay * by + az * bz) * lc
                + (bx * cx + by * cy + bz * cz) * la
                + (cx * ax + cy * ay + cz * az) * lb
            )
            out[p0 : p0 + pc] += np.arctan2(det, den).sum(axis=1)
    return out / (2.0 * math.pi)  # 2*atan2 / (4 pi)


def _solid_angles(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed solid angles (``(..., )``) of triangles with corners ``a, b, c`` (``(..., 3)``,
    relative to the viewpoint), Van Oosterom & Strackee."""
    la = np.sqrt(np.einsum("...i,...i->...", a, a))
    lb = np.sqrt(np.einsum("...i,...i->...", b, b))
    lc = np.sqrt(np.einsum("...i,...i->...", c, c))
    det = np.einsum("...i,...i->...", a, np.cross(b, c))
    den = (
        la * lb * lc
        + np.einsum("...i,...i->...", a, b) * lc
        + np.einsum("...i,...i->...", b, c) * la
        + np.einsum("...i,...i->...", c, a) * lb
    )
    return 2.0 * np.arctan2(det, den)


class _WindingTree:
    """One-level Barnes-Hut clustering of triangles for fast winding numbers.

    Triangles are bucketed by centroid on a regular grid.  A cluster seen from
    farther than ``beta`` times its radius contributes through its dipole expansion
    to second order (Barill et al. 2018: area-weighted normal sum plus its first
    moment); nearer clusters are summed exactly.
    """

    def __init__(self, tri: np.ndarray, beta: float = 2.0) -> None:
        f = len(tri)
        self.beta = float(beta)
        per = max(16.0, math.sqrt(f / 30.0))  # balances far-field and near-field work
        g = int(np.clip(round(math.sqrt(f / (3.0 * per))), 1, 128))
        cen = tri.mean(axis=1)
        lo, hi = cen.min(axis=0), cen.max(axis=0)
        cell = np.floor((cen - lo) / np.maximum(hi - lo, 1e-300) * g).astype(np.int64)
        cell = np.clip(cell, 0, g - 1)
        key = (cell[:, 0] * g + cell[:, 1]) * g + cell[:, 2]
        order = np.argsort(key, kind="stable")
        key = key[order]
        self.tri = np.ascontiguousarray(tri[order])
        cen = cen[order]
        _, starts = np.unique(key, return_index=True)
        self.starts = starts
        self.counts = np.diff(np.append(starts, f))
        cl = np.repeat(np.arange(len(starts)), self.counts)
        t = self.tri
        an = 0.5 * np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])  # area vectors
        area = np.linalg.norm(an, axis=1)
        area_c = np.add.reduceat(area, starts)
        wsum = np.add.reduceat(area[:, None] * cen, starts)
        mean_c = np.add.reduceat(cen, starts) / self.counts[:, None]
        ok = area_c > 0
        self.centre = np.where(ok[:, None], wsum / np.where(ok, area_c, 1.0)[:, None], mean_c)
        self.normal = np.add.reduceat(an, starts)
        rel = cen - self.centre[cl]
        self.moment = np.add.reduceat(an[:, :, None] * rel[:, None, :], starts)  # (C, 3, 3)
        self.trace = np.einsum("cii->c", self.moment)
        vdist = np.linalg.norm(t - self.centre[cl][:, None, :], axis=2).max(axis=1)
        self.radius = np.maximum.reduceat(vdist, starts)

    def __call__(self, pts: np.ndarray, max_pairs: int) -> np.ndarray:
        n_c = len(self.starts)
        out = np.zeros(len(pts), dtype=np.float64)
        pb = max(1, max_pairs // max(n_c, 1))
        for p0 in range(0, len(pts), pb):
            p = pts[p0 : p0 + pb]
            r = self.centre[None, :, :] - p[:, None, :]  # (B, C, 3)
            d2 = np.einsum("bci,bci->bc", r, r)
            far = d2 > (self.beta * self.radius[None, :]) ** 2
            d2f = np.where(far, d2, 1.0)
            inv3 = d2f ** -1.5
            rmr = np.einsum("bci,cij,bcj->bc", r, self.moment, r)
            term = (np.einsum("bci,ci->bc", r, self.normal) + self.trace[None, :]) * inv3
            term -= 3.0 * rmr * inv3 / d2f
            out[p0 : p0 + pb] += np.where(far, term, 0.0).sum(axis=1)
            # near clusters: exact, as a flat list of (point, triangle) pairs
            pi, ci = np.nonzero(~far)
            if len(pi):
                cnt = self.counts[ci]
                csum = np.cumsum(cnt)
                total = int(csum[-1])
                step = max(1, max_pairs)
                for q0 in range(0, total, step):
                    q1 = min(total, q0 + step)
                    flat = np.arange(q0, q1)
                    pair = np.searchsorted(csum, flat, side="right")
                    within = flat - (csum[pair] - cnt[pair])
                    tri_idx = self.starts[ci[pair]] + within
                    pt = p[pi[pair]]
                    t = self.tri[tri_idx]
                    om = _solid_angles(t[:, 0] - pt, t[:, 1] - pt, t[:, 2] - pt)
                    out[p0 : p0 + pb] += np.bincount(pi[pair], weights=om, minlength=len(p))
        return out / (4.0 * math.pi)


def _embree_intersector(mesh: trimesh.Trimesh):
    """The mesh's Embree intersector, or ``None`` (with a warning) if unavailable."""
    try:
        import trimesh.ray

        if not trimesh.ray.has_embree:
            raise ImportError("embreex is not installed")
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        ray = mesh.ray
        if not isinstance(ray, RayMeshIntersector):
            ray = RayMeshIntersector(mesh)
        return ray
    except Exception as exc:  # ImportError, or embree failing to build its scene
        warnings.warn(
            f"Embree ray tracing unavailable ({type(exc).__name__}: {exc}); "
            "falling back to generalised winding numbers (much slower)",
            stacklevel=3,
        )
        return None


def occupancy(
    mesh: trimesh.Trimesh,
    points: np.ndarray,
    batch_size: int = 200_000,
    method: str = "auto",
) -> np.ndarray:
    """Inside/outside labels of ``points`` for ``mesh``.

    ``points``: ``(N, 3)`` float, same units as the mesh.  Returns ``(N,)`` bool,
    ``True`` = inside.  ``method``:

    * ``"auto"``: ``"embree"`` for a watertight mesh, else ``"winding"`` (with a
      warning saying what the labels mean);
    * ``"embree"``: ray parity with Embree (``mesh.contains``-style, two opposite rays
      per point, a third when they disagree), ``batch_size`` points at a time; falls
      back to ``"winding"`` with a warning when Embree is missing;
    * ``"winding"``: generalised winding number, ``inside <=> |w| > 0.5`` (the absolute
      value makes globally inside-out meshes work); see :func:`winding_numbers`
      (clustered far field above 4096 faces; ``batch_size`` does not apply).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if method not in ("auto", "embree", "winding"):
        raise ValueError(f"method must be 'auto', 'embree' or 'winding', got {method!r}")
    out = np.zeros(len(pts), dtype=bool)
    if len(pts) == 0:
        return out
    if method == "auto":
        if mesh.is_watertight:
            method = "embree"
        else:
            src = mesh.metadata.get("ntkgrid", {}).get("source", "mesh")
            warnings.warn(
                f"{src}: mesh is not watertight; occupancy labels use generalised winding "
                "numbers (inside <=> |w| > 0.5), a best guess near holes; much slower "
                f"than Embree ray parity ({len(pts)} points x {len(mesh.faces)} faces)",
                stacklevel=2,
            )
            method = "winding"
    if method == "embree":
        if not mesh.is_watertight:
            warnings.warn(
                "ray parity on a mesh that is not watertight: rays escaping through holes "
                "mislabel points; method='winding' is the robust choice",
                stacklevel=2,
            )
        ray = _embree_intersector(mesh)
        if ray is None:
            method = "winding"
        else:
            for i in range(0, len(pts), batch_size):
                out[i : i + batch_size] = ray.contains_points(pts[i : i + batch_size])
            return out
    return np.abs(winding_numbers(mesh, pts)) > 0.5


