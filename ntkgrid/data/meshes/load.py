"""Loading meshes: files and arrays to normalised, validated trimesh meshes (longest side
spanning ``[0, 1]``), their summary, and the procedural default shape."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ntkgrid.data import DataError

if TYPE_CHECKING:  # pragma: no cover
    import trimesh


#: Fraction of zero-area faces that :func:`load_mesh` silently (with a warning) drops;
#: more than this is an error.
MAX_DEGENERATE_FRACTION = 0.01
_ZERO_AREA = 1e-14  # in normalised units (longest side = 1)


# ----------------------------------------------------------------------------------
# Loading and normalisation
# ----------------------------------------------------------------------------------


def normalise_mesh(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Scale/translate ``mesh`` in place into ``[0, 1]^3`` (see module docstring).

    Returns the same mesh; ``mesh.metadata["ntkgrid"]["scale"]`` (float, ``1 / L``) and
    ``["offset"]`` ((3,) list) satisfy ``v' = (v - offset) * scale``.
    """
    v = np.asarray(mesh.vertices, dtype=np.float64)
    vmin, vmax = v.min(axis=0), v.max(axis=0)
    extent = vmax - vmin
    longest = float(extent.max())
    if not longest > 0:
        raise ValueError("mesh has zero extent (all vertices coincide)")
    nv = (v - vmin) / longest  # longest axis: exactly [0, 1]
    pad = (1.0 - nv.max(axis=0)) / 2.0
    pad[extent == longest] = 0.0
    nv += pad
    mesh.vertices = nv
    meta = mesh.metadata.setdefault("ntkgrid", {})
    prev_scale = float(meta.get("scale", 1.0))
    prev_offset = np.asarray(meta.get("offset", np.zeros(3)), dtype=np.float64)
    # compose with any earlier normalisation so offset/scale refer to the original file
    offset = vmin - pad * longest
    meta["offset"] = (prev_offset + offset / prev_scale).tolist()
    meta["scale"] = prev_scale / longest
    return mesh


def mesh_from_arrays(
    vertices: np.ndarray,
    faces: np.ndarray,
    source: str | os.PathLike[str] = "<arrays>",
) -> trimesh.Trimesh:
    """Validate, clean and normalise a triangle mesh given as arrays.

    ``vertices``: ``(V, 3)`` float; ``faces``: ``(F, 3)`` int indices into ``vertices``.
    Duplicate vertices are merged; zero-area faces (area below 1e-14 after
    normalisation, or a repeated corner) are removed with a warning when they are
    fewer than 1 % of the faces, else :class:`DataError`.  NaN/inf coordinates, no
    faces, or out-of-range indices raise :class:`DataError` naming ``source``.
    Returns a normalised ``trimesh.Trimesh`` whose ``metadata["ntkgrid"]`` holds
    ``source``, ``watertight``, ``winding_consistent``, ``removed_degenerate_faces``,
    ``scale``, ``offset``.
    """
    import trimesh

    source = os.fspath(source)
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if f.size == 0 or len(f) == 0:
        raise DataError(source, "mesh has no faces (empty mesh or a point cloud)")
    if f.ndim != 2 or f.shape[1] != 3:
        raise DataError(source, f"faces must be triangles (F, 3), got shape {f.shape}")
    if v.ndim != 2 or v.shape[1] != 3:
        raise DataError(source, f"vertices must be (V, 3), got shape {v.shape}")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise DataError(
            source, f"{int(bad.sum())} of {len(v)} vertices have NaN or infinite coordinates"
        )
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise DataError(source, f"face indices out of range for {len(v)} vertices")
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=True)
    try:
        normalise_mesh(mesh)
    except ValueError as exc:
        raise DataError(source, str(exc)) from exc
    faces_arr = np.asarray(mesh.faces)
    repeated = (
        (faces_arr[:, 0] == faces_arr[:, 1])
        | (faces_arr[:, 1] == faces_arr[:, 2])
        | (faces_arr[:, 0] == faces_arr[:, 2])
    )
    degenerate = repeated | (np.asarray(mesh.area_faces) <= _ZERO_AREA)
    n_deg = int(degenerate.sum())
    n_faces = len(faces_arr)
    if n_deg:
        if n_deg == n_faces or n_deg / n_faces >= MAX_DEGENERATE_FRACTION:
            raise DataError(
                source,
                f"{n_deg} of {n_faces} faces ({100.0 * n_deg / n_faces:.1f} %) have zero area; "
                f"at most {100 * MAX_DEGENERATE_FRACTION:g} % can be dropped automatically",
            )
        warnings.warn(
            f"{source}: removed {n_deg} zero-area faces of {n_faces}", stacklevel=3
        )
        mesh.update_faces(~degenerate)
        mesh.remove_unreferenced_vertices()
        normalise_mesh(mesh)  # the bounding box may have moved
    meta = mesh.metadata.setdefault("ntkgrid", {})
    meta.update(
        source=source,
        watertight=bool(mesh.is_watertight),
        winding_consistent=bool(mesh.is_winding_consistent),
        removed_degenerate_faces=n_deg,
    )
    return mesh


def load_mesh(path: str | os.PathLike[str]) -> trimesh.Trimesh:
    """Load a triangle mesh file (.ply .off .obj .stl .glb ... anything trimesh reads).

    Scenes are flattened into one mesh (transforms applied).  The mesh is cleaned and
    normalised by :func:`mesh_from_arrays`: longest bounding-box axis exactly
    ``[0, 1]``, shorter axes centred.  Whether it is watertight is in
    ``mesh.metadata["ntkgrid"]["watertight"]`` (see also :func:`mesh_info`).

    Raises :class:`DataError` naming the file when it is missing, unreadable or not a
    mesh, has no faces, NaN vertices, or too many zero-area faces.
    """
    import trimesh

    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise DataError(path, "a symbolic link to nothing (its target is missing, or the links form a loop)")
        raise DataError(path, "no such file")
    if path.is_dir():
        raise DataError(path, "is a directory, not a mesh file")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file (0 bytes), not a mesh")
    is_obj = path.suffix.lower() == ".obj"
    obj_text = _obj_text(path) if is_obj else None
    try:
        if obj_text is not None and not obj_text[1]:  # not UTF-8: hand trimesh the text itself
            scene = trimesh.load_scene(io.BytesIO(obj_text[0].encode("utf-8")), file_type="obj", process=False)
        else:
            scene = trimesh.load_scene(path, process=False)
        geoms = list(scene.geometry.values())
        mesh = scene.to_mesh()
    except DataError:
        raise
    except IndexError as exc:
        raise DataError(path, f"a face refers to a vertex the file does not have ({exc})") from exc
    except ModuleNotFoundError as exc:
        if exc.name == "charset_normalizer":  # trimesh guesses the encoding of text that is not UTF-8
            raise DataError(path, f"not a readable mesh file (neither a valid binary {path.suffix or 'mesh'} "
                                  "file nor UTF-8 text)") from exc
        raise DataError(path, f"not a readable mesh file (trimesh needs the missing module {exc.name!r} "
                              "to read it)") from exc
    except Exception as exc:  # trimesh raises many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(path, f"not a readable mesh file ({type(exc).__name__}: {first})") from exc
    if len(mesh.faces) == 0:
        if obj_text is not None:
            n_v, n_f = _obj_counts(obj_text[0])
            faces = f"{n_f} face line{'s' if n_f != 1 else ''} ('f')"
            if n_f and not n_v:
                raise DataError(path, f"OBJ file has {faces} but no vertex lines ('v'): "
                                      "the faces refer to vertices the file does not define")
            if n_f:
                raise DataError(path, f"OBJ file has {faces} and {n_v} vertex line{'s' if n_v != 1 else ''} "
                                      "('v'), but no face refers only to defined vertices")
        kinds = sorted({type(g).__name__ for g in geoms})
        what = f" (contains only {', '.join(kinds)})" if kinds else ""
        raise DataError(path, f"mesh has no faces{what}")
    return check_solid(mesh_from_arrays(mesh.vertices, mesh.faces, source=path), path)


def _obj_text(path: Path) -> tuple[str, bool]:
    """An OBJ file's text and whether it was UTF-8; :class:`DataError` for binary data.

    OBJ is a text format: a file with NUL bytes, or one where more than 10 % of the
    first 64 KiB are control characters, is refused as binary.  Text that is not UTF-8
    is decoded as Latin-1 (comments and material names are the only place for it).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read file ({exc.strerror or exc})") from exc
    head = data[: 1 << 16]
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 13, 12))
    if b"\x00" in head or controls > 0.1 * len(head):
        raise DataError(path, "binary data, not an OBJ file (OBJ meshes are text: 'v x y z' and 'f i j k' lines)")
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("latin-1"), False


def _obj_counts(text: str) -> tuple[int, int]:
    """Numbers of vertex (``v``) and face (``f``) lines of an OBJ text."""
    n_v = n_f = 0
    for line in text.splitlines():
        head = line.lstrip()[:2]
        if head in ("v ", "v\t"):
            n_v += 1
        elif head in ("f ", "f\t"):
            n_f += 1
    return n_v, n_f


def check_solid(mesh: trimesh.Trimesh, source: str | os.PathLike[str] | None = None) -> trimesh.Trimesh:
    """Refuse meshes that cannot bound a solid: :class:`DataError` naming ``source``
    (default: the mesh's recorded source) when more than 1 % of its edges are
    non-manifold (shared by more than two faces; fewer are kept with a warning), or when
    it is closed, consistently oriented and inside out (negative signed volume: every
    face normal points inwards). Open meshes pass (their labels come from winding
    numbers, with a warning, in :func:`occupancy`). Returns ``mesh``."""
    source = os.fspath(source) if source is not None else mesh.metadata.get("ntkgrid", {}).get("source", "mesh")
    _, counts = np.unique(np.asarray(mesh.edges_sorted), axis=0, return_counts=True)
    n_bad = int(np.count_nonzero(counts > 2))
    if n_bad:
        msg = (f"{n_bad} of {len(counts)} edges ({100.0 * n_bad / len(counts):.1f} %) are non-manifold "
               "(shared by more than two faces)")
        if n_bad / len(counts) >= MAX_DEGENERATE_FRACTION:
            raise DataError(source, f"{msg}; the surface does not bound a solid (at most "
                                    f"{100 * MAX_DEGENERATE_FRACTION:g} % are tolerated)")
        warnings.warn(f"{source}: {msg}; kept", stacklevel=2)
    if mesh.is_watertight and mesh.is_winding_consistent and mesh.volume < 0:
        raise DataError(source, f"the mesh is inside out (signed volume {mesh.volume:.3g} < 0: every face "
                                "normal points inwards); flip its faces (trimesh: mesh.invert())")
    return mesh


def mesh_info(mesh: trimesh.Trimesh) -> dict[str, Any]:
    """Summary of a mesh for reports: counts, watertightness, bounds, volume.

    Returns ``{"vertices": int, "faces": int, "watertight": bool,
    "winding_consistent": bool, "bounds": [[x, y, z], [x, y, z]], "volume": float
    (meaningful only when watertight), "source": str or None}``.
    """
    return {
        "vertices": int(len(mesh.vertices)),
        "faces": int(len(mesh.faces)),
        "watertight": bool(mesh.is_watertight),
        "winding_consistent": bool(mesh.is_winding_consistent),
        "bounds": np.asarray(mesh.bounds).tolist(),
        "volume": float(mesh.volume),
        "source": mesh.metadata.get("ntkgrid", {}).get("source"),
    }




def default_shape(resolution: int = 128) -> trimesh.Trimesh:
    """A watertight shape with fine detail, generated procedurally (no files).

    A gyroid shell (``|sin kx cos ky + sin ky cos kz + sin kz cos kx| < 0.45``,
    ``k = 2 pi * 3`` per unit) clipped to a ball of radius 0.45, meshed by marching
    cubes (``skimage.measure.marching_cubes``) on a ``resolution^3`` grid and
    normalised like :func:`load_mesh`.  Thin, interleaved walls everywhere inside the
    ball make it a hard fine-detail target.  About 1 s at the default
    resolution (128: ~1.9e5 vertices, ~3.7e5 faces, one connected body);
    ``resolution`` >= 48.
    """
    from skimage.measure import marching_cubes

    resolution = int(resolution)
    if resolution < 48:
        raise ValueError(f"resolution must be >= 48, got {resolution}")
    x = np.linspace(0.0, 1.0, resolution, dtype=np.float32)
    k = np.float32(2.0 * np.pi * 3.0)
    sx, cx = np.sin(k * x), np.cos(k * x)
    g = (
        sx[:, None, None] * cx[None, :, None]
        + sx[None, :, None] * cx[None, None, :]
        + sx[None, None, :] * cx[:, None, None]
    )
    r = np.sqrt(
        (x[:, None, None] - 0.5) ** 2 + (x[None, :, None] - 0.5) ** 2 + (x[None, None, :] - 0.5) ** 2
    )
    field = np.maximum(r - np.float32(0.45), (np.abs(g) - np.float32(0.45)) / (k * np.float32(1.0)))
    step = 1.0 / (resolution - 1)
    verts, faces, _n, _v = marching_cubes(field, level=0.0, spacing=(step, step, step))
    # marching cubes orients faces towards increasing field (outside); trimesh wants
    # counter-clockwise seen from outside, which with this axis order means flipping.
    mesh = mesh_from_arrays(verts, faces[:, ::-1], source="default_shape")
    if mesh.volume < 0:
        mesh.invert()
    mesh.metadata["ntkgrid"]["source"] = f"default_shape(resolution={resolution})"
    return mesh


