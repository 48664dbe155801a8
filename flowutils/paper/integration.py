"""Section 3.3: video-language integration (Figures 3, 5, 6, 7).

* Figure 3: video->question, video->last, question->last, last->last knocked out layer by layer.
  The paper finds video reaching the question in the early-to-middle layers, then the question
  reaching the last position in the middle-to-late layers (:func:`video_question_last_claim`),
  and the direct video->last flow weak (:func:`video_last_claim`).
* Figure 5: attention of the question's temporal words ("begins"/"ends" in Object Count) to
  the video, with and without cross-frame attention (:func:`word_attention`). With it, "begins"
  looks at the first frames and "ends" at the last ones (:func:`temporal_word_claim`); without
  it the alignment weakens (:func:`knockout_alignment_claim`).
* Figure 6: non-option question, true option and false options -> last: the true option
  carries the answer to the last position in the middle-to-late layers (:func:`true_option_claim`).
* Figure 7: routes into the true option, directly from the video or through the non-option
  question, per task (:func:`route_claims`).

Curve claims use :func:`flowutils.paper.claims.largest_drop` on a sweep table and the
metric's threshold (:data:`flowutils.paper.claims.METRICS`).
"""

from __future__ import annotations

import functools
import json

import numpy as np

from ..knockout.flows import CROSS_FRAME
from ..knockout.plan import KnockoutPlan
from ..analysis.attention_maps import attention_to_video
from .claims import Claim, largest_drop, metric
from ..analysis.runner import layer_problems, run_questions
from .temporal import task_title
from ..data.video import NUM_FRAMES

SECTION = "3.3"
DIRECT, INDIRECT, BOTH = "video->true option", "video->non-option question", "both"
# Figure 7: the route that carries the video into the true option, per task (Sec. 3.3).
PAPER_ROUTES = {"action_antonym": DIRECT, "action_sequence": DIRECT, "scene_transition": DIRECT,
                "moving_direction": INDIRECT, "object_count": BOTH}
TEMPORAL_WORDS = ("begins", "ends")


def _drops(table, value):
    return largest_drop(table, value, by=("flow",)).set_index("flow")


def _need(low, flows):
    missing = [f for f in flows if f not in low.index]
    if missing:
        raise ValueError(f"the sweep table has no rows for flow(s) {missing}; it has {list(low.index)}")


def _fmt(low, flow):
    return f"{flow}: {low.loc[flow, 'drop']:.2f} at L{low.loc[flow, 'layer'] + 1}"


def video_question_last_claim(table, value: str = "relative_change_pct") -> Claim:
    """Figure 3: video->question and question->last both drop below the threshold, and
    video->question's largest drop comes at an earlier layer than question->last's."""
    words, threshold = metric(value)
    low = _drops(table, value)
    vq, ql = "video->question", "question->last"
    _need(low, [vq, ql])
    ok = low.loc[vq, "drop"] < threshold and low.loc[ql, "drop"] < threshold and low.loc[vq, "layer"] < \
        low.loc[ql, "layer"]
    return Claim(SECTION, f"Figure 3: video->question->last ({value})",
                 f"video->question drops first, question->last later (largest drops, both below {threshold:g}) "
                 f"[{words}]", "video->question early-to-middle, question->last middle-to-late",
                 f"{_fmt(low, vq)}; {_fmt(low, ql)}", bool(ok))


def video_last_claim(table, value: str = "relative_change_pct") -> Claim:
    """Figure 3: the direct video->last flow matters less than video->question and question->last."""
    words, _ = metric(value)
    low = _drops(table, value)
    flows = ["video->last", "video->question", "question->last"]
    _need(low, flows)
    ok = low.loc["video->last", "drop"] > max(low.loc["video->question", "drop"], low.loc["question->last", "drop"])
    return Claim(SECTION, f"Figure 3: video->last weak ({value})",
                 f"the direct video->last drop is smaller than video->question's and question->last's [{words}]",
                 "video->last cut in every layer by the effective pathways (Sec. 3.5)",
                 "; ".join(_fmt(low, f) for f in flows), bool(ok))


def true_option_claim(table, n_layers: int, value: str = "relative_change_pct") -> Claim:
    """Figure 6: true option->last has the largest drop of the three flows into the last position,
    below the threshold, in the second half of the layers; non-option question->last stays above it."""
    words, threshold = metric(value)
    low = _drops(table, value)
    flows = ["true option->last", "non-option question->last", "false options->last"]
    _need(low, flows)
    t = low.loc["true option->last"]
    ok = (t["drop"] < threshold and t["layer"] >= n_layers // 2 and t["drop"] < low.loc[flows[2], "drop"]
          and low.loc["non-option question->last", "drop"] > threshold)
    return Claim(SECTION, f"Figure 6: true option->last ({value})",
                 f"true option->last drops most, below {threshold:g}, in layers {n_layers // 2 + 1}-{n_layers}; "
                 f"non-option question->last stays above {threshold:g} [{words}]",
                 "true option propagates to last in middle-to-late layers; non-option question does not",
                 "; ".join(_fmt(low, f) for f in flows), bool(ok))


def route_claims(table, value: str = "relative_change_pct") -> list[Claim]:
    """Figure 7, one claim per task: the route the paper names carries the video into the true option.

    ``direct``: video->true option drops below the threshold and more than video->non-option
    question; ``indirect``: the reverse; ``both``: both drop below the threshold.
    """
    words, threshold = metric(value)
    low = largest_drop(table, value, by=("task", "flow")).set_index(["task", "flow"])
    claims = []
    for task in dict.fromkeys(table["task"]):
        if task not in PAPER_ROUTES or (task, DIRECT) not in low.index or (task, INDIRECT) not in low.index:
            continue
        d, i = low.loc[(task, DIRECT), "drop"], low.loc[(task, INDIRECT), "drop"]
        expected = PAPER_ROUTES[task]
        ok = {DIRECT: d < threshold and d < i, INDIRECT: i < threshold and i < d,
              BOTH: d < threshold and i < threshold}[expected]
        claims.append(Claim(SECTION, f"Figure 7: {task_title(task)} ({value})",
                            f"the video reaches the true option through {expected} (threshold {threshold:g}) "
                            f"[{words}]", expected,
                            f"{DIRECT}: {d:.2f}; {INDIRECT}: {i:.2f} (n={low.loc[(task, DIRECT), 'questions']})",
                            bool(ok)))
    return claims


def word_positions(fm, prepared, words=TEMPORAL_WORDS) -> dict[str, list[int]]:
    """Positions of ``words`` among the non-option question's tokens (``{word: [positions]}``)."""
    ids = prepared.input_ids[0]  # PLLaVA feeds inputs_embeds: the ids are kept beside the inputs
    out = {}
    for pos in prepared.layout.non_option_question:
        token = fm.tokenizer.convert_ids_to_tokens(int(ids[pos])).lstrip("▁Ġ ").lower()
        if token in words:
            out.setdefault(token, []).append(pos)
    return out


def word_attention_rows(fm, question, layers, words=TEMPORAL_WORDS, knockout_layers=None) -> list[dict]:
    """:func:`word_attention`'s rows of one :class:`flowutils.analysis.runner.Question`, each with its
    attention map as JSON (``map``); none for a question without exactly one of ``words``."""
    prepared = question.prepared
    found = word_positions(fm, prepared, words)
    if len(found) != 1:
        return []  # no temporal word, or both: the question's word is ambiguous
    (word, positions), = found.items()
    plan = KnockoutPlan.from_flows(prepared.layout, [CROSS_FRAME], knockout_layers)
    rows = []
    for condition, p in (("full attention", None), ("cross-frame knocked out", plan)):
        att = attention_to_video(fm, prepared, positions, p)  # [layer, head, query, frame, token]
        m = att[list(layers)].mean(dim=(0, 1, 2)).cpu().numpy()  # [frame, token]
        half = m.shape[0] // 2
        # the map as JSON: a float32 written as a Python float reads back the same float32
        rows.append({"sample_id": question.sample_id, "word": word, "condition": condition,
                     "first_half_share": float(m[:half].sum() / m.sum()), "map": json.dumps(m.tolist())})
    return rows


def word_attention(fm, samples, layers, words=TEMPORAL_WORDS, knockout_layers=None, num_frames: int = NUM_FRAMES,
                   progress: bool = False, *, out=None, benchmark=None, shard: int | None = None,
                   num_shards: int | None = None):
    """Head- and layer-mean attention of each temporal word of the question to the video tokens,
    with full attention and with cross-frame attention blocked in ``knockout_layers`` (default: all).

    Returns ``(table, maps)``: ``table`` has one row per question x condition (``sample_id``,
    ``word``, ``condition``, ``first_half_share``: the share of the word's attention to the video
    that goes to the first half of the frames); ``maps[(sample_id, condition)]`` is the
    ``[frames, tokens per frame]`` attention (mean over heads, ``layers`` and the word's tokens).
    Questions without exactly one of ``words`` give no rows. ``out``, ``benchmark``,
    ``shard``/``num_shards``, ``table.attrs``: as :func:`flowutils.analysis.run_sweep`'s (:mod:`.runner`).
    """
    layers, words = list(layers), list(words)
    knockout_layers = list(range(fm.n_layers) if knockout_layers is None else knockout_layers)
    problems = layer_problems("layers", layers, fm.n_layers) + layer_problems("knockout_layers", knockout_layers,
                                                                              fm.n_layers)
    measure = functools.partial(word_attention_rows, fm, layers=layers, words=words, knockout_layers=knockout_layers)
    rows = run_questions(fm, samples, measure, analysis="word_attention", num_frames=num_frames,
                         params={"layers": layers, "words": words, "knockout_layers": knockout_layers},
                         problems=problems, out=out, benchmark=benchmark, shard=shard, num_shards=num_shards,
                         progress=progress)
    maps = {(r.sample_id, r.condition): np.asarray(json.loads(r.map), dtype=np.float32) for r in rows.itertuples()}
    return rows.drop(columns="map", errors="ignore"), maps  # no column at all when no question has rows


def _gap(table, condition):
    g = table[table["condition"] == condition].groupby("word")["first_half_share"].mean()
    if not {"begins", "ends"} <= set(g.index):
        return None, g
    return float(g["begins"] - g["ends"]), g


def temporal_word_claim(table) -> Claim:
    """Figure 5 (a): with full attention, "begins" puts a larger share of its attention on the first
    half of the frames than "ends" does (mean over questions)."""
    gap, g = _gap(table, "full attention")
    n = table[table["condition"] == "full attention"].groupby("word").size().to_dict()
    finding = "\"begins\" attends to the first half of the frames more than \"ends\" does (full attention)"
    if gap is None:
        return Claim(SECTION, "Figure 5 (a)", finding, "qualitative (Figure 5a)",
                     f"questions per word: {n}", None)
    return Claim(SECTION, "Figure 5 (a)", finding, "qualitative (Figure 5a)",
                 f"first-half share: begins {g['begins']:.2f} (n={n['begins']}), ends {g['ends']:.2f} "
                 f"(n={n['ends']}); gap {gap:.2f}", gap > 0)


def knockout_alignment_claim(table) -> Claim:
    """Figure 5 (b): with cross-frame attention blocked, the begins-ends gap shrinks."""
    full, _ = _gap(table, "full attention")
    ko, _ = _gap(table, "cross-frame knocked out")
    finding = "blocking cross-frame attention shrinks the begins-ends gap in first-half attention share"
    if full is None or ko is None:
        return Claim(SECTION, "Figure 5 (b)", finding, "qualitative (Figure 5b)", "a word has no question", None)
    return Claim(SECTION, "Figure 5 (b)", finding, "qualitative (Figure 5b)",
                 f"gap {full:.2f} with full attention, {ko:.2f} knocked out", bool(ko < full))
