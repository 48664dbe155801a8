import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import tiny_llava_next_video, unmodified_logits
from flowutils.knockout import flows, windows
from flowutils.engine import BACKENDS, SETTINGS, compile_layers, generate, knockout_logits, knockout_state, run_baseline
from flowutils.engine.cuts import prepare_cuts
from flowutils.knockout.plan import KnockoutPlan

# "last->question": edges above the causal diagonal (the question and the later last position), which cut nothing a
# causal model computes; parse_flow refuses such a flow, so _plan spells it out as a block
NON_CAUSAL = "last->question"
ALL_FLOWS = [f for fam in flows.FLOW_SETS.values() for f in fam] + ["system->video", "video->video", NON_CAUSAL]


def _plan(layout, flow_list, layers) -> KnockoutPlan:
    blocks = [b for f in flow_list for b in ([(torch.tensor(layout.question), torch.tensor(layout.last))]
                                             if f == NON_CAUSAL else flows.flow_blocks(f, layout))]
    return KnockoutPlan({l: blocks for l in layers})


def test_empty_plan_equals_unmodified_model(tiny, samples):
    for s in samples[:3]:
        p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
        ref = unmodified_logits(tiny, p)[0, -1]
        for backend in ("reference", "fast"):
            out = knockout_logits(tiny, p, [KnockoutPlan()], backend)[0]
            assert (out - ref).abs().max() <= 1e-5, backend
        with torch.no_grad():
            full = tiny.forward(p, knockout_state(tiny, p, backend="reference", plans=[KnockoutPlan()])).logits
        assert (full - unmodified_logits(tiny, p)).abs().max() <= 1e-5  # every position, not just the last


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_equals_reference_on_random_plans(tiny, samples, data):
    s = samples[data.draw(st.integers(0, len(samples) - 1), label="sample")]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    L = tiny.n_layers
    plans = []
    for _ in range(data.draw(st.integers(1, 5), label="n_plans")):
        flow_list = data.draw(st.lists(st.sampled_from(ALL_FLOWS), min_size=1, max_size=3), label="flows")
        style = data.draw(st.sampled_from(windows.STYLES), label="style")
        layers = windows.window(data.draw(st.integers(0, L - 1)), data.draw(st.integers(1, L)), L, style)
        plans.append(_plan(p.layout, flow_list, layers))
    batch = data.draw(st.integers(1, 4), label="batch")
    ref = knockout_logits(tiny, p, plans, "reference")
    fast = knockout_logits(tiny, p, plans, "fast", batch_size=batch)
    assert (ref - fast).abs().max() <= 1e-4


def test_decisive_edge_changes_output_unreachable_does_not(tiny, samples):
    s = samples[3]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    lay, L = p.layout, tiny.n_layers
    base = run_baseline(tiny, p).probs
    # the last position sees only itself in every layer: all context is cut
    everything = list(range(lay.n - 1))
    decisive = KnockoutPlan({l: [(torch.tensor(lay.last), torch.tensor(everything))] for l in range(L)})
    # edges from later positions to earlier ones are never causal: cutting them changes nothing
    future = KnockoutPlan({l: [(torch.tensor(lay.video), torch.tensor(lay.question))] for l in range(L)})
    for backend in ("reference", "fast"):
        out = knockout_logits(tiny, p, [decisive, future], backend).softmax(-1)
        assert (out[0] - base).abs().max() > 1e-3
        assert (out[1] - base).abs().max() <= 1e-6
    # and it equals a model that never saw the context: the last token alone, same position
    assert decisive.attention_edges(lay.n, L) == L * (lay.n * (lay.n + 1) // 2 - (lay.n - 1))


def test_fully_cut_row_outputs_zero_not_nan(tiny, samples):
    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    lay = p.layout
    allkeys = torch.arange(lay.n)
    plan = KnockoutPlan({l: [(torch.tensor(lay.last + lay.video[:3]), allkeys)] for l in range(tiny.n_layers)})
    ref = knockout_logits(tiny, p, [plan], "reference")
    fast = knockout_logits(tiny, p, [plan], "fast")
    assert torch.isfinite(ref).all() and torch.isfinite(fast).all()
    assert (ref.softmax(-1) - fast.softmax(-1)).abs().max() <= 1e-5
    # a fully cut row is a zero attention output: the last position then only carries its own residual
    # stream, identical to cutting every key including itself by any other spelling
    plan2 = KnockoutPlan({l: [(torch.tensor(lay.last), allkeys)] for l in range(tiny.n_layers)})
    assert torch.allclose(knockout_logits(tiny, p, [plan2], "reference"),
                          knockout_logits(tiny, p, [plan2], "fast"), atol=1e-5)


def test_decode_steps_inherit_the_last_rows_cuts(tiny, samples):
    s = samples[1]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    lay = p.layout
    plan = KnockoutPlan.from_flows(lay, ["video->last", "question->last"], range(tiny.n_layers))
    text = generate(tiny, p, plan, max_new_tokens=3, backend="fast")
    assert text == generate(tiny, p, plan, max_new_tokens=3, backend="reference")
    # independent check: one reference forward over prompt + generated tokens, where the generated
    # rows are cut exactly as the last row is (built by hand, not by the plan's decode rule)
    new_ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"][:2]
    ids = torch.cat([p.inputs["input_ids"], torch.tensor([new_ids])], 1)
    rows = torch.tensor(lay.last + list(range(lay.n, lay.n + len(new_ids))))
    sources = torch.tensor(lay.video + lay.question)
    manual = KnockoutPlan({l: [(rows, sources)] for l in range(tiny.n_layers)})
    inputs = dict(p.inputs, input_ids=ids, attention_mask=torch.ones_like(ids))
    st = knockout_state(tiny, p, backend="reference", plans=[manual])
    st.n_prompt = ids.shape[1]
    with torch.no_grad():
        logits = tiny.model(**inputs, flow_knockout=st).logits[0]
    greedy = logits[lay.n - 1:].argmax(-1)[: len(new_ids)].tolist()
    assert greedy == new_ids


def test_unknown_backend(tiny, samples):
    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    with pytest.raises(ValueError, match="valid"):
        knockout_logits(tiny, p, [KnockoutPlan()], "flash")


def test_fast_equals_reference_on_the_paper_sweep(tiny, samples):
    """The four flow sets x every layer (scaled window): plans sharing a target batch and join layer by layer."""
    s = samples[2]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    L = tiny.n_layers
    k = windows.scaled_window_size(L)
    plans = [KnockoutPlan.from_flows(p.layout, [f], w) for fam in flows.FLOW_SETS.values() for f in fam
             for _, w in windows.layer_windows(L, k)]
    ref = knockout_logits(tiny, p, plans, "reference")
    for batch_size, tokens in ((256, 16384), (3, 64)):
        fast = knockout_logits(tiny, p, plans, "fast", batch_size, max_batch_tokens=tokens)
        assert (ref - fast).abs().max() <= 1e-4
        # queued, read later (the pipelined sweep): the same numbers
        assert torch.equal(knockout_logits(tiny, p, plans, "fast", batch_size, max_batch_tokens=tokens, wait=False)(),
                           fast)
    assert torch.equal(knockout_logits(tiny, p, plans, "reference", wait=False)(), ref)
    # reduced where the logits are (a sweep's columns): the same as reducing the logits on the host, plan by plan
    # rows of both kinds: a plan that cuts nothing (the baseline's row) among recomputed ones
    mixed = plans[:5] + [KnockoutPlan()] + plans[5:]

    def columns(logits):
        return {"first": logits[:, 0].clone(), "top": logits.argmax(-1), "sum": logits.sum(-1)}

    for backend in BACKENDS:
        logits = knockout_logits(tiny, p, mixed, backend)
        want = {"first": logits[:, 0], "top": torch.tensor([int(row.argmax()) for row in logits]),
                "sum": torch.stack([row.sum() for row in logits])}
        for wait in (True, False):
            got = knockout_logits(tiny, p, mixed, backend, reduce=columns, wait=wait)
            got = got if wait else got()
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), (backend, wait)


def _cut(p, l):
    """The blocks ``p`` cuts in layer ``l`` as bytes (None: nothing), straight from its tensors."""
    bl = p.live_layers.get(l)
    return None if bl is None else tuple((t.numpy().tobytes(), s.numpy().tobytes()) for t, s in bl)


def _trie_work(plans, n_layers: int) -> int:
    """Position-layers a batch must recompute at least (one position), counted without :func:`joins`: one per distinct
    (first layer, cuts up to layer l) of any plan up to its last cut layer (plans that have cut alike so far share one
    state), a plan's own layers after its last cut layer, and one more per plan equal to an earlier one."""
    nodes, whole = set(), []
    for p in plans:
        key = (p.first_layer,) + tuple(_cut(p, l) for l in range(p.first_layer, p.last_layer + 1))
        nodes |= {key[:m] for m in range(2, len(key) + 1)}
        whole.append(key)
    duplicates = len(whole) - len(set(whole))
    return len(nodes) + sum(n_layers - 1 - p.last_layer for p in plans) + duplicates


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_joins_share_exactly_the_layers_that_plans_cut_alike(data):
    """Where each plan of a batch joins it (:func:`joins`): from the baseline at its first layer, or from a plan that
    joined earlier, has the same first layer and cut the same edges in every layer before; and the batch's work is
    the least there is (a brute-force count over every prefix of every plan)."""
    from flowutils.engine.logits import joins, work

    L = 8
    lists = [[(torch.tensor([3 + i]), torch.tensor([i]))] for i in range(3)]
    plans = []
    for _ in range(data.draw(st.integers(1, 8), label="plans")):
        layers = data.draw(st.lists(st.integers(0, L - 1), min_size=1, max_size=L, unique=True), label="layers")
        # a block list per layer, each from few: or copies of equal content (equal cuts must be found by content)
        plans.append(KnockoutPlan({l: list(lists[data.draw(st.integers(0, 2))]) if data.draw(st.booleans())
                                   else lists[data.draw(st.integers(0, 2))] for l in layers}))
    where = joins(plans)
    for i, (layer, source) in enumerate(where):
        p = plans[i]
        assert p.first_layer <= layer <= p.last_layer
        if source is None:
            assert layer == p.first_layer
            continue
        q = plans[source]
        assert layer > p.first_layer and q.first_layer == p.first_layer and where[source][0] < layer
        assert all(_cut(p, l) == _cut(q, l) for l in range(p.first_layer, layer))
    assert work(L, where, 1) == _trie_work(plans, L)


def test_plans_that_cut_alike_at_first_recompute_those_layers_once(tiny, samples):
    """Bottom-up windows (all from layer 0), inverse ones, windows clipped at layer 0, and a plan twice: the plans that
    join from another plan's row (:func:`joins`) give the reference's logits, and the batches recompute fewer layers
    than with every plan from its first layer."""
    from flowutils.engine.logits import batches, joins, work

    s = samples[1]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    L = tiny.n_layers
    plans = [_plan(p.layout, [f], w) for f in ("video->last", "question->last")
             for style in ("bottom_up", "inverse", "center") for _, w in windows.layer_windows(L, 3, style)]
    plans += plans[2:4]
    ref = knockout_logits(tiny, p, plans, "reference")
    for batch_size in (256, 5):
        chunks = batches(plans, p.layout.n, batch_size)
        wheres = [joins([plans[i] for i in chunk]) for chunk, _ in chunks]
        forked = sum(source is not None for where in wheres for _, source in where)
        assert forked >= len(plans) // 3
        assert sum(work(L, where, 1) for where in wheres) < \
            sum(L - plans[i].first_layer for chunk, _ in chunks for i in chunk)
        fast = knockout_logits(tiny, p, plans, "fast", batch_size)
        assert (ref - fast).abs().max() <= 1e-4, batch_size


def test_packed_prefix_equals_reference(tiny, samples, monkeypatch):
    """Batches packed into one sequence sharing the prefix (what long prompts get on a GPU) against the
    reference; the toy's prefix copies are small, so packing is forced."""
    monkeypatch.setattr(SETTINGS, "pack_above_bytes", 0)
    s = samples[4]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    L = tiny.n_layers
    plans = [_plan(p.layout, [f], w) for f in ALL_FLOWS for _, w in windows.layer_windows(L, 3)]
    lay = p.layout  # and rows that lose every key, in a packed batch
    plans.append(KnockoutPlan({l: [(torch.tensor(lay.last), torch.arange(lay.n))] for l in range(1, L)}))
    ref = knockout_logits(tiny, p, plans, "reference")
    fast = knockout_logits(tiny, p, plans, "fast", batch_size=5)
    assert (ref - fast).abs().max() <= 1e-4


def test_lower_right_causal_is_the_suffix_mask():
    """With nothing cut the GPU path hands SDPA ``causal_lower_right``: the same mask as the engine's own
    causal mask of queries at the end of the keys (checked here where SDPA materialises it)."""
    from torch.nn.attention.bias import causal_lower_right

    from flowutils.engine.attention import KnockoutState

    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 5, 8), torch.randn(3, 4, 9, 8), torch.randn(3, 4, 9, 8)
    bias, whole = KnockoutState({}, n_prompt=9).bias(0, 4, 5, 9, 3, torch.float32, "cpu")
    assert not whole
    ours = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(5, 9)),
                          ours, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA kernel's log-sum-exp; runs on a GPU")
def test_attend_on_cuda_equals_its_cpu_twin():
    """The memory-efficient kernel's output and log-sum-exp (what merges the prefix and own parts of packed
    batches) against the explicit fp32 softmax, with unaligned key counts and rows that lose every key."""
    from flowutils.engine.kernels import _attend

    g = torch.Generator().manual_seed(0)
    for b, h, q, k in ((1, 4, 37, 1192), (6, 4, 1, 3), (3, 2, 72, 72)):
        query, key, value = (torch.randn(b, h, n, 64, generator=g) for n in (q, k, k))
        bias = torch.where(torch.rand(b, 1, q, k, generator=g) < 0.3, float("-inf"), 0.0)
        bias[:1, :, 0] = float("-inf")  # the first query of the first batch row loses every key
        out, lse = _attend(query, key, value, bias, 0.125)
        out_c, lse_c = _attend(*(x.cuda() for x in (query, key, value, bias)), 0.125)
        assert torch.equal(torch.isinf(lse), torch.isinf(lse_c.cpu()))
        finite = torch.isfinite(lse)
        assert (lse[finite] - lse_c.cpu()[finite]).abs().max() <= 1e-4
        assert (out - out_c.cpu()).abs().max() <= 1e-4
        for causal in (False, True):  # no bias: the flash kernel in half precision (packed rows that cut nothing)
            n = q if causal else k
            half = [x.cuda().bfloat16() for x in (query, key[:, :, :n], value[:, :, :n])]
            out, lse = _attend(*[x.float().cpu() for x in half], None, 0.125, causal=causal)
            out_c, lse_c = _attend(*half, None, 0.125, causal=causal)
            assert (lse - lse_c.cpu()).abs().max() <= 1e-3
            assert (out - out_c.float().cpu()).abs().max() <= 2e-2  # bf16 outputs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the variable-length flash kernel; runs on a GPU")
def test_run_by_run_on_cuda_equals_its_cpu_twin():
    """Run by run attention (a cross-frame-like cut: frames of 5 tokens after a 3-token prefix) with the
    variable-length flash kernel (bf16, lower-right causal per run, grouped-query keys) against the twin."""
    from flowutils.engine.attention import KnockoutState
    from flowutils.engine.kernels import _run_by_run

    n, frames = 33, [torch.arange(3 + 5 * f, 8 + 5 * f) for f in range(5)]
    plan = KnockoutPlan({0: [(frames[i], frames[j]) for i in range(5) for j in range(i)]})
    g = torch.Generator().manual_seed(0)
    rows, q_start = 3, 8
    query = torch.randn(rows, 4, n - q_start, 64, generator=g).bfloat16()
    key, value = (torch.randn(rows, 2, n, 64, generator=g).bfloat16() for _ in range(2))
    outs = []
    for device in ("cpu", "cuda"):
        seg = KnockoutState({}, n, plans=[plan]).runs(0, q_start, n - q_start, n, rows, (0, rows), device)
        assert seg is not None and len(seg.bounds) == rows * 5  # frames 1..4 and the tail, per row
        x = [t.to(device) if device == "cuda" else t.float() for t in (query, key, value)]
        outs.append(_run_by_run(*x, seg, 0.125).float().cpu())
    assert (outs[0] - outs[1]).abs().max() <= 2e-2  # bf16 outputs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode; runs on a GPU")
def test_batches_queue_without_waiting_for_the_gpu(samples, monkeypatch):
    """Between the baseline and the final copy no operation makes the host wait for the GPU (a host-to-device
    copy of a Python list or of the plans' cuts, ``.item()``, ...), so the host queues the next batches while the GPU works: with
    a wait the GPU drains its queue and idles while the host launches the next kernels."""
    from conftest import tiny_llava_next_video
    from flowutils.engine.logits import _interleaved, _recompute, batches, joins

    fm = tiny_llava_next_video()
    fm.model.to("cuda")
    s = samples[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
    L = fm.n_layers
    plans = [KnockoutPlan.from_flows(p.layout, [f], w) for fam in flows.FLOW_SETS.values() for f in fam
             for _, w in windows.layer_windows(L, windows.scaled_window_size(L))]
    base = run_baseline(fm, p)
    shared = {}
    torch.cuda.set_sync_debug_mode("error")
    try:  # the engine prepares the plans while the GPU runs the baseline
        for plan in plans:
            prepare_cuts(plan, p.layout.n, fm.device, shared)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    for pack_above in (SETTINGS.pack_above_bytes, 0):  # prefix copied per plan, and shared
        monkeypatch.setattr(SETTINGS, "pack_above_bytes", pack_above)
        torch.cuda.set_sync_debug_mode("error")
        try:
            chunks = batches(plans, p.layout.n, batch_size=3)
            _interleaved([_recompute(fm, p, base, [plans[i] for i in chunk], t0, joins([plans[i] for i in chunk]))
                          for chunk, t0 in chunks],
                         [len(chunk) for chunk, _ in chunks])
        finally:
            torch.cuda.set_sync_debug_mode(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode; runs on a GPU")
def test_a_pipelined_sweep_question_is_queued_without_waiting_for_the_gpu(tmp_path):
    """What the runner does per question before it reads the previous one's rows, where it pipelines (a question
    of sample mode "all": the baseline, its check left for later, and the sweep's knockouts and copies), makes
    the host wait for the GPU nowhere, so the GPU works through one question while the host queues the next; and
    reading the rows waits only for that question's work. PLLaVA: its forward takes the embeddings (transformers'
    own forward of the other families reads the count of video tokens back, once a question)."""
    import numpy as np
    from tiny_families import CANDIDATES, QUESTION, tiny_checkpoint

    from flowutils.analysis.runner import Question
    from flowutils.analysis.sweep import launch_sweep
    from flowutils.models import FlowModel, family_adapter

    model, processor = tiny_checkpoint("pllava", tmp_path / "ckpt")
    fm = FlowModel(model.to("cuda"), processor, family_adapter("pllava"))
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    p = fm.prepare(frames, QUESTION, CANDIDATES, "blue")
    sample = None  # the sweep reads only the prepared input
    flow_names = [f for fam in flows.FLOW_SETS.values() for f in fam]
    want = launch_sweep(fm, Question(fm, sample, 0, p), flow_names, 1)()  # the first: CUDA's warm-up waits
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            rows = launch_sweep(fm, Question(fm, sample, 0, p, check_later=True), flow_names, 1)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert rows() == want
    # the rows of one question read while the next one's work is queued behind it: the same rows
    later = launch_sweep(fm, Question(fm, sample, 0, p, check_later=True), flow_names, 1)
    queued_behind = launch_sweep(fm, Question(fm, sample, 0, p, check_later=True), flow_names, 1)
    assert later() == want and queued_behind() == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA's sync debug mode; runs on a GPU")
@pytest.mark.parametrize("family", ["llava_next_video", "pllava"])
def test_preparing_a_question_on_a_gpu_does_not_wait_for_it(family, tmp_path):
    """The runner's reader thread prepares the next questions while the GPU works through the current one: its
    copies to the device and (PLLaVA) its vision tower are queued without waiting for the GPU's queue."""
    import numpy as np
    from tiny_families import CANDIDATES, QUESTION, tiny_checkpoint

    from flowutils.models import FlowModel, family_adapter

    model, processor = tiny_checkpoint(family, tmp_path / "ckpt")
    fm = FlowModel(model.to("cuda"), processor, family_adapter(family))
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    with torch.no_grad():
        want = fm.prepare(frames, QUESTION, CANDIDATES, "blue")  # the first: CUDA's warm-up waits
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = fm.prepare(frames, QUESTION, CANDIDATES, "blue")
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert all(torch.equal(got.inputs[k], v) for k, v in want.inputs.items())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a GPU other than the current one")
def test_a_copy_to_the_host_from_another_gpu_waits_for_that_gpus_work():
    """``to_host_later`` of a tensor on a GPU that is not the thread's current device waits for that GPU's queue
    (an event recorded on the current device would not)."""
    from flowutils.models.encoding import to_host_later

    torch.cuda.set_device(0)
    a = torch.randn(4096, 4096, device="cuda:1")
    for _ in range(50):  # a long queue on cuda:1 before the value to copy
        a = torch.tanh(a @ a)
    later = to_host_later(a[0, :8])
    assert torch.equal(later(), a[0, :8].cpu())


def test_interleaved_runs_the_heaviest_beside_the_lightest():
    """Every job's result, and the order of steps: two jobs at a time, the heaviest left and the lightest left
    one step each in turn, the next job taken when one ends."""
    from flowutils.engine.logits import _interleaved

    log = []

    def job(name, steps):
        for s in range(steps):
            log.append(name)
            yield
        return name * 2

    work = {"a": 5, "b": 1, "c": 3, "d": 2}
    steps = {"a": 3, "b": 1, "c": 2, "d": 2}
    jobs = [job(k, steps[k]) for k in work]
    assert _interleaved(jobs, list(work.values())) == ["aa", "bb", "cc", "dd"]
    # a beside b; b ends, d (the lightest left) takes its lane; a ends, c takes its lane
    assert log == ["a", "b", "a", "d", "a", "d", "c", "c"]


def test_compiled_layers_equal_the_reference(samples, monkeypatch):
    """compile_layers (Inductor-compiled decoder layers, knockout attention left eager) against the
    eager reference, on two questions of different lengths: the second must compile nothing new, and no
    layer may fall back to eager at dynamo's recompile limit. Generation (eager by design) is unchanged."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    fm = tiny_llava_next_video()  # its own copy: compiling changes the model in place
    L = fm.n_layers
    inputs, refs, texts = [], [], []
    for s in samples[1:3]:
        p = fm.prepare(s.frames, s.question, s.candidates, s.answer)
        plans = [_plan(p.layout, [f], w) for f in ALL_FLOWS for _, w in windows.layer_windows(L, 2)]
        inputs.append((p, plans))
        refs.append(knockout_logits(fm, p, plans, "reference"))
        texts.append(generate(fm, p, plans[0], max_new_tokens=3))
    assert inputs[0][0].layout.n != inputs[1][0].layout.n
    torch._dynamo.reset()
    before = counters["stats"]["unique_graphs"]  # global to the session: count from here
    compile_layers(fm)
    graphs = []
    for (p, plans), ref, text in zip(inputs, refs, texts):
        fast = knockout_logits(fm, p, plans, "fast", batch_size=3)
        graphs.append(counters["stats"]["unique_graphs"])
        assert (ref - fast).abs().max() <= 1e-6  # fp32: the same operations, fused
        assert generate(fm, p, plans[0], max_new_tokens=3) == text
    assert graphs[0] > before, "nothing was compiled"
    assert graphs[1] == graphs[0], "a question of another length compiled new graphs"


def test_fast_refuses_a_question_longer_than_a_sliding_window(samples, monkeypatch):
    fm = tiny_llava_next_video()
    s = samples[0]
    p = fm.prepare(s.frames, s.question, s.candidates, s.answer, sample_id="q7")
    monkeypatch.setattr(fm.decoder.config, "sliding_window", p.layout.n - 1, raising=False)
    with pytest.raises(ValueError, match=r"q7 has \d+ tokens.*sliding attention window.*backend='reference'"):
        knockout_logits(fm, p, [KnockoutPlan()], "fast")
    monkeypatch.setattr(fm.decoder.config, "sliding_window", p.layout.n, raising=False)
    knockout_logits(fm, p, [KnockoutPlan()], "fast")


@pytest.mark.parametrize("pack_above", [None, 0])
def test_rows_that_cut_nothing_take_the_unmasked_kernels(tiny, samples, monkeypatch, pack_above):
    """On a GPU the rows of a batch whose plans cut nothing in a layer get unmasked (flash) attention and the
    others run by run of their queries (``_run_by_run``) or the masked kernel, with the prefix copied per plan
    and shared; here the CPU takes the same split (``SETTINGS.flash_devices``), against the reference, on the paper's
    sweep (batches that mix both kinds of rows)."""
    from flowutils.engine import attention, kernels

    monkeypatch.setattr(SETTINGS, "flash_devices", ("cuda", "cpu"))
    monkeypatch.setattr(SETTINGS, "split_min_queries", 0)  # the tiny model's batches have few queries
    if pack_above is not None:
        monkeypatch.setattr(SETTINGS, "pack_above_bytes", pack_above)
    split, segmented = [], []
    by_rows, packed, runs = kernels._by_rows, kernels._packed_attention, kernels._run_by_run
    monkeypatch.setattr(attention, "_by_rows", lambda *a: split.append(a[3]) or by_rows(*a))
    monkeypatch.setattr(attention, "_packed_attention", lambda *a: split.append(a[-1]) or packed(*a))
    monkeypatch.setattr(kernels, "_run_by_run", lambda *a: segmented.append(len(a[3].bounds)) or runs(*a))
    s = samples[1]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    L = tiny.n_layers
    plans = [KnockoutPlan.from_flows(p.layout, [f], w) for fam in flows.FLOW_SETS.values() for f in fam
             for _, w in windows.layer_windows(L, 2)]
    lay = p.layout  # and a row that loses every key
    plans.append(KnockoutPlan({l: [(torch.tensor(lay.last), torch.arange(lay.n))] for l in range(1, 3)}))
    ref = knockout_logits(tiny, p, plans, "reference")
    fast = knockout_logits(tiny, p, plans, "fast", batch_size=4)
    # logits: the tiny model's probabilities are nearly flat, a cut changes them by less than 1e-4
    assert (ref - fast).abs().max() <= 1e-4
    assert any(any(c) and not all(c) for c in split)  # some batch mixed rows that cut and rows that did not
    if pack_above is None:  # cross-frame rows went run by run (one per frame and more), the others masked
        assert segmented and max(segmented) > len(p.layout.frames)


def test_row_groups_and_prefix_buffer():
    from flowutils.engine.kernels import _row_groups, _with_prefix

    assert _row_groups([True, True, False, True]) == [(0, 2, True), (2, 3, False), (3, 4, True)]
    assert _row_groups([False]) == [(0, 1, False)]
    prefix, own = torch.randn(1, 2, 3, 4), torch.randn(5, 6, 2, 4).transpose(1, 2)  # strided, as a model's keys
    assert torch.equal(_with_prefix(prefix, own), torch.cat([prefix.expand(5, -1, -1, -1), own], dim=2))


def test_generation_passes_the_cache_under_the_installed_transformers_name(tiny, samples):
    """transformers 5.25 renamed past_key_values -> cache (a FutureWarning on the old name, removed in 5.40);
    5.17 knows only the old one. Generation uses whichever the model's forward takes."""
    import warnings

    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        text = generate(tiny, p, None, max_new_tokens=2)
    assert isinstance(text, str)
