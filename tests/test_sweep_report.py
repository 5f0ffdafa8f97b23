"""ntkgrid.sweep.report on hand-made rows and records: the summary table, the CSV and the
sections of report.md (no training, no figures)."""

from __future__ import annotations

import csv

from ntkgrid.config import TrainConfig
from ntkgrid.sweep.report import summary_markdown, sweep_report, write_csv
from ntkgrid.sweep.stats import ordering, summary_rows


def _run(psnr, diverged=False, seconds=10.0):
    return {"psnr": psnr, "ms_ssim": 0.9, "diverged": diverged, "seconds": seconds, "n_above_floor": 5}


RECORDS = [{"image_id": "img0", "source": "skimage.data.img0", "runs": {"baseline": _run(20.0), "multigrid": _run(30.0)}},
           {"image_id": "img1", "source": "/data/img1.png",
            "runs": {"baseline": _run(22.0), "multigrid": _run(float("nan"), diverged=True, seconds=5.0)}}]
NAMES = ["baseline", "multigrid"]
PAPER = {"baseline": (21.0, 0.8), "multigrid": (31.0, 0.95)}


def test_summary_markdown_shows_mean_std_range_and_the_paper():
    md = summary_markdown(summary_rows(RECORDS, NAMES, PAPER))
    lines = md.strip().splitlines()
    assert "PSNR dB mean ± std [min, max]" in lines[0] and "paper PSNR" in lines[0]
    base = next(ln for ln in lines if ln.startswith("| baseline"))
    assert "21.00 ± 1.00 [20.00, 22.00]" in base and "| 2 |" in base and "| 0 |" in base
    mg = next(ln for ln in lines if ln.startswith("| multigrid"))
    assert "30.00 ± 0.00 [30.00, 30.00]" in mg and "| 1 |" in mg  # the diverged run is left out, counted
    empty = summary_markdown([{"encoding": "x", "n": 0, "n_diverged": 0, "psnr_mean": None, "ms_ssim_mean": None,
                               "paper_psnr": None, "paper_ms_ssim": None}])
    assert "| x | 0 | 0 | - |" in empty


def test_write_csv_full_precision_and_empty_none(tmp_path):
    rows = [{"encoding": "a", "psnr_mean": 1 / 3, "paper_psnr": None}, {"encoding": "b", "psnr_mean": 2.0,
                                                                        "paper_psnr": 30.5}]
    path = write_csv(tmp_path / "s.csv", rows)
    back = list(csv.DictReader(path.open()))
    assert back == [{"encoding": "a", "psnr_mean": repr(1 / 3), "paper_psnr": ""},
                    {"encoding": "b", "psnr_mean": "2.0", "paper_psnr": "30.5"}]
    assert write_csv(tmp_path / "e.csv", []).read_text() == ""


def test_sweep_report_sections():
    cfg = TrainConfig(hidden=(16, 16), epochs=3, batch_size=8)
    manifest = {"title": "Tiny sweep", "preset": "quick", "size": 8, "seed": 0, "selection": ["img0", "img1", "img2"],
                "configs": {n: cfg.to_dict() for n in NAMES}, "selection_warnings": ["n03: no image files"]}
    sweep = {"skipped": [{"source": "/data/broken.png", "reason": "truncated"}],
             "failed": [{"image_id": "img2", "errors": {"multigrid": "ValueError: nan"}}], "missing": ["img3"]}
    rows = summary_rows(RECORDS, NAMES, PAPER)
    order = ordering(RECORDS, NAMES)
    text = sweep_report(manifest, rows, order, RECORDS, sweep, {}, 12.0)
    assert text.startswith("# Tiny sweep\n")
    assert "3 selected (seed 0), 2 with results, 1 skipped, 1 failed, 1 not run yet" in text
    assert "training + measurement time over all runs: 35 s; wall time of this invocation before this report: 12 s" in text
    assert "## Settings" in text and "16x16" in text
    for section in ("## Per image", "## Skipped files", "## Warnings while selecting images", "## Failed runs",
                    "## Not run yet"):
        assert section in text
    assert "- `/data/broken.png`: truncated" in text and "- `img2`: multigrid: ValueError: nan" in text
    assert "30.00 (diverged)" not in text and "(diverged)" in text  # per image: the diverged run is marked
    assert "## NTK spectra" not in text and "training_curves.png" not in text  # no spectra, no figure
    assert "![training curves](training_curves.png)" in sweep_report(manifest, rows, order, RECORDS, sweep, {},
                                                                   None, figures={"training_curves"})
