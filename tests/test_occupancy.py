"""Tests for ntkgrid.occupancy and experiments.occupancy: metrics, settings, data, the CLI."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import trimesh

from experiments import occupancy as cli
from ntkgrid import occupancy as occ
from ntkgrid.data import DataError
from ntkgrid.data import meshes as M
from ntkgrid.presets import OCCUPANCY, OCCUPANCY_QUICK, OCCUPANCY_QUICK_LR_SCALE

from ._cases import write_off

TINY = ["--epochs", "2", "--pool-size", "3000", "--eval-size", "500", "--resolution", "24",
        "--render-steps", "24", "--mc-resolution", "16", "--ntk-points", "16", "--hidden", "16", "16",
        "--no-progress"]


# ----------------------------------------------------------------------------- metrics


def test_iou_against_hand_computed_values():
    pred = np.array([1, 1, 0, 0, 1, 0], bool)
    target = np.array([1, 0, 1, 0, 1, 0], bool)
    assert occ.iou(pred, target) == pytest.approx(2 / 4)  # |{0,4}| / |{0,1,2,4}|
    assert occ.iou(pred, pred) == 1.0
    assert occ.iou(pred, ~pred) == 0.0
    assert occ.iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0  # nothing to disagree on
    assert occ.iou(np.zeros((2, 2), bool), np.eye(2, dtype=bool)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        occ.iou(pred, target[:3])


def test_occupancy_metrics_threshold_at_logit_zero():
    logits = np.array([2.0, -1.0, 0.5, -3.0, 0.0])  # predicted inside: 0, 2 (0.0 is not > 0)
    labels = np.array([[1.0], [1.0], [1.0], [0.0], [0.0]])  # inside: 0, 1, 2
    m = occ.occupancy_metrics(logits, labels)
    assert m["iou"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 5)
    assert m["inside_pred"] == pytest.approx(2 / 5) and m["inside_true"] == pytest.approx(3 / 5)


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name, key, matched", [
    ("Armadillo", "armadillo", True), ("dragon_vrip", "dragon", True), ("happy_vrip", "happy_buddha", True),
    ("buddha", "happy_buddha", True), ("bunny", "armadillo", False), ("default_shape", "armadillo", False),
])
def test_mesh_preset_key(name, key, matched):
    assert occ.mesh_preset_key(name) == (key, matched)


def test_configs_for_paper_quick_and_overrides():
    paper = occ.configs_for("dragon", "paper")
    assert paper["multigrid"].replace(checkpoints=None, ntk_points=None, curve_every=None) == \
        OCCUPANCY["dragon"]["multigrid"]
    assert paper["multigrid"].ntk_points == occ.PAPER_SETUP.ntk_points == 1024
    assert paper["multigrid"].checkpoint_epochs() == tuple(range(0, 4001, 200))  # IoU curve: 20 points, and 0
    assert paper["multigrid"].encoding.max_res == 136 and paper["fourier"].encoding.num_frequencies == 7
    assert paper["baseline"].hidden == (256,) * 8 and paper["baseline"].loss == "bce"
    quick = occ.configs_for("x", "quick", ["multigrid"], seed=3, epochs=7, hidden=(4,))
    q = quick["multigrid"]
    assert q.encoding == OCCUPANCY["armadillo"]["multigrid"].encoding
    assert (q.epochs, q.seed, q.hidden, q.ntk_points) == (7, 3, (4,), 256)
    assert q.checkpoint_epochs() == (1, 2, 3, 4, 5, 6, 7)  # 10 curve points (rounded), the middle, the end
    assert occ.configs_for("x", "quick", setup=occ.QUICK_SETUP.replace(curve_points=0))["fourier"].checkpoints == (
        150, 300)
    assert q.learning_rate == pytest.approx(OCCUPANCY["armadillo"]["multigrid"].learning_rate * 20.0)
    assert q.batch_size == OCCUPANCY_QUICK["armadillo"]["multigrid"].batch_size == 256
    for mesh, table in OCCUPANCY_QUICK.items():  # only the run length, batch and lr differ from Table 4
        for name, cfg in table.items():
            paper_cfg = OCCUPANCY[mesh][name]
            run = {f: getattr(paper_cfg, f) for f in ("epochs", "batch_size", "ntk_points", "learning_rate",
                                                      "checkpoints", "curve_every")}
            assert cfg.replace(**run) == paper_cfg
            assert cfg.learning_rate == pytest.approx(paper_cfg.learning_rate * OCCUPANCY_QUICK_LR_SCALE)
    assert occ.configs_for("x", "paper", ["fourier"], learning_rate=3.0)["fourier"].learning_rate == 3.0
    with pytest.raises(ValueError, match="unknown encoding"):
        occ.configs_for("x", "quick", ["hashgridd"])
    with pytest.raises(ValueError, match="preset"):
        occ.configs_for("x", "fast")
    setup = occ.QUICK_SETUP
    assert setup.epoch_size(q.replace(batch_size=10)) == setup.steps_per_epoch * 10
    assert setup.epoch_size(q.replace(batch_size=10**6)) == setup.pool_uniform + setup.pool_surface


# ----------------------------------------------------------------------------- data


def _octahedron():
    """Normalised to [0, 1]^3 (its bounding box): inside <=> sum |x - 0.5| < 0.5, 1/6 of the box."""
    v = [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    f = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    m = M.mesh_from_arrays(v, f, source="octahedron")
    assert m.is_watertight and m.volume > 0
    return m


def _inside_octahedron(x):
    return np.abs(np.asarray(x, np.float64) - 0.5).sum(axis=1) < 0.5


@pytest.mark.parametrize("sampling", ["pool", "fresh"])
def test_prepare_data_pools_labels_and_cache(tmp_path, sampling):
    box = M.mesh_from_arrays(*_box_arrays(), source="box")  # normalised: [0,1] x [0.25,0.75] x [0.25,0.75]
    octa = _octahedron()
    setup = occ.QUICK_SETUP.replace(pool_uniform=600, pool_surface=400, eval_uniform=300, eval_surface=200,
                                    sampling=sampling)
    data = occ.prepare_data(octa, setup, seed=1, ntk_points=50, cache_dir=tmp_path)
    n_train = 1000 if sampling == "pool" else 300  # fresh: the held-out uniform pool only measures the loss
    assert data.train_x.shape == (n_train, 3) and data.train_y.shape == (n_train, 1)
    assert data.eval["uniform"][0].shape == (300, 3) and data.eval["surface"][0].shape == (200, 3)
    # NTK points: uniform in the bounding box like training's, not held-out or training points
    assert data.ntk_x.shape == (50, 3) and data.ntk_x.min() >= 0 and data.ntk_x.max() <= 1
    assert not (set(map(tuple, data.ntk_x)) & set(map(tuple, data.eval["uniform"][0])))
    # labels agree with the analytic octahedron
    for x, y in [(data.train_x, data.train_y[:, 0]), *data.eval.values()]:
        assert np.mean(_inside_octahedron(x) == (y > 0.5)) > 0.99
    # uniform points fill the scaled mesh's bounding box (Appendix E), here a flat one
    if sampling == "pool":
        boxed = occ.prepare_data(box, setup, seed=1, ntk_points=50)
        for x in (boxed.eval["uniform"][0], boxed.ntk_x):
            assert x[:, 1:].min() >= 0.25 and x[:, 1:].max() <= 0.75 and x[:, 0].max() > 0.9
    else:  # a box fills its own bounding box: every uniform point is inside, nothing to learn
        with pytest.raises(DataError, match="box: all 300 sampled points are inside.*fills its bounding box"):
            occ.prepare_data(box, setup, seed=1, ntk_points=50)
    if sampling == "pool":  # held-out points are not training points
        assert not (set(map(tuple, data.eval["uniform"][0])) & set(map(tuple, data.train_x)))
    assert len(list(tmp_path.glob("pools_*.npz"))) == (2 if sampling == "pool" else 1)
    again = occ.prepare_data(octa, setup, seed=1, ntk_points=50, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_fresh_points_every_epoch_labelled_and_cached_exactly(tmp_path):
    octa = _octahedron()
    box = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    fp = M.FreshPoints(octa, box, 2000, seed=3, cache_dir=tmp_path, batch_size=700)  # 3 labelling batches
    x0, y0 = fp(0)
    x1, _ = fp(1)
    assert x0.shape == (2000, 3) and y0.shape == (2000, 1) and x0.dtype == y0.dtype == np.float32
    assert not np.array_equal(x0, x1)  # fresh points every epoch
    np.testing.assert_array_equal(y0[:, 0] > 0.5, _inside_octahedron(x0))  # on-the-fly labels: exact here
    assert fp.labelled == 4000 and len(list(tmp_path.glob("fresh_*/epoch_*.npy"))) == 2
    again = M.FreshPoints(octa, box, 2000, seed=3, cache_dir=tmp_path)
    xa, ya = again(0)
    assert again.labelled == 0  # served from the cache ...
    np.testing.assert_array_equal(xa, x0)  # ... for the same points, regenerated bit for bit
    np.testing.assert_array_equal(ya, y0)
    other = M.FreshPoints(octa, box, 2000, seed=4, cache_dir=tmp_path)
    assert not np.array_equal(other(0)[0], x0) and other.labelled == 2000  # another seed: its own stream


def test_checkpoint_spectra_logit_and_sigmoid_kernels_against_brute_force_jacobians(tmp_path):
    """Both kernels against J J^T of explicit float64 Jacobians: of the logit, and of
    sigmoid(logit) (the output the BCE loss sees); the sigmoid one is not the logit one."""
    import flax.serialization
    import jax
    import jax.flatten_util
    import jax.numpy as jnp

    from ntkgrid.config import MultiGridConfig, TrainConfig
    from ntkgrid.models import build_model
    from ntkgrid.training import fit

    cfg = TrainConfig(hidden=(8, 8), loss="bce", epochs=2, batch_size=32, learning_rate=5.0, ntk_points=0,
                      checkpoints=(2,), encoding=MultiGridConfig(features_per_level=2, num_levels=2,
                                                                 min_res=3, max_res=5))
    rng = np.random.default_rng(0)
    x = rng.random((128, 3)).astype(np.float32)
    y = (_inside_octahedron(x)[:, None]).astype(np.float32)
    fit(cfg, x, y, out_dir=tmp_path / "run", progress=False)
    ntk_x = rng.random((12, 3)).astype(np.float32)
    got = occ.checkpoint_spectra(cfg, tmp_path / "run", [2], ntk_x)
    model = build_model(cfg, 3, 1)
    variables = flax.serialization.msgpack_restore((tmp_path / "run/checkpoints/epoch_000002.msgpack").read_bytes())
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["variables"])
        flat, unravel = jax.flatten_util.ravel_pytree(v64["params"])
        x64 = jnp.asarray(ntk_x, jnp.float64)
        def f(p):
            return model.clone(param_dtype=jnp.float64).apply({"params": unravel(p)}, x64)[:, 0]

        jacs = np.asarray(jax.jacrev(lambda p: jnp.stack([f(p), jax.nn.sigmoid(f(p))]))(flat))  # (2, P, n)
        for output, jac in zip(("logit", "sigmoid"), jacs, strict=True):
            want = np.sort(np.linalg.eigvalsh(jac @ jac.T))[::-1]
            have = got[output][2]["total"].eigenvalues
            np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-9 * want[0])
    assert got["sigmoid"][2]["total"].eigenvalues[0] < 0.26 ** 2 * got["logit"][2]["total"].eigenvalues[0]
    assert set(got["logit"][2]) >= {"total", "grid", "no_grid"}
    again = occ.checkpoint_spectra(cfg, tmp_path / "run", [2], ntk_x)  # read back from ntk/epoch_000002.npz
    np.testing.assert_array_equal(again["sigmoid"][2]["grid"].eigenvalues, got["sigmoid"][2]["grid"].eigenvalues)


def test_prepare_data_rejects_a_surface_enclosing_no_volume():
    sheet = M.mesh_from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]],
                               source="sheet.off")
    setup = occ.QUICK_SETUP.replace(pool_uniform=200, pool_surface=100, eval_uniform=50, eval_surface=50)
    with pytest.warns(UserWarning, match="not watertight"), pytest.raises(DataError, match="sheet.off: none of"):
        occ.prepare_data(sheet, setup)


def _box_arrays():
    b = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    return b.vertices, b.faces


# ----------------------------------------------------------------------------- the CLI


def test_main_tiny_run_writes_outputs_and_reports_bad_meshes(tmp_path, capsys):
    good = tmp_path / "blob.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=1.0).export(good)
    not_mesh = tmp_path / "notes.obj"
    not_mesh.write_text("this is not a mesh\n")
    empty = tmp_path / "empty.off"
    empty.write_text("")
    degenerate = write_off(tmp_path / "degenerate.off", [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]],
                           [[0, 1, 2], [1, 2, 3]])  # collinear: every face has zero area
    sheet = write_off(tmp_path / "sheet.off", [[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    tet_v = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    tet_f = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]  # outward normals
    inverted = write_off(tmp_path / "inverted.off", tet_v, [f[::-1] for f in tet_f])
    nonmanifold = write_off(tmp_path / "nonmanifold.off", tet_v + [[0.5, -1, 0.5], [0.5, -1, -0.5]],
                            tet_f + [[0, 1, 4], [0, 5, 1]])
    out = tmp_path / "run"
    bad = [not_mesh, empty, degenerate, sheet, inverted, nonmanifold]
    argv = ["--mesh", str(not_mesh), str(good), str(empty), str(degenerate), str(sheet), str(inverted),
            str(nonmanifold), "--out", str(out), "--sampling", "fresh", "--points-per-epoch", "256", *TINY]
    with pytest.warns(UserWarning):  # the open sheet is labelled by winding numbers, with a warning
        rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    for path in bad:
        line = next(ln for ln in err.splitlines() if ln.startswith(f"error: {path}:"))  # one line each
        assert line.split(":", 2)[2].strip()
    assert "inside out" in err and "non-manifold" in err and "zero area" in err and "empty file" in err
    assert "6 of 7 mesh(es) failed" in err
    # the good mesh ran completely, on fresh points every epoch
    mdir = out / occ.mesh_folder_name(good)
    assert mdir.name.startswith("blob-")
    for f in ["render.png", "iou_curve.png", "metrics.json", "surface_baseline.ply", "surface_fourier.ply",
              "surface_multigrid.ply", "baseline/summary.json", "fourier/metrics.jsonl",
              "multigrid/ntk/epoch_000002.npz"]:
        assert (mdir / f).is_file(), f
    for f in ["spectra.png", "spectra.json", "spectra_logit.png", "spectra_logit.json", "results.json", "report.md"]:
        assert (out / f).is_file(), f
    assert json.loads((out / "spectra.json").read_text())["kernel"] == "sigmoid"  # the default kernel
    # an epoch is 256 points whatever the batch, so the three encodings share the stream: labelled once
    assert len(list((out / "pools").glob("fresh_*/epoch_*.npy"))) == 2
    with np.load(mdir / "multigrid" / "ntk" / "epoch_000002.npz") as z:
        assert {"eigenvalues/sigmoid/total", "eigenvalues/logit/total", "eigenvalues/logit/grid"} <= set(z.files)
        assert z["eigenvalues/logit/total"].shape == (16,)  # --ntk-points 16
    res = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in res["meshes"]] == [mdir.name]
    assert sorted(e["mesh"].rsplit("-", 1)[0] for e in res["errors"]) == ["degenerate", "empty", "inverted",
                                                                          "nonmanifold", "notes", "sheet"]
    run = res["meshes"][0]["runs"]["multigrid"]
    assert run["epoch_points"] == 256 and run["labelling"]["points"] == 0  # the baseline's labels, cached
    assert res["meshes"][0]["runs"]["baseline"]["labelling"]["points"] == 2 * 256
    assert [h["epoch"] for h in run["history"]] == [1, 2]  # quick: IoU curve points, middle and end
    for key in ("iou_uniform", "iou_surface", "accuracy_uniform", "accuracy_surface"):
        assert 0.0 <= run["final"][key] <= 1.0
    assert run["config"]["hidden"] == [16, 16] and run["config"]["epochs"] == 2
    report = (out / "report.md").read_text()
    assert f"| {mdir.name} | multigrid |" in report and "* sheet-" in report


def test_tune_occupancy_writes_a_config_the_occupancy_experiment_loads(tmp_path):
    pytest.importorskip("optuna")
    from experiments import tune

    out = tmp_path / "tune"
    blob = tmp_path / "blob.ply"
    trimesh.creation.icosphere(subdivisions=2, radius=1.0).export(blob)
    argv = ["--task", "occupancy", "--mesh", str(blob), "--encoding", "multigrid", "--trials", "2", "--epochs", "1",
            "--hidden", "8", "--pool-size", "1000", "--out", str(out), "--no-progress"]
    assert tune.main(argv) == 0
    best = json.loads((out / "best_occupancy_multigrid.json").read_text())
    trials = json.loads((out / "trials_occupancy_multigrid.json").read_text())
    assert len(trials["trials"]) == 2 and trials["best"]["train_loss"] == min(t["train_loss"] for t in trials["trials"])
    p = trials["best"]["params"]
    assert best["learning_rate"] == p["learning_rate"] and best["batch_size"] == p["batch_size"]
    enc = best["encoding"]
    assert enc["num_levels"] <= 3 and enc["features_per_level"] <= 3 and enc["min_res"] == p["min_res"]
    assert best["loss"] == "bce" and best["hidden"] == [8]
    # loads into experiments.occupancy as --config-json loads tuned configs into the 2D sweep
    run = tmp_path / "run"
    rc = cli.main(["--mesh", str(blob), "--encodings", "multigrid", "--config-json",
                   f"multigrid={out / 'best_occupancy_multigrid.json'}", "--out", str(run), *TINY,
                   "--ntk-points", "0"])
    assert rc == 0
    cfg = json.loads((run / "results.json").read_text())["meshes"][0]["runs"]["multigrid"]["config"]
    assert (cfg["learning_rate"], cfg["batch_size"], cfg["encoding"]) == (best["learning_rate"], best["batch_size"],
                                                                          best["encoding"])
    assert cfg["hidden"] == [16, 16]  # --hidden still overrides, as the other overrides do
    bad = tmp_path / "image.json"
    bad.write_text(json.dumps({**best, "loss": "mse"}))
    assert cli.main(["--config-json", f"fourier={bad}", "--out", str(run)]) == 2


def test_download_offline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def offline(*_a, **_k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    rc = cli.main(["--download", "bunny", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "o"), *TINY])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "bunny.tar.gz" in err and "--mesh PATH" in err


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli.main(["--out", str(tmp_path), "--epochs", "0"]) == 2
    assert "epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--encodings", "nerf"])


def _old_layout_cache(path, key, epoch, spectra):
    """An ``ntk/epoch_*.npz`` as checkpoint_spectra wrote it before runfolder.save_spectra
    (no ``groups``; ``eigenvalues/<output>/<group>``, ...; ``ntk_hash``)."""
    arrays = {"ntk_hash": np.array(key), "epoch": np.array(int(epoch))}
    for o, groups in spectra.items():
        for g, sp in groups.items():
            arrays[f"eigenvalues/{o}/{g}"] = sp.eigenvalues
            for f in ("floor", "n_above_floor", "n_negative", "asymmetry"):
                arrays[f"{f}/{o}/{g}"] = np.asarray(getattr(sp, f))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_checkpoint_spectra_reads_an_old_layout_cache(tmp_path):
    import hashlib

    from ntkgrid.config import TrainConfig
    from ntkgrid.spectrum import Spectrum
    from ntkgrid.training.runfolder import read_spectra

    cfg = TrainConfig(hidden=(8,), loss="bce", epochs=2, batch_size=32)
    ntk_x = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    key = hashlib.sha256(ntk_x.tobytes() + str(ntk_x.shape).encode()).hexdigest()[:16] + cfg.ntk_method
    spec = {o: {"total": Spectrum(np.array([3.0, 2.0, 1.0 + i, 0.5]), 1e-12, 4, 0, 1e-9 * (i + 1))}
            for i, o in enumerate(occ.NTK_OUTPUTS)}
    _old_layout_cache(tmp_path / "run" / "ntk" / "epoch_000002.npz", key, 2, spec)
    # no checkpoint in the folder: the spectra can only come from the cache
    got = occ.checkpoint_spectra(cfg, tmp_path / "run", [2], ntk_x)
    for o in occ.NTK_OUTPUTS:
        assert set(got[o][2]) == {"total"}
        s, want = got[o][2]["total"], spec[o]["total"]
        np.testing.assert_array_equal(s.eigenvalues, want.eigenvalues)
        assert (s.floor, s.n_above_floor, s.n_negative, s.asymmetry) == \
            (want.floor, want.n_above_floor, want.n_negative, want.asymmetry)
    assert occ.checkpoint_spectra(cfg, tmp_path / "run", [2], ntk_x[:3]) == {o: {} for o in occ.NTK_OUTPUTS}
    spectra, extra = read_spectra(tmp_path / "run" / "ntk" / "epoch_000002.npz")
    assert sorted(spectra) == sorted(f"{o}/total" for o in occ.NTK_OUTPUTS)
    assert str(extra["ntk_hash"]) == key and int(extra["epoch"]) == 2


# ----------------------------------------------------------------------------- reruns, folders, bad input

MICRO = ["--epochs", "1", "--pool-size", "300", "--eval-size", "50", "--resolution", "8", "--render-steps", "8",
         "--mc-resolution", "8", "--ntk-points", "4", "--hidden", "8", "--encodings", "baseline", "--no-progress"]


def _digests(root) -> dict:
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "pools" not in p.parts}


def test_mesh_folder_is_a_stable_identity(tmp_path):
    a = tmp_path / "x" / "blob.ply"
    a.parent.mkdir()
    trimesh.creation.icosphere(subdivisions=1).export(a)
    b = tmp_path / "y" / "blob.ply"  # same stem, other mesh
    b.parent.mkdir()
    trimesh.creation.box().export(b)
    c = tmp_path / "z" / "blob.ply"  # the same file elsewhere
    c.parent.mkdir()
    c.write_bytes(a.read_bytes())
    assert occ.mesh_folder_name(a).startswith("blob-") and occ.mesh_folder_name(a) != occ.mesh_folder_name(b)
    assert occ.mesh_folder_name(c) == occ.mesh_folder_name(a)
    assert occ.mesh_preset_key(occ.mesh_folder_name(tmp_path / "armadillo.ply")) == ("armadillo", True)
    notes = []
    names = [s.name for s in occ.mesh_sources([str(b), str(a), str(c)], [], tmp_path / "fresh", log=notes.append)]
    assert names == [occ.mesh_folder_name(b), occ.mesh_folder_name(a)]  # c is a: it runs once
    assert notes == [f"note: {c} is the same mesh as {a} (folder {names[1]}); it runs once"]
    # reordered: same folders
    assert [s.name for s in occ.mesh_sources([str(a), str(b)], [], tmp_path / "fresh")] == names[::-1]
    # an older version's folder (the bare stem) holding this very file is still used
    (tmp_path / "out" / "blob").mkdir(parents=True)
    (tmp_path / "out" / "blob" / "metrics.json").write_text(json.dumps({"source": str(a)}))
    assert occ.legacy_folder(tmp_path / "out", a) == "blob" and occ.legacy_folder(tmp_path / "out", b) is None
    assert [s.name for s in occ.mesh_sources([str(b), str(a)], [], tmp_path / "out")] == [occ.mesh_folder_name(b),
                                                                                           "blob"]


def test_failed_rerun_and_reordered_meshes_keep_earlier_results(tmp_path, capsys):
    """A rerun with another --lr fails; results.json, report.md, spectra and the mesh folder stay;
    reordering --mesh reuses the finished mesh byte for byte and merges the new one."""
    a, b = tmp_path / "ball.ply", tmp_path / "box.ply"
    trimesh.creation.icosphere(subdivisions=2).export(a)
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(b)
    out = tmp_path / "run"
    assert cli.main(["--mesh", str(a), "--out", str(out), *MICRO]) == 0
    first = _digests(out)
    ball = occ.mesh_folder_name(a)
    assert f"{ball}/metrics.json" in first and "spectra.png" in first
    capsys.readouterr()
    assert cli.main(["--mesh", str(a), "--out", str(out), *MICRO, "--lr", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "holds a different run" in err
    again = _digests(out)
    changed = {k for k in first if again.get(k) != first[k]}
    assert changed == {"results.json", "report.md"}  # the failure is recorded, nothing finished is lost
    res = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in res["meshes"]] == [ball] and res["errors"][0]["mesh"] == ball
    assert "the earlier run's, kept" in (out / "report.md").read_text()
    assert cli.main(["--mesh", str(b), str(a), "--out", str(out), *MICRO]) == 0
    third = _digests(out)
    assert all(third[k] == first[k] for k in first if k.startswith(ball + "/"))  # reused as it was
    res = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in res["meshes"]] == [ball, occ.mesh_folder_name(b)] and res["errors"] == []
    spectra = json.loads((out / "spectra.json").read_text())
    assert spectra["baseline"]["end"]["count"] == 2  # both meshes in the mean, not just this run's new one


def test_divergence_exits_1_with_one_line(tmp_path, capsys):
    a = tmp_path / "ball.ply"
    trimesh.creation.icosphere(subdivisions=1).export(a)
    rc = cli.main(["--mesh", str(a), "--out", str(tmp_path / "o"), *MICRO, "--ntk-points", "0", "--lr", "1e30"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert f"error: {occ.mesh_folder_name(a)}/baseline diverged at epoch 1" in err


@pytest.mark.parametrize("argv, msg", [
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--ntk-points", "-3"], "--ntk-points must be >= 0, got -3"),
    (["--hidden", "0"], "--hidden widths must be >= 1, got 0"),
    (["--hidden", "8", "0"], "--hidden widths must be >= 1, got 8 0"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--mc-resolution", "1"], "--mc-resolution must be >= 2"),
])
def test_bad_option_values_are_one_line_exit_2(tmp_path, capsys, argv, msg):
    assert cli.main(["--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {msg}") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_or_read_only(tmp_path, capsys, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    assert cli.main(["--out", str(f)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {f}: is a file, not a folder"
    assert f.read_text() == "x"

    def read_only(*_a, **_k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("tempfile.TemporaryFile", read_only)
    assert cli.main(["--out", str(tmp_path / "ro")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'ro'}: cannot write there (Read-only file system)"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not_spectra"])
def test_damaged_spectra_file_named_in_a_clear_error(tmp_path, kind):
    from ntkgrid.occupancy.spectra import read_spectra_file

    p = tmp_path / "epoch_000002.npz"
    good = {"ntk_hash": np.array("k"), "epoch": np.array(2), "eigenvalues/sigmoid/total": np.ones(3),
            "floor/sigmoid/total": np.array(0.1), "n_above_floor/sigmoid/total": np.array(3),
            "n_negative/sigmoid/total": np.array(0), "asymmetry/sigmoid/total": np.array(0.0)}
    np.savez(p, **good)
    epoch, spectra = read_spectra_file(p)
    assert epoch == 2 and spectra["sigmoid"]["total"].eigenvalues.tolist() == [1, 1, 1]
    if kind == "garbage":
        p.write_bytes(b"\x00garbage" * 50)
    elif kind == "truncated":
        p.write_bytes(p.read_bytes()[:200])
    else:
        np.savez(p, other=np.zeros(2))
    with pytest.raises(DataError) as ei:
        read_spectra_file(p)
    assert str(ei.value).startswith(str(p)) and "spectra file" in str(ei.value)
