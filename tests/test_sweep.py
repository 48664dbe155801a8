from pathlib import Path

import pandas as pd
import pytest
import torch

from flowutils.knockout import flows, windows
from flowutils.engine import knockout_logits, run_baseline
from flowutils.knockout.plan import KnockoutPlan
from flowutils.analysis.sweep import Sweep, run_sweep, summarize, sweep_plans

FLOWS = ["cross-frame", "video->last", "true_option->last"]


def test_rows_match_an_independent_reference_run(tiny, samples):
    table = run_sweep(tiny, samples[:2], Sweep(FLOWS, k=3, sample_mode="all", num_frames=4), progress=False)
    L = tiny.n_layers
    assert len(table) == 2 * len(FLOWS) * L
    for i, s in enumerate(samples[:2]):
        p = tiny.prepare_sample(s, 4)
        base = knockout_logits(tiny, p, [KnockoutPlan()], "reference")[0].softmax(-1)
        pred = int(base.argmax())
        for flow in FLOWS:
            plans = [KnockoutPlan.from_flows(p.layout, [flow], w) for _, w in windows.layer_windows(L, 3)]
            ref = knockout_logits(tiny, p, plans, "reference").softmax(-1)
            rows = table[(table.sample_id == f"{s.task}/{i}") & (table.flow == flows.flow_label(flow))]
            assert list(rows.layer) == list(range(L))
            assert abs(rows.p_pred_knockout.to_numpy() - ref[:, pred].numpy()).max() <= 1e-4
            expected = 100 * (ref[:, pred] - base[pred]) / base[pred]
            assert abs(rows.relative_change_pct.to_numpy() - expected.numpy()).max() <= 1e-2
            assert (rows.correct_knockout.to_numpy() == (ref.argmax(-1) == p.gold_id).numpy()).all()
            # the saturation-robust metric, from the reference logits by a plain loop over the options
            ref_logits = knockout_logits(tiny, p, plans, "reference")
            for row, lg in zip(rows.itertuples(), ref_logits):
                false = max(float(lg[o]) for j, o in enumerate(p.option_ids) if j != p.gold_index)
                assert abs(row.logit_diff_knockout - (float(lg[p.gold_id]) - false)) <= 1e-3


def test_rows_reduced_where_the_logits_are_equal_the_hosts_formulas_bit_for_bit(tiny, samples):
    """The rows' columns are reduced where the logits are, batch by batch (``knockout_logits(reduce=...)``); on the
    CPU they equal, exactly, the same formulas applied on the host to every plan's logits at once, with list
    indexing (the computation before the reduction moved)."""
    table = run_sweep(tiny, samples[:2], Sweep(FLOWS, k=3, sample_mode="all", num_frames=4), progress=False)
    for i, s in enumerate(samples[:2]):
        p = tiny.prepare_sample(s, 4)
        base = run_baseline(tiny, p).logits
        plans = sweep_plans(p.layout, FLOWS, tiny.n_layers, 3)
        logits = knockout_logits(tiny, p, plans, "fast")
        probs, p_base, pred = logits.softmax(-1), torch.softmax(base, -1), int(base.argmax())
        letters = logits[:, list(p.option_ids)]
        false = [j for j in range(len(p.option_ids)) if j != p.gold_index]
        diff = letters[:, p.gold_index] - letters[:, false].max(-1).values
        rows = table[table.sample_id == f"{s.task}/{i}"]
        assert rows.p_pred_knockout.tolist() == probs[:, pred].tolist()
        assert rows.p_gold_knockout.tolist() == probs[:, p.gold_id].tolist()
        change = ((probs[:, pred] - p_base[pred]) / p_base[pred]).tolist()
        assert rows.relative_change_pct.tolist() == [100 * x for x in change]
        assert rows.logit_diff_knockout.tolist() == diff.tolist()
        assert rows.correct_knockout.tolist() == (probs.argmax(-1) == p.gold_id).tolist()


def test_a_sweeps_plans_of_one_flow_share_one_block_list(tiny, samples):
    """``sweep_plans`` finds each flow's blocks once: all windows of a flow hold one list (so its cut is built once),
    with the edges of a plan built for that window alone."""
    p = tiny.prepare_sample(samples[0], 4)
    plans = sweep_plans(p.layout, FLOWS, tiny.n_layers, 3)
    for flow in FLOWS:
        mine = [q for q in plans if q.label["flow"] == flow]
        assert len(mine) == tiny.n_layers and len({id(b) for q in mine for b in q.blocks.values()}) == 1
        for q in mine:
            alone = KnockoutPlan.from_flows(p.layout, [flow], sorted(q.blocks))
            assert all(torch.equal(q.dense(l, p.layout.n), alone.dense(l, p.layout.n)) for l in q.blocks)


def test_sample_modes_partition_the_questions(tiny, samples):
    kw = dict(k=3, num_frames=4)
    by_mode = {m: run_sweep(tiny, samples, Sweep(["video->last"], sample_mode=m, **kw), progress=False) for m in ("all", "correct", "wrong")}
    ids = {m: set(t.sample_id) if len(t) else set() for m, t in by_mode.items()}
    assert ids["correct"] | ids["wrong"] == ids["all"] and not ids["correct"] & ids["wrong"]
    assert by_mode["all"].groupby("sample_id").correct_baseline.first().sum() == len(ids["correct"])


def test_resume_skips_done_questions_and_gives_the_same_table(tiny, samples, tmp_path):
    kw = dict(k=3, num_frames=4, sample_mode="all")
    first = run_sweep(tiny, samples[:2], Sweep(["last->last"], **kw), out=tmp_path, progress=False)
    store = Path(first.attrs["store"])
    resumed = run_sweep(tiny, samples[:3], Sweep(["last->last"], **kw), out=tmp_path, progress=False)
    assert resumed.attrs["store"] == str(store)
    fresh = run_sweep(tiny, samples[:3], Sweep(["last->last"], **kw), progress=False)  # in memory, no store
    pd.testing.assert_frame_equal(resumed, fresh)
    again = run_sweep(tiny, samples[:3], Sweep(["last->last"], **kw), out=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, fresh)
    # another window size is another result set, not an error and not a mix
    other = run_sweep(tiny, samples[:1], Sweep(["last->last"], **{**kw, "k": 1}), out=tmp_path, progress=False)
    assert other.attrs["store"] != str(store) and set(other.k) == {1}
    assert len(list(store.glob("*.sqlite"))) == 1


def test_summarize_matches_a_loop():
    t = pd.DataFrame({"sample_id": ["a", "b", "a", "b"], "flow": ["f"] * 4, "layer": [0, 0, 1, 1],
                      "relative_change_pct": [-10.0, -30.0, 5.0, 0.0], "correct_baseline": [True, True, True, True],
                      "correct_knockout": [True, False, True, True]})
    s = summarize(t).set_index("layer")
    assert s.loc[0, "relative_change_pct"] == -20.0 and s.loc[1, "relative_change_pct"] == 2.5
    assert s.loc[0, "accuracy_knockout"] == 50.0 and s.loc[1, "accuracy_knockout"] == 100.0


def test_sweep_tables_concatenate(tiny, samples, tmp_path):
    """Notebooks concatenate the tables of two models; their attrs must not break pandas.concat."""
    kw = dict(k=3, num_frames=4, sample_mode="all")
    a = run_sweep(tiny, samples[:1], Sweep(["last->last"], **kw), progress=False)
    b = run_sweep(tiny, samples[1:2], Sweep(["last->last"], **kw), out=tmp_path, progress=False)
    assert len(pd.concat([a, b], ignore_index=True)) == len(a) + len(b)
