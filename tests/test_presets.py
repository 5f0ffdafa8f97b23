"""ntkgrid.presets: the paper's tables verbatim, and the quick variants' invariants."""

from __future__ import annotations

import pytest

from ntkgrid import presets as P
from ntkgrid.config import TrainConfig

# Table 2 of the paper: (learning rate, epochs, batch, encoding fields).
TABLE2 = {
    "multigrid": (0.3932, 100, 10, dict(kind="multigrid", features_per_level=3, num_levels=2, min_res=96, max_res=277)),
    "fourier": (0.3865, 100, 92, dict(kind="fourier", num_frequencies=6)),
    "baseline": (0.2394, 100, 10, dict(kind="baseline")),
}
# Table 3: lr 100, 300 epochs, batch 32 for all.
TABLE3 = {
    "fourier_low": dict(kind="fourier", num_frequencies=4),
    "fourier_mid": dict(kind="fourier", num_frequencies=8),
    "fourier_high": dict(kind="fourier", num_frequencies=16),
    "multigrid_coarse": dict(kind="multigrid", features_per_level=2, num_levels=1, min_res=100, max_res=100),
    "multigrid_fine": dict(kind="multigrid", features_per_level=2, num_levels=1, min_res=200, max_res=200),
    "baseline": dict(kind="baseline"),
}
# Table 1 of the paper: (PSNR, MS-SSIM).
TABLE1 = {
    "imagenet": {"multigrid": (45.28, 0.79), "fourier": (33.47, 0.39), "baseline": (29.94, 0.32)},
    "scaling": {"fourier_low": (25, 0.20), "fourier_mid": (35, 0.23), "fourier_high": (36.5, 0.40),
                "multigrid_coarse": (34.5, 0.37), "multigrid_fine": (41.5, 0.73), "baseline": (20, 0.08)},
}


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_table2_verbatim(name):
    lr, epochs, batch, enc = TABLE2[name]
    cfg = P.get(P.IMAGENET, "paper", name)
    assert (cfg.learning_rate, cfg.epochs, cfg.batch_size, cfg.hidden) == (lr, epochs, batch, (512, 512))
    for k, v in enc.items():
        assert getattr(cfg.encoding, k) == v, k


@pytest.mark.parametrize("name", sorted(TABLE3))
def test_table3_verbatim(name):
    cfg = P.get(P.SCALING, "paper", name)
    assert (cfg.learning_rate, cfg.epochs, cfg.batch_size, cfg.hidden) == (100.0, 300, 32, (512, 512))
    for k, v in TABLE3[name].items():
        assert getattr(cfg.encoding, k) == v, k


def test_paper_encodings_name_every_paper_table():
    assert P.PAPER_ENCODINGS == ("baseline", "fourier", "multigrid")
    assert set(P.IMAGENET) == set(P.PAPER_ENCODINGS) == set(P.PAPER_PSNR["imagenet"])
    assert all(set(table) == set(P.PAPER_ENCODINGS) for table in P.OCCUPANCY.values())
    assert {c.encoding.kind for c in P.SCALING.values()} == set(P.PAPER_ENCODINGS)


def test_paper_psnr_is_table1():
    assert P.PAPER_PSNR == TABLE1


@pytest.mark.parametrize("table,quick", [(P.IMAGENET, P.IMAGENET_QUICK), (P.SCALING, P.SCALING_QUICK)])
def test_quick_tables(table, quick):
    assert set(quick) == set(table)
    for name in table:
        q = P.get(table, "quick", name)
        assert q is quick[name]
        paper = table[name]
        assert q.encoding.kind == paper.encoding.kind and q.hidden == paper.hidden and q.loss == paper.loss
        assert q.epochs < paper.epochs and q.ntk_points is None  # spectra on the training set
        cps = q.checkpoint_epochs()  # validates them against epochs
        assert cps[-1] == q.epochs and any(0 < c < q.epochs for c in cps)


def test_quick_imagenet_keeps_table2_encodings():
    for name, cfg in P.IMAGENET.items():
        assert P.IMAGENET_QUICK[name].encoding == cfg.encoding


def test_quick_scaling_grids_bracket_the_image():
    """As in the paper, the coarse grid has fewer nodes per side than the image has pixels and
    the fine grid more; the Fourier encodings are unchanged."""
    side = P.QUICK_IMAGE_SIZE
    assert P.SCALING_QUICK["multigrid_coarse"].encoding.max_res < side < P.SCALING_QUICK["multigrid_fine"].encoding.min_res
    paper_side = P.IMAGE_SIZE
    assert P.SCALING["multigrid_coarse"].encoding.max_res < paper_side < P.SCALING["multigrid_fine"].encoding.min_res
    for name in ("fourier_low", "fourier_mid", "fourier_high", "baseline"):
        assert P.SCALING_QUICK[name].encoding == P.SCALING[name].encoding


def test_quick_rule_for_other_tables():
    cfg = P.OCCUPANCY["armadillo"]["multigrid"]
    q = P.get(P.OCCUPANCY["armadillo"], "quick", "multigrid")
    assert q == P.quick(cfg)
    assert q.epochs == cfg.epochs // 10 and q.batch_size == cfg.batch_size and q.ntk_points == cfg.ntk_points


def test_image_size_and_errors():
    assert P.image_size("paper") == P.IMAGE_SIZE and P.image_size("quick") == P.QUICK_IMAGE_SIZE
    with pytest.raises(ValueError, match="preset"):
        P.image_size("fast")
    with pytest.raises(ValueError, match="preset"):
        P.get(P.IMAGENET, "fast", "baseline")
    with pytest.raises(KeyError, match="unknown configuration"):
        P.get(P.IMAGENET, "paper", "hashgrid")


def test_presets_round_trip_through_json_dicts():
    for table in (P.IMAGENET, P.IMAGENET_QUICK, P.SCALING, P.SCALING_QUICK):
        for cfg in table.values():
            assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_paper_tables_train_under_their_readings_and_quick_under_the_literal_one():
    for table, rd in ((P.SCALING, P.SCALING_READING), (P.IMAGENET, P.IMAGENET_READING)):
        for cfg in table.values():
            assert cfg == P.reading(cfg, rd)
    assert P.SCALING["baseline"].parameterization == "mean_field"
    assert P.IMAGENET["baseline"].parameterization == "ntk"
    for cfg in (*P.SCALING_QUICK.values(), *P.IMAGENET_QUICK.values()):
        assert cfg == P.reading(cfg, "literal")


def test_quick_imagenet_takes_spectra_at_the_end_only_and_the_paper_preset_everywhere():
    """The quick sweep's time: one total-kernel eigvalsh per run, at the end (issue 24);
    the paper preset keeps spectra at every checkpoint and the group spectra at the last."""
    for name, cfg in P.IMAGENET_QUICK.items():
        assert (cfg.ntk_spectra_at, cfg.ntk_group_spectra) == ("last", "none"), name
        assert [e for e in cfg.checkpoint_epochs() if cfg.takes_spectra(e)] == [cfg.epochs]
        assert len(cfg.checkpoint_epochs()) == 2  # the middle is still measured (PSNR, MS-SSIM)
    for cfg in (*P.IMAGENET.values(), *P.SCALING.values(), *P.SCALING_QUICK.values()):
        assert (cfg.ntk_spectra_at, cfg.ntk_group_spectra) == ("every", "last")
        assert all(cfg.takes_spectra(e) for e in cfg.checkpoint_epochs())
