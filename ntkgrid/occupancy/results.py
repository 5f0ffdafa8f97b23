"""An occupancy output folder across runs: each mesh's folder named by a stable identity
(:func:`mesh_folder_name`), finished meshes read back from their folders
(:func:`load_mesh_result`), and a rerun's results merged into the earlier ones
(:func:`merge_results`), so that a failed rerun never hides what was finished before."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ntkgrid.data import DataError
from ntkgrid.files import safe_name, to_jsonable
from ntkgrid.occupancy.data import MeshResult
from ntkgrid.occupancy.run import run_settings
from ntkgrid.occupancy.setup import NTK_OUTPUTS
from ntkgrid.occupancy.spectra import read_spectra_file

#: Hex digits of the content hash in a mesh file's folder name.
ID_DIGITS = 8


def mesh_folder_name(path: str | os.PathLike[str]) -> str:
    """The folder name of a mesh file: ``<stem>-<first 8 hex digits of the SHA-256 of its bytes>``.

    The same file under another name, path or position in ``--mesh`` gets the same
    folder; two different files with the same stem get different ones. The stem is
    reduced by :func:`ntkgrid.files.safe_name`, so it still picks the Table 4 row
    (:func:`~ntkgrid.occupancy.mesh_preset_key`). A file that cannot be read gets a hash of
    its path (it fails to load anyway, and the failure is reported under that name).
    """
    p = Path(path)
    h = hashlib.sha256()
    try:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        h = hashlib.sha256(("path:" + os.path.abspath(p)).encode("utf-8", "surrogateescape"))
    return f"{safe_name(p.stem, 'mesh')}-{h.hexdigest()[:ID_DIGITS]}"


def legacy_folder(out_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> str | None:
    """The folder name an older version gave ``path`` (its bare stem) when ``out_dir`` holds a
    finished mesh there whose recorded source is the same file; else None. Lets reruns on
    folders written before :func:`mesh_folder_name` keep reusing (and reporting) them."""
    name = safe_name(Path(path).stem, "mesh")
    metrics = Path(out_dir) / name / "metrics.json"
    try:
        source = json.loads(metrics.read_text())["source"]
        same = Path(source).resolve() == Path(path).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return name if same else None


def load_mesh_result(mesh_dir: str | os.PathLike[str], ntk_output: str = "sigmoid") -> MeshResult:
    """A finished mesh read back from its folder: ``metrics.json`` and the cached spectra
    ``<encoding>/ntk/epoch_*.npz`` (:func:`~ntkgrid.occupancy.checkpoint_spectra`);
    ``ntk_output`` picks the kernel of the result's ``spectra``.

    Raises :class:`ntkgrid.data.DataError` naming the file when ``metrics.json`` or a
    spectra file is missing, unreadable or not what it should be."""
    mesh_dir = Path(mesh_dir)
    path = mesh_dir / "metrics.json"
    try:
        d = json.loads(path.read_text())
        fields = {k: d[k] for k in ("name", "source", "preset_key", "preset_matched", "info", "data_seconds",
                                    "runs", "render", "gt_render_seconds")}
        fields["settings"] = d.get("settings")
    except FileNotFoundError as exc:
        raise DataError(path, "no such file (the mesh did not finish)") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(path, f"unreadable metrics file ({type(exc).__name__}: {exc})") from exc
    except (KeyError, TypeError) as exc:
        raise DataError(path, f"not an occupancy metrics file (missing {exc})") from exc
    by_output: dict[str, dict] = {o: {} for o in NTK_OUTPUTS}
    for enc in fields["runs"]:
        files = sorted((mesh_dir / enc / "ntk").glob("epoch_*.npz"))
        per_output: dict[str, dict] = {o: {} for o in NTK_OUTPUTS}
        for f in files:
            epoch, spectra = read_spectra_file(f)
            for o in NTK_OUTPUTS:
                if "total" in spectra.get(o, {}):
                    per_output[o][epoch] = spectra[o]["total"]
        for o in NTK_OUTPUTS:
            by_output[o][enc] = per_output[o]
    return MeshResult(**fields, spectra=by_output[ntk_output],
                      load_seconds=float(d.get("load_seconds", 0.0)), spectra_by_output=by_output)


def finished_result(mesh_dir: str | os.PathLike[str], configs, setup, seed: int,
                    ntk_output: str = "sigmoid") -> MeshResult | None:
    """The mesh in ``mesh_dir`` read back when it finished with exactly these settings
    (``configs`` ``{encoding: TrainConfig}`` in this order, ``setup``, ``seed``), so a rerun
    reuses it without touching a byte of it; None when it did not finish, cannot be read,
    or ran with other settings (folders from before ``settings`` was stored included)."""
    if not (Path(mesh_dir) / "metrics.json").is_file():
        return None
    try:
        res = load_mesh_result(mesh_dir, ntk_output)
    except DataError:
        return None
    want = {enc: to_jsonable(cfg.to_dict()) for enc, cfg in configs.items()}
    have = {enc: run.get("config") for enc, run in res.runs.items()}
    if res.settings != run_settings(setup, seed) or list(have) != list(want) or have != want:
        return None
    return res


def merge_results(out_dir: str | os.PathLike[str], results: Sequence[MeshResult], errors: Sequence[dict],
                  warn=print, ntk_output: str = "sigmoid") -> tuple[list[MeshResult], list[dict]]:
    """This run's ``results`` and ``errors`` merged into the finished meshes already in ``out_dir``.

    Meshes are keyed by their folder name (their stable identity). A mesh of this run
    replaces the earlier entry of the same name; earlier finished meshes this run did not
    produce are read back (:func:`load_mesh_result`) and kept, in the order of the earlier
    ``results.json`` (then any other finished folder, sorted), before this run's new ones.
    Errors: this run's, plus the earlier ones of meshes that are still not finished. An
    earlier mesh whose folder cannot be read back is left out with a line through ``warn``.
    ``ntk_output`` picks the kernel of the read-back results' ``spectra``.

    Returns ``(results, errors)`` for :func:`~ntkgrid.occupancy.write_results` and
    :func:`~ntkgrid.occupancy.plot_mean_spectra`.
    """
    out = Path(out_dir)
    new = {r.name: r for r in results}
    old_doc: dict = {}
    try:
        old_doc = json.loads((out / "results.json").read_text())
        if not isinstance(old_doc, dict):
            old_doc = {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        warn(f"note: {out / 'results.json'}: unreadable ({type(exc).__name__}); rebuilt from the mesh folders")
    order = [m.get("name") for m in old_doc.get("meshes", []) if isinstance(m, dict)]
    order += sorted(p.parent.name for p in out.glob("*/metrics.json") if p.parent.name not in order)
    merged: list[MeshResult] = []
    for name in order:
        if not isinstance(name, str) or any(r.name == name for r in merged):
            continue
        if name in new:
            merged.append(new.pop(name))
            continue
        try:
            merged.append(load_mesh_result(out / name, ntk_output))
        except DataError as exc:
            warn(f"note: earlier mesh {name} left out of the merged results: {exc}")
    merged += list(new.values())
    finished = {r.name for r in merged}
    this_run = {e.get("mesh") for e in errors}
    old_errors = [e for e in old_doc.get("errors", []) if isinstance(e, dict)
                  and e.get("mesh") not in finished and e.get("mesh") not in this_run]
    return merged, old_errors + list(errors)
