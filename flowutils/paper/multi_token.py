"""Appendix C.2: multiple-token generation, anchors in the model's own response (Figure S).

**The paper.** On VCGBench's temporal questions (open-ended), the verbs of LLaVA-NeXT-7B-Video-FT's greedy
response (found by spaCy) are *anchors*. For the j-th anchor the prompt is the question followed by the
response up to that anchor, and the target is the anchor's token. Blocking flows among the video, the
question, the response written so far (without its last token) and the last position shows the response
becoming a checkpoint: as anchors accumulate, response -> last matters more and video -> last,
question -> last less, and the video reaches the answer more through the response.

**This run.** The open-ended prompt of Appendix C.1 (:mod:`.open_ended`: no options, a sentence to complete;
on a benchmark whose questions are open-ended, VCGBench, no sentence: the response follows the assistant's turn, as
in the paper's prompt). The model's greedy response is generated first (:func:`responses`,
:func:`flowutils.engine.generate`); its anchors are found by an :class:`AnchorRule` (:func:`anchor_rule`, the
pages' ``anchors`` parameter): ``"keywords"``, a response token whose word is a temporal keyword of the run's list
(:mod:`.keywords`; on the synthetic benchmark its actions and directions, the toy's stand-in for verbs), or
``"verbs"``, the paper's: the first token of each word of the response that a spaCy pipeline tags VERB
(:func:`pos_tagger`; spaCy is optional, ``pip install flowutils[pos]``, and its English pipeline a separate
download). Each of the first ``max_anchors`` anchors gives
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

import dataclasses
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


ANCHORS = ("keywords", "verbs")  # the run's temporal keywords (the toy's stand-in); the verbs a tagger finds (paper)
POS_PIPELINE = "en_core_web_sm"  # the spaCy pipeline anchors="verbs" loads unless told (the paper: en_core_web_lg)
POS_PIPES = ("tagger", "morphologizer", "attribute_ruler")  # spaCy components that set a word's part of speech


def pos_tagger(pipeline: str = POS_PIPELINE):
    """The spaCy pipeline ``pipeline`` (an installed pipeline package or a pipeline folder), which must tag parts of
    speech. spaCy is an optional dependency (``pip install flowutils[pos]``), imported here only."""
    try:
        import spacy
    except ImportError as err:
        raise ImportError(f"parameter anchors='verbs' tags the responses with spaCy, which is not installed: pip "
                          f"install spacy (flowutils[pos]), then python -m spacy download {POS_PIPELINE}; or "
                          f"anchors='keywords' (valid: {list(ANCHORS)})") from err
    try:
        nlp = spacy.load(pipeline)
    except OSError as err:  # spaCy's "can't find model"
        raise ImportError(f"parameter anchors='verbs': the spaCy pipeline {pipeline!r} (parameter pos_pipeline: an "
                          f"installed pipeline package or a pipeline folder) is not installed: python -m spacy "
                          f"download {POS_PIPELINE} (the paper used en_core_web_lg); or anchors='keywords' (valid: "
                          f"{list(ANCHORS)})") from err
    if not set(POS_PIPES) & set(nlp.pipe_names):
        raise ValueError(f"parameter pos_pipeline={pipeline!r}: its components {nlp.pipe_names} tag no part of "
                         f"speech; it needs one of {list(POS_PIPES)}")
    return nlp


@dataclasses.dataclass(frozen=True)
class AnchorRule:
    """Which response tokens are anchors: ``source`` "keywords" (a token whose word is one of ``words``, lower case)
    or "verbs" (the first token of each word that the spaCy pipeline ``tagger`` tags VERB); ``about``: the rule in
    words, as the page prints it."""

    source: str
    about: str
    words: frozenset = frozenset()
    tagger: object = None

    def positions(self, text: str, tokens, offsets) -> list[int]:
        """The indices of the anchors among ``tokens``, the tokens of the response ``text`` (``offsets``: each one's
        span of characters in ``text``)."""
        if self.source == "keywords":
            return [i for i, tok in enumerate(tokens) if _word(tok) in self.words]
        starts = [w.idx for w in self.tagger(text) if w.pos_ == "VERB"]
        # the token that holds a verb's first character (a SentencePiece token may hold the space before it too)
        found = {next((i for i, (a, b) in enumerate(offsets) if a <= c < b), None) for c in starts}
        return sorted(found - {None})


def anchor_rule(anchors: str = "keywords", keywords=(), pos_pipeline: str = POS_PIPELINE) -> AnchorRule:
    """The pages' ``anchors`` parameter as an :class:`AnchorRule`: ``"keywords"`` matches ``keywords``, ``"verbs"``
    tags the responses with the spaCy pipeline ``pos_pipeline`` (:func:`pos_tagger`)."""
    if anchors not in ANCHORS:
        raise ValueError(f"parameter anchors={anchors!r}; valid: {list(ANCHORS)}")
    if anchors == "keywords":
        return AnchorRule(anchors, f"the response tokens that are temporal keywords ({', '.join(keywords)})",
                          frozenset(w.lower() for w in keywords))
    return AnchorRule(anchors, f"the verbs of the response, tagged by the spaCy pipeline {pos_pipeline!r}",
                      tagger=pos_tagger(pos_pipeline))


def anchor_samples(fm, samples, table, rule: AnchorRule, max_anchors: int = 3) -> list:
    """One :class:`AnchorSample` per anchor (up to ``max_anchors`` per question) of the responses in ``table``
    (:func:`responses`); ``rule`` says which response tokens are anchors (:func:`anchor_rule`)."""
    by_id = {s.sample_id: s for s in samples}
    out = []
    for r in table.itertuples():
        s = by_id[r.sample_id]
        enc = fm.tokenizer(r.response, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        tokens = fm.tokenizer.convert_ids_to_tokens(ids)
        for stage, i in enumerate(rule.positions(r.response, tokens, enc["offset_mapping"])[:max_anchors], 1):
            before = fm.tokenizer.decode(ids[:i]) if i else ""
            prefix = s.open_ended_prefix + (" " + before if before else "")
            out.append(AnchorSample(s._sample, prefix, f"anchor{stage}/{r.sample_id}", tokens[i], stage, i))
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
    """Every question asked open-ended with its task's sentence (:func:`flowutils.paper.open_ended.completion_prefix`);
    a question of an open-ended benchmark (VCGBench) with none: its response follows the assistant's turn, as in
    the paper's prompt ("... ASSISTANT: A boy swings")."""
    from ..analysis.runner import sample_id

    return [OpenEndedSample(s, "" if getattr(s, "open_ended", False) else completion_prefix(s.task), sample_id(s, i))
            for i, s in enumerate(samples)]
