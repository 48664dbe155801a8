"""Sharding: shards cover every question exactly once, torchrun's environment picks the shard and the
threads, ``torchrun`` ranks of the sweep command and submitit array tasks (its local executor, as on
SLURM) write shards that merge into the unsharded table."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flowutils.analysis.shards import (ONE_DEVICE, local_device, one_device_rank, rank_threads, resolve_shard,
                                      shard_indices, submit_shards)
from flowutils.analysis.store import load_questions, load_results
from flowutils.analysis.sweep import Sweep, run_sweep
from flowutils.data import synthetic
from flowutils.toy.models import build_toy

from conftest import rendered_questions, tiny_llava_next_video
from tiny_families import tiny_config

SWEEP = dict(k=1, num_frames=4, sample_mode="all")


def _setup():
    """The same model and questions in every process (seeded)."""
    return tiny_llava_next_video(), rendered_questions(synthetic.VIDEO_TASKS, 2)


@pytest.mark.parametrize("n, num_shards", [(10, 1), (10, 3), (2, 4), (0, 2)])
def test_shards_partition_the_questions(n, num_shards):
    parts = [shard_indices(n, i, num_shards) for i in range(num_shards)]
    assert sorted(i for p in parts for i in p) == list(range(n))


def test_torchrun_environment_picks_the_shard_and_the_gpu(monkeypatch, tmp_path):
    assert resolve_shard() == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_shard() == (1, 2)
    assert local_device("cuda") == "cuda:1" and local_device("cpu") == "cpu"
    fm, questions = _setup()
    table = run_sweep(fm, questions, Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    assert list(table.sample_id.unique()) == [q.sample_id for q in questions[1::2]]


def test_a_plain_cuda_device_gets_the_ranks_or_the_current_gpus_index(monkeypatch):
    """``torch.cuda.set_device`` refuses a device without an index: the sweep's device always has one. torchrun's
    ranks take LOCAL_RANK's GPU, those of ``--processes`` (its marker) the current one, which they share."""
    import torch

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    for k in ("LOCAL_RANK", ONE_DEVICE):
        monkeypatch.delenv(k, raising=False)
    assert local_device("cuda") == "cuda:3" and local_device("cuda:1") == "cuda:1" and local_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert local_device("cuda") == "cuda:1"
    monkeypatch.setenv(ONE_DEVICE, "2")
    assert local_device("cuda") == "cuda:3" and local_device("cuda:0") == "cuda:0"


def test_only_the_ranks_of_processes_count_as_its_ranks(monkeypatch):
    env = {ONE_DEVICE: "2", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert one_device_rank(2) and not one_device_rank(4)
    for k in env:  # a user's own torchrun of 2 ranks (no marker), or over 2 nodes (1 rank here)
        monkeypatch.delenv(k)
        assert not one_device_rank(2)
        monkeypatch.setenv(k, env[k])


def _processes_with(token: str) -> list[int]:
    """Pids of the processes whose environment holds ``token`` (Linux's /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if token.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # ended, or not ours
            pass
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through Linux's /proc")
def test_an_interrupt_of_the_launcher_alone_stops_its_ranks(tmp_path):
    """A signal to the ``--processes`` launcher only (a notebook's interrupt, ``kill -INT``) reaches torchrun and
    its ranks: none is left running on its own (with the GPU's memory)."""
    import signal
    import time
    import uuid

    token = f"FLOWUTILS_TEST_LAUNCH={uuid.uuid4().hex}"
    env = {**os.environ, token.split("=")[0]: token.split("=")[1],
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    # two ranks that render a large benchmark: busy until they are stopped
    code = ("import sys; from flowutils.analysis.shards import launch_on_one_device; sys.exit(launch_on_one_device("
            f"['data', '--root', {str(tmp_path)!r}, '--n-per-task', '100000', '--size', '16'], 2))")
    launcher = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 90
        while len(_processes_with(token)) < 4 and time.monotonic() < deadline:  # launcher, torchrun, 2 ranks
            time.sleep(0.5)
        assert len(_processes_with(token)) >= 4, "the ranks did not start"
        time.sleep(3)
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=60) != 0
        deadline = time.monotonic() + 60
        while _processes_with(token) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _processes_with(token), "ranks left running after the launcher was interrupted"
    finally:
        for pid in [launcher.pid, *_processes_with(token)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_ranks_keep_torchruns_threads_or_share_the_cpus(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert rank_threads() is None  # one process: torch's default
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert rank_threads() is None  # set by torchrun (or the user): kept
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert rank_threads() == max(1, len(os.sched_getaffinity(0)) // 2)


def _sweep_command(model, bench, out, *extra):
    return ["-m", "flowutils", "sweep", "--model", str(model), "--benchmark", str(bench), "--flows", "video->last",
            "cross-frame", "--k", "1", "--frames", "4", "--sample-mode", "all", "--device", "cpu", "--out", str(out),
            *extra]


@pytest.mark.skipif(importlib.util.find_spec("torch.distributed.run") is None,
                    reason="torchrun (torch.distributed.run) is not in this torch build")
@pytest.mark.parametrize("launch", ["torchrun", "processes"])
def test_torchrun_ranks_of_the_sweep_command_merge_into_the_one_process_rows(bench, tmp_path, launch):
    """``torchrun --nproc-per-node 2 -m flowutils sweep`` (a real launcher, CPU), or the command's own
    ``--processes 2`` (the same ranks, all on the one device), against one plain process of the same command: the
    same store key, one shard file per rank, and the merged rows equal bit for bit (the one process runs on one
    thread, as torchrun's ranks do: CPU numbers depend on the thread count)."""
    model, processor = build_toy(tiny_config("llava_next_video"), seed=0)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
           "TQDM_DISABLE": "1"}
    launchers = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                              *_sweep_command(tmp_path / "model", bench, tmp_path / launch)],
                 "processes": [sys.executable, *_sweep_command(tmp_path / "model", bench, tmp_path / launch,
                                                               "--processes", "2")]}
    runs = {"one": [sys.executable, *_sweep_command(tmp_path / "model", bench, tmp_path / "one", "--threads", "1")],
            launch: launchers[launch]}
    for name, cmd in runs.items():
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{name}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    if launch == "processes":  # one line for the whole sweep after the ranks' own
        assert "all 2 processes: 80 rows from 10 question(s) in the store; no question skipped" in done.stdout
    (one,), (two,) = ([d for d in (tmp_path / name).iterdir() if d.is_dir()] for name in runs)
    assert one.name == two.name  # the number of shards is not part of the sweep
    assert sorted(f.name for f in two.glob("*.sqlite")) == ["shard-000-of-002.sqlite", "shard-001-of-002.sqlite"]
    questions = load_questions(two)
    ids = list(load_questions(one).sample_id)  # the benchmark's order
    assert len(ids) == 10 and sorted(questions.sample_id) == sorted(ids)
    for shard in (0, 1):  # each rank ran its round-robin share
        in_file = questions[questions.shard_file == f"shard-00{shard}-of-002.sqlite"].sample_id
        assert list(in_file) == ids[shard::2]
    reference, merged = load_results(one), load_results(two)
    order = {sid: i for i, sid in enumerate(ids)}
    merged = merged.iloc[merged.sample_id.map(order).argsort(kind="stable")].reset_index(drop=True)
    assert len(reference) == 10 * 2 * 4  # questions x flows x layers
    pd.testing.assert_frame_equal(merged, reference, check_exact=True)


def test_submitit_array_tasks_merge_into_the_unsharded_table(tmp_path):
    submitit = pytest.importorskip("submitit")
    import cloudpickle

    import conftest
    import tiny_families

    # test modules are not importable in the task process
    for module in (sys.modules[__name__], conftest, tiny_families):
        cloudpickle.register_pickle_by_value(module)
    out = tmp_path / "results"

    def shard_task(shard, num_shards):  # runs in a fresh process per array task
        fm, questions = _setup()
        return len(run_sweep(fm, questions, Sweep(["video->last", "cross-frame"], **SWEEP), out=out, shard=shard, num_shards=num_shards, progress=False))

    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    jobs = submit_shards(shard_task, 2, tmp_path / "jobs", executor=executor, timeout_min=5)
    counts = [job.result() for job in jobs]
    fm, questions = _setup()
    reference = run_sweep(fm, questions, Sweep(["video->last", "cross-frame"], **SWEEP), progress=False)
    (store,) = [d for d in out.iterdir() if d.is_dir()]
    assert sorted(f.name for f in store.glob("*.sqlite")) == ["shard-000-of-002.sqlite", "shard-001-of-002.sqlite"]
    assert sum(counts) == len(reference)
    merged = load_results(store)
    order = {q.sample_id: i for i, q in enumerate(questions)}
    merged = merged.iloc[merged.sample_id.map(order).argsort(kind="stable")].reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, reference)  # bit-identical numbers from other processes
