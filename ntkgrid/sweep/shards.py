"""Shards of a sweep: which one this process runs (:func:`resolve_shard`) and merging shard
folders into one (:func:`merge`), whose summary equals that of an unsharded run."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import jax

from ntkgrid.files import write_json
from ntkgrid.sweep.common import Log, SweepError, read_json
from ntkgrid.sweep.folder import check_manifest, identity_diff, read_list, set_aside
from ntkgrid.sweep.records import ImageRecord, read_image_record
from ntkgrid.sweep.report import summarize

__all__ = ["merge", "resolve_shard"]


def resolve_shard(shard: str | None) -> str | None:
    """``"auto"`` -> ``"i/n"`` from ``jax.process_index()`` / ``jax.process_count()`` (after
    ``jax.distributed.initialize()`` on several hosts; ``None`` for a single process);
    anything else is returned unchanged."""
    if shard != "auto":
        return shard

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


def _numbers(record: ImageRecord) -> dict:
    """What must agree for two results of one image to be the same: final PSNR and MS-SSIM per run."""
    return {n: (v.psnr, v.ms_ssim) for n, v in record.runs.items()}


def _collect_shards(out: Path, srcs: Sequence[Path]) -> tuple[dict[str, tuple[Path, ImageRecord]],
                                                               dict[str, dict], dict[str, dict]]:
    """``(results, skipped, failed)`` by image id over the shards (``results``: ``{id: (file,
    record)}``), run folders made relative to ``out``; a duplicated image must have the same
    numbers in every shard. A shard's unreadable results file is an error naming it."""
    results: dict[str, tuple[Path, ImageRecord]] = {}
    skipped: dict[str, dict] = {}
    failed: dict[str, dict] = {}
    for s in srcs:
        for p in sorted((s / "results").glob("*.json")):
            r, reason = read_image_record(p)
            if r is None:
                raise SweepError(f"{reason}; rerun that shard (it rebuilds the file from its run folders), then merge")
            r = r.with_runs(lambda run, s=s: dataclasses.replace(
                run, run_dir=os.path.relpath((s / run.run_dir).resolve(), out.resolve())))
            iid = r.image_id
            if iid in results:
                if _numbers(results[iid][1]) != _numbers(r):
                    raise SweepError(f"{p}: image {iid} is in several shards with different results "
                                     f"(also in {results[iid][0]})")
                continue
            results[iid] = (p, r)
        for f, store in (("skipped.json", skipped), ("failed.json", failed)):
            for item in read_list(s / f):
                store.setdefault(item["image_id"], item)
    return results, skipped, failed


def merge(out: str | os.PathLike, sources: Sequence[str | os.PathLike] = (), *, log: Log = print) -> dict:
    """Combine shard folders into ``out`` and :func:`ntkgrid.sweep.summarize` it.

    Args:
      out: the merged folder. It may already hold results of the same sweep (an unsharded
        run, an earlier merge): they are kept.
      sources: shard output folders; empty means every sub-folder of ``out`` holding a
        ``manifest.json`` (the default shard folders ``out/shard-i-of-n`` nest this way).
        Their manifests must agree on the identity keys (same selection, configs, size,
        seed, ...) with each other and with ``out``'s.
      log: where progress lines go.

    A merge only adds: per-image results of images ``out`` does not have yet are copied into
    ``out/results`` with run folders referenced relative to ``out`` (the runs stay where
    they are); no results file of ``out`` is removed or rewritten (they stay byte-identical).
    An image that ``out`` (or another shard) already has must have the same final PSNR and
    MS-SSIM per run in every shard, else nothing is written and :class:`SweepError` names
    both files (to take a shard's numbers, delete ``out/results/<image_id>.json`` first).
    ``skipped.json``/``failed.json`` become the union of ``out``'s and the shards', without
    the images that have results. Returns :func:`ntkgrid.sweep.summarize`'s dict; raises
    :class:`SweepError` naming the folder and the problem.
    """
    out = Path(out)
    srcs, manifests = _shard_manifests(out, sources)
    old_manifest = read_json(out / "manifest.json") if (out / "manifest.json").exists() else {}
    merged_from = list(old_manifest.get("merged_from") or [])
    merged_from += [str(s) for s in srcs if str(s) not in merged_from]
    merged_manifest = {**manifests[0], "shard": None, "merged_from": merged_from,
                       "shards": [m.get("shard") for m in manifests]}
    check_manifest(out, merged_manifest)
    results, skipped, failed = _collect_shards(out, srcs)
    have: dict[str, ImageRecord] = {}
    for p in sorted((out / "results").glob("*.json")):
        r, _ = read_image_record(p)
        if r is not None:  # an unreadable one is replaced by a shard's (the old file is kept aside)
            have[p.stem] = r
    for iid, (p, r) in results.items():
        if iid in have and _numbers(have[iid]) != _numbers(r):
            raise SweepError(f"{out / 'results' / f'{iid}.json'}: image {iid} already has other results than "
                             f"{p}; delete the first to take the shard's numbers (nothing was merged)")
    out.mkdir(parents=True, exist_ok=True)
    added = 0
    for iid, (_, r) in results.items():
        if iid in have:
            continue
        dest = out / "results" / f"{iid}.json"
        if dest.exists():
            aside = set_aside(dest)
            log(f"{dest}: unreadable; kept as {aside.name}, replaced by the shard's results")
        write_json(dest, r.to_json())
        added += 1
    done = set(have) | set(results)
    for f, store in (("skipped.json", skipped), ("failed.json", failed)):
        union = {s["image_id"]: s for s in read_list(out / f)}
        union.update(store)
        write_json(out / f, [v for k, v in union.items() if k not in done])
    write_json(out / "manifest.json", merged_manifest)
    log(f"merged {len(srcs)} folder(s): {added} image(s) added, {len(done)} with results")
    return summarize(out, log=log)
