"""Section 3.3: video-language integration (Figures 3, 5, 6, 7).

* Figure 3: video->question, video->last, question->last, last->last knocked out layer by layer.
  The paper finds video reaching the question in the early-to-middle layers, then the question
  reaching the last position in the middle-to-late layers (:func:`video_question_last_claim`),
  and the direct video->last flow weak (:func:`video_last_claim`); the layer ranges themselves are compared with
  the paper's, scaled to the model's depth where the paper did not run it (:func:`layer_ranges_claim`).
* Figure 5: attention of the question's temporal words ("begins"/"ends" in Object Count) to
  the video, with and without cross-frame attention (:func:`word_attention`), each video asked
  both ways as the paper does (the question and its swap, ``swap=True``). With it, "begins"
  looks at the first frames and "ends" at the last ones (:func:`temporal_word_claim`); without
  it the alignment weakens (:func:`knockout_alignment_claim`) and the words attend to the frames
  nearest them, the last ones (:func:`positional_bias_claim`). A word the tokenizer splits is
  read over all its sub-tokens (:func:`word_token_positions`).
* Figure 6: non-option question, true option and false options -> last: the true option
  carries the answer to the last position in the middle-to-late layers (:func:`true_option_claim`).
  Blocking false options->last raises the answer instead (:func:`false_option_rise_claim`).
* Figure 7: routes into the true option, directly from the video or through the non-option
  question, per task (:func:`route_claims`); both act in the early-to-middle layers (:func:`route_timing_claim`),
  and the indirect route's second hop, non-option question->true option, carries it where the paper sees that
  route (:func:`second_hop_claim`).

Curve claims read per-question interval means over the two halves of the layers (as Table E reads layer
ranges), bootstrapped over questions, against the metric's threshold (:data:`flowutils.paper.claims.METRICS`):
one row per claim, decided on one metric with the other's verdict beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import re

import numpy as np

from ..knockout.flows import CROSS_FRAME
from ..knockout.plan import KnockoutPlan
from ..knockout.windows import PAPER, in_paper_range, scaled_protocol
from ..analysis.attention_maps import attention_to_video
from .claims import (METRICS, Claim, all_of, difference_estimate, intervals_text, mean_estimate, metric, questions,
                     range_means, stability, verdict_word)
from ..analysis.runner import layer_problems, run_questions
from .pathways import PAPER_RANGES, interval_table, intervals, range_label
from .temporal import AXIS, task_title
from ..data.synthetic import TEMPORAL_SWAP, swap_temporal_word
from ..data.video import NUM_FRAMES

SECTION = "3.3"
DIRECT, INDIRECT, BOTH = "video->true option", "video->non-option question", "both"
# Figure 7: the route that carries the video into the true option, per task (Sec. 3.3).
PAPER_ROUTES = {"action_antonym": DIRECT, "action_sequence": DIRECT, "scene_transition": DIRECT,
                "moving_direction": INDIRECT, "object_count": BOTH}
TEMPORAL_WORDS = ("begins", "ends")


def _need(table, flows):
    have = set(table["flow"])
    missing = [f for f in flows if f not in have]
    if missing:
        raise ValueError(f"the sweep table has no rows for flow(s) {missing}; it has {sorted(have)}")


def _halves(n_layers: int):
    """0-based layers of the first half (``1-L/2``, 1-based) and the second (``L/2+1-L``), with their labels."""
    mid = n_layers // 2
    return (tuple(range(mid)), f"L1-{mid}"), (tuple(range(mid, n_layers)), f"L{mid + 1}-{n_layers}")


def _depth(table) -> int:
    return int(table["layer"].max()) + 1


def _rm(table, flow, value, layers):
    return range_means(table[table["flow"] == flow], value, layers)


def _values(table, decide_on: str) -> list[str]:
    metric(decide_on)
    if decide_on not in table.columns:
        raise ValueError(f"decide_on={decide_on!r}: the table has no such column")
    return [decide_on] + [m for m in METRICS if m != decide_on and m in table.columns]


def _row(estimates, table, decide_on, seed, combine=all_of):
    """``(holds, measured, n, interval, stability)`` of a claim whose comparisons ``estimates(table, value, seed)``
    lists; ``measured``: the verdict on each metric the table has."""
    def verdict(t, value=decide_on):
        return combine(e.holds for e in estimates(t, value, seed)) if len(t) else None

    measured = "; ".join(f"{AXIS[v]}: {verdict_word(verdict(table, v))}" for v in _values(table, decide_on))
    return (verdict(table), measured, questions(table), intervals_text(estimates(table, decide_on, seed)),
            stability(verdict, table))


def _vql_estimates(table, value, seed=0):
    _, threshold = metric(value)
    (first, a), (second, b) = _halves(_depth(table))
    vq1, vq2 = _rm(table, "video->question", value, first), _rm(table, "video->question", value, second)
    ql1, ql2 = _rm(table, "question->last", value, first), _rm(table, "question->last", value, second)
    return [mean_estimate(f"video->question {a}", vq1, threshold, "below", seed=seed),
            mean_estimate(f"video->question {a} minus {b}", vq1 - vq2.reindex(vq1.index), 0.0, "below", seed=seed),
            mean_estimate(f"question->last {b}", ql2, threshold, "below", seed=seed),
            mean_estimate(f"question->last {b} minus {a}", ql2 - ql1.reindex(ql2.index), 0.0, "below", seed=seed)]


def video_question_last_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 3: blocking video->question around layers 1-L/2 lowers the answer below the threshold, and more than
    around layers L/2+1-L; question->last the other way round (its drop lies in the second half). Per question,
    interval means over the two halves of the layers (as Table E reads ranges), bootstrapped over questions."""
    _need(table, ["video->question", "question->last"])
    words, threshold = metric(decide_on)
    holds, measured, n, interval, stab = _row(_vql_estimates, table, decide_on, seed)
    return Claim(SECTION, "Figure 3: video->question->last",
                 f"video->question hurts in the first half of the layers (mean {words} below {threshold:g}, and "
                 f"below its second-half mean), question->last in the second half (decided on {AXIS[decide_on]})",
                 "video->question early-to-middle, question->last middle-to-late", measured, holds, n, interval, stab)


WEAK_FLOWS = ("video->last", "last->last")
RANGE_FLOWS = ("video->question", "question->last")  # Figure 3's flows with a range in the paper (Table E(a))


def _weak_estimates(table, value, seed=0):
    _, threshold = metric(value)
    out = []
    for flow in [f for f in WEAK_FLOWS if f in set(table["flow"])]:
        for layers, label in _halves(_depth(table)):
            out.append(mean_estimate(f"{flow} {label}", _rm(table, flow, value, layers), threshold, "above",
                                     seed=seed))
    return out


def video_last_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 3: the direct video->last flow and last->last (where swept) matter little: their mean over each half
    of the layers stays above the threshold."""
    _need(table, ["video->last"])
    words, threshold = metric(decide_on)
    holds, measured, n, interval, stab = _row(_weak_estimates, table, decide_on, seed)
    flows = " and ".join(f for f in WEAK_FLOWS if f in set(table["flow"]))
    return Claim(SECTION, "Figure 3: video->last and last->last weak",
                 f"{flows}: the mean {words} over each half of the layers stays above {threshold:g} "
                 f"(decided on {AXIS[decide_on]})",
                 "video->last and last->last cut in every layer by the effective pathways (Sec. 3.5)",
                 measured, holds, n, interval, stab)


def _paper_range(flow):
    """The paper's range of ``flow`` (Table E(a), LLaVA-NeXT-7B-Video-FT): ``(first, last)``, 1-based."""
    first, last = PAPER_RANGES[flow].lstrip("L").split("-")
    return int(first), int(last)


def _is_scaled(protocol) -> bool:
    return protocol is None or protocol.rule != PAPER.rule


def _interval(n_layers, protocol, interval):
    return interval or (protocol.interval if protocol is not None else scaled_protocol(n_layers).interval)


def _range_estimates(table, value, protocol, interval=None, seed=0):
    """Per flow and per interval of the protocol: in the paper's range, its mean below the threshold (effective);
    outside it, above (not effective)."""
    _, threshold = metric(value)
    n_layers = _depth(table)
    size = _interval(n_layers, protocol, interval)
    out = []
    for flow in RANGE_FLOWS:
        first, last = _paper_range(flow)
        for layers in intervals(n_layers, size):
            inside = in_paper_range(layers, first, last, n_layers, _is_scaled(protocol))
            out.append(mean_estimate(f"{flow} {range_label(layers)} ({'in' if inside else 'outside'} the paper's "
                                     "range)", _rm(table, flow, value, layers), threshold,
                                     "below" if inside else "above", seed=seed))
    return out


def _ranges_text(table, value, protocol, interval=None):
    """Each flow's measured effective intervals (interval means below the threshold) beside the intervals in the
    paper's range."""
    _, threshold = metric(value)
    n_layers = _depth(table)
    size = _interval(n_layers, protocol, interval)
    found = interval_table(table[table["flow"].isin(RANGE_FLOWS)], n_layers, size, value)
    parts = []
    for flow in RANGE_FLOWS:
        first, last = _paper_range(flow)
        eff = [l for layers in found[(found.flow == flow) & (found["mean"] < threshold)]["layers"] for l in layers]
        paper = range_label([l for layers in intervals(n_layers, size) for l in layers
                             if in_paper_range(layers, first, last, n_layers, _is_scaled(protocol))])
        how = f"L{first}-{last} of 32, scaled" if _is_scaled(protocol) else "as the paper's code reads it"
        parts.append(f"{flow} effective {range_label(eff)} (paper: {paper}, {how})")
    return "; ".join(parts)


def layer_ranges_claim(table, protocol=None, interval: int | None = None, decide_on: str = "relative_change_pct",
                       seed: int = 0) -> Claim:
    """Figure 3's layer ranges, not only their order: on each interval of ``protocol`` (the model's; ``None``: the
    depth-scaled one; ``interval``: another interval size, as a page's ``interval_size``), video->question and
    question->last are effective (per-question interval mean below the threshold) inside the paper's range (Table E(a): L6-20 and L16-25 of LLaVA-NeXT-7B-Video-FT) and not effective
    (above it) outside. On a model the paper did not run, the ranges are scaled to its depth as the protocol scales
    the window; an interval is in a range where its centre is. Holds where every interval is decided the paper's
    way, does not hold where any is decided the other way."""
    _need(table, list(RANGE_FLOWS))
    words, threshold = metric(decide_on)
    holds, measured, n, bounds, stab = _row(lambda t, v, s: _range_estimates(t, v, protocol, interval, s), table,
                                            decide_on, seed)
    paper = "; ".join(f"{f} {PAPER_RANGES[f]}" for f in RANGE_FLOWS)
    return Claim(SECTION, "Figure 3: layer ranges",
                 f"video->question and question->last are effective (interval mean {words} below {threshold:g}) "
                 f"in the paper's layer ranges and not outside them (intervals of "
                 f"{'the scaled' if _is_scaled(protocol) else 'the paper'} protocol; decided on {AXIS[decide_on]})",
                 paper + " (1-based, of 32)", f"{_ranges_text(table, decide_on, protocol, interval)}. {measured}", holds,
                 n, bounds, stab)


def _true_option_estimates(table, value, seed=0):
    _, threshold = metric(value)
    (first, a), (second, b) = _halves(_depth(table))
    t2 = _rm(table, "true option->last", value, second)
    f2 = _rm(table, "false options->last", value, second)
    return [mean_estimate(f"true option->last {b}", t2, threshold, "below", seed=seed),
            mean_estimate(f"true minus false options->last {b}", t2 - f2.reindex(t2.index), 0.0, "below", seed=seed),
            *(mean_estimate(f"non-option question->last {label}", _rm(table, "non-option question->last", value,
                                                                      layers), threshold, "above", seed=seed)
              for layers, label in ((first, a), (second, b)))]


def true_option_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 6: blocking true option->last in the second half of the layers lowers the answer below the threshold,
    more than blocking false options->last there; non-option question->last stays above the threshold in both
    halves."""
    _need(table, ["true option->last", "non-option question->last", "false options->last"])
    words, threshold = metric(decide_on)
    holds, measured, n, interval, stab = _row(_true_option_estimates, table, decide_on, seed)
    return Claim(SECTION, "Figure 6: true option->last",
                 f"true option->last hurts in the second half of the layers (mean {words} below {threshold:g}, and "
                 f"below false options->last's); non-option question->last stays above {threshold:g} "
                 f"(decided on {AXIS[decide_on]})",
                 "true option propagates to last in middle-to-late layers; non-option question does not",
                 measured, holds, n, interval, stab)


def _false_rise_estimates(table, value, seed=0):
    (first, a), (second, b) = _halves(_depth(table))
    return [mean_estimate(f"false options->last {b}", _rm(table, "false options->last", value, second), 0.0, "above",
                          seed=seed)]


def false_option_rise_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 6's note: blocking false options->last *raises* the answer (the task gets easier without the false
    options): the per-question mean over the second half of the layers (the middle-to-late layers, where Figure 6
    reads true option->last) lies above 0, on each metric (a rise has no threshold in the paper: 0 is no change)."""
    _need(table, ["false options->last"])
    holds, measured, n, interval, stab = _row(_false_rise_estimates, table, decide_on, seed)
    (_, _), (_, b) = _halves(_depth(table))
    return Claim(SECTION, "Figure 6: false options->last rise",
                 f"blocking false options->last raises the answer: its mean over {b} (middle-to-late) lies above 0 "
                 f"(decided on {AXIS[decide_on]})",
                 "probability rise when false options->last is blocked (removing them makes the task easier)",
                 measured, holds, n, interval, stab)


def _route_estimates(table, value, expected, seed=0):
    _, threshold = metric(value)
    (first, a), _ = _halves(_depth(table))
    d, i = _rm(table, DIRECT, value, first), _rm(table, INDIRECT, value, first)
    if expected == BOTH:
        return [mean_estimate(f"{DIRECT} {a}", d, threshold, "below", seed=seed),
                mean_estimate(f"{INDIRECT} {a}", i, threshold, "below", seed=seed)]
    main, other = (d, i) if expected == DIRECT else (i, d)
    rival = INDIRECT if expected == DIRECT else DIRECT
    return [mean_estimate(f"{expected} {a}", main, threshold, "below", seed=seed),
            mean_estimate(f"{expected} minus {rival} {a}", main - other.reindex(main.index), 0.0, "below", seed=seed)]


def route_claims(table, decide_on: str = "relative_change_pct", seed: int = 0) -> list[Claim]:
    """Figure 7, one claim per task: the route the paper names carries the video into the true option, read on the
    per-question mean over the first half of the layers (where the video is integrated).

    ``direct``: video->true option below the threshold and below video->non-option question; ``indirect``: the
    reverse; ``both``: both below the threshold.
    """
    words, threshold = metric(decide_on)
    claims = []
    for task in dict.fromkeys(table["task"]):
        g = table[table["task"] == task]
        if task not in PAPER_ROUTES or not {DIRECT, INDIRECT} <= set(g["flow"]):
            continue
        expected = PAPER_ROUTES[task]
        est = functools.partial(_route_estimates, expected=expected)
        holds, measured, n, interval, stab = _row(lambda t, v, s: est(t, v, seed=s), g, decide_on, seed)
        claims.append(Claim(SECTION, f"Figure 7: {task_title(task)}",
                            f"the video reaches the true option through {expected} (mean {words} over the first "
                            f"half of the layers below {threshold:g}; decided on {AXIS[decide_on]})", expected,
                            measured, holds, n, interval, stab))
    return claims


SECOND_HOP = "non-option question->true option"


def _tasks_naming(route: str) -> tuple[str, ...]:
    """The tasks on which the paper sees ``route`` (DIRECT or INDIRECT) carry the video into the true option."""
    return tuple(t for t, r in PAPER_ROUTES.items() if r in (route, BOTH))


def _of_tasks(table, tasks):
    return table[table["task"].isin(tasks)]


def _early_estimates(table, flow, value, seed, label=""):
    """``flow`` acts in the first half of the layers: its per-question interval mean there below the threshold,
    and below its mean over the second half."""
    _, threshold = metric(value)
    (first, a), (second, b) = _halves(_depth(table))
    e1, e2 = _rm(table, flow, value, first), _rm(table, flow, value, second)
    return [mean_estimate(f"{flow} {a}{label}", e1, threshold, "below", seed=seed),
            mean_estimate(f"{flow} {a} minus {b}{label}", e1 - e2.reindex(e1.index), 0.0, "below", seed=seed)]


def _timing_estimates(table, value, seed=0):
    direct, indirect = _of_tasks(table, _tasks_naming(DIRECT)), _of_tasks(table, _tasks_naming(INDIRECT))
    return [*_early_estimates(direct, DIRECT, value, seed, " (direct-route tasks)"),
            *_early_estimates(indirect, INDIRECT, value, seed, " (indirect-route tasks)")]


def route_timing_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 7's timing: the video converges to the true option in the early-to-middle layers, on either route.
    On the tasks where the paper sees the direct route (Action Antonym, Action Sequence, Scene Transition, Object
    Count), video->true option's per-question mean over the first half of the layers lies below the threshold and
    below its second-half mean; on those where it sees the indirect one (Moving Direction, Object Count), the same
    for its first hop, video->non-option question. The questions of each group of tasks are pooled."""
    _need(table, [DIRECT, INDIRECT])
    words, threshold = metric(decide_on)
    (_, a), (_, b) = _halves(_depth(table))
    holds, measured, n, interval, stab = _row(_timing_estimates, table, decide_on, seed)
    return Claim(SECTION, "Figure 7: timing of the routes",
                 f"video->true option (direct-route tasks) and video->non-option question (indirect-route tasks) "
                 f"act in {a}: mean {words} there below {threshold:g} and below the {b} mean "
                 f"(decided on {AXIS[decide_on]})",
                 "video converges to the true option in early-to-middle layers (both routes)",
                 measured, holds, n, interval, stab)


def _second_hop_estimates(table, value, seed=0):
    _, threshold = metric(value)
    (first, a), _ = _halves(_depth(table))
    only_direct = tuple(t for t in _tasks_naming(DIRECT) if t not in _tasks_naming(INDIRECT))
    on = _rm(_of_tasks(table, _tasks_naming(INDIRECT)), SECOND_HOP, value, first)
    off = _rm(_of_tasks(table, only_direct), SECOND_HOP, value, first)
    return [mean_estimate(f"{SECOND_HOP} {a} (indirect-route tasks)", on, threshold, "below", seed=seed),
            difference_estimate(f"{SECOND_HOP} {a}, indirect-route minus direct-route tasks", on, off, 0.0, "below",
                                seed=seed)]


def second_hop_claim(table, decide_on: str = "relative_change_pct", seed: int = 0) -> Claim:
    """Figure 7's second hop: where the paper sees the indirect route (Moving Direction, Object Count), blocking
    non-option question->true option hurts (per-question mean over the first half of the layers below the
    threshold), and more than on the tasks of the direct route alone (Action Antonym, Action Sequence, Scene
    Transition: the difference of the two groups' means below 0, each group resampled on its own). The order of
    the two hops within the first half is not tested."""
    _need(table, [SECOND_HOP])
    words, threshold = metric(decide_on)
    (_, a), _ = _halves(_depth(table))
    holds, measured, n, interval, stab = _row(_second_hop_estimates, table, decide_on, seed)
    return Claim(SECTION, "Figure 7: second hop of the indirect route",
                 f"{SECOND_HOP} hurts on the indirect-route tasks (mean {words} over {a} below {threshold:g}), more "
                 f"than on the direct-route tasks (decided on {AXIS[decide_on]})",
                 "Moving Direction: video -> non-option question, then -> true option (red dotted line)",
                 measured, holds, n, interval, stab)


def word_token_positions(tokenizer, ids, positions, words) -> dict[str, list[int]]:
    """``{word: [positions]}``: where each of ``words`` stands, as a whole word, among the tokens at ``positions``
    (of ``ids``), with every sub-token it spans. The positions' text is decoded prefix by prefix, so each token owns
    the characters it adds; a word found in the text takes every token that overlaps it (one token where the
    tokenizer keeps the word whole, several where it splits it)."""
    positions = [int(p) for p in positions]
    words = [w.lower() for w in words]
    spans, end = [], 0
    for i in range(len(positions)):
        text = tokenizer.decode([int(ids[p]) for p in positions[:i + 1]])
        spans.append((end, len(text)))
        end = len(text)
    text = text.lower() if positions else ""
    out = {}
    for word in words:
        for m in re.finditer(r"(?<![a-z])" + re.escape(word) + r"(?![a-z])", text):
            hit = [p for p, (a, b) in zip(positions, spans) if a < m.end() and b > m.start()]
            if hit:
                out.setdefault(word, []).extend(hit)
    return out


def word_positions(fm, prepared, words=TEMPORAL_WORDS) -> dict[str, list[int]]:
    """Positions of ``words`` among the non-option question's tokens (``{word: [positions]}``, every sub-token of
    each occurrence: :func:`word_token_positions`)."""
    ids = prepared.input_ids[0]  # PLLaVA feeds inputs_embeds: the ids are kept beside the inputs
    return word_token_positions(fm.tokenizer, ids, prepared.layout.non_option_question, words)


def _with_question(sample, question: str):
    """``sample`` asking ``question`` instead (the same video, options and answer)."""
    if dataclasses.is_dataclass(sample):
        return dataclasses.replace(sample, question=question)
    other = copy.copy(sample)
    other.question = question
    return other


def _versions(fm, question, words, swap: bool):
    """``[(version, prepared, word, positions)]``: the question as asked, and (``swap``) the same video with its
    temporal word swapped (:func:`flowutils.data.synthetic.swap_temporal_word`) where the swap is among ``words``."""
    found = word_positions(fm, question.prepared, words)
    if len(found) != 1:
        return []  # no temporal word, or both: the question's word is ambiguous
    (word, positions), = found.items()
    out = [("asked", question.prepared, word, positions)]
    partner = TEMPORAL_SWAP.get(word)
    swapped = swap_temporal_word(question.sample.question, {word: partner}) if swap and partner in words else None
    if swapped is not None:
        prepared = fm.prepare_sample(_with_question(question.sample, swapped), question.prepared.layout.num_frames)
        other = word_positions(fm, prepared, words)
        if list(other) == [partner]:
            out.append(("swapped", prepared, partner, other[partner]))
    return out


def word_attention_rows(fm, question, layers, words=TEMPORAL_WORDS, knockout_layers=None,
                        swap: bool = False) -> list[dict]:
    """:func:`word_attention`'s rows of one :class:`flowutils.analysis.runner.Question`, each with its
    attention map as JSON (``map``); none for a question without exactly one of ``words``."""
    rows = []
    for version, prepared, word, positions in _versions(fm, question, list(words), swap):
        plan = KnockoutPlan.from_flows(prepared.layout, [CROSS_FRAME], knockout_layers)
        for condition, p in (("full attention", None), ("cross-frame knocked out", plan)):
            att = attention_to_video(fm, prepared, positions, p)  # [layer, head, query, frame, token]
            # mean over heads and layers, summed over the word's sub-tokens (one token: that token's row)
            m = att[list(layers)].mean(dim=(0, 1)).sum(dim=0).cpu().numpy()  # [frame, token]
            half = m.shape[0] // 2
            # the map as JSON: a float32 written as a Python float reads back the same float32
            rows.append({"sample_id": question.sample_id, "word": word, "version": version, "condition": condition,
                         "word_tokens": len(positions), "first_half_share": float(m[:half].sum() / m.sum()),
                         "map": json.dumps(m.tolist())})
    return rows


def word_attention(fm, samples, layers, words=TEMPORAL_WORDS, knockout_layers=None, num_frames: int = NUM_FRAMES,
                   progress: bool = False, *, swap: bool = False, out=None, benchmark=None, shard: int | None = None,
                   num_shards: int | None = None):
    """Head- and layer-mean attention of each temporal word of the question to the video tokens,
    with full attention and with cross-frame attention blocked in ``knockout_layers`` (default: all).

    Returns ``(table, maps)``: ``table`` has one row per question x version x condition (``sample_id``,
    ``word``, ``version``, ``condition``, ``word_tokens``: the word's sub-tokens, ``first_half_share``: the share
    of the word's attention to the video that goes to the first half of the frames); ``maps[(sample_id,
    condition)]`` is the ``[frames, tokens per frame]`` attention (mean over heads and ``layers``, summed over the
    word's sub-tokens) of the question as asked, ``maps[(sample_id, condition, "swapped")]`` that of the swapped one.
    ``swap`` (Figure 5 as the paper draws it): each question is also asked about the same video with its temporal
    word swapped ("begins" <-> "ends", :func:`flowutils.data.synthetic.swap_temporal_word`), ``version``
    ``"swapped"``. Questions without exactly one of ``words`` give no rows. ``out``, ``benchmark``,
    ``shard``/``num_shards``, ``table.attrs``: as :func:`flowutils.analysis.run_sweep`'s (:mod:`.runner`).
    """
    layers, words = list(layers), list(words)
    knockout_layers = list(range(fm.n_layers) if knockout_layers is None else knockout_layers)
    problems = layer_problems("layers", layers, fm.n_layers) + layer_problems("knockout_layers", knockout_layers,
                                                                              fm.n_layers)
    measure = functools.partial(word_attention_rows, fm, layers=layers, words=words, knockout_layers=knockout_layers,
                                swap=swap)
    params = {"layers": layers, "words": words, "knockout_layers": knockout_layers, **({"swap": True} if swap else {})}
    rows = run_questions(fm, samples, measure, analysis="word_attention", num_frames=num_frames, params=params,
                         problems=problems, out=out, benchmark=benchmark, shard=shard, num_shards=num_shards,
                         progress=progress)
    maps = {(r.sample_id, r.condition, *(() if r.version == "asked" else (r.version,))):
            np.asarray(json.loads(r.map), dtype=np.float32) for r in rows.itertuples()}
    return rows.drop(columns="map", errors="ignore"), maps  # no column at all when no question has rows


FULL, KNOCKED_OUT = "full attention", "cross-frame knocked out"


def _by_word(table, condition):
    """``[videos, words]``: each video's first-half share per temporal word under ``condition`` (the videos asked
    about both words: a question and its swap)."""
    g = table[(table["condition"] == condition) & table["word"].isin(TEMPORAL_WORDS)]
    wide = g.pivot_table(index="sample_id", columns="word", values="first_half_share", aggfunc="mean", sort=True)
    return wide.reindex(columns=list(TEMPORAL_WORDS)).dropna()


def _gap(table, condition):
    """Per video: "begins"' first-half share minus "ends"', the same video asked both ways."""
    w = _by_word(table, condition)
    return w[TEMPORAL_WORDS[0]] - w[TEMPORAL_WORDS[1]]


def _gap_estimate(table, seed=0):
    return mean_estimate("begins minus ends, same video, full attention", _gap(table, FULL), 0.0, "above", seed=seed)


def _shrink_estimate(table, seed=0):
    """Per video, the begins-ends gap with full attention minus knocked out (the videos measured both ways)."""
    full, ko = _gap(table, FULL), _gap(table, KNOCKED_OUT)
    return mean_estimate("gap with full attention minus knocked out", full - ko.reindex(full.index), 0.0, "above",
                         seed=seed)


def _late(table, condition):
    """Per video, the share of its temporal words' attention on the second half of the frames (the frames nearest
    the question), the mean over both words."""
    return 1.0 - _by_word(table, condition).mean(axis=1)


def _bias_estimates(table, seed=0):
    full, ko = _late(table, FULL), _late(table, KNOCKED_OUT)
    return [mean_estimate("second-half share, knocked out", ko, 0.5, "above", seed=seed),
            mean_estimate("second-half share, knocked out minus full attention", ko - full.reindex(ko.index), 0.0,
                          "above", seed=seed)]


def word_tokens_text(table) -> str:
    """The sub-tokens each temporal word took in the prompts: ``"begins 1, ends 1 token(s)"``; several: summed."""
    counts = {w: sorted(set(table.loc[table["word"] == w, "word_tokens"].astype(int)))
              for w in TEMPORAL_WORDS if "word_tokens" in table.columns and (table["word"] == w).any()}
    text = ", ".join(f"{w} {'/'.join(map(str, c))}" for w, c in counts.items()) + " token(s)"
    return text + ("; a word of several sub-tokens: attention summed over them"
                   if any(max(c) > 1 for c in counts.values()) else "")


def _videos(table, *conditions):
    return len(set.intersection(*(set(_by_word(table, c).index) for c in conditions)))


def temporal_word_claim(table, seed: int = 0) -> Claim:
    """Figure 5 (a): the same video asked about "begins" and about "ends" (the question and its swap): with full
    attention, "begins" puts a larger share of its attention on the first half of the frames than "ends" does.
    Per video, the difference of the two words' shares, its mean bootstrapped over videos (above 0)."""
    finding = "\"begins\" attends to the first half of the frames more than \"ends\" does, on the same video " \
              "(full attention)"
    e = _gap_estimate(table, seed)
    return Claim(SECTION, "Figure 5 (a)", finding, "qualitative (Figure 5a)",
                 f"videos asked both ways: {_videos(table, FULL)}; gap {e.value:.2f}; {word_tokens_text(table)}",
                 e.holds, e.n, str(e), stability(lambda t: _gap_estimate(t, seed).holds, table))


def knockout_alignment_claim(table, seed: int = 0) -> Claim:
    """Figure 5 (b): with cross-frame attention blocked, the begins-ends gap of the same video shrinks (per video,
    its gap with full attention minus knocked out, above 0)."""
    finding = "blocking cross-frame attention shrinks the begins-ends gap of the same video in first-half share"
    e = _shrink_estimate(table, seed)
    return Claim(SECTION, "Figure 5 (b): alignment fails", finding, "qualitative (Figure 5b)",
                 f"the gap shrinks by {e.value:.2f}", e.holds, e.n, str(e),
                 stability(lambda t: _shrink_estimate(t, seed).holds, table))


def positional_bias_claim(table, seed: int = 0) -> Claim:
    """Figure 5 (b)'s other half: with cross-frame attention blocked, the temporal words attend to the positionally
    nearest video, the last frames (the question follows the video): per video, the mean over both words of the
    share on the second half of the frames is above 0.5 when knocked out, and above its value with full
    attention."""
    def verdict(t):
        return all_of(e.holds for e in _bias_estimates(t, seed)) if len(t) else None

    est = _bias_estimates(table, seed)
    finding = "with cross-frame attention blocked, the temporal words attend to the frames nearest the question " \
              "(second-half share above 0.5, and above its full-attention value)"
    return Claim(SECTION, "Figure 5 (b): positional bias", finding, "qualitative (Figure 5b)",
                 f"second-half share {est[0].value:.2f} knocked out, {est[0].value - est[1].value:.2f} with full "
                 "attention", verdict(table), _videos(table, FULL, KNOCKED_OUT), intervals_text(est),
                 stability(verdict, table))
