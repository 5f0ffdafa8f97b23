"""Shards of a sweep: which one this process runs (:func:`resolve_shard`) and merging shard
folders into one (:func:`merge`), whose summary equals that of an unsharded run."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ntkgrid.files import write_json
from ntkgrid.sweep.common import Log, SweepError, read_json
from ntkgrid.sweep.folder import check_manifest, identity_diff, read_list
from ntkgrid.sweep.report import summarize

__all__ = ["merge", "resolve_shard"]


def resolve_shard(shard: str | None) -> str | None:
    """``"auto"`` -> ``"i/n"`` from ``jax.process_index()`` / ``jax.process_count()`` (after
    ``jax.distributed.initialize()`` on several hosts; ``None`` for a single process);
    anything else is returned unchanged."""
    if shard != "auto":
        return shard
    import jax

    n = jax.process_count()
    return None if n == 1 else f"{jax.process_index()}/{n}"


def _shard_manifests(out: Path, sources: Sequence[str | os.PathLike]) -> tuple[list[Path], list[dict]]:
    """The shard folders to merge into ``out`` (every sub-folder with a manifest when
    ``sources`` is empty) and their manifests, checked to be shards of one sweep."""
    srcs = [Path(s) for s in sources]
    if not srcs:
        srcs = sorted(p for p in out.iterdir() if (p / "manifest.json").exists()) if out.is_dir() else []
        if not srcs:
            raise SweepError(f"{out}: no shard folders (sub-folders with manifest.json) to merge")
    if any(s.resolve() == out.resolve() for s in srcs):
        raise SweepError(f"{out}: the merge output cannot also be one of the shard folders")
    manifests = []
    for s in srcs:
        if not (s / "manifest.json").exists():
            raise SweepError(f"{s}: no manifest.json, so not a sweep output folder")
        manifests.append(read_json(s / "manifest.json"))
    for s, m in zip(srcs[1:], manifests[1:], strict=True):
        diffs = identity_diff(manifests[0], m)
        if diffs:
            raise SweepError(f"{s / 'manifest.json'}: does not match {srcs[0] / 'manifest.json'} "
                             f"({'; '.join(diffs[:6])}); only shards of one sweep can be merged")
    return srcs, manifests


def _collect_shards(out: Path, srcs: Sequence[Path]) -> tuple[dict[str, dict], dict[str, dict], dict[str, dict]]:
    """``(results, skipped, failed)`` by image id over the shards, run folders made relative
    to ``out``; a duplicated image must have the same numbers in every shard."""
    results: dict[str, dict] = {}
    skipped: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for s in srcs:
        for p in sorted((s / "results").glob("*.json")):
            r = read_json(p)
            for run in r["runs"].values():
                run["run_dir"] = os.path.relpath((s / run["run_dir"]).resolve(), out.resolve())
            iid = r["image_id"]
            if iid in results:
                a = {n: (v.get("psnr"), v.get("ms_ssim")) for n, v in results[iid]["runs"].items()}
                b = {n: (v.get("psnr"), v.get("ms_ssim")) for n, v in r["runs"].items()}
                if a != b:
                    raise SweepError(f"{p}: image {iid} is in several shards with different results")
                continue
            results[iid] = r
        for f, store in (("skipped.json", skipped), ("failed.json", failed)):
            for item in read_list(s / f):
                store.setdefault(item["image_id"], item)
    for iid in results:
        skipped.pop(iid, None)
        failed.pop(iid, None)
    return results, skipped, failed


def merge(out: str | os.PathLike, sources: Sequence[str | os.PathLike] = (), *, log: Log = print) -> dict:
    """Combine shard folders into ``out`` and :func:`ntkgrid.sweep.summarize` it.

    Arguments:
      out: the merged folder.
      sources: shard output folders; empty means every sub-folder of ``out`` holding a
        ``manifest.json``. Their manifests must agree on the identity keys (same selection,
        configs, size, seed, ...).
      log: where progress lines go.

    Per-image results are copied into ``out/results`` with run folders referenced relative
    to ``out`` (the runs themselves stay where they are); a duplicated image must have the
    same numbers in every shard. Returns :func:`ntkgrid.sweep.summarize`'s dict; raises
    :class:`SweepError` naming the folder and the problem.
    """
    out = Path(out)
    srcs, manifests = _shard_manifests(out, sources)
    merged_manifest = {**manifests[0], "shard": None, "merged_from": [str(s) for s in srcs],
                       "shards": [m.get("shard") for m in manifests]}
    check_manifest(out, merged_manifest)
    out.mkdir(parents=True, exist_ok=True)
    results, skipped, failed = _collect_shards(out, srcs)
    old = {p.stem for p in (out / "results").glob("*.json")}
    for iid, r in results.items():
        write_json(out / "results" / f"{iid}.json", r)
    for stale in old - set(results):
        (out / "results" / f"{stale}.json").unlink()
    write_json(out / "skipped.json", list(skipped.values()))
    write_json(out / "failed.json", list(failed.values()))
    write_json(out / "manifest.json", merged_manifest)
    log(f"merged {len(srcs)} folder(s): {len(results)} image(s) with results, {len(skipped)} skipped")
    return summarize(out, log=log)
