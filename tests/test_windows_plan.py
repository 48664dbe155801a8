import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from flowutils.engine.cuts import compact_cut, prepare_cuts, reference_cut
from flowutils.knockout import flows, windows
from flowutils.knockout.plan import FlatBlocks, KnockoutPlan, RowBlocks
from flowutils.inputs.layout import TokenLayout


def test_window_styles():
    assert windows.window(0, 9, 32) == tuple(range(0, 5))
    assert windows.window(10, 9, 32) == tuple(range(6, 15))
    assert windows.window(31, 9, 32) == tuple(range(27, 32))
    assert windows.window(10, 9, 32, "inverse") == tuple(i for i in range(32) if not 6 <= i <= 14)
    assert windows.window(10, 9, 32, "top_down") == tuple(range(10, 32))
    assert windows.window(10, 9, 32, "bottom_up") == tuple(range(0, 11))
    assert windows.scaled_window_size(32) == 9 and windows.scaled_window_size(12) == 3
    with pytest.raises(ValueError, match="valid"):
        windows.window(3, 9, 32, "diagonal")


def small_layout(frames=3, per_frame=2, n_sys=2, n_q=3, opts=(2, 2), n_suffix=2, answer=1):
    pos = n_sys
    video = range(pos, pos + frames * per_frame)
    pos = video.stop
    nonopt = list(range(pos, pos + n_q)); pos += n_q
    options = []
    for o in opts:
        options.append(list(range(pos, pos + o))); pos += o
    suffix = list(range(pos, pos + n_suffix)); pos += n_suffix
    return TokenLayout(n=pos, frames=[range(video.start + f * per_frame, video.start + (f + 1) * per_frame)
                                      for f in range(frames)], video_span=video, system=list(range(n_sys)),
                       non_option_question=nonopt, options=options, separators=[], suffix=suffix,
                       answer_index=answer)


def brute_force_cut(layout, flow):
    """Set of (target, source) pairs by definition, from positions alone."""
    if flow == flows.CROSS_FRAME:
        frame_of = {p: f for f, r in enumerate(layout.frames) for p in r}
        return {(t, s) for t in frame_of for s in frame_of if frame_of[s] < frame_of[t]}
    src, tgt = flows.parse_flow(flow)
    return set(itertools.product(layout.group(tgt), layout.group(src)))


@pytest.mark.parametrize("flow", [f for fam in flows.FLOW_SETS.values() for f in fam])
def test_dense_mask_matches_definition(flow):
    lay = small_layout()
    plan = KnockoutPlan.from_flows(lay, [flow], [1])
    cut = {tuple(x) for x in plan.dense(1, lay.n).nonzero().tolist()}
    assert cut == brute_force_cut(lay, flow)
    assert plan.dense(0, lay.n).sum() == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([f for fam in flows.FLOW_SETS.values() for f in fam]), min_size=1, max_size=4),
       st.lists(st.integers(0, 5), min_size=1, max_size=6), st.integers(1, 4), st.integers(1, 3))
def test_attention_edges_brute_force(flow_list, layers, frames, per_frame):
    lay = small_layout(frames=frames, per_frame=per_frame)
    n_layers = 6
    plan = KnockoutPlan.from_flows(lay, flow_list, layers)
    cut = set().union(*(brute_force_cut(lay, f) for f in flow_list))
    kept = 0
    for l in range(n_layers):
        for q in range(lay.n):
            for k in range(q + 1):
                kept += not (l in set(layers) and (q, k) in cut)
    assert plan.attention_edges(lay.n, n_layers) == kept


def test_plan_first_target_and_layer():
    lay = small_layout()
    plan = KnockoutPlan.from_flows(lay, ["question->last"], [3, 4])
    assert plan.first_target == lay.n - 1 and plan.first_layer == 3
    assert KnockoutPlan().is_empty and KnockoutPlan.from_flows(lay, ["video->last"], []).is_empty


def test_cut_rows_past_the_prompt_follow_the_last_row():
    lay = small_layout()
    plan = KnockoutPlan.from_flows(lay, ["video->last"], [0])
    m = reference_cut(plan, 0, q_start=lay.n - 1, q_len=3, k_len=lay.n + 2, n_prompt=lay.n)
    assert m.shape == (3, lay.n + 2)
    assert torch.equal(m[1, :lay.n], m[0, :lay.n]) and torch.equal(m[2, :lay.n], m[0, :lay.n])
    assert not m[:, lay.n:].any()


def test_unknown_group_is_a_clear_error():
    with pytest.raises(ValueError, match="valid"):
        flows.parse_flow("audio->last")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_compact_cut_equals_the_dense_cut(data):
    """The fast backend's class tables give exactly the edges the blocks define (also past 62 blocks,
    where the classes are built in several rounds, and for decode rows and keys past the prompt)."""
    n = data.draw(st.integers(1, 24), label="n")
    index = st.lists(st.integers(0, n - 1), min_size=0, max_size=n, unique=True).map(torch.tensor)
    n_blocks = data.draw(st.sampled_from([1, 2, 5, 70]), label="blocks")
    blocks = [(data.draw(index), data.draw(index)) for _ in range(n_blocks)]
    plan = KnockoutPlan({0: blocks})
    if plan.is_empty:
        assert compact_cut(plan, 0, n) is None
        return
    cut = compact_cut(plan, 0, n)
    q_start = data.draw(st.integers(0, n + 2), label="q_start")
    q_len = data.draw(st.integers(1, n + 3 - q_start), label="q_len")
    k_len = data.draw(st.integers(max(1, q_start + q_len - 3), n + 3), label="k_len")
    assert torch.equal(cut.mask(q_start, q_len, k_len), reference_cut(plan, 0, q_start, q_len, k_len, n))
    dense = plan.dense(0, n)
    whole = (dense | ~torch.ones(n, n, dtype=torch.bool).tril()).all(-1).any()
    assert cut.whole_rows or not whole  # the flag may only err on the safe side
    assert cut.whole_rows == bool(dense[:, 0].any())


def test_one_row_blocks_among_wide_ones_equal_the_dense_cut():
    """A random plan's one-query blocks (scattered together) beside wide blocks (one class product each), with
    repeated and overlapping rows: the same edges as the dense reference."""
    n, rng = 40, np.random.default_rng(0)
    rows = [(torch.tensor([q]), torch.from_numpy(rng.choice(q + 1, size=rng.integers(1, q + 2), replace=False)))
            for q in rng.integers(0, n, size=60)]
    wide = [(torch.arange(10, 20), torch.arange(0, 10)), (torch.arange(30, 40), torch.tensor([2, 5, 31]))]
    plan = KnockoutPlan({0: rows[:30] + wide + rows[30:]})
    assert torch.equal(compact_cut(plan, 0, n).mask(0, n + 2, n + 2), reference_cut(plan, 0, 0, n + 2, n + 2, n))


def test_plans_of_one_flow_share_their_compact_cut():
    lay = small_layout()
    shared = {}
    a, b = (KnockoutPlan.from_flows(lay, ["cross-frame"], w) for w in ([0, 1], [1, 2]))
    prepare_cuts(a, lay.n, shared=shared)
    prepare_cuts(b, lay.n, shared=shared)
    cuts = {id(v) for v in shared.values() if not isinstance(v, tuple)}  # by content; by list: (list, cut)
    assert len(cuts) == 1 and compact_cut(a, 1, lay.n) is compact_cut(b, 1, lay.n)
    assert a.cut_layers == {0, 1} and compact_cut(b, 0, lay.n) is None
    # a sweep's plans of one flow share one block list (found once): the same cut, and the same as built anew
    blocks = a.blocks[0]
    c, d = (KnockoutPlan.from_blocks(lay, blocks, w) for w in ([0], [2]))
    for plan in (c, d):
        prepare_cuts(plan, lay.n, shared=shared)
    assert compact_cut(c, 0, lay.n) is compact_cut(d, 2, lay.n) is compact_cut(a, 0, lay.n)
    fresh = KnockoutPlan.from_flows(lay, ["cross-frame"], [0])
    assert torch.equal(compact_cut(c, 0, lay.n).mask(0, lay.n, lay.n), compact_cut(fresh, 0, lay.n).mask(0, lay.n, lay.n))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_row_blocks_carry_what_their_blocks_read_block_by_block(data):
    """A random plan's :class:`RowBlocks` (arrays, read by the engine at once) against a plain list of the same
    one-query blocks built row by row: the same arrays, digests, first target, compact cut and dense cut."""
    n = data.draw(st.integers(1, 30), label="n")
    pairs = sorted(data.draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80), label="pairs"))
    rows = RowBlocks(np.array([q for q, _ in pairs], np.int64), np.array([k for _, k in pairs], np.int64))
    plain = [(torch.tensor([q]), torch.tensor([k for p, k in pairs if p == q])) for q in sorted({q for q, _ in pairs})]
    assert len(rows) == len(plain) and all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(rows, plain))
    read = FlatBlocks.read(plain)
    assert all(np.array_equal(getattr(rows.flat, f), getattr(read, f))
               for f in ("target_counts", "source_counts", "targets", "sources"))
    a, b = KnockoutPlan({0: rows, 2: rows}), KnockoutPlan({0: plain, 2: plain})
    assert a.cut_digests == b.cut_digests and a.first_target == b.first_target and a.cut_layers == b.cut_layers
    assert a.first_target == (pairs[0][0] if pairs else None) and a.cut_layers == ({0, 2} if pairs else set())
    assert a.problems(3, n) == b.problems(3, n) == []
    assert a.problems(3, n - 1) == b.problems(3, n - 1)
    assert bool(a.problems(3, n - 1)) == any(n - 1 in pair for pair in pairs)
    if pairs:
        assert torch.equal(compact_cut(a, 2, n).mask(0, n + 2, n + 2), reference_cut(b, 2, 0, n + 2, n + 2, n))
    assert torch.equal(a.dense(0, n), b.dense(0, n))


def test_row_blocks_want_their_pairs_sorted_by_query():
    with pytest.raises(ValueError, match="sorted by query"):
        RowBlocks(np.array([3, 1]), np.array([0, 0]))
    with pytest.raises(ValueError, match="as long as each other"):
        RowBlocks(np.array([1, 3]), np.array([0]))


def test_a_large_random_plan_equals_the_dense_cut():
    """Hundreds of one-query rows (several rounds of 62 classes each way) at a fixed share, as Table 3 draws them:
    the compact cut and its digest against the dense reference and a plain list of the same blocks."""
    n, rng = 300, np.random.default_rng(3)
    q, k = np.tril_indices(n)
    pick = np.sort(rng.choice(len(q), size=int(0.4 * len(q)), replace=False))
    rows = RowBlocks(q[pick], k[pick])
    plan = KnockoutPlan({0: rows})
    dense = torch.zeros(n, n, dtype=torch.bool)
    dense[torch.from_numpy(q[pick]), torch.from_numpy(k[pick])] = True
    assert torch.equal(plan.dense(0, n), dense)
    assert torch.equal(compact_cut(plan, 0, n).mask(0, n + 1, n + 1)[:n, :n], dense)
    assert plan.cut_digests == KnockoutPlan({0: list(rows)}).cut_digests


def test_a_shared_cut_dict_outlives_the_plans_that_filled_it():
    """Throw-away plans of several flows through one ``shared``: a freed block list's id, taken by a new list of
    another flow, must not give the new plan the old cut (each mask against the dense reference)."""
    lay = small_layout()
    names = [f for name in flows.FLOW_SETS for f in flows.flow_set(name)]
    shared = {}
    for i in range(60):
        plan = KnockoutPlan.from_flows(lay, [names[i % len(names)]], [0])
        prepare_cuts(plan, lay.n, shared=shared)
        assert torch.equal(compact_cut(plan, 0, lay.n).mask(0, lay.n, lay.n), reference_cut(plan, 0, 0, lay.n, lay.n, lay.n))


def _check_runs(plan: KnockoutPlan, n: int, q_start: int, q_len: int):
    """``CompactCut.runs`` against a brute-force loop over the dense cut: each run's queries keep exactly
    the keys that causal attention less the cut leaves; None only where a query loses a key of a stretch of
    identical rows that ends at it (a run is never plain causal there). Returns the runs."""
    runs = compact_cut(plan, 0, n).runs(q_start, q_len)
    dense = plan.dense(0, n)
    if runs is None:
        assert any(dense[i, j] and all(torch.equal(dense[m], dense[i]) for m in range(j, i))
                   for i in range(q_start, q_start + q_len) for j in range(q_start, i + 1))
        return None
    assert [a for a, _, _ in runs] + [q_start + q_len] == [q_start] + [b for _, b, _ in runs]
    for a, b, before in runs:
        for i in range(a, b):
            assert set(before.tolist()) | set(range(a, i + 1)) == {j for j in range(i + 1) if not dense[i, j]}
    return runs


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_compact_cut_runs_equal_the_dense_cut(data):
    n = data.draw(st.integers(1, 16), label="n")
    index = st.lists(st.integers(0, n - 1), min_size=0, max_size=n, unique=True).map(torch.tensor)
    blocks = [(data.draw(index), data.draw(index)) for _ in range(data.draw(st.sampled_from([1, 2, 5]), label="blocks"))]
    plan = KnockoutPlan({0: blocks})
    if plan.is_empty:
        return
    q_start = data.draw(st.integers(0, n - 1), label="q_start")
    _check_runs(plan, n, q_start, data.draw(st.integers(1, n - q_start), label="q_len"))


@pytest.mark.parametrize("flow", [f for fam in flows.FLOW_SETS.values() for f in fam])
def test_runs_of_the_paper_flows(flow):
    """The paper's flows as runs; the cross-frame cut is one run per frame, each keeping the system prompt."""
    lay = small_layout(frames=4, per_frame=3)
    plan = KnockoutPlan.from_flows(lay, [flow], [0])
    t0 = plan.first_target
    runs = _check_runs(plan, lay.n, t0, lay.n - t0)
    if flow == "cross-frame":
        assert [(a, b) for a, b, _ in runs][:3] == [(f.start, f.stop) for f in lay.frames[1:]]
        assert all(before.tolist() == list(lay.system) for _, _, before in runs[:3])
