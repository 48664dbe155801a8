"""Layerwise answer probability at the last position (Sec. 3.4, Figure 8).

Each decoder layer's hidden state at the last position (the ``(`` after "Best option:") is
projected to the vocabulary with the logit lens (:func:`flowutils.analysis.logit_lens.layer_logits`;
the variant, ``final_norm`` or ``input_embedding``, is named in every figure), and the
probabilities of the true option's letter and of the best false option's letter are read,
with their logit difference (the saturation-robust view). The paper finds that the true
option's probability rises sharply right after the middle layers, once the video-language
integration is over, without first passing through the false options.

The claims are tested on the mean over questions at each layer (:func:`layer_means`):

* *after the middle layers*: the first layer where the true option's probability has made
  half of its climb (from the first layer's value to the last layer's) lies in the second
  half of the layers;
* *distinct*: at no layer does the best false option lead the true option by more than
  ``FALSE_LEAD`` (5 points of probability);
* *sharp*: going from 10% to 90% of that climb takes at most a quarter of the depth
  (8 of 32 layers; 3 of 12).

These thresholds are this book's reading of the paper's words; the paper gives a figure, not numbers.
"""

from __future__ import annotations

import functools
import math

from .claims import Claim
from ..analysis.logit_lens import VARIANTS, layer_logits
from ..analysis.runner import SAMPLE_MODES, choice_problems, run_questions
from ..analysis.sweep import logit_difference
from ..data.video import NUM_FRAMES

OPTIONS = ("true option", "false option (best)")
FALSE_LEAD = 0.05
PAPER_RISE = "rises from about layer 20 of 32 (LLaVA-NeXT-7B-Video-FT)"


def answer_rows(fm, question, variant: str = "final_norm") -> list[dict]:
    """:func:`answer_table`'s rows of one :class:`flowutils.analysis.runner.Question`."""
    prepared = question.prepared
    logits = layer_logits(fm, question.baseline, prepared.layout.last, variant)[:, 0].cpu()  # [layer, vocab]
    probs = logits.softmax(-1)[:, prepared.option_ids]
    gold = prepared.gold_index
    false = [i for i in range(len(prepared.option_ids)) if i != gold]
    diffs = logit_difference(logits, prepared.option_ids, gold)
    return [{"sample_id": question.sample_id, "task": prepared.task, "layer": layer,
             "p_true": float(probs[layer, gold]), "p_false": float(probs[layer, false].max()),
             "logit_diff": float(diffs[layer]), "correct_baseline": question.correct} for layer in range(fm.n_layers)]


def answer_table(fm, samples, num_frames: int = NUM_FRAMES, variant: str = "final_norm", progress: bool = True, *, out=None,
                 benchmark=None, shard: int | None = None, num_shards: int | None = None):
    """One row per question x layer, for every question: ``sample_id``, ``task``, ``layer`` (0-based),
    ``p_true``, ``p_false`` (the best false option's letter), ``logit_diff`` (true minus best false
    letter), ``correct_baseline``. Probabilities are over the whole vocabulary; :func:`select`
    keeps the questions of a sample mode. ``out``, ``benchmark``, ``shard``/``num_shards``,
    ``attrs``: as :func:`flowutils.analysis.run_sweep`'s (:mod:`.runner`)."""
    return run_questions(fm, samples, functools.partial(answer_rows, fm, variant=variant), analysis="answer_table",
                         params={"variant": variant}, num_frames=num_frames,
                         problems=choice_problems("logit-lens variant", variant, VARIANTS), out=out,
                         benchmark=benchmark, shard=shard, num_shards=num_shards, progress=progress)


def select(table, sample_mode: str = "correct"):
    """The rows of the questions answered correctly (``correct``), wrongly (``wrong``) or all (``all``)."""
    problems = choice_problems("sample_mode", sample_mode, SAMPLE_MODES)
    if problems:
        raise ValueError(problems[0])
    if sample_mode == "all" or len(table) == 0:
        return table
    return table[table["correct_baseline"] == (sample_mode == "correct")]


def long_format(table):
    """``answer_table`` rows -> one row per question x layer x option (``option``, ``probability``),
    ready for :func:`flowutils.analysis.uncertainty.curve` with ``by=("option", "layer")``."""
    import pandas as pd

    keep = ["sample_id", "task", "layer"]
    return pd.concat([table[keep].assign(option=OPTIONS[0], probability=table["p_true"]),
                      table[keep].assign(option=OPTIONS[1], probability=table["p_false"])], ignore_index=True)


def layer_means(table):
    """Mean ``p_true`` and ``p_false`` over questions at each layer (indexed by 0-based layer)."""
    return table.groupby("layer")[["p_true", "p_false"]].mean().sort_index()


def progress(table):
    """Mean true-option probability per layer as the share of its climb from the first layer to the
    last (0 at layer 1, 1 at the last layer); None when it does not rise. The letters can hold
    probability from the first layers on (the prompt ends in ``(``), so the climb, not the level, is timed."""
    p = layer_means(table)["p_true"].to_numpy()
    return (p - p[0]) / (p[-1] - p[0]) if len(p) > 1 and p[-1] > p[0] else None


def _first_at_least(values, level: float) -> int:
    return next(i for i, v in enumerate(values) if v >= level)  # the last value is 1: always found


def rise_layer(table, fraction: float = 0.5) -> int | None:
    """First 0-based layer where the mean true-option probability has made ``fraction`` of its climb."""
    share = progress(table)
    return None if share is None else _first_at_least(share, fraction)


def claim_rise_after_middle(table) -> Claim:
    """Figure 8: the true option's probability rises in the second half of the layers."""
    finding = "the true option's probability rises after the middle layers (half of its climb made " \
              "in the second half of the layers)"
    if len(table) == 0:
        return Claim("3.4", "Figure 8", finding, PAPER_RISE, "no question analysed", None)
    m = layer_means(table)["p_true"]
    n_layers, rise = len(m), rise_layer(table)
    climb = f"{m.iloc[0]:.2f} at layer 1 -> {m.iloc[-1]:.2f} at layer {n_layers}"
    if rise is None:
        return Claim("3.4", "Figure 8", finding, PAPER_RISE, f"no rise: {climb}", False)
    return Claim("3.4", "Figure 8", finding, PAPER_RISE, f"{climb}; half of the climb at layer {rise + 1}",
                 bool(rise >= n_layers / 2))


def claim_distinct(table, lead: float = FALSE_LEAD) -> Claim:
    """Figure 8: the false options never lead the true option by more than ``lead`` (mean probability)."""
    finding = f"the rise is distinct: no layer where the best false option leads the true option by > {lead:g}"
    if len(table) == 0:
        return Claim("3.4", "Figure 8", finding, "", "no question analysed", None)
    m = layer_means(table)
    gap = m["p_false"] - m["p_true"]
    at = int(gap.idxmax())
    return Claim("3.4", "Figure 8", finding, "",
                 f"largest false-over-true lead {gap.max():.2f} (layer {at + 1})", bool(gap.max() <= lead))


def claim_sharp(table, share: float = 0.25) -> Claim:
    """Figure 8: the mean true-option probability makes 10% -> 90% of its climb within ``share`` of
    the depth (8 of 32 layers)."""
    finding = f"the rise is sharp: 10% -> 90% of the climb within {share:.0%} of the layers"
    if len(table) == 0:
        return Claim("3.4", "Figure 8", finding, "", "no question analysed", None)
    climb, n_layers = progress(table), table["layer"].nunique()
    limit = max(1, math.ceil(share * n_layers))
    if climb is None:
        return Claim("3.4", "Figure 8", finding, "", "the true option's probability does not rise", False)
    lo, hi = _first_at_least(climb, 0.1), _first_at_least(climb, 0.9)
    return Claim("3.4", "Figure 8", finding, "",
                 f"layers {lo + 1} -> {hi + 1} ({hi - lo} layers; limit {limit} of {n_layers})",
                 bool(hi - lo <= limit))


def answer_claims(table) -> list[Claim]:
    return [claim_rise_after_middle(table), claim_distinct(table), claim_sharp(table)]
