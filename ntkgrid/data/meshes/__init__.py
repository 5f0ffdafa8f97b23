"""Meshes as 3-D occupancy datasets (pure NumPy + trimesh).

Conventions
-----------
* Every mesh returned here is **normalised** into the unit cube: its longest
  bounding-box axis spans exactly ``[0, 1]`` and the shorter axes are centred in
  ``[0, 1]`` (``v' = (v - vmin) / L + (1 - extent / L) / 2`` per axis, ``L`` the
  longest extent).  Units are therefore "fractions of the longest side".  The
  transform is recorded in ``mesh.metadata["ntkgrid"]``.
* Occupancy labels: ``True`` / ``1.0`` = inside the solid.
* Points are ``(N, 3)`` arrays of ``(x, y, z)`` in the same normalised units.

Inside/outside tests (:func:`occupancy`)
----------------------------------------
* watertight mesh: ray parity with Intel Embree (``trimesh`` + ``embreex``), batched;
* not watertight (scans with holes), or Embree unavailable: the generalised winding
  number (Jacobson et al. 2013), ``w(p) = (1 / 4 pi) * sum of the signed solid
  angles of all triangles seen from p`` (Van Oosterom & Strackee formula),
  memory-bounded; exact ``O(points x faces)`` for small meshes, a clustered far-field
  expansion (Barill et al. 2018, error ~0.01) for large ones; ``inside <=> |w| > 0.5``.  For a closed,
  consistently oriented mesh ``w`` is 1 inside and 0 outside; across a small hole it
  degrades smoothly, so labels near holes are a best guess.

Trimesh is imported lazily, inside the functions.

Modules: :mod:`~ntkgrid.data.meshes.load` (loading, normalisation, validation, the
default shape), :mod:`~ntkgrid.data.meshes.inside` (occupancy labels),
:mod:`~ntkgrid.data.meshes.sampling` (cached point pools, fresh points) and
:mod:`~ntkgrid.data.meshes.download` (the Stanford scans).
"""

from ntkgrid.data.meshes.download import (
    STANFORD_BASE_URL,
    STANFORD_MODELS,
    default_cache_dir,
    download_stanford,
    load_any,
)
from ntkgrid.data.meshes.inside import occupancy, winding_numbers
from ntkgrid.data.meshes.load import (
    MAX_DEGENERATE_FRACTION,
    check_solid,
    default_shape,
    load_mesh,
    mesh_from_arrays,
    mesh_info,
    normalise_mesh,
)
from ntkgrid.data.meshes.sampling import FreshPoints, sample_pools

__all__ = [
    "MAX_DEGENERATE_FRACTION",
    "STANFORD_BASE_URL",
    "STANFORD_MODELS",
    "FreshPoints",
    "check_solid",
    "default_cache_dir",
    "default_shape",
    "download_stanford",
    "load_any",
    "load_mesh",
    "mesh_from_arrays",
    "mesh_info",
    "normalise_mesh",
    "occupancy",
    "sample_pools",
    "winding_numbers",
]
