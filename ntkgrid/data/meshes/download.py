"""The Stanford scans: download (gzip/tar payloads), cache and load by name or path."""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ntkgrid.data import DataError
from ntkgrid.data.meshes.load import default_shape, load_mesh

if TYPE_CHECKING:  # pragma: no cover
    import trimesh

STANFORD_BASE_URL = "https://graphics.stanford.edu/pub/3Dscanrep"

#: name -> (path under :data:`STANFORD_BASE_URL`, archive member or None for .ply.gz)
STANFORD_MODELS: dict[str, tuple[str, str | None]] = {
    "bunny": ("bunny.tar.gz", "bunny/reconstruction/bun_zipper.ply"),
    "dragon": ("dragon/dragon_recon.tar.gz", "dragon_recon/dragon_vrip.ply"),
    "happy_buddha": ("happy/happy_recon.tar.gz", "happy_recon/happy_vrip.ply"),
    "armadillo": ("armadillo/Armadillo.ply.gz", None),
}


def default_cache_dir() -> Path:
    """``$NTKGRID_CACHE`` or ``$XDG_CACHE_HOME/ntkgrid`` (default ``~/.cache/ntkgrid``)."""
    env = os.environ.get("NTKGRID_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ntkgrid"


def download_stanford(
    name: str,
    dest_dir: str | os.PathLike[str],
    *,
    base_url: str = STANFORD_BASE_URL,
    timeout: float = 60.0,
    urlopen: Callable[..., Any] | None = None,
) -> Path:
    """Fetch a Stanford scan and return the path of ``<dest_dir>/<name>.ply``.

    ``name``: ``"bunny"``, ``"dragon"``, ``"happy_buddha"`` or ``"armadillo"`` (the
    vrip/zipper reconstructions).  An existing, loadable ``<name>.ply`` is reused
    without any network access.  The download (``urllib``, ``timeout`` seconds) is
    unpacked (only the one member of a ``.tar.gz``; ``.ply.gz`` is gunzipped),
    checked to load as a mesh with faces, and only then moved into place.
    ``base_url``/``urlopen`` exist for mirrors and tests.

    Raises :class:`DataError` naming the URL when it cannot be reached (the message names
    the file to fetch by hand and where to place it: ``<dest_dir>/<name>.ply``, or
    ``--mesh PATH``) or the download is empty / not a mesh.
    """
    if name not in STANFORD_MODELS:
        raise DataError(name, f"unknown Stanford model; choose one of {', '.join(STANFORD_MODELS)}")
    rel, member = STANFORD_MODELS[name]
    url = f"{base_url.rstrip('/')}/{rel}"
    dest_dir = Path(dest_dir)
    dest = dest_dir / f"{name}.ply"
    hint = f", extract {member}" if member else ", gunzip it"
    by_hand = (f"offline? download {url} by hand{hint} and place the .ply at {dest} (it is then used "
               "without network), or pass --mesh PATH")
    if dest.exists():
        try:
            load_mesh(dest)
            return dest
        except DataError as exc:
            warnings.warn(f"{exc}; downloading it again", stacklevel=2)
    dest_dir.mkdir(parents=True, exist_ok=True)
    opener = urlopen or urllib.request.urlopen
    tmp_dl = dest_dir / f".{name}.download"
    tmp_ply = dest_dir / f".{name}.tmp.ply"
    try:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "ntkgrid-data/0.1"})
            with opener(req, timeout=timeout) as resp, open(tmp_dl, "wb") as fh:
                shutil.copyfileobj(resp, fh, length=1 << 20)
        except (urllib.error.URLError, OSError, ValueError, TimeoutError) as exc:
            raise DataError(url, f"could not reach {url} ({exc}); {by_hand}") from exc
        if tmp_dl.stat().st_size == 0:
            raise DataError(url, f"the download is empty; {by_hand}")
        try:
            if member is not None:
                with tarfile.open(tmp_dl, "r:gz") as tf:
                    src = tf.extractfile(member)
                    if src is None:
                        raise KeyError(member)
                    with src, open(tmp_ply, "wb") as out:
                        shutil.copyfileobj(src, out, length=1 << 20)
            else:
                with gzip.open(tmp_dl, "rb") as src, open(tmp_ply, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
        except KeyError as exc:
            raise DataError(url, f"archive has no member {member}; {by_hand}") from exc
        except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
            raise DataError(url, f"download is corrupt or incomplete ({exc}); {by_hand}") from exc
        try:
            load_mesh(tmp_ply)
        except DataError as exc:
            raise DataError(url, f"downloaded file is not a usable mesh ({exc.problem}); {by_hand}") from exc
        os.replace(tmp_ply, dest)
    finally:
        tmp_dl.unlink(missing_ok=True)
        tmp_ply.unlink(missing_ok=True)
    return dest


def load_any(
    path_or_name: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> trimesh.Trimesh:
    """``"default"`` -> :func:`default_shape`; a Stanford model name (``"bunny"``,
    ``"dragon"``, ``"happy_buddha"``, ``"armadillo"``) that is not an existing file ->
    :func:`download_stanford` into ``cache_dir/meshes`` (default
    :func:`default_cache_dir`) then :func:`load_mesh`; anything else -> :func:`load_mesh`.
    """
    s = os.fspath(path_or_name)
    if s == "default":
        return default_shape()
    if s in STANFORD_MODELS and not Path(s).exists():
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        return load_mesh(download_stanford(s, root / "meshes"))
    return load_mesh(s)
