"""Sharding: shards cover every question exactly once, torchrun's environment picks the shard, and
submitit array tasks (its local executor, as on SLURM) write shards that merge into the unsharded table."""

import sys

import pandas as pd
import pytest

from flowutils.analysis.shards import local_device, resolve_shard, shard_indices, submit_shards
from flowutils.analysis.store import load_results
from flowutils.analysis.sweep import run_sweep
from flowutils.data import synthetic

from conftest import tiny_llava_next_video

KW = dict(k=1, num_frames=4, sample_mode="all", progress=False)


def _setup():
    """The same model and questions in every process (seeded)."""
    questions = []
    for task in synthetic.VIDEO_TASKS:
        for j, s in enumerate(synthetic.generate(task, 2, seed=0, split="test")):
            s.frames, s.sample_id = s.frames[::4], f"{task}/{j}"
            questions.append(s)
    return tiny_llava_next_video(), questions


@pytest.mark.parametrize("n, num_shards", [(10, 1), (10, 3), (2, 4), (0, 2)])
def test_shards_partition_the_questions(n, num_shards):
    parts = [shard_indices(n, i, num_shards) for i in range(num_shards)]
    assert sorted(i for p in parts for i in p) == list(range(n))


def test_torchrun_environment_picks_the_shard_and_the_gpu(monkeypatch, tmp_path):
    assert resolve_shard() == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_shard() == (1, 2) and resolve_shard(0, 3) == (0, 3)
    assert local_device("cuda") == "cuda:1" and local_device("cpu") == "cpu"
    fm, questions = _setup()
    table = run_sweep(fm, questions, ["video->last"], out=tmp_path, **KW)
    assert list(table.sample_id.unique()) == [q.sample_id for q in questions[1::2]]


def test_submitit_array_tasks_merge_into_the_unsharded_table(tmp_path):
    submitit = pytest.importorskip("submitit")
    import cloudpickle

    import conftest

    for module in (sys.modules[__name__], conftest):  # test modules are not importable in the task process
        cloudpickle.register_pickle_by_value(module)
    out = tmp_path / "results"

    def shard_task(shard, num_shards):  # runs in a fresh process per array task
        fm, questions = _setup()
        return len(run_sweep(fm, questions, ["video->last", "cross-frame"], out=out, shard=shard,
                             num_shards=num_shards, **KW))

    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    jobs = submit_shards(shard_task, 2, tmp_path / "jobs", executor=executor, timeout_min=5)
    counts = [job.result() for job in jobs]
    fm, questions = _setup()
    reference = run_sweep(fm, questions, ["video->last", "cross-frame"], **KW)
    (store,) = [d for d in out.iterdir() if d.is_dir()]
    assert sorted(f.name for f in store.glob("*.sqlite")) == ["shard-000-of-002.sqlite", "shard-001-of-002.sqlite"]
    assert sum(counts) == len(reference)
    merged = load_results(store)
    order = {q.sample_id: i for i, q in enumerate(questions)}
    merged = merged.iloc[merged.sample_id.map(order).argsort(kind="stable")].reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, reference)  # bit-identical numbers from other processes
