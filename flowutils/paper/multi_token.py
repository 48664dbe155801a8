"""Appendix C.2: multiple-token generation, anchors in the model's own response (Figure S).

**The paper.** On VCGBench's temporal questions (open-ended), the verbs of LLaVA-NeXT-7B-Video-FT's greedy
response (found by spaCy) are *anchors*. For the j-th anchor the prompt is the question followed by the
response up to that anchor, and the target is the anchor's token. Blocking flows among the video, the
question, the response written so far (without its last token) and the last position shows the response
becoming a checkpoint: as anchors accumulate, response -> last matters more and video -> last,
question -> last less, and the video reaches the answer more through the response.

**This run.** The open-ended prompt of Appendix C.1 (:mod:`.open_ended`: no options, a sentence to complete).
The model's greedy response is generated first (:func:`responses`, :func:`flowutils.engine.generate`);
an *anchor* is a response token that is the first sub-token of a temporal keyword of the run's list
(:mod:`.keywords`; on the synthetic benchmark its actions and directions), the stand-in for the verbs a
POS tagger finds on VCGBench (no tagger is installed here). Each of the first ``max_anchors`` anchors gives
an :class:`AnchorSample`: the open-ended prompt with the response before the anchor appended to the sentence;
its target is the anchor token, which the model predicts there by construction (greedy). The flows of
:data:`ANCHOR_FLOWS` are knocked out in a window of layers around each layer (:func:`anchor_rows`); the
response group is the positions of the response written so far, without the last one, found by position
(it is part of the prompt's suffix). Both passes run through the per-question runner
(:func:`flowutils.analysis.runner.run_questions`).

**Claims** (:func:`anchor_claims`) compare each question's lowest change over the layers between the first
and the last anchor stage measured, with a 95% bootstrap interval of the difference of the means
(:func:`flowutils.paper.appendix.compare_drops`); *stability* repeats them on two halves of the
questions, each question with all its anchor stages in one half.
"""

from __future__ import annotations

import functools

import torch

from .appendix import drop_difference
from .claims import Claim, stability
from .open_ended import OpenEndedSample, completion_prefix

SECTION = "C.2"
ANCHOR_FLOWS = ("video->question", "question->last", "video->last", "video->response", "response->last")


def _word(token: str) -> str:
    return token.lstrip("▁Ġ ").lower()


def response_rows(fm, question, max_new_tokens: int = 12) -> list[dict]:
    """:func:`responses`' row of one question: the greedy continuation of its open-ended prompt."""
    from ..engine import generate

    text = generate(fm, question.prepared, None, max_new_tokens)
    return [{"sample_id": question.sample_id, "task": question.prepared.task, "response": text}]


def responses(fm, samples, num_frames: int = 8, max_new_tokens: int = 12, progress: bool = False):
    """The greedy response of every open-ended sample (:class:`flowutils.paper.open_ended.OpenEndedSample`)."""
    from ..analysis.runner import run_questions

    return run_questions(fm, samples, functools.partial(response_rows, fm, max_new_tokens=max_new_tokens),
                         analysis="multi_token_responses", params={"max_new_tokens": max_new_tokens},
                         num_frames=num_frames, progress=progress)


class AnchorSample(OpenEndedSample):
    """The prompt of one anchor stage: the open-ended prompt whose sentence goes on with the response before the
    anchor; ``anchor``: the anchor's token text, ``stage``: 1 for the first anchor, ``response_tokens``: the
    response tokens in the prompt."""

    def __init__(self, sample, prefix: str, sample_id: str, anchor: str, stage: int, response_tokens: int):
        super().__init__(sample, prefix, sample_id)
        self.sample_id = sample_id
        self.anchor, self.stage, self.response_tokens = anchor, stage, response_tokens


def anchor_samples(fm, samples, table, keywords, max_anchors: int = 3) -> list:
    """One :class:`AnchorSample` per anchor (up to ``max_anchors`` per question) of the responses in ``table``
    (:func:`responses`); an anchor is a response token whose text is one of ``keywords`` (lower case)."""
    words = {w.lower() for w in keywords}
    by_id = {s.sample_id: s for s in samples}
    out = []
    for r in table.itertuples():
        s = by_id[r.sample_id]
        ids = fm.tokenizer(r.response, add_special_tokens=False)["input_ids"]
        tokens = fm.tokenizer.convert_ids_to_tokens(ids)
        stage = 0
        for i, tok in enumerate(tokens):
            if _word(tok) not in words or stage >= max_anchors:
                continue
            stage += 1
            before = fm.tokenizer.decode(ids[:i]) if i else ""
            prefix = s.open_ended_prefix + (" " + before if before else "")
            out.append(AnchorSample(s._sample, prefix, f"anchor{stage}/{r.sample_id}", tok, stage, i))
    return out


def anchor_rows(fm, question, k: int, style: str = "center", backend: str = "fast", batch_size: int = 256):
    """The knockout rows of one anchor stage: every flow of :data:`ANCHOR_FLOWS` with both groups non-empty, in a
    window of ``k`` layers around each layer; the relative change of the anchor token's probability."""
    from ..analysis.runner import Skip, knockout_with_retry, require_finite
    from ..knockout.plan import KnockoutPlan
    from ..knockout.windows import layer_windows

    s, p = question.sample, question.prepared
    lay, n = p.layout, p.layout.n
    anchor = fm.tokenizer.convert_tokens_to_ids(s.anchor)
    response = list(range(n - s.response_tokens, n - 1)) if s.response_tokens >= 2 else []
    groups = {"video": lay.video, "question": lay.question, "last": lay.last, "response": response}
    plans = []
    for flow in ANCHOR_FLOWS:
        src, tgt = flow.split("->")
        if not groups[src] or not groups[tgt]:
            continue
        block = [(torch.tensor(groups[tgt]), torch.tensor(groups[src]))]
        plans += [KnockoutPlan({l: block for l in window}, {"flow": flow, "layer": layer}, lay.fingerprint)
                  for layer, window in layer_windows(fm.n_layers, k, style)]
    if not plans:
        raise Skip("spans", "no flow of the anchor analysis cuts anything")
    logits = knockout_with_retry(fm, question, plans, backend, batch_size)
    require_finite(logits, "knockout logits")
    base = question.baseline.probs.cpu()
    probs = logits.softmax(-1)[:, anchor].tolist()
    common = {"sample_id": question.sample_id, "task": p.task, "stage": s.stage, "anchor": s.anchor,
              "response_tokens": s.response_tokens, "p_anchor_baseline": float(base[anchor]),
              "anchor_is_predicted": question.predicted == anchor}
    return [{**common, "flow": plan.label["flow"], "layer": plan.label["layer"], "p_anchor_knockout": q,
             "relative_change_pct": 100 * (q - float(base[anchor])) / float(base[anchor])}
            for plan, q in zip(plans, probs)]


def anchor_sweep(fm, anchors, k: int, style: str = "center", num_frames: int = 8, progress: bool = False):
    """:func:`anchor_rows` over every :class:`AnchorSample` (one table, one row per stage x flow x layer)."""
    from ..analysis.runner import run_questions

    return run_questions(fm, anchors, functools.partial(anchor_rows, fm, k=k, style=style),
                         analysis="multi_token_anchors", params={"k": k, "style": style}, num_frames=num_frames,
                         progress=progress)


# (flow, the paper's direction as anchors accumulate: -1 the drop grows, +1 it shrinks)
EXPECTED = (("response->last", -1), ("video->response", -1), ("video->last", +1), ("question->last", +1))


def _stage_change(table, flow: str, sign: int, last: int, seed: int = 0):
    """``(row, holds)``: the difference of ``flow``'s per-question lowest change, anchor ``last`` minus anchor 1
    (:func:`flowutils.paper.appendix.drop_difference`; None where a stage lacks the flow), and whether it goes the
    paper's way (``sign`` of :data:`EXPECTED`)."""
    if last < 2:
        return None, None
    rows = table[table["flow"] == flow]
    return drop_difference(rows[rows["stage"] == 1], rows[rows["stage"] == last], "anchor 1", f"anchor {last}",
                           "below" if sign < 0 else "above", seed=seed)


def anchor_claims(table, seed: int = 0) -> list[Claim]:
    """Figure S: between the first and the last anchor stage measured, response -> last and video -> response drop
    more, video -> last and question -> last less (per-question lowest change, bootstrap interval of the difference
    of the means, last minus first). The halves split the questions, each with all its anchor stages."""
    if len(table) == 0:
        return [Claim(SECTION, f"Figure S: {f}", "", "", "no anchor found", None, n=0) for f, _ in EXPECTED]
    last = int(table["stage"].max())
    # an anchor sample's id is "anchor<stage>/<question>": key the halves by the question
    by_question = table.assign(question=table["sample_id"].str.split("/", n=1).str[1])
    claims = []
    for flow, sign in EXPECTED:
        finding = f"as anchors accumulate, blocking {flow} costs {'more' if sign < 0 else 'less'} (anchor 1 vs " \
                  f"anchor {last})"
        r, holds = _stage_change(table, flow, sign, last, seed)
        halves = stability(lambda t, flow=flow, sign=sign: _stage_change(t, flow, sign, last, seed)[1], by_question,
                           key="question")
        if r is None:
            claims.append(Claim(SECTION, f"Figure S: {flow}", finding, "monotonic over anchors 1-3 (Figure S)",
                                f"not measured at both stages (stages found: 1-{last})", None,
                                n=int(table["sample_id"].nunique()), stability=halves))
            continue
        claims.append(Claim(SECTION, f"Figure S: {flow}", finding, "monotonic over anchors 1-3 (Figure S)",
                            f"lowest change per question {r['anchor 1 mean']:.2f} (anchor 1, n={int(r['anchor 1 n'])})"
                            f" vs {r[f'anchor {last} mean']:.2f} (anchor {last}, n={int(r[f'anchor {last} n'])})",
                            holds, n=int(r["anchor 1 n"] + r[f"anchor {last} n"]),
                            interval=f"difference [{r['lo']:.2f}, {r['hi']:.2f}]", stability=halves))
    return claims


def open_ended_questions(samples) -> list:
    """Every question asked open-ended with its task's sentence (:func:`flowutils.paper.open_ended.completion_prefix`)."""
    from ..analysis.runner import sample_id

    return [OpenEndedSample(s, completion_prefix(s.task), sample_id(s, i)) for i, s in enumerate(samples)]
