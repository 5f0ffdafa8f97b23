"""Smoke tests of every benchmark at tiny sizes (so none rots unnoticed), of the suite runner
(child processes, timeouts, failures reported and passed over) and of the RESULTS.md generator.

The benchmarks' ``main`` functions run in this process at tiny sizes, with the paper's networks
swapped for 2x32 ones of the same encodings (the same code paths, a fraction of the compile
time); their children (neural-tangents' jacobian and the full-image row of bench_ntk) run
in-process too, and bench_interpolate's core pinning is skipped (JAX is already imported here).
``python -m benchmarks --profile tiny`` runs the real scripts, unpatched, in child processes.
"""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from benchmarks import results, suite
from ntkgrid import presets

ROOT = Path(__file__).resolve().parents[1]


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _small(table: dict, **changes) -> dict:
    """``table``'s configs with a 2x32 MLP (and ``changes``)."""
    return {k: c.replace(hidden=(32, 32), **changes) for k, c in table.items()}


@pytest.fixture(scope="module")
def tiny_mesh(tmp_path_factory) -> Path:
    return suite._tiny_mesh(tmp_path_factory.mktemp("mesh"))


def test_bench_ntk_tiny(tmp_path, monkeypatch):
    from benchmarks import bench_ntk

    def inline(child):
        def run(*args):
            q = queue.Queue()
            child(*args, q)
            return q.get_nowait()
        return run

    monkeypatch.setattr(bench_ntk, "run_full_image", inline(bench_ntk._full_image_child))
    def run_jacobian(n, mem_gb, activation=None):
        q = queue.Queue()
        bench_ntk._jacobian_child(n, mem_gb, q, activation)
        return q.get_nowait()

    monkeypatch.setattr(bench_ntk, "run_jacobian", run_jacobian)
    monkeypatch.setattr(presets, "IMAGENET", _small(presets.IMAGENET))
    setup = bench_ntk._setup

    def small_setup(n, activation=None):
        model, v, x = setup(n, activation)
        model = model.clone(hidden=(32, 32))
        import jax

        return model, model.init(jax.random.PRNGKey(0), x[:1]), x

    monkeypatch.setattr(bench_ntk, "_setup", small_setup)
    out = tmp_path / "ntk.json"
    assert bench_ntk.main(["--sizes", "16", "--jacobian-sizes", "16", "--repeats", "1", "--full-image-sides", "8",
                           "--activations", "relu", "sine", "--activation-n", "16",
                           "--json", str(out)]) == 0
    doc = _read(out)
    row, full = doc["rows"][0], doc["full_image"][0]
    assert row["jacobian_status"] == "ok" and row["rel_err"] < 1e-10 and row["speedup"] > 0
    assert "error" not in full and full["n"] == 64 and full["groups_rel_err"] < 1e-10
    assert [r["activation"] for r in doc["activations"]] == ["relu", "sine"]
    assert all(r["jacobian_status"] == "ok" and r["rel_err"] < 1e-10 for r in doc["activations"])
    head = suite.headline("ntk", doc)
    assert head["ratio"] == row["speedup"] and head["full_image_n"] == 64


def test_bench_interpolate_tiny(tmp_path, monkeypatch):
    from benchmarks import bench_interpolate

    monkeypatch.setattr(bench_interpolate, "pin_threads", lambda threads: 1)  # JAX is imported already
    out = tmp_path / "interp.json"
    assert bench_interpolate.main(["--points", "1024", "--cases", "2d-512-k2", "--repeats", "1",
                                   "--warmup", "1", "--block", "1", "--kernels", "linear", "cubic",
                                   "--json", str(out)]) == 0
    linear, cubic = _read(out)["results"]
    assert linear["kernel"] == "linear" and linear["max_rel_diff"] < 2e-4 and linear["ratio"] > 0
    assert cubic["kernel"] == "cubic" and cubic["bicubic_ratio"] > 0 and cubic["cubic_over_linear"] > 0
    head = suite.headline("interpolate", _read(out))
    assert head["min"] <= head["ratio"] <= head["max"] == linear["ratio"]  # linear rows only
    assert head["cubic_over_linear"] == pytest.approx(cubic["cubic_over_linear"])
    assert "cubic (bicubic)" in results.RENDERERS["interpolate"][0](_read(out))


def test_bench_train_tiny(tmp_path, monkeypatch):
    from benchmarks import bench_train

    monkeypatch.setattr(bench_train, "HIDDEN", (32, 32))
    out = tmp_path / "train.json"
    assert bench_train.main(["--reps", "1", "--threads", "1", "--steps", "2", "--batches", "8",
                             "--json", str(out)]) == 0
    doc = _read(out)
    assert [r["batch"] for r in doc["rows"]] == [8, 8, 8] and all(r["steps_per_epoch"] == 2 for r in doc["rows"])
    assert suite.headline("train", doc)["ratio"] > 0
    assert bench_train.main(["--steps", "0"]) == 2


def test_bench_sweep_tiny(tmp_path, monkeypatch):
    from benchmarks import bench_sweep

    monkeypatch.setattr(presets, "IMAGENET", _small(presets.IMAGENET))
    out = tmp_path / "sweep.json"
    assert bench_sweep.main(["--images", "2", "--epochs", "1", "--size", "12", "--runs-per-program", "2",
                             "--passes", "1", "--sequential-images", "1", "--json", str(out)]) == 0
    doc = _read(out)
    assert doc["images"] == 2 and doc["sequential_images"] == 1 and doc["passes"] == 1
    assert all(r["max_abs_psnr_difference_db"] < 1e-6 for r in doc["rows"])  # the same training both ways
    assert suite.headline("sweep", doc)["ratio"] == pytest.approx(doc["seconds"]["sequential"] / doc["seconds"]["batched"])
    assert bench_sweep.main(["--images", "0"]) == 2


def test_bench_labels_tiny(tmp_path, tiny_mesh):
    from benchmarks import bench_labels

    out = tmp_path / "labels.json"
    assert bench_labels.main(["--mesh", str(tiny_mesh), "--points", "500", "--plain-points", "20",
                              "--winding-points", "20", "--json", str(out)]) == 0
    doc = _read(out)
    assert all(r.get("agree", 1.0) == 1.0 for r in doc["rows"] if r.get("seconds") is not None)
    head = suite.headline("labels", doc)
    assert head["points_per_s"] > 0


def test_bench_occupancy_throughput_tiny(tmp_path, tiny_mesh, monkeypatch):
    from benchmarks import bench_occupancy

    monkeypatch.setattr(presets, "OCCUPANCY", {m: _small(t, batch_size=256) for m, t in presets.OCCUPANCY.items()})
    out = tmp_path / "occ.json"
    assert bench_occupancy.main(["--throughput", "--mesh", str(tiny_mesh), "--epochs", "1",
                                 "--points-per-epoch", "1000", "--json", str(out)]) == 0
    doc = _read(out)
    assert {r["what"].split()[0] for r in doc["rows"]} == {"label", "train", "fit"}
    head = suite.headline("occupancy", doc)
    assert head["ratio"] == pytest.approx(head["label_points_per_s"] / head["train_points_per_s"])


def test_every_benchmark_has_every_profile():
    names = [b.name for b in suite.BENCHMARKS]
    assert names == ["ntk", "interpolate", "train", "sweep", "labels", "occupancy"]
    for b in suite.BENCHMARKS:
        assert set(b.args) == set(suite.PROFILES) and set(b.timeout_s) == set(suite.PROFILES), b.name
        assert b.args["tiny"] is not None and b.args["quick"] is not None
    gpu = {b.name for b in suite.BENCHMARKS if b.args["gpu"] is not None}
    assert {"ntk", "interpolate", "sweep"} <= gpu
    assert sum(b.timeout_s["gpu"] for b in suite.BENCHMARKS if b.name in gpu) <= 540  # + tests: 10 minutes


_FAKE = '''
import json, sys, time
args = sys.argv[1:]
out = args[args.index("--json") + 1]
if "--fail" in args:
    sys.exit("fake: broken on purpose")
if "--hang" in args:
    time.sleep(60)
json.dump({"ratio": 2.5}, open(out, "w"))
'''


def test_runner_reports_failures_and_timeouts_and_goes_on(tmp_path, monkeypatch):
    (tmp_path / "fake_bench.py").write_text(_FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    head = lambda doc: {"ratio": doc["ratio"], "meaning": "fake"}  # noqa: E731
    fakes = tuple(suite.Benchmark(name, "fake_bench", "a fake", {p: args for p in suite.PROFILES},
                                  {p: 20 for p in suite.PROFILES}, head)
                  for name, args in (("bad", ("--fail",)), ("slow", ("--hang",)), ("good", ())))
    monkeypatch.setattr(suite, "BENCHMARKS", fakes)
    monkeypatch.setattr(suite, "describe_machine", lambda: {"backend": "cpu", "device": "fake"})
    lines: list[str] = []
    saved: list[tuple] = []
    doc = suite.run_suite("quick", timeout_s=3, log=lines.append, workdir=tmp_path / "work",
                          on_progress=lambda d: saved.append((list(d["benchmarks"]), d["pending"], d["complete"])))
    assert saved == [(["bad"], ["slow", "good"], False), (["bad", "slow"], ["good"], False),
                     (["bad", "slow", "good"], [], True)]  # a suite stopped half-way keeps what it measured
    b = doc["benchmarks"]
    assert b["bad"]["status"] == "failed" and "broken on purpose" in b["bad"]["error"]
    assert b["slow"]["status"] == "timeout" and b["slow"]["seconds"] < 20
    assert b["good"]["status"] == "ok" and b["good"]["headline"]["ratio"] == 2.5 and b["good"]["raw"] == {"ratio": 2.5}
    assert doc["failed"] == ["bad", "slow"] and len(doc["loadavg_before"]) == 3 and len(doc["loadavg_after"]) == 3
    assert any("TIMEOUT" in line for line in lines)
    with pytest.raises(ValueError, match="unknown benchmark"):
        suite.run_suite("quick", ["nope"])
    again = suite.run_suite("quick", ["good", "bad"], timeout_s=3, log=lines.append, workdir=tmp_path / "w2")
    assert list(again["benchmarks"]) == ["good", "bad"]  # --only's order


def test_cli_bad_arguments_exit_2(tmp_path, capsys):
    from benchmarks.__main__ import main

    assert main(["--only", "nope"]) == 2
    assert "unknown benchmark(s) nope" in capsys.readouterr().err
    assert main(["--json", str(tmp_path)]) == 2
    assert main(["--timeout", "0"]) == 2


def test_describe_machine_names_backend_and_versions():
    info = suite.describe_machine()
    assert info["backend"] == "cpu" and info["device"] and info["versions"]["jax"]
    assert info["cpu_count"] >= 1


def test_results_md_is_generated_from_the_json_files():
    """RESULTS.md's tables are exactly what the generator makes of benchmarks/results/*.json."""
    from benchmarks import results

    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert results.render(text, ROOT / "benchmarks" / "results") == text, \
        "RESULTS.md is out of date: run python -m benchmarks.results"
    assert results.main(["--check"]) == 0


def test_results_generator_fills_blocks_and_refuses_unknown_files(tmp_path):
    from benchmarks import results

    (tmp_path / "s.json").write_text(json.dumps({"images": 2, "size": 8, "epochs": 1, "ratio": 1.25,
                                                 "images_per_minute": {"sequential": 4.0, "batched": 5.0},
                                                 "rows": [{"encoding": "baseline", "batch_size": 10,
                                                           "runs_per_program": 2,
                                                           "seconds": {"sequential": 1.0, "batched": 0.8},
                                                           "ratio": 1.25, "max_abs_psnr_difference_db": 0.0}]}))
    (tmp_path / "provenance.json").write_text(json.dumps({"s.json": {"machine": "box", "date": "today"}}))
    text = "a\n<!-- generated: sweep s.json -->\nstale\n<!-- /generated -->\nb\n"
    out = results.render(text, tmp_path)
    assert "stale" not in out and "| baseline | 10 | 2 | 1.00 | 0.80 | 1.25x |" in out and "box, today" in out
    assert results.render(out, tmp_path) == out  # idempotent
    with pytest.raises(results.ResultsError, match="missing.json"):
        results.render("<!-- generated: sweep missing.json -->\n<!-- /generated -->\n", tmp_path)


def test_gpu_script_is_valid_bash_with_timeouts():
    import subprocess

    script = ROOT / "benchmarks" / "gpu_run.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    assert "--junitxml" in text and "timeout" in text and "-m benchmarks --gpu" in text
    assert subprocess.run(["bash", str(script)], capture_output=True, check=False).returncode == 2  # no OUTDIR
