"""Appendix C.1: open-ended VideoQA, single-token generation (Figures P, Q, R).

**The prompt.** The options are removed from the question block and the answer is asked as a sentence
to complete (the paper: "ASSISTANT: The gray cube moves to the ___"). The prompt is built by the
multiple-choice template's own open-ended form (:meth:`flowutils.inputs.prompt.PromptTemplate.parts`
with ``open_ended_prefix``): system, video, ``Question: <non-option question>``, then the template's
instruction and the sentence of :data:`COMPLETIONS` (one per task; :data:`GENERIC` elsewhere). A
question becomes an :class:`OpenEndedSample`, which :meth:`flowutils.models.FlowModel.prepare_sample`
reads: its token layout has no options, and its "option ids" are the *first sub-token* of each
candidate answer after the sentence (:meth:`flowutils.models.FlowModel.answer_token_id`). The target
of the analysis is the ground truth's first sub-token.

**Which questions.** As in the paper, only questions whose candidate answers start with different
sub-tokens are kept (:func:`open_ended_samples`): otherwise the first token does not tell the answers
apart (the synthetic Moving Direction's "Up and to the left" / "Up and to the right", every Scene
Transition's "From the ..."). Of those, the analysis reads the questions a *selection* names
(:data:`SELECTIONS`): ``answered``: the model's next token is the ground truth's first sub-token (the
paper's "answered correctly at baseline"); ``leads``: the ground truth's first sub-token is more
probable than every other candidate's (a model that was never taught to complete sentences, like the
toys, rarely puts its top-1 token on an answer at all); ``all``. :func:`answering_table` reports how
often the model answers the open-ended form in each sense.

**What is measured.** Everything runs through the section modules and the one per-question runner:
the knockout sweeps are :func:`flowutils.analysis.run_sweep` on the open-ended samples, reading the
relative change of the ground truth's first sub-token's probability (``relative_change_gold_pct``,
:data:`METRIC`) and the logit difference between it and the best other candidate's first sub-token;
Figure P blocks cross-frame attention, Figure Q ``video->non-option question``, ``video->last`` and
``non-option question->last`` (:data:`FIGURE_Q`); Figure R is :func:`flowutils.paper.answer.answer_table`
(the logit lens at the last position) on the open-ended samples.

**Claims** (:func:`open_ended_claims`) are decided from 95% bootstrap intervals over questions
(:func:`flowutils.paper.appendix.drop_claim`): Figure P holds where some early-to-middle layer's band
lies below -5% (and, as on the section pages, on the logit difference with -1 logit); each Figure Q flow where
some layer's does; Figure R reuses Figure 8's rise criterion.
"""

from __future__ import annotations

import dataclasses

from ..knockout.flows import CROSS_FRAME
from .answer import claim_rise_with_integration, integration_end
from .appendix import drop_claim, drop_difference
from .claims import Claim, stability

SECTION = "C.1"
# sentences to complete, one per synthetic task (their words are in the toy vocabulary); GENERIC elsewhere
COMPLETIONS = {
    "action_antonym": " the action being performed in the video is",
    "action_sequence": " the object first did",
    "object_count": " there are",
    "moving_direction": " the object did move",
    "scene_transition": " the scenes change",
}
GENERIC = " The answer is"
FIGURE_P = (CROSS_FRAME,)
FIGURE_Q = ("video->non_option_question", "video->last", "non_option_question->last")
SELECTIONS = ("answered", "leads", "all")
METRIC = "relative_change_gold_pct"  # the ground truth's first sub-token: the open-ended answer has no letter
METRIC_THRESHOLD = -5.0  # the paper's threshold of a significant drop (Table E)
PAPER_RISE = "rises from about layer 20 of 32 (Figure R, LLaVA-NeXT-7B-Video-FT)"
# the claims' metrics: (column, threshold, label, words); -5% is the paper's threshold, -1 logit the section pages'
CLAIM_METRICS = (
    (METRIC, -5.0, "relative change", "the probability of the ground truth's first sub-token (relative change, %)"),
    ("logit_diff_change", -1.0, "logit difference", "the logit difference between the ground truth's first "
     "sub-token and the best other candidate's"),
)


def completion_prefix(task: str) -> str:
    """The sentence the open-ended prompt ends with for ``task``."""
    return COMPLETIONS.get(task, GENERIC)


class OpenEndedSample:
    """A multiple-choice question asked open-ended: every attribute is the question's own, but ``sample_id``
    (``open-ended/<id>``, so a result store never mixes it with the multiple-choice question) and
    ``open_ended_prefix`` (the sentence to complete, read by :meth:`FlowModel.prepare_sample`)."""

    def __init__(self, sample, prefix: str, sample_id: str):
        self._sample, self.open_ended_prefix, self.sample_id = sample, prefix, f"open-ended/{sample_id}"

    def __getattr__(self, name):
        if name.startswith("__") or name == "_sample":
            raise AttributeError(name)
        return getattr(self._sample, name)


def open_ended_samples(fm, samples, prefixes: dict | None = None):
    """``(kept, selection)``: the open-ended form of every question whose candidates' first sub-tokens after the
    sentence are all different (and known), and per task the questions read and kept."""
    import pandas as pd

    from ..analysis.runner import sample_id

    prefixes = {**COMPLETIONS, **(prefixes or {})}
    kept, rows = [], {}
    for i, s in enumerate(samples):
        prefix = prefixes.get(s.task, GENERIC)
        row = rows.setdefault(s.task, {"task": s.task, "sentence": prefix.strip(), "questions": 0, "kept": 0,
                                       "first sub-tokens": set()})
        row["questions"] += 1
        try:
            ids = [fm.answer_token_id(prefix, c) for c in s.candidates]
        except ValueError:
            continue
        row["first sub-tokens"].update(fm.tokenizer.convert_ids_to_tokens(ids))
        if len(set(ids)) == len(ids):
            row["kept"] += 1
            kept.append(OpenEndedSample(s, prefix, sample_id(s, i)))
    table = pd.DataFrame(list(rows.values()), columns=["task", "sentence", "questions", "kept", "first sub-tokens"])
    table["first sub-tokens"] = [", ".join(sorted(t)) for t in table["first sub-tokens"]]
    return kept, table


def select(table, selection: str = "leads"):
    """The rows of the questions a selection keeps (:data:`SELECTIONS`) from a sweep or answer table."""
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {SELECTIONS}")
    if selection == "all" or len(table) == 0:
        return table
    if selection == "answered":
        return table[table["correct_baseline"].astype(bool)]
    lead = table["logit_diff_baseline"] if "logit_diff_baseline" in table else table.groupby("sample_id")[
        "logit_diff"].transform("last")
    return table[lead > 0]


def answering_table(answers, samples):
    """How often the model answers the open-ended form, per task and over all: ``answered`` (its next token is the
    ground truth's first sub-token) and ``leads`` (that token beats every other candidate's), % with Wilson 95%
    intervals, beside the chance of leading (one over the candidates). ``answers``:
    :func:`flowutils.paper.answer.answer_table` rows of the open-ended ``samples`` (the last layer's ``final_norm``
    logit lens is the model's own output)."""
    import pandas as pd

    from ..analysis.uncertainty import accuracy

    last = answers[answers["layer"] == answers["layer"].max()]
    chance = {s.sample_id: 100 / len(s.candidates) for s in samples}
    rows = []
    for task, g in [("all tasks", last)] + list(last.groupby("task", sort=False)):
        a, lead = accuracy(g["correct_baseline"]), accuracy(g["logit_diff"] > 0)
        rows.append({"task": task, "questions": a["questions"], "answered %": a["accuracy"],
                     "answered 95% CI": f"{a['lo']:.1f}-{a['hi']:.1f}", "leads %": lead["accuracy"],
                     "leads 95% CI": f"{lead['lo']:.1f}-{lead['hi']:.1f}",
                     "chance of leading %": g["sample_id"].map(chance).mean()})
    return pd.DataFrame(rows)


def open_ended_claims(sweep, answers, n_layers: int, interval: int, seed: int = 0) -> list[Claim]:
    """Figures P, Q and R on the selected questions' rows (``sweep``: the knockout sweep of :data:`FIGURE_P` and
    :data:`FIGURE_Q`; ``answers``: :func:`flowutils.paper.answer.answer_table` rows). Figure R is Figure 8's test:
    the ground truth's rise where video->non-option question flow completes (its Table E reading on ``sweep``,
    ``interval``-layer intervals), within ``interval`` layers."""
    from ..knockout.flows import flow_label

    early = range(n_layers // 2)  # the first half of the layers, as Sec. 3.2's claims read "early-to-middle"
    claims = []
    for value, threshold, label, words in CLAIM_METRICS:
        claims.append(drop_claim(SECTION, f"Figure P ({label})", "blocking cross-frame attention in early-to-middle "
                                 f"layers lowers {words} below {threshold:g} (layers 1-{len(early)})",
                                 "significant decrease in early-to-middle layers (Figure P)",
                                 sweep[sweep["flow"] == flow_label(CROSS_FRAME)], value, early, threshold, seed))
        for flow in FIGURE_Q:
            claims.append(drop_claim(SECTION, f"Figure Q: {flow_label(flow)} ({label})",
                                     f"blocking {flow_label(flow)} lowers {words} below {threshold:g} in some layer "
                                     "(the last position is the checkpoint)", "drops (Figure Q)",
                                     sweep[sweep["flow"] == flow_label(flow)], value, None, threshold, seed))
    end = integration_end(sweep, n_layers, interval, METRIC_THRESHOLD, flow_label(FIGURE_Q[0]), METRIC)
    rise = claim_rise_with_integration(answers, end, interval, seed)
    claims.append(dataclasses.replace(rise, section=SECTION, item="Figure R", paper=PAPER_RISE,
                                      finding=rise.finding.replace("true option", "ground truth's first sub-token")
                                      .replace("video->question", "video->non-option question"),
                                      measured=rise.measured.replace("video->question", "video->non-option question")))
    return claims


def video_vs_image_claim(video_rows, image_rows, n_layers: int, seed: int = 0) -> Claim:
    """Figure P: the cross-frame knockout lowers the ground truth more for the VideoLLM than for its ImageLLM base:
    the mean over questions of each question's lowest change in the first half of the layers, VideoLLM minus
    ImageLLM, has a 95% bootstrap interval below 0 (holds), above 0 (does not hold), or across it. Both models are
    asked the same questions: a question falls in the same half for both."""
    finding = "the cross-frame knockout lowers the ground truth's probability more for the VideoLLM than for its " \
              "ImageLLM base (per-question lowest change, first half of the layers)"
    early = list(range(n_layers // 2))
    v, i = video_rows[video_rows["layer"].isin(early)], image_rows[image_rows["layer"].isin(early)]

    def video_minus_image(video, image):
        return drop_difference(image, video, "ImageLLM", "VideoLLM", "below", METRIC, seed)

    n = int(v["sample_id"].nunique() + i["sample_id"].nunique())
    halves = stability(lambda video, image: video_minus_image(video, image)[1], v, i) if n else ""
    r, holds = video_minus_image(v, i)
    if r is None:
        return Claim(SECTION, "Figure P: VideoLLM vs ImageLLM", finding, "VideoLLM stronger (Figure P)",
                     f"questions: VideoLLM {v['sample_id'].nunique()}, ImageLLM {i['sample_id'].nunique()}", None,
                     n=n, stability=halves)
    return Claim(SECTION, "Figure P: VideoLLM vs ImageLLM", finding, "VideoLLM stronger (Figure P)",
                 f"lowest change per question {r['VideoLLM mean']:.2f} (VideoLLM, n={int(r['VideoLLM n'])}) vs "
                 f"{r['ImageLLM mean']:.2f} (ImageLLM, n={int(r['ImageLLM n'])})", holds,
                 n=int(r["VideoLLM n"] + r["ImageLLM n"]), interval=f"difference [{r['lo']:.2f}, {r['hi']:.2f}]",
                 stability=halves)
