"""A tiny sweep the sweep tests share: two generated 12 px images in an ImageNet-style folder
(one with a file name that is not UTF-8), baseline and Fourier with a 16-wide hidden layer,
one epoch, no spectra, through the command line (``experiments.imagenet_sweep``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ntkgrid import files, presets

#: A file name with a byte that is not UTF-8 (Linux allows any bytes but "/" and NUL).
NON_UTF8_NAME = b"caf\xff"


def write_images(root: Path, n: int = 2, *, non_utf8: bool = True, side: int = 12) -> Path:
    """``root/n00k/<image>.png`` for ``k < n`` (random colours, ``side`` px); the last one's
    name is :data:`NON_UTF8_NAME` when ``non_utf8``. Returns ``root``."""
    rng = np.random.default_rng(0)
    for k in range(n):
        folder = root / f"n{k:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = os.fsdecode(NON_UTF8_NAME + b".png") if non_utf8 and k == n - 1 else f"im{k}.png"
        Image.fromarray((rng.random((side, side, 3)) * 255).astype(np.uint8)).save(folder / name)
    return root


def sweep_args(tmp: Path, data_root: Path, encodings=("baseline", "fourier")) -> list[str]:
    """imagenet_sweep arguments of the tiny sweep (config JSONs written under ``tmp``)."""
    args = ["--data-root", str(data_root), "--preset", "quick", "--encodings", *encodings]
    for n in encodings:
        cfg = presets.IMAGENET_QUICK[n].replace(hidden=(16,), batch_size=16, checkpoints=None)
        path = files.write_json(tmp / f"tiny_{n}.json", cfg.to_dict())
        args += ["--config-json", f"{n}={path}"]
    return args + ["--size", "12", "--epochs", "1", "--ntk-points", "0", "--no-progress"]


def digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def psnrs(results_json: Path) -> dict[str, dict[str, float]]:
    """``{image_id: {encoding: psnr}}`` of a sweep's results.json."""
    import json

    data = json.loads(results_json.read_text())
    return {i["image_id"]: {n: r["psnr"] for n, r in i["runs"].items()} for i in data["images"]}
