"""The result store: crash safety under SIGKILL, resume without recomputation, result-set keys, shards merged."""

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from flowutils.analysis import runner
from flowutils.paper.pathways import run_pathways
from flowutils.analysis.store import StoreError, load_questions, load_results, load_skipped, skip_summary
from flowutils.analysis.sweep import Sweep, run_sweep
from flowutils.data import synthetic

from conftest import rendered_questions, tiny_llava_next_video

SWEEP = dict(k=1, num_frames=4, sample_mode="all")


@pytest.fixture(scope="module")
def fm():
    return tiny_llava_next_video()


@pytest.fixture(scope="module")
def questions():
    """40 questions (8 per video task), 4 frames each, with their own ids."""
    return rendered_questions(synthetic.VIDEO_TASKS, 8)


FLOWS = ["video->last", "cross-frame"]
EFFECTIVE = {"cross-frame": (0, 1), "video->question": (1, 2), "question->last": (2, 3)}


def sweep(fm, questions, out=None):
    return run_sweep(fm, questions, Sweep(FLOWS, **SWEEP), out=out, progress=False)


def table3(fm, questions, out=None):
    return run_pathways(fm, questions, EFFECTIVE, seeds=[0, 1], num_frames=4, progress=False, out=out)


def _child(run, questions, out, started):
    """Run the analysis ``run`` with the fixture's model, built again from its seed (the same weights); ``started``
    is set when the second question begins: the store is open and the first question committed by then, so every
    kill after it leaves progress however fast this machine is."""
    torch.set_num_threads(1)  # the same thread count as the reference: bit-identical numbers
    fm = tiny_llava_next_video()
    question = runner._question
    calls = []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            started.set()
        return question(*args, **kwargs)

    runner._question = signalling
    run(fm, questions, out)
    os._exit(0)


@pytest.fixture
def one_thread():
    """Bit-identical numbers need the same thread count in the children (one: see _child) and here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def kill_and_resume(run, fm, questions, tmp_path, kills: int):
    """``kills`` SIGKILLs at random points of the analysis ``run`` in a child process, each followed by a resume;
    the final table equals an uninterrupted in-memory run row for row, bit for bit. Returns the final table."""
    reference = run(fm, questions)  # one thread, as the children (see one_thread)
    t = time.perf_counter()
    run(fm, questions[:8])
    per_question = (time.perf_counter() - t) / 8
    # children start from a forkserver that imported torch and flowutils first (no import time per child), not
    # from a fork of this process: a fork inherits whatever locks the test session's other threads hold
    # (OpenMP's pool, earlier tests' helpers), and in full `make test` runs a child now and then hung before its
    # second question
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "flowutils.analysis.sweep", "flowutils.paper.pathways",
                                "conftest"])
    rng = random.Random(0)
    killed_running = 0
    for i in range(kills):
        started = ctx.Event()
        child = ctx.Process(target=_child, args=(run, questions, tmp_path, started))
        child.start()
        if i % 5 == 4:  # now and then while the store is being opened
            time.sleep(rng.uniform(0, 0.2))
        else:  # else at a random point of the questions' work, commits included
            assert started.wait(60)
            time.sleep(rng.uniform(0, per_question))
        if child.is_alive():
            killed_running += 1
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode in (0, -signal.SIGKILL)
    assert killed_running >= kills * 3 // 4  # the kills did land in running analyses
    print(f"{killed_running} kills in running analyses")
    stored = load_questions(next(tmp_path.glob("*/")))
    assert 0 < len(stored) <= len(questions)  # the kills landed after commits (on a fast machine, all of them)
    final = run(fm, questions, tmp_path)  # this resume finishes what is left
    pd.testing.assert_frame_equal(final, reference)
    assert load_questions(final.attrs["store"]).sample_id.is_unique
    return final


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_table(fm, questions, tmp_path, one_thread):
    """20 SIGKILLs at random points of a sweep, each followed by a resume: the uninterrupted table."""
    final = kill_and_resume(sweep, fm, questions, tmp_path, kills=20)
    assert not final.duplicated(["sample_id", "flow", "layer"]).any()


def test_a_killed_table3_run_resumes_to_the_uninterrupted_table(fm, questions, tmp_path, one_thread):
    """Table 3 (run_pathways) goes through the same runner and store: 10 SIGKILLs, then the uninterrupted table."""
    final = kill_and_resume(table3, fm, questions, tmp_path, kills=10)
    assert len(final) == len(questions) * 4 and not final.duplicated(["sample_id", "condition", "seed"]).any()
    assert final.attrs["skipped"] == []


def test_a_rerun_computes_nothing_and_returns_the_same_table(fm, questions, tmp_path, monkeypatch):
    first = run_sweep(fm, questions[:4], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    monkeypatch.setattr(runner, "_question", lambda *a, **k: pytest.fail("a finished question was recomputed"))
    again = run_sweep(fm, questions[:4], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, first)
    pd.testing.assert_frame_equal(load_results(first.attrs["store"]), first)  # the loader alone reads the same


def test_every_parameter_and_the_weights_key_their_own_result_set(fm, questions, tmp_path, monkeypatch):
    dirs = {run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False).attrs["store"]}
    variants = [dict(k=3), dict(style="inverse"), dict(num_frames=2), dict(backend="reference"),
                dict(sample_mode="correct"), dict(layers=[0, 1])]
    for change in variants:
        dirs.add(run_sweep(fm, questions[:1], Sweep(["video->last"], **{**SWEEP, **change}), out=tmp_path,
                           progress=False).attrs["store"])
    dirs.add(run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False,
                       benchmark={"manifest": "x"}).attrs["store"])
    dirs.add(run_sweep(fm, questions[:1], Sweep(["cross-frame"], **SWEEP), out=tmp_path, progress=False).attrs["store"])
    with monkeypatch.context() as m:  # an edited flowutils (same version string) computes anew
        m.setattr(runner, "source_sha256", lambda: "edited")
        dirs.add(run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False).attrs["store"])
    # another model with the same name (other random weights) must not share the results
    other = tiny_llava_next_video(seed=1)
    table = run_sweep(other, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    dirs.add(table.attrs["store"])
    assert len(dirs) == len(variants) + 5
    assert (table.p_pred_baseline != run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), progress=False).p_pred_baseline).all()


def test_changed_question_content_under_a_finished_id_is_an_error(fm, questions, tmp_path):
    run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    changed = synthetic.SyntheticSample(questions[1].task, questions[1].frames, questions[1].question,
                                        questions[1].candidates, questions[1].answer)
    changed.sample_id = questions[0].sample_id
    with pytest.raises(ValueError, match="stored with other content"):
        run_sweep(fm, [changed], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)


def test_shards_merge_into_the_unsharded_table(fm, questions, tmp_path):
    reference = run_sweep(fm, questions[:7], Sweep(["video->last"], **SWEEP), progress=False)
    parts = [run_sweep(fm, questions[:7], Sweep(["video->last"], **SWEEP), out=tmp_path, shard=i, num_shards=3, progress=False) for i in range(3)]
    assert sorted(sum((list(p.sample_id.unique()) for p in parts), [])) == sorted(reference.sample_id.unique())
    store = parts[0].attrs["store"]
    assert len(list(Path(store).glob("shard-*.sqlite"))) == 3
    # an unsharded rerun finds every question in the shard files and returns the full table
    pd.testing.assert_frame_equal(run_sweep(fm, questions[:7], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False), reference)
    # reading some questions only gives the whole table's rows of those questions
    every = load_results(store)
    some = {q.sample_id for q in questions[1:7:2]}
    pd.testing.assert_frame_equal(load_results(store, sample_ids=some),
                                  every[every.sample_id.isin(some)].reset_index(drop=True))


def test_a_corrupt_store_file_is_a_clear_error(fm, questions, tmp_path):
    table = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    shard = next(Path(table.attrs["store"]).glob("shard-*.sqlite"))
    shard.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=shard.name):
        run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)


def test_stored_rows_are_plain_sqlite(fm, questions, tmp_path):
    """Another tool (sqlite3 here, DuckDB alike) reads the same numbers the sweep returned."""
    table = run_sweep(fm, questions[:2], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    shard = next(Path(table.attrs["store"]).glob("shard-*.sqlite"))
    with sqlite3.connect(shard) as con:
        values = [r[0] for r in con.execute("SELECT p_pred_knockout FROM rows ORDER BY seq")]
    assert values == list(table.p_pred_knockout)
    assert skip_summary(load_skipped(table.attrs["store"])) == "no question skipped"


# ------------------------------------------------------------------ the key is the model that ran; one writer
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tiny_families import tiny_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny_checkpoint("llava_next_video", path)
    return path


def _one(fm, questions, out):
    return run_sweep(fm, questions[:2], Sweep(["video->last"], **SWEEP), out=out, progress=False)


@pytest.mark.parametrize("edit", ["no_grad", "data"])
def test_a_loaded_model_changed_in_memory_keys_its_own_result_set(checkpoint, questions, tmp_path, edit):
    """The key hashes the weights as they are, not the files they came from: an edit after loading (through
    ``.data`` too, which no version counter sees) does not read the clean model's numbers back."""
    from flowutils.models import load

    first = load(checkpoint)
    clean = _one(first, questions, tmp_path)
    for same in (first, load(checkpoint)):  # run once (armed by the engine) or loaded again: the same result set
        assert _one(same, questions, tmp_path).attrs["store"] == clean.attrs["store"]
    fm = load(checkpoint)
    weight = fm.lm_head.weight
    if edit == "data":
        weight.data.mul_(3)
    else:
        with torch.no_grad():
            weight.mul_(3)
    changed = _one(fm, questions, tmp_path)
    assert changed.attrs["store"] != clean.attrs["store"]
    assert (changed.p_pred_baseline != clean.p_pred_baseline).all()
    pd.testing.assert_frame_equal(changed.drop(columns="model"), _one(fm, questions, None).drop(columns="model"))


def test_config_overrides_key_their_own_result_set(checkpoint, questions, tmp_path):
    from flowutils.models import load

    clean = _one(load(checkpoint), questions, tmp_path)
    other = _one(load(checkpoint, config_overrides={"vision_feature_layer": -1}), questions, tmp_path)
    assert other.attrs["store"] != clean.attrs["store"]
    assert (other.p_pred_baseline != clean.p_pred_baseline).any()


HOLD = """
import sys, time
from flowutils.analysis.store import ResultStore
store = ResultStore(sys.argv[1], {"analysis": "held"})
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def test_a_second_writer_of_one_shard_is_refused_naming_the_first(tmp_path):
    """Two processes on one shard (the same sweep started twice, torchrun ranks given one --shard) would store
    every row twice: the second is refused, naming the first's pid; once the first is gone the shard opens."""
    import subprocess
    import sys

    from flowutils.analysis.store import ResultStore

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match=rf"shard 0 of 1 .* being written by pid {first.pid} on "):
            ResultStore(tmp_path, {"analysis": "held"})
    finally:
        first.communicate("\n", timeout=60)
    ResultStore(tmp_path, {"analysis": "held"}).close()


def test_rows_stored_twice_are_refused_on_read(fm, questions, tmp_path):
    table = run_sweep(fm, questions[:2], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    shard = next(Path(table.attrs["store"]).glob("shard-*.sqlite"))
    with sqlite3.connect(shard) as con:  # what two writers of one file left behind
        columns = [r[1] for r in con.execute("PRAGMA table_info(rows)") if r[1] != "seq"]
        names = ", ".join(f'"{c}"' for c in columns)
        con.execute(f"INSERT INTO rows ({names}) SELECT {names} FROM rows WHERE sample_id = ?",
                    (questions[0].sample_id,))
    with pytest.raises(StoreError, match=rf"{shard.name}: 1 question\(s\) stored with more or fewer rows.*"
                                         rf"{questions[0].sample_id}"):
        load_results(table.attrs["store"])


def test_load_results_on_the_out_folder_lists_its_result_sets(fm, questions, tmp_path):
    a = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    b = run_sweep(fm, questions[:1], Sweep(["video->last"], **{**SWEEP, "k": 2}), out=tmp_path, progress=False)
    with pytest.raises(StoreError, match="results directory") as err:
        load_results(tmp_path)
    for table in (a, b):
        assert table.attrs["store"] in str(err.value)
    assert "k=1" in str(err.value) and "k=2" in str(err.value)


def test_an_unreadable_params_json_is_named(fm, questions, tmp_path):
    table = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    params = Path(table.attrs["store"]) / "params.json"
    params.write_text("{garbage")
    for call in (lambda: load_results(params.parent),
                 lambda: run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)):
        with pytest.raises(StoreError, match=rf"{params}: not a readable params.json"):
            call()


def test_offloaded_weights_are_refused_by_the_store():
    """Meta tensors (weights offloaded to disk) have no values to key the results by."""
    from flowutils.analysis.store import state_sha256

    with pytest.raises(StoreError, match=r"is offloaded \(a meta tensor\)"):
        state_sha256(torch.nn.Linear(2, 2, device="meta"))


@pytest.mark.parametrize("corrupt", ["shard-000-of-001.sqlite", "shard-001-of-002.sqlite"])
def test_a_run_that_fails_releases_its_shard_lock(fm, questions, tmp_path, corrupt):
    """A store that fails to open (its own file) or to resume (another shard's) releases its lock at once: a
    notebook keeps the traceback, and its next run in the same process must not find the shard held."""
    table = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    bad = Path(table.attrs["store"]) / corrupt
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=bad.name) as kept:  # `kept` holds the traceback, as IPython would
        run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    bad.unlink()
    again = run_sweep(fm, questions[:1], Sweep(["video->last"], **SWEEP), out=tmp_path, progress=False)
    assert kept.value is not None and len(again)
