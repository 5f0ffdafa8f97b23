"""Pictures of 3-D occupancy fields: ray-marched renders and marching-cubes surfaces.

A *field* here is any callable ``field(points (N, 3) float32 ndarray) -> (N,) ndarray``
whose ``level`` set (0.5 for occupancy probabilities ``sigmoid(logit)``) is the surface,
with values above ``level`` inside. :func:`network_field` wraps a Flax model as one.

* :func:`render_field` - fixed-step ray marching (no sphere tracing: an occupancy network
  is not a distance field) through the box ``[0, 1]^3``, bisection refinement of the
  first crossing of ``level``, outward normals ``-grad f / |grad f|`` from central finite
  differences, Lambertian shading.
* :func:`render_mesh` - the same camera and shading on a triangle mesh, by ray casting
  (trimesh; Intel Embree when ``embreex`` is installed): the ground truth beside renders.
* :func:`extract_surface` - the ``level`` set as a triangle mesh by marching cubes
  (``skimage.measure.marching_cubes``) on a node-centred grid over the box, padded with
  "outside" so the surface is closed where the shape touches the box.
* :func:`save_panel` - several renders side by side with titles, one PNG.

Units: world coordinates are the normalised mesh units of :mod:`ntkgrid.data.meshes`
(longest side of the shape = 1); images are float RGB in ``[0, 1]``, row 0 at the top.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from ntkgrid.plots import panel_grid, save

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

__all__ = [
    "Camera",
    "Render",
    "extract_surface",
    "field_normals",
    "march",
    "network_field",
    "ray_box",
    "render_field",
    "render_mesh",
    "save_panel",
    "shade",
]

Field = Callable[[np.ndarray], np.ndarray]
UNIT_BOX = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole (perspective) or orthographic camera.

    Image row 0 is at the top; pixel ``(i, j)`` looks through its centre. Build one
    looking at the box centre with :meth:`orbit`.
    """

    eye: tuple[float, float, float] = (2.2, 1.6, 2.6)  # camera position (world units)
    target: tuple[float, float, float] = (0.5, 0.5, 0.5)  # point at the image centre
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)  # world direction shown as image "up"
    fov_deg: float | None = 30.0  # vertical field of view in degrees; None = orthographic
    ortho_height: float = 1.5  # orthographic only: height of the view (world units)
    width: int = 256  # image width (pixels)
    height: int = 256  # image height (pixels)

    def __post_init__(self):
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.fov_deg is not None and not 0 < self.fov_deg < 180:
            raise ValueError(f"fov_deg must be in (0, 180) or None, got {self.fov_deg}")
        if self.fov_deg is None and not self.ortho_height > 0:
            raise ValueError(f"ortho_height must be > 0, got {self.ortho_height}")
        f = np.subtract(self.target, self.eye)
        if not np.linalg.norm(f) > 0 or np.linalg.norm(np.cross(f, self.up)) < 1e-9 * np.linalg.norm(f):
            raise ValueError("camera eye must differ from target, and up must not be parallel to the view")

    @classmethod
    def orbit(cls, azimuth_deg: float = 35.0, elevation_deg: float = 25.0, distance: float = 3.0,
              target=(0.5, 0.5, 0.5), up=(0.0, 1.0, 0.0), **kw) -> Camera:
        """Camera at ``distance`` from ``target``, ``azimuth_deg`` about ``up`` measured from
        the +z axis towards +x, raised by ``elevation_deg`` (``up`` must be +y)."""
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        d = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        eye = tuple(float(v) for v in np.asarray(target, np.float64) + distance * d)
        return cls(eye=eye, target=tuple(target), up=tuple(up), **kw)

    @property
    def orthographic(self) -> bool:
        return self.fov_deg is None

    def basis(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit ``(forward, right, up)`` vectors, each ``(3,)``."""
        fwd = _unit(np.subtract(self.target, self.eye))
        right = _unit(np.cross(fwd, self.up))
        up = np.cross(right, fwd)
        return fwd, right, up

    def pixel_size(self) -> float:
        """Orthographic: side of one (square) pixel in world units."""
        if not self.orthographic:
            raise ValueError("pixel_size is defined for orthographic cameras only")
        return self.ortho_height / self.height

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions, both ``(H, W, 3)`` float64."""
        fwd, right, up = self.basis()
        h, w = self.height, self.width
        v = 1.0 - (np.arange(h) + 0.5) / h * 2.0  # +1 at the top row
        u = (np.arange(w) + 0.5) / w * 2.0 - 1.0
        aspect = w / h
        uu, vv = np.meshgrid(u, v)  # (H, W)
        if self.orthographic:
            half = self.ortho_height / 2.0
            origins = (np.asarray(self.eye)[None, None] + (uu * aspect * half)[..., None] * right
                       + (vv * half)[..., None] * up)
            dirs = np.broadcast_to(fwd, (h, w, 3)).copy()
        else:
            t = math.tan(math.radians(self.fov_deg) / 2.0)
            dirs = _unit(fwd + (uu * aspect * t)[..., None] * right + (vv * t)[..., None] * up)
            origins = np.broadcast_to(np.asarray(self.eye, np.float64), (h, w, 3)).copy()
        return origins, dirs


def ray_box(origins: np.ndarray, dirs: np.ndarray, box=UNIT_BOX) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry and exit distances ``t_near, t_far`` ``(R,)`` of rays ``(R, 3)``
    through the axis-aligned ``box = (lo, hi)``; a miss has ``t_near > t_far``. ``t_near``
    is clamped at 0 (rays starting inside the box)."""
    lo, hi = (np.asarray(b, np.float64) for b in box)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dirs
        t0, t1 = (lo - origins) * inv, (hi - origins) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    # a zero direction component: inside the slab -> (-inf, inf), else a miss (nan -> miss)
    par = dirs == 0
    inside = (origins >= lo) & (origins <= hi)
    tmin = np.where(par, np.where(inside, -np.inf, np.inf), tmin)
    tmax = np.where(par, np.where(inside, np.inf, -np.inf), tmax)
    return np.maximum(tmin.max(-1), 0.0), tmax.min(-1)


@dataclasses.dataclass(frozen=True)
class Render:
    """A rendered view. ``image`` ``(H, W, 3)`` float32 RGB in [0, 1] (background white);
    ``mask`` ``(H, W)`` bool, rays that hit the surface; ``depth`` ``(H, W)`` float32 distance
    along the ray (inf on a miss); ``normals`` ``(H, W, 3)`` float32 unit outward normals
    facing the camera (0 on a miss); ``evaluations``: field points evaluated (0 for meshes)."""

    image: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    evaluations: int = 0


class _CountingField:
    """``field`` evaluated on points clipped to ``[lo, hi]`` (float32 in, float64 ``(P,)``
    out), counting the points it was asked for in ``evaluations``."""

    def __init__(self, field, lo: np.ndarray, hi: np.ndarray):
        self.field, self.lo, self.hi, self.evaluations = field, lo, hi, 0

    def __call__(self, p: np.ndarray) -> np.ndarray:
        self.evaluations += len(p)
        return np.asarray(self.field(np.clip(p, self.lo, self.hi).astype(np.float32)), np.float64).reshape(-1)


def march(field: Field, origins: np.ndarray, dirs: np.ndarray, *, box=UNIT_BOX, step: float | None = None,
          n_steps: int = 128, n_bisect: int = 8, level: float = 0.5, chunk_steps: int = 8,
          max_points: int = 1 << 18) -> tuple[np.ndarray, np.ndarray, int]:
    """First crossing of ``level`` along each ray, by fixed steps then bisection.

    Samples ``t = t_near + k * step`` (``k = 0, 1, ...`` while ``t <= t_far``) inside ``box``;
    the first sample with ``field >= level`` ends the ray, and ``n_bisect`` halvings of the
    bracketing step refine it (a ray starting inside the surface hits at ``t_near``).
    ``step`` defaults to the box diagonal / ``n_steps``. Features thinner than ``step``
    can be missed, as with any fixed-step marcher. Rays still marching are batched,
    ``chunk_steps`` samples each, at most about ``max_points`` points per field call.

    Args:
      field: ``(N, 3) float32 -> (N,)``, larger than ``level`` inside.
      origins, dirs: ``(R, 3)`` ray origins and unit directions.

    Returns:
      ``(hit (R,) bool, t (R,) float64 (inf on a miss), evaluations int)``.
    """
    origins = np.asarray(origins, np.float64).reshape(-1, 3)
    dirs = np.asarray(dirs, np.float64).reshape(-1, 3)
    lo, hi = (np.asarray(b, np.float64) for b in box)
    if step is None:
        step = float(np.linalg.norm(hi - lo)) / n_steps
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step}")
    n_rays = len(origins)
    t_near, t_far = ray_box(origins, dirs, box)
    t_hit = np.full(n_rays, np.inf)
    lo_t = np.zeros(n_rays)  # bracket: field(lo_t) < level <= field(hi_t)
    f = _CountingField(field, lo, hi)

    active = np.nonzero(t_near <= t_far)[0]
    prev_t = np.zeros(n_rays)  # each marching ray's last sample (below level)
    k0 = 0
    while active.size:
        rays_per_call = max(1, max_points // chunk_steps)
        still = []
        for s in range(0, active.size, rays_per_call):
            idx = active[s:s + rays_per_call]
            k = k0 + np.arange(chunk_steps)
            t = t_near[idx, None] + k[None] * step  # (r, c)
            valid = t <= t_far[idx, None]
            pts = origins[idx, None] + t[..., None] * dirs[idx, None]
            vals = f(pts.reshape(-1, 3)).reshape(t.shape)
            inside = (vals >= level) & valid
            any_in = inside.any(1)
            hl = np.nonzero(any_in)[0]
            c = np.argmax(inside[hl], 1)
            r = idx[hl]
            t_hit[r] = t[hl, c]
            before = np.where(c > 0, t[hl, np.maximum(c - 1, 0)], prev_t[r])
            entry = (c == 0) & (k0 == 0)  # the ray enters the box already inside the surface
            lo_t[r] = np.where(entry, t_hit[r], before)
            prev_t[idx] = t[:, -1]
            still.append(idx[~any_in & valid[:, -1]])
        active = np.concatenate(still)
        k0 += chunk_steps
    hit = np.isfinite(t_hit)
    ref = np.nonzero(hit & (lo_t < t_hit))[0]
    a, b = lo_t[ref], t_hit[ref]
    for _ in range(n_bisect):
        if not ref.size:
            break
        mid = 0.5 * (a + b)
        vin = f(origins[ref] + mid[:, None] * dirs[ref]) >= level
        b = np.where(vin, mid, b)
        a = np.where(vin, a, mid)
    t_hit[ref] = b
    return hit, t_hit, f.evaluations


def field_normals(field: Field, points: np.ndarray, eps: float = 1e-3, box=UNIT_BOX) -> np.ndarray:
    """Outward unit normals ``-grad f / |grad f|`` ``(N, 3)`` by central differences of step
    ``eps`` (world units; points are clamped to ``box``). Zero where the gradient is zero."""
    p = np.asarray(points, np.float64).reshape(-1, 3)
    if not len(p):
        return np.zeros((0, 3))
    lo, hi = (np.asarray(b, np.float64) for b in box)
    offs = np.concatenate([np.eye(3), -np.eye(3)]) * eps  # (6, 3)
    q = np.clip(p[:, None] + offs[None], lo, hi).reshape(-1, 3).astype(np.float32)
    v = np.asarray(field(q), np.float64).reshape(-1, 6)
    grad = (v[:, :3] - v[:, 3:]) / (2 * eps)
    return -_unit(grad)


def shade(normals: np.ndarray, dirs: np.ndarray, mask: np.ndarray, *, color=(0.75, 0.78, 0.85),
          light=(-0.4, 0.7, 0.6), ambient: float = 0.25, background=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Lambertian shading: ``color * (ambient + (1 - ambient) max(0, n . l))``.

    ``normals``, ``dirs`` ``(..., 3)`` (normals are flipped to face the viewer),
    ``mask`` ``(...)``; ``light`` is a direction in camera coordinates
    ``(right, up, towards the viewer)``, turned into world space by the caller. Returns
    ``(..., 3)`` float32 in [0, 1].
    """
    n = np.asarray(normals, np.float64)
    d = np.asarray(dirs, np.float64)
    n = np.where((np.sum(n * d, -1) > 0)[..., None], -n, n)
    lam = np.clip(np.sum(n * _unit(light), -1), 0.0, 1.0)
    rgb = np.asarray(color)[None] * (ambient + (1 - ambient) * lam)[..., None]
    out = np.where(mask[..., None], rgb, np.asarray(background))
    return np.clip(out, 0, 1).astype(np.float32)


def _light_world(camera: Camera, light) -> np.ndarray:
    _, right, up = camera.basis()
    back = -camera.basis()[0]
    return light[0] * right + light[1] * up + light[2] * back


def render_field(field: Field, camera: Camera, *, box=UNIT_BOX, n_steps: int = 128, n_bisect: int = 8,
                 level: float = 0.5, normal_eps: float = 1e-3, color=(0.75, 0.78, 0.85),
                 light=(-0.4, 0.7, 0.6), max_points: int = 1 << 18) -> Render:
    """Ray-march the ``level`` set of ``field`` inside ``box`` (see :func:`march`) and shade it
    (:func:`shade`, normals from :func:`field_normals`). ``n_steps`` samples span the box
    diagonal. Returns a :class:`Render` of ``camera.height x camera.width`` pixels."""
    o, d = camera.rays()
    h, w = o.shape[:2]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    hit, t, evals = march(field, o, d, box=box, n_steps=n_steps, n_bisect=n_bisect, level=level,
                          max_points=max_points)
    normals = np.zeros_like(o)
    if hit.any():
        p = o[hit] + t[hit, None] * d[hit]
        nrm = field_normals(field, p, normal_eps, box)
        evals += 6 * len(p)
        bad = ~np.isfinite(nrm).all(1) | (np.linalg.norm(nrm, axis=1) == 0)
        nrm[bad] = -d[hit][bad]
        normals[hit] = nrm
    return _finish(camera, o, d, hit, t, normals, color, light, evals, h, w)


def _finish(camera, o, d, hit, t, normals, color, light, evals, h, w) -> Render:
    normals = np.where((np.sum(normals * d, -1) > 0)[:, None], -normals, normals)
    img = shade(normals, d, hit, color=color, light=_light_world(camera, np.asarray(light, np.float64)))
    depth = np.where(hit, t, np.inf)
    return Render(img.reshape(h, w, 3), hit.reshape(h, w), depth.reshape(h, w).astype(np.float32),
                  normals.reshape(h, w, 3).astype(np.float32), int(evals))


def render_mesh(mesh: trimesh.Trimesh, camera: Camera, *, color=(0.80, 0.72, 0.62),
                light=(-0.4, 0.7, 0.6)) -> Render:
    """Ray-cast ``mesh`` (first hit per ray; trimesh's Embree intersector when available),
    face normals, the same shading as :func:`render_field`."""
    o, d = camera.rays()
    h, w = o.shape[:2]
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    hit = np.zeros(len(o), bool)
    t = np.full(len(o), np.inf)
    normals = np.zeros_like(o)
    if len(mesh.faces):
        tri, ray, loc = mesh.ray.intersects_id(o, d, multiple_hits=False, return_locations=True)
        tri, ray, loc = np.asarray(tri, int), np.asarray(ray, int), np.asarray(loc, np.float64)
        if ray.size:
            dist = np.einsum("ij,ij->i", loc - o[ray], d[ray])
            # keep the nearest hit per ray (some intersectors may return more than one)
            order = np.lexsort((dist, ray))
            ray, dist, tri = ray[order], dist[order], tri[order]
            first = np.r_[True, ray[1:] != ray[:-1]]
            ray, dist, tri = ray[first], dist[first], tri[first]
            hit[ray] = True
            t[ray] = dist
            normals[ray] = np.asarray(mesh.face_normals)[tri]
    return _finish(camera, o, d, hit, t, normals, color, light, 0, h, w)


def network_field(apply_fn: Callable, variables, *, chunk: int = 32768, logits: bool = True) -> Field:
    """A numpy field from a Flax model: ``points (N, 3) -> sigmoid(apply_fn(variables, x))[:, 0]``
    ``(N,)`` float32 (``logits=False``: the output itself). Points go through one jitted
    function in padded chunks of ``chunk``, so any ``N`` compiles once."""
    @jax.jit
    def f(v, x):
        y = apply_fn(v, x)[..., 0]
        return jax.nn.sigmoid(y) if logits else y

    def field(points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, np.float32).reshape(-1, 3)
        out = np.empty(len(p), np.float32)
        for s in range(0, len(p), chunk):
            part = p[s:s + chunk]
            n = len(part)
            if n < chunk:
                part = np.concatenate([part, np.zeros((chunk - n, 3), np.float32)])
            out[s:s + n] = np.asarray(f(variables, jnp.asarray(part)))[:n]
        return out

    return field


def extract_surface(field: Field, resolution: int = 128, *, level: float = 0.5, box=UNIT_BOX,
                    max_points: int = 1 << 18) -> trimesh.Trimesh:
    """The ``level`` set of ``field`` as a triangle mesh, by marching cubes.

    ``field`` is sampled on ``resolution^3`` nodes spanning ``box`` (node-centred: the first
    and last nodes lie on the faces), padded by one layer of "outside" (``-inf``... in
    practice ``min(level - 1, field min)``) so the surface is closed where the shape
    touches the box; faces are oriented outwards (positive volume). Returns an empty
    ``trimesh.Trimesh`` when nothing (or everything) is inside. Vertices in world units.
    """
    import trimesh
    from skimage.measure import marching_cubes

    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    lo, hi = (np.asarray(b, np.float64) for b in box)
    axes = [np.linspace(lo[i], hi[i], resolution, dtype=np.float64) for i in range(3)]
    vol = np.empty((resolution,) * 3, np.float32)
    gy, gz = np.meshgrid(axes[1], axes[2], indexing="ij")
    yz = np.stack([gy.ravel(), gz.ravel()], 1)
    slab = max(1, max_points // len(yz))
    for s in range(0, resolution, slab):
        xs = axes[0][s:s + slab]
        pts = np.concatenate([np.column_stack([np.full(len(yz), x), yz]) for x in xs]).astype(np.float32)
        vol[s:s + len(xs)] = np.asarray(field(pts), np.float32).reshape(len(xs), resolution, resolution)
    if not vol.max() > level:  # nothing inside
        return trimesh.Trimesh(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3), int), process=False)
    pad = np.pad(vol, 1, constant_values=min(level - 1.0, float(vol.min())))
    spacing = tuple((hi - lo) / (resolution - 1))
    verts, faces, _, _ = marching_cubes(pad, level=level, spacing=spacing)
    verts = verts - np.asarray(spacing) + lo
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=True)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def save_panel(path: str | os.PathLike[str], images: Sequence[tuple], *,
               ncols: int | None = None, suptitle: str | None = None, panel_inches: float = 3.0) -> None:
    """Save ``[(title, image (H, W, 3) in [0, 1]) or (title, image, note), ...]`` side by
    side (``ncols`` per row, default all in one row) as one PNG at ``path``; a ``note`` is
    written across the middle of its image."""
    n = len(images)
    if n == 0:
        raise ValueError("save_panel needs at least one image")
    fig, axes = panel_grid(n, ncols or n, panel=(panel_inches, panel_inches))
    for ax, (title, img, *note) in zip(axes, images):
        ax.imshow(np.clip(np.asarray(img), 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        if note and note[0]:
            ax.text(0.5, 0.5, note[0], transform=ax.transAxes, ha="center", va="center", fontsize=8,
                    color="0.3", wrap=True)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    save(fig, path, dpi=100)
