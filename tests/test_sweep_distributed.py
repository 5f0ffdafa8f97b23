"""Multi-host as the README says: two local processes on the CPU form one jax.distributed
job (one given --coordinator/--num-processes/--process-id, the other the environment
variables JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID), each runs its shard
with ``--shard auto``, and the merged numbers equal a one-process run's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from experiments import imagenet_sweep

from ._sweep_cases import psnrs, sweep_args, write_images

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240  # per process; the whole test takes well under a minute on a quiet 2-core CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_one_job_each_run_their_shard_and_merge_to_the_one_process_numbers(tmp_path):
    argv = sweep_args(tmp_path, write_images(tmp_path / "data", 2, non_utf8=False), encodings=("baseline",))
    coordinator = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_", "OMPI_", "PMI_"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONUNBUFFERED="1")
    job = tmp_path / "job"
    cmd = [sys.executable, "-m", "experiments.imagenet_sweep", *argv, "--distributed", "--shard", "auto"]
    procs = [
        subprocess.Popen([*cmd, "--coordinator", coordinator, "--num-processes", "2", "--process-id", "0",
                          "--out", str(job / "shard-0")], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen([*cmd, "--out", str(job / "shard-1")], cwd=ROOT,
                         env={**env, "JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": "2",
                              "JAX_PROCESS_ID": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    logs = []
    single = tmp_path / "single"
    try:  # the one-process reference trains while the job starts
        assert imagenet_sweep.main([*argv, "--runs-per-program", "1", "--out", str(single)]) == 0
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    shards = [json.loads((job / f"shard-{i}" / "manifest.json").read_text())["shard"] for i in range(2)]
    assert shards == ["0/2", "1/2"]
    assert [len(list((job / f"shard-{i}" / "results").glob("*.json"))) for i in range(2)] == [1, 1]
    assert imagenet_sweep.main(["merge", "--out", str(job)]) == 0

    merged, one = psnrs(job / "results.json"), psnrs(single / "results.json")
    assert sorted(merged) == ["n000_im0", "n001_im1"] and merged == one
    a = {i["image_id"]: i["runs"]["baseline"] for i in json.loads((job / "results.json").read_text())["images"]}
    b = {i["image_id"]: i["runs"]["baseline"] for i in json.loads((single / "results.json").read_text())["images"]}
    for iid in a:
        for key in ("psnr", "ms_ssim", "loss", "epochs_run", "curve"):
            assert a[iid][key] == b[iid][key], (iid, key)
