"""torchrun with 2 CPU processes (gloo) gives bit-for-bit the 1-process set; shards + manifest merge."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dsg_core.distributed import merge_shards, shard_dir
from dsg_core.errors import DataError
from dsg_core.generation import GenerationConfig, SyntheticSet

ARGS = ["generate", "--method", "dsg", "--samples", "10", "--batch-size", "3", "--iterations", "4", "--seed", "7",
        "--ce-weight", "1", "--jitter", "2", "--quiet", "--json"]


def cli(out, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    if nproc == 1:
        cmd = [sys.executable, "-m", "dsg_core", *ARGS, "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "dsg_core", *ARGS, "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    one, two = root / "one.safetensors", root / "two.safetensors"
    cli(one, 1)
    res = cli(two, 2)
    return one, two, res


def test_two_processes_equal_one(runs):
    one, two, res = runs
    a, b = SyntheticSet.load(one), SyntheticSet.load(two)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.targets, b.targets)
    assert torch.equal(a.delta, b.delta)
    assert json.loads(res.stdout)["processes"] == 2


def test_manifest_lists_every_shard_and_batch(runs):
    _, two, _ = runs
    manifest = json.loads((shard_dir(two) / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["samples"] == 10
    assert sorted(k for s in manifest["shards"] for k in s["batches"]) == [0, 1, 2, 3]
    assert [s["batches"] for s in manifest["shards"]] == [[0, 2], [1, 3]]


def test_merge_refuses_missing_shard(runs, tmp_path):
    _, two, _ = runs
    import shutil
    copy = tmp_path / "two.safetensors"
    shutil.copytree(shard_dir(two), shard_dir(copy))
    (shard_dir(copy) / "shard-00001.safetensors").unlink()
    cfg = GenerationConfig(samples=10, batch_size=3, iterations=4, seed=7, ce_weight=1, jitter=2)
    with pytest.raises(DataError):
        merge_shards(copy, cfg, 2)


def test_a_rank_without_a_batch_neither_crashes_nor_loses_the_set(tmp_path):
    """Attack: torchrun --nproc_per_node 2 ... generate --samples 32 (one batch of 32) failed in every
    rank with `ValueError: max() arg is an empty sequence`."""
    out = tmp_path / "x.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dsg_core",
           "generate", "--samples", "4", "--iterations", "2", "--quiet", "--json", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(SyntheticSet.load(out)) == 4
    manifest = json.loads((shard_dir(out) / "manifest.json").read_text())
    assert [s["rank"] for s in manifest["shards"]] == [0] and not (shard_dir(out) / "shard-00001.safetensors").exists()
