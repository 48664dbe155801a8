"""Layerwise answer probability at the last position (Sec. 3.4, Figure 8).

Each decoder layer's hidden state at the last position (the ``(`` after "Best option:") is
projected to the vocabulary with the logit lens (:func:`flowutils.analysis.logit_lens.layer_logits`;
the variant, ``final_norm`` or ``input_embedding``, is named in every figure), and the
probabilities of the true option's letter and of the best false option's letter are read,
with their logit difference (the saturation-robust view). The paper finds that the true
option's probability rises sharply right after the middle layers, once the video-language
integration is over, without first passing through the false options.

The claims are tested on the mean over questions at each layer, each statistic with its bootstrap
interval over questions (:func:`flowutils.paper.claims.curve_estimate`):

* *where integration ends*: the layer where the true option's probability has made half of its climb
  (from the first layer's value to the last layer's) lies within a tolerance (the protocol's interval, 5 of
  32 layers) of the last layer of video->question's effective range, read from the same model's knockout
  sweep as Table E reads it (:func:`integration_end`);
* *distinct*: at no layer does the best false option lead the true option by more than
  ``FALSE_LEAD`` (5 points of probability);
* *sharp*: going from 10% to 90% of that climb takes at most a quarter of the depth
  (8 of 32 layers; 3 of 12).

These thresholds are this book's reading of the paper's words; the paper gives a figure, not numbers.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np

from .claims import Claim, all_of, curve_estimate, intervals_text, stability
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
    share = _climb_share(layer_means(table)["p_true"].to_numpy()[None])[0]
    return None if np.isnan(share).all() else share


def _climb_share(curves):
    """``[m, layers]`` mean curves -> the share of each one's climb from its first layer to its last (NaN rows
    where it does not rise)."""
    curves = np.asarray(curves, dtype=float)
    climb = curves[:, -1:] - curves[:, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(climb > 0, (curves - curves[:, :1]) / np.where(climb > 0, climb, 1), np.nan)


def _first_layer(share, level: float):
    """Per row, the first 0-based layer where ``share`` reaches ``level`` (NaN for a row without a rise)."""
    reached = share >= level
    return np.where(np.isnan(share).any(-1), np.nan, reached.argmax(-1).astype(float))


def rise_layer(table, fraction: float = 0.5) -> int | None:
    """First 0-based layer where the mean true-option probability has made ``fraction`` of its climb."""
    share = progress(table)
    return None if share is None else int(_first_layer(share[None], fraction)[0])


def _matrix(table, column: str):
    return table.pivot_table(index="sample_id", columns="layer", values=column, aggfunc="mean", sort=True).to_numpy()


def integration_end(sweep, n_layers: int, size: int, threshold: float = -5.0, flow: str = "video->question",
                    value: str = "relative_change_pct") -> int | None:
    """Where video->question flow is completed, as Table E reads it: the last 0-based layer of the
    ``size``-layer intervals whose mean ``value``, with ``flow`` blocked, is below ``threshold``
    (:func:`flowutils.paper.pathways.interval_table`); None where no interval is."""
    from .pathways import interval_table

    t = interval_table(sweep[sweep["flow"] == flow], n_layers, size, value)
    effective = [max(layers) for layers, mean in zip(t["layers"], t["mean"]) if mean < threshold]
    return max(effective) if effective else None


def _rise_estimates(table, end: int, tolerance: int, seed: int = 0):
    """The half-climb layer (1-based) of the mean true-option curve, against both ends of ``end +- tolerance``."""
    values = _matrix(table, "p_true")
    e = curve_estimate("half-climb layer", values, lambda c: _first_layer(_climb_share(c), 0.5) + 1,
                       end + 1 - tolerance - 0.5, "above", seed=seed)
    climb = curve_estimate("climb, last minus first layer", values, lambda c: c[:, -1] - c[:, 0], 0.0, "above",
                           seed=seed)
    return [climb, e, replace(e, threshold=end + 1 + tolerance + 0.5, direction="below")]


def claim_rise_with_integration(table, end: int | None, tolerance: int, seed: int = 0) -> Claim:
    """Figure 8: the true option's probability rises "from around the point where video-to-question flow is
    completed": the layer where the mean curve has made half of its climb lies within ``tolerance`` layers of
    ``end`` (:func:`integration_end` of the same model's video->question sweep), its bootstrap interval over
    questions inside that window; a climb confined to the output layer fails unless integration ends there too."""
    finding = ("the true option's probability rises where video->question flow completes (half of its climb "
               f"within {tolerance} layers of the end of video->question's effective range)")

    def verdict(t):  # undecided without an end of integration to test against
        return all_of(x.holds for x in _rise_estimates(t, end, tolerance, seed)) if len(t) and end is not None \
            else None

    if len(table) == 0 or end is None:
        return Claim("3.4", "Figure 8: rise", finding, PAPER_RISE,
                     "no question analysed" if len(table) == 0 else "no effective video->question interval",
                     None, table["sample_id"].nunique() if len(table) else 0,
                     stability=stability(verdict, table) if len(table) else "")

    est = _rise_estimates(table, end, tolerance, seed)
    m = layer_means(table)["p_true"]
    return Claim("3.4", "Figure 8: rise", finding, PAPER_RISE,
                 f"{m.iloc[0]:.2f} at layer 1 -> {m.iloc[-1]:.2f} at layer {len(m)}; video->question effective "
                 f"up to layer {end + 1}", verdict(table), est[1].n, intervals_text(est), stability(verdict, table))


def _lead_estimate(table, lead: float, seed: int = 0):
    both = np.concatenate([_matrix(table, "p_false"), _matrix(table, "p_true")], axis=1)
    half = both.shape[1] // 2
    return curve_estimate("largest false-over-true lead", both, lambda c: (c[:, :half] - c[:, half:]).max(-1),
                          lead, "below", seed=seed)


def claim_distinct(table, lead: float = FALSE_LEAD, seed: int = 0) -> Claim:
    """Figure 8: the false options never lead the true option by more than ``lead`` (mean probability): the
    largest lead over the layers, bootstrapped over questions, below ``lead``."""
    finding = f"the rise is distinct: no layer where the best false option leads the true option by > {lead:g}"
    if len(table) == 0:
        return Claim("3.4", "Figure 8: distinct", finding, "", "no question analysed", None, 0)
    e = _lead_estimate(table, lead, seed)
    at = int((layer_means(table)["p_false"] - layer_means(table)["p_true"]).idxmax())
    return Claim("3.4", "Figure 8: distinct", finding, "", f"largest false-over-true lead {e.value:.2f} "
                 f"(layer {at + 1})", e.holds, e.n, str(e), stability(lambda t: _lead_estimate(t, lead, seed).holds,
                                                                       table))


def _span_estimate(table, limit: int, seed: int = 0):
    def span(c):
        share = _climb_share(c)
        return _first_layer(share, 0.9) - _first_layer(share, 0.1)

    return curve_estimate("layers from 10% to 90% of the climb", _matrix(table, "p_true"), span, limit + 0.5,
                          "below", seed=seed)


def claim_sharp(table, share: float = 0.25, seed: int = 0) -> Claim:
    """Figure 8: the mean true-option probability makes 10% -> 90% of its climb within ``share`` of
    the depth (8 of 32 layers), its bootstrap interval over questions at most that."""
    finding = f"the rise is sharp: 10% -> 90% of the climb within {share:.0%} of the layers"
    if len(table) == 0:
        return Claim("3.4", "Figure 8: sharp", finding, "", "no question analysed", None, 0)
    n_layers = table["layer"].nunique()
    limit = max(1, math.ceil(share * n_layers))
    e = _span_estimate(table, limit, seed)
    return Claim("3.4", "Figure 8: sharp", finding, "", f"{e.value:.0f} layers (limit {limit} of {n_layers})",
                 e.holds, e.n, str(e), stability(lambda t: _span_estimate(t, limit, seed).holds, table))


def answer_claims(table, end: int | None, tolerance: int, seed: int = 0) -> list[Claim]:
    """Figure 8's three claims; ``end``: :func:`integration_end` of the same model, ``tolerance``: in layers."""
    return [claim_rise_with_integration(table, end, tolerance, seed), claim_distinct(table, seed=seed),
            claim_sharp(table, seed=seed)]
