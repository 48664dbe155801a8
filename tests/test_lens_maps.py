import torch

from conftest import unmodified_logits
from flowutils.analysis.attention_maps import attention_rows, attention_to_video
from flowutils.engine import run_baseline
from flowutils.analysis.logit_lens import answer_probability, layer_logits, top_tokens
from flowutils.knockout.plan import KnockoutPlan


def test_last_layer_lens_is_the_models_output(tiny, samples):
    s = samples[2]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    base = run_baseline(tiny, p)
    ref = unmodified_logits(tiny, p)[0]  # transformers' own forward, all positions
    for variant in ("final_norm",):
        lens = layer_logits(tiny, base, range(p.layout.n), variant)
        assert (lens[-1] - ref).abs().max() <= 1e-4
    probs, ids = top_tokens(tiny, base, p.layout.last, k=3)
    assert probs.shape == (tiny.n_layers, 1, 3) and int(ids[-1, 0, 0]) == int(ref[-1].argmax())
    ans = answer_probability(tiny, base, p.option_ids)
    assert torch.allclose(ans[-1], ref[-1].softmax(-1)[p.option_ids], atol=1e-5)
    # the official code's variant: input embeddings, no norm, except at the last layer
    emb = layer_logits(tiny, base, p.layout.last, "input_embedding")
    hidden = base.layer_outputs[0][0, p.layout.last]
    assert torch.allclose(emb[0], hidden @ tiny.decoder.embed_tokens.weight.T, atol=1e-5)
    # the official Figure 8 default: the LM head on the raw hidden state, at every layer
    head = layer_logits(tiny, base, p.layout.last, "lm_head")
    last = base.layer_outputs[-1][0, p.layout.last]
    assert torch.allclose(head[0], hidden @ tiny.lm_head.weight.T, atol=1e-5)
    assert torch.allclose(head[-1], last @ tiny.lm_head.weight.T, atol=1e-5)
    assert not torch.allclose(head[-1], ref[p.layout.last], atol=1e-3)  # the model's output has the norm


def test_recorded_rows_equal_eager_attention_weights(tiny, samples):
    s = samples[0]
    p = tiny.prepare(s.frames, s.question, s.candidates, s.answer)
    rows = p.layout.non_option_question[:2] + p.layout.last
    mine = attention_rows(tiny, p, rows)
    tiny.model.set_attn_implementation("eager")  # transformers' own eager attention, full maps
    try:
        with torch.no_grad():
            full = tiny.model(**p.inputs, output_attentions=True).attentions
    finally:
        tiny.model.set_attn_implementation("flow_knockout")
    eager = torch.stack([a[0][:, rows] for a in full])
    assert (mine - eager).abs().max() <= 1e-5
    # under a cross-frame knockout, cut weights are exactly zero and rows still sum to one
    plan = KnockoutPlan.from_flows(p.layout, ["cross-frame"], range(tiny.n_layers))
    f1 = p.layout.frame(1)
    ko = attention_rows(tiny, p, f1[:1], plan)
    assert ko[..., : p.layout.frames[1].start].ne(0).sum() <= ko[..., : p.layout.frames[0].start].ne(0).sum()
    assert ko[..., p.layout.frames[0].start: p.layout.frames[1].start].abs().max() == 0
    assert torch.allclose(ko.sum(-1), torch.ones_like(ko.sum(-1)), atol=1e-5)
    vid = attention_to_video(tiny, p, p.layout.last)
    assert vid.shape[-2:] == (p.layout.num_frames, len(p.layout.frames[0]))
