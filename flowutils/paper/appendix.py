"""Appendices D-F of the paper, on the run's model and benchmark, and the decisions the appendix pages share.

**Deciding from intervals.** An appendix finding about a knockout curve ("blocking X lowers p(answer)
in the early layers") is read from the mean over questions at each layer with its 95% bootstrap band
(:func:`flowutils.analysis.uncertainty.curve`, questions resampled): it *holds* where the band of some
layer of the stated range lies wholly below the threshold (the paper's -5%), *does not hold* where
every band of the range lies wholly above it, and is *inconclusive* otherwise (:func:`drop_verdict`).
:func:`stability` repeats a verdict on two disjoint halves of the questions.

**Appendix D, Figure T (logit-lens maps).** The logit lens (:mod:`flowutils.analysis.logit_lens`) reads
the top-1 token of every video token at every layer; a token is *spatial* or *temporal* when it is the
first sub-token of a keyword of that category (:mod:`.keywords`, the same matching as Figure 4), else
*other*. :func:`lens_maps` keeps, per question, the category of every video position at every layer;
drawn frame by frame it is Figure T. Two findings are measured: spatial concepts emerge before
temporal ones (:func:`emergence_layers`: the first layer where each category reaches half of its
largest share of the video positions), and temporal concepts appear mainly on positions that were
*not* spatial one layer before (:func:`temporal_on_spatial`: of the positions that turn temporal,
the share that were spatial), read with a bootstrap interval over questions against one half.

**Appendix E, Figure U (attention maps of four more tasks).** The head- and layer-mean attention of a
question word to the video (:func:`flowutils.paper.integration.word_attention`, Figure 5's measurement)
with full attention and with cross-frame attention blocked, for one word of each task (:data:`QUERY_WORDS`).
The paper's finding: with full attention the word's attention picks out the frames that matter, with
the cross-frame knockout it is spread alike over the frames. Measured as the entropy of the attention
mass over the frames, normalised to [0, 1] (:func:`frame_entropy`; 1: uniform over frames), paired per
question: the knockout raises it (:func:`entropy_claim`, bootstrap interval of the mean paired change).

**Appendix F.1 / F.2 (long videos, other benchmarks).** A *long variant* of the synthetic benchmark:
the same renderer with more frames per video (:func:`long_render`), read with more sampled frames;
and the synthetic image tasks shown as still videos (:func:`still_video_samples`) as the spatial
contrast of Video-MME's spatial perception. Given the paper's benchmarks instead, :func:`long_questions`
reads LongVideoBench's O2E, O3O and SOS questions and :func:`spatial_questions` Video-MME's action
recognition and spatial perception questions (:data:`SPATIAL_CONTRAST`). Table A's protocol is Table 3's
(:func:`flowutils.paper.pathways.run_pathways`) with the effective layers selected on the short
videos. F.2's finding on long videos (the cross-frame and video->question drops are smaller than on
short ones) and on spatial questions (cross-frame knockout matters less, with a larger spread over
questions) are compared between the two sweeps' per-question lowest values (:func:`compare_drops`).

**Appendix F.3 (failure cases).** Harder renders (:func:`harden`: still distractor shapes in colours
the question does not ask about and pixel noise; the ground truth is unchanged, as the distractors
never move) make the toy err; on the questions answered wrongly, the knockout changes the
probability of the *wrong* predicted answer. :func:`failure_split` counts the failures whose
predicted answer loses probability under the cross-frame knockout and those where it gains.

**Appendix F.4 / F.6 (signal leakage, window size).** Cross-frame attention blocked in layers 1..l
(``bottom_up``) and l..L (``top_down``) for every l, read as accuracy (:func:`progressive_accuracy`,
:func:`leakage_claims`); and centred windows of several sizes, the narrowest against the widest
(:func:`window_claim`).
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections import Counter

import numpy as np

from ..analysis.uncertainty import curve, wilson_interval
from ..data import load_benchmark, synthetic
from ..data.manifests import load_manifest
from .claims import MIN_QUESTIONS, Claim, all_of, curve_estimate, decide, mean_estimate, stability, verdict_word

THRESHOLD_PCT = -5.0  # the paper's threshold of a significant drop (Table E)


# ----------------------------------------------------------------------------- verdicts from intervals
def drop_verdict(table, value: str = "relative_change_pct", threshold: float = THRESHOLD_PCT, layers=None,
                 seed: int = 0) -> dict:
    """Whether blocking a flow lowers ``value`` below ``threshold`` somewhere in ``layers`` (0-based; None: all).

    ``table``: one flow's sweep rows (question x layer). Returns ``{"holds", "n", "layer", "mean", "lo", "hi"}``:
    ``holds`` True where some layer's 95% bootstrap band lies wholly below the threshold, False where every
    layer's band lies wholly above it, None otherwise (and below ``MIN_QUESTIONS`` questions); ``layer`` (0-based), ``mean``/``lo``/``hi``: the layer of
    ``layers`` with the lowest mean, and its band.
    """
    if len(table) == 0:
        return {"holds": None, "n": 0, "layer": None, "mean": math.nan, "lo": math.nan, "hi": math.nan}
    c = curve(table, value, by=("layer",), seed=seed)
    if layers is not None:
        c = c[c["layer"].isin(list(layers))]
    low = c.loc[c["mean"].idxmin()]
    n = int(table["sample_id"].nunique())
    holds = None if n < MIN_QUESTIONS else True if (c["hi"] < threshold).any() else \
        False if (c["lo"] > threshold).all() else None
    return {"holds": holds, "n": n, "layer": int(low["layer"]),
            "mean": float(low["mean"]), "lo": float(low["lo"]), "hi": float(low["hi"])}


def drop_claim(section: str, item: str, finding: str, paper: str, table, value: str, layers=None,
               threshold: float = THRESHOLD_PCT, seed: int = 0) -> Claim:
    """A :class:`Claim` that blocking the table's flow lowers ``value`` below ``threshold`` in ``layers``
    (:func:`drop_verdict`), with its interval and its verdict on two halves of the questions."""
    v = drop_verdict(table, value, threshold, layers, seed)
    if v["n"] == 0:
        return Claim(section, item, finding, paper, "no question analysed", None, n=0)
    measured = f"lowest mean {v['mean']:.2f} at layer {v['layer'] + 1}"
    return Claim(section, item, finding, paper, measured, v["holds"], n=v["n"],
                 interval=f"[{v['lo']:.2f}, {v['hi']:.2f}] at layer {v['layer'] + 1}",
                 stability=stability(lambda h: drop_verdict(h, value, threshold, layers, seed)["holds"], table))


# ----------------------------------------------------------------------------- D: logit-lens maps
CATEGORY_CODES = {"other": 0, "spatial": 1, "temporal": 2}


def lens_category_rows(fm, question, ids: dict, variant: str = "final_norm") -> list[dict]:
    """:func:`lens_maps`' rows of one question: per layer, the category code of every video position's top-1
    token (``codes``: a string of digits, one per video position, frame-major)."""
    from ..analysis.logit_lens import layer_logits

    prepared = question.prepared
    top = layer_logits(fm, question.baseline, prepared.layout.video, variant).argmax(-1).cpu().numpy()  # [layer, pos]
    codes = np.zeros_like(top)
    for cat, token_ids in ids.items():
        codes[np.isin(top, list(token_ids))] = CATEGORY_CODES[cat]
    frames = prepared.layout.frames
    return [{"sample_id": question.sample_id, "task": prepared.task, "layer": layer, "frames": len(frames),
             "per_frame": len(frames[0]), "codes": "".join(map(str, row))} for layer, row in enumerate(codes)]


def lens_maps(fm, samples, keywords: dict, variant: str = "final_norm", num_frames: int = 8, per_task: int | None = None,
              sample_mode: str = "correct", progress: bool = False):
    """Per question and layer, the logit-lens category (other / spatial / temporal) of every video position.

    ``keywords``: ``{"spatial": [...], "temporal": [...]}`` (:mod:`.keywords`' lists). A video token counts as a
    category's when its top-1 token is the first sub-token of one of the category's keywords
    (:func:`flowutils.paper.keywords.keyword_token_ids`; a token of both categories counts as temporal).
    Returns the runner's table (``sample_id``, ``task``, ``layer``, ``frames``, ``per_frame``, ``codes``).
    """
    import functools

    from ..analysis.runner import run_questions
    from .keywords import keyword_token_ids, token_texts

    texts = token_texts(fm.tokenizer)
    ids = {cat: {i for w in keywords.get(cat, []) for i in keyword_token_ids(fm.tokenizer, w, texts)}
           for cat in ("spatial", "temporal")}
    return run_questions(fm, samples, functools.partial(lens_category_rows, fm, ids=ids, variant=variant),
                         analysis="lens_maps", params={"keywords": keywords, "variant": variant},
                         num_frames=num_frames, sample_mode=sample_mode, per_task=per_task, progress=progress)


def code_array(maps, sample_id: str) -> np.ndarray:
    """``[layer, frame, token]`` category codes of one question of :func:`lens_maps`' table."""
    g = maps[maps["sample_id"] == sample_id].sort_values("layer")
    frames, per = int(g["frames"].iloc[0]), int(g["per_frame"].iloc[0])
    return np.array([[int(c) for c in s] for s in g["codes"]]).reshape(len(g), frames, per)


def category_shares(maps):
    """Per layer (0-based) and category, the share of all questions' video positions whose top-1 token is of it."""
    import pandas as pd

    rows = []
    for layer, g in maps.groupby("layer"):
        codes = np.concatenate([np.array([int(c) for c in s]) for s in g["codes"]])
        for cat, code in CATEGORY_CODES.items():
            if cat != "other":
                rows.append({"layer": int(layer), "category": cat, "share": float((codes == code).mean())})
    return pd.DataFrame(rows)


def first_at_level(curves, level: float = 0.5) -> np.ndarray:
    """``[m]``: per row of ``[m, layers]`` curves, the first index where it reaches ``level`` of its peak (NaN where
    the peak is 0: the category never appears)."""
    curves = np.atleast_2d(np.asarray(curves, dtype=float))
    peak = curves.max(1, keepdims=True)
    return np.where(peak[:, 0] > 0, (curves >= level * peak).argmax(1), np.nan)


def emergence_layers(shares, level: float = 0.5) -> dict:
    """Per category, the first layer (0-based) where its share reaches ``level`` of its largest share (None: never
    any)."""
    out = {}
    for cat, g in shares.groupby("category"):
        s = g.sort_values("layer")
        first = first_at_level(s["share"].to_numpy(), level)[0]
        out[cat] = None if np.isnan(first) else int(s["layer"].iloc[int(first)])
    return out


def temporal_on_spatial(maps):
    """Per question (a DataFrame: ``sample_id``, ``turned``, ``from_spatial``): over every layer l >= 1 and video
    position, how many positions are temporal at layer l but not at l - 1, and how many of those were spatial at
    l - 1."""
    import pandas as pd

    rows = []
    for sid in dict.fromkeys(maps["sample_id"]):
        c = code_array(maps, sid)
        codes = c.reshape(c.shape[0], -1)  # [layer, position]
        new = (codes[1:] == CATEGORY_CODES["temporal"]) & (codes[:-1] != CATEGORY_CODES["temporal"])
        rows.append({"sample_id": sid, "turned": int(new.sum()),
                     "from_spatial": int((new & (codes[:-1] == CATEGORY_CODES["spatial"])).sum())})
    return pd.DataFrame(rows, columns=["sample_id", "turned", "from_spatial"])


def ratio_interval(num, den, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval (%) of ``sum(num) / sum(den)``, resampling questions (the entries)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(num), size=(n_boot, len(num)))
    ratios = 100 * num[idx].sum(1) / np.maximum(den[idx].sum(1), 1)
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def _share_curves(maps) -> np.ndarray:
    """``[questions, 2 x layers]``: per question, the share of its video positions whose top-1 token is spatial at
    each layer, then temporal at each layer (their mean over questions is :func:`category_shares`' pooled share)."""
    curves = []
    for sid in sorted(set(maps["sample_id"])):
        codes = code_array(maps, sid).reshape(maps["layer"].nunique(), -1)  # [layer, position]
        curves.append(np.concatenate([(codes == CATEGORY_CODES[cat]).mean(1) for cat in ("spatial", "temporal")]))
    return np.array(curves, dtype=float)


def _emergence_gap(curves) -> np.ndarray:
    """``[m]``: temporal's first layer at half of its peak share minus spatial's, per row of ``[m, 2 x layers]`` mean
    curves (:func:`emergence_layers`' rule, :func:`first_at_level`; NaN where a category never appears)."""
    spatial, temporal = np.split(np.atleast_2d(curves), 2, axis=1)
    return first_at_level(temporal) - first_at_level(spatial)


def _order_estimate(maps, seed: int = 0):
    """Figure T's order: the gap (layers) from spatial's to temporal's emergence, with its bootstrap interval over
    questions; spatial first holds where the whole interval is at least one layer (above 0.5: gaps are whole layers)."""
    return curve_estimate("temporal minus spatial emergence", _share_curves(maps) if len(maps) else [],
                          _emergence_gap, 0.5, "above", seed=seed)


def _from_spatial(per, seed: int = 0) -> tuple[float, float, bool | None]:
    """``(lo, hi, holds)``: the 95% interval (%) of the share of positions turning temporal that were spatial
    (:func:`temporal_on_spatial` rows), and whether it lies below half (undecided where none turns temporal)."""
    if not per["turned"].sum():
        return math.nan, math.nan, None
    lo, hi = ratio_interval(per["from_spatial"], per["turned"], seed=seed)
    return lo, hi, decide(lo, hi, 50.0, "below", int(per["sample_id"].nunique()))


def figure_t_claims(maps, seed: int = 0) -> list[Claim]:
    """Figure T: spatial concepts emerge before temporal ones; temporal ones settle on positions not already spatial."""
    n = int(maps["sample_id"].nunique()) if len(maps) else 0
    first = emergence_layers(category_shares(maps)) if n else {}
    s, t = first.get("spatial"), first.get("temporal")
    finding = "spatial concepts emerge first, temporal concepts later (first layer at half of the category's peak " \
              "share of video positions)"
    measured = f"spatial first at {s}, temporal first at {t} (None: the category never appears)" \
        if s is None or t is None else f"spatial at layer {s + 1}, temporal at layer {t + 1}"
    gap = _order_estimate(maps, seed)
    order = Claim("D", "Figure T: order", finding, "static concepts first (Figure T)", measured, gap.holds, n=n,
                  interval=f"gap [{gap.lo:.0f}, {gap.hi:.0f}] layers" if n else "",
                  stability=stability(lambda m: _order_estimate(m, seed).holds, maps) if n else "")
    per = temporal_on_spatial(maps) if n else None
    turned, spatial = (int(per["turned"].sum()), int(per["from_spatial"].sum())) if n else (0, 0)
    finding = "temporal concepts emerge on positions not already spatial (under half of the positions turning " \
              "temporal were spatial one layer before)"
    halves = stability(lambda p: _from_spatial(p, seed)[2], per) if n else ""
    if turned == 0:
        return [order, Claim("D", "Figure T: positions", finding, "qualitative (Figure T)",
                             "no position turns temporal", None, n=n, stability=halves)]
    lo, hi, holds = _from_spatial(per, seed)
    return [order, Claim("D", "Figure T: positions", finding, "qualitative (Figure T)",
                         f"{spatial} of {turned} positions turning temporal were spatial ({100 * spatial / turned:.1f}%)",
                         holds, n=n, interval=f"[{lo:.1f}%, {hi:.1f}%] (bootstrap over questions)", stability=halves)]


# ----------------------------------------------------------------------------- E: attention maps, four tasks
# one word of each task's non-option question, as Figure U highlights one query word per task
QUERY_WORDS = {"action_antonym": "action", "action_sequence": "first", "scene_transition": "change",
               "moving_direction": "direction"}


def frame_entropy(m) -> float:
    """Entropy of a ``[frame, token]`` attention map's mass over the frames, divided by log(frames): 1 uniform."""
    mass = np.asarray(m, dtype=float).sum(axis=1)
    p = mass / mass.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(len(mass))) if len(mass) > 1 else 0.0


def entropy_table(maps) -> "object":
    """Per question (of ``maps``: ``{(sample_id, condition): [frame, token]}``), the frame entropy with full
    attention and cross-frame knocked out, and the change."""
    import pandas as pd

    ids = list(dict.fromkeys(sid for sid, _ in maps))
    rows = [{"sample_id": sid, "full attention": frame_entropy(maps[(sid, "full attention")]),
             "cross-frame knocked out": frame_entropy(maps[(sid, "cross-frame knocked out")])} for sid in ids
            if (sid, "cross-frame knocked out") in maps and (sid, "full attention") in maps]
    out = pd.DataFrame(rows, columns=["sample_id", "full attention", "cross-frame knocked out"])
    return out.assign(change=out["cross-frame knocked out"] - out["full attention"])


def entropy_claim(entropies, seed: int = 0) -> Claim:
    """Figure U: cross-frame knockout spreads the word's attention more evenly over the frames (mean paired
    change of the frame entropy > 0, read from its 95% bootstrap interval)."""
    finding = "with cross-frame attention blocked, the question word's attention to the video is spread more " \
              "evenly over the frames (normalised frame entropy rises)"
    n = len(entropies)
    if n == 0:
        return Claim("E", "Figure U", finding, "qualitative (Figure U)", "no question with the task's word", None, n=0)

    def measure(e):
        return mean_estimate("frame entropy change", e["change"], 0.0, "above", seed=seed)

    est = measure(entropies)
    return Claim("E", "Figure U", finding, "qualitative (Figure U)",
                 f"frame entropy {entropies['full attention'].mean():.3f} -> "
                 f"{entropies['cross-frame knocked out'].mean():.3f} (mean change {est.value:+.3f})", est.holds, n=n,
                 interval=f"[{est.lo:+.3f}, {est.hi:+.3f}]",
                 stability=stability(lambda e: measure(e).holds, entropies))


# ----------------------------------------------------------------------------- F.1 / F.2: long videos, stills
def long_render(video_frames: int = 64) -> synthetic.RenderConfig:
    """The synthetic benchmark's rendering with ``video_frames`` frames per video (the default: 16): the long variant."""
    return dataclasses.replace(synthetic.RenderConfig(), video_frames=video_frames)


def long_benchmark(parent, n_per_task: int, video_frames: int = 48, seed: int = 0, tasks=synthetic.VIDEO_TASKS,
                   progress: bool = False):
    """The long variant on disk (rendered once, reused after): ``<parent>/synthetic-long<frames>-test-seed<seed>-n<n>``,
    TVBench format as the default benchmark. The renderer's random draws do not depend on the frame count, so its
    questions are the default benchmark's first ``n_per_task`` of each task, with longer videos."""
    from pathlib import Path

    root = Path(parent) / f"synthetic-long{video_frames}-test-seed{seed}-n{n_per_task}"
    return synthetic.write_benchmark(root, n_per_task, seed=seed, split="test", tasks=tasks,
                                     cfg=long_render(video_frames), progress=progress)


def _benchmark_set(what: str, manifest, root, short_manifest: str, valid: list) -> None:
    """Check a page's ``<what>_manifest`` and ``<what>_root``: None (a synthetic stand-in) needs the synthetic benchmark
    as the page's ``manifest``, and a benchmark manifest needs the folder of its copy."""
    if manifest is None and short_manifest != "synthetic":
        raise ValueError(f"parameter {what}_manifest=None stands in for the paper's benchmark on the synthetic "
                         f"benchmark only, but manifest={short_manifest!r}; give {what}_manifest (the paper's: "
                         f"{valid}) and {what}_root")
    if manifest is not None and root is None:
        raise ValueError(f"parameter {what}_manifest={manifest!r} needs {what}_root, the folder of its copy")


def long_questions(short, short_manifest: str, n_per_task: int, manifest: str | None = None, root=None, parent=None,
                   video_frames: int = 48, seed: int = 0) -> list:
    """F.1 and F.2's long videos. ``manifest`` None: the long variant of the synthetic benchmark (:func:`long_benchmark`
    under ``parent``, ``video_frames`` frames a video), the tasks of the ``short`` questions; else the first
    ``n_per_task`` questions of each analysed task of a benchmark read from ``root`` (LongVideoBench: O2E, O3O, SOS).
    ``short_manifest``: the manifest of the ``short`` questions (the stand-in needs the synthetic benchmark)."""
    _benchmark_set("long", manifest, root, short_manifest, ["longvideobench"])
    if manifest is not None:
        return load_benchmark(root, manifest, None, n_per_task)
    tasks = sorted({s.task for s in short})
    return load_benchmark(long_benchmark(parent, n_per_task, video_frames, seed, tasks), "synthetic", tasks, n_per_task)


@dataclasses.dataclass
class IdentifiedSample:
    """An in-memory synthetic question made here (a still video, a harder render) with the id it is stored under."""

    task: str
    frames: np.ndarray
    question: str
    candidates: list
    answer: str
    sample_id: str
    meta: dict = dataclasses.field(default_factory=dict)


def still_video_samples(n_per_task: int, seed: int = 0, frames: int = 16, tasks=synthetic.IMAGE_TASKS) -> list:
    """The synthetic image tasks (test split), each image repeated ``frames`` times as a still video."""
    out = []
    for task in tasks:
        for i, s in enumerate(synthetic.generate(task, n_per_task, seed, "test")):
            out.append(IdentifiedSample(task, np.repeat(s.frames, frames, axis=0), s.question, list(s.candidates),
                                        s.answer, f"still/{task}/{i}"))
    return out


# F.2's spatial contrast on a benchmark: its (temporal task, spatial task); Video-MME's are the paper's (Figs. AF-AI)
SPATIAL_CONTRAST = {"videomme": ("action_recognition", "spatial_perception")}


def spatial_questions(short, short_manifest: str, n_per_task: int, manifest: str | None = None, root=None,
                      seed: int = 0, frames: int = 16) -> dict:
    """F.2's spatial contrast, ``{label: questions}``, the temporal questions first. ``manifest`` None: the ``short``
    questions themselves (the same list, "temporal tasks") and the synthetic image tasks as still videos
    (:func:`still_video_samples`, ``frames`` frames); else the first ``n_per_task`` questions of each task of
    :data:`SPATIAL_CONTRAST` of a benchmark read from ``root``, labelled with their titles (Video-MME: Action
    Recognition, Spatial Perception)."""
    _benchmark_set("spatial", manifest, root, short_manifest, list(SPATIAL_CONTRAST))
    if manifest is None:
        return {"temporal tasks": short, "still images": still_video_samples(n_per_task, seed, frames)}
    if manifest not in SPATIAL_CONTRAST:
        raise ValueError(f"parameter spatial_manifest={manifest!r} has no spatial contrast; valid: None (the synthetic "
                         f"image tasks as still videos) or {list(SPATIAL_CONTRAST)}")
    tasks, titles = SPATIAL_CONTRAST[manifest], load_manifest(manifest)["tasks"]
    questions = load_benchmark(root, manifest, list(tasks), n_per_task)
    return {titles[t].get("title", t): [s for s in questions if s.task == t] for t in tasks}


def analysed_questions(questions: dict, sweeps: dict):
    """Per set of questions and task, the questions loaded (``questions``: ``{set: questions}``) and those its sweep
    analysed (``sweeps``: ``{set: sweep table}``; the sample mode keeps those answered so at baseline)."""
    import pandas as pd

    rows = []
    for name, qs in questions.items():
        t = sweeps[name]
        analysed = t.groupby("task")["sample_id"].nunique() if len(t) else {}
        rows += [{"set": name, "task": task, "questions": n, "analysed": int(analysed.get(task, 0))}
                 for task, n in Counter(s.task for s in qs).items()]
    return pd.DataFrame(rows, columns=["set", "task", "questions", "analysed"])


def lowest_per_question(sweep, value: str = "relative_change_pct"):
    """Per question and flow, the lowest ``value`` over the sweep's layers (``task``, ``flow``, ``sample_id``, ``low``)."""
    return sweep.groupby(["task", "flow", "sample_id"], sort=False)[value].min().rename("low").reset_index()


def compare_drops(a, b, label_a: str, label_b: str, value: str = "relative_change_pct", seed: int = 0):
    """Per flow, the mean and standard deviation over questions of each sweep's per-question lowest ``value``
    (:func:`lowest_per_question`), and the difference of the means (``b - a``) with its 95% bootstrap interval
    (each side resampled on its own questions)."""
    import pandas as pd

    columns = ["flow", *(f"{label} {s}" for label in (label_a, label_b) for s in ("mean", "std", "n")), "difference",
               "lo", "hi"]
    if not len(a) or not len(b):  # a set with no question analysed (the sample mode kept none): nothing to compare
        return pd.DataFrame(columns=columns)
    la, lb = lowest_per_question(a, value), lowest_per_question(b, value)
    rows = []
    for flow in dict.fromkeys(list(la["flow"]) + list(lb["flow"])):
        x, y = la[la["flow"] == flow]["low"].to_numpy(), lb[lb["flow"] == flow]["low"].to_numpy()
        if not len(x) or not len(y):
            continue
        rng = np.random.default_rng(seed)
        diffs = [rng.choice(y, len(y)).mean() - rng.choice(x, len(x)).mean() for _ in range(1000)]
        rows.append({"flow": flow, f"{label_a} mean": x.mean(), f"{label_a} std": x.std(ddof=1) if len(x) > 1 else 0.0,
                     f"{label_a} n": len(x), f"{label_b} mean": y.mean(),
                     f"{label_b} std": y.std(ddof=1) if len(y) > 1 else 0.0, f"{label_b} n": len(y),
                     "difference": y.mean() - x.mean(), "lo": float(np.quantile(diffs, 0.025)),
                     "hi": float(np.quantile(diffs, 0.975))})
    return pd.DataFrame(rows, columns=columns)


def drop_difference(a, b, label_a: str, label_b: str, direction: str = "above", value: str = "relative_change_pct",
                    seed: int = 0):
    """``(row, holds)``: :func:`compare_drops`' row of the one flow of ``a`` and ``b`` (None where a side has no
    question), and whether the 95% interval of the difference (b - a) lies on ``direction``'s side of 0 (True), on
    the other (False), or across it (None; also with fewer than ``MIN_QUESTIONS`` on either side). ``above``: b's
    drop is the smaller."""
    comp = compare_drops(a, b, label_a, label_b, value, seed)
    if comp.empty:
        return None, None
    r = comp.iloc[0]
    return r, decide(r["lo"], r["hi"], 0.0, direction, int(min(r[f"{label_a} n"], r[f"{label_b} n"])))


def smaller_drop_claim(section: str, item: str, finding: str, paper: str, a, b, flow: str, label_a: str,
                       label_b: str, seed: int = 0) -> Claim:
    """The per-question lowest change is less negative on sweep ``b`` (``label_b``) than on sweep ``a`` for
    ``flow``: holds where the interval of the difference (b - a, :func:`compare_drops`) lies above 0, does not hold
    where it lies below. Its halves split the questions of both sweeps at once, so that a question asked in both
    (a short video and its long variant) falls in the same half."""
    a, b = (t[t["flow"] == flow] if len(t) else t for t in (a, b))  # a set with no question analysed has no columns
    r, holds = drop_difference(a, b, label_a, label_b, seed=seed)
    if r is None:
        return Claim(section, item, finding, paper, f"{flow}: not measured on both", None, n=0)
    return Claim(section, item, finding, paper,
                 f"{flow}: lowest change per question {r[f'{label_a} mean']:.2f} ({label_a}) vs "
                 f"{r[f'{label_b} mean']:.2f} ({label_b})", holds, n=int(r[f"{label_a} n"] + r[f"{label_b} n"]),
                 interval=f"difference [{r['lo']:.2f}, {r['hi']:.2f}]",
                 stability=stability(lambda x, y: drop_difference(x, y, label_a, label_b, seed=seed)[1], a, b))


# ----------------------------------------------------------------------------- F.3: harder renders, failures
def harden(sample, level: int, seed: int = 0):
    """A harder copy of an in-memory synthetic sample: ``2 * level`` still distractor shapes (colours the question
    does not name) and Gaussian pixel noise of standard deviation ``12 * level``; the answer is unchanged (the
    distractors never move, appear or change). ``level`` 0: the sample itself."""
    if level <= 0:
        return sample
    rng = np.random.default_rng([seed, level, zlib.crc32(sample.question.encode()), int(sample.frames.sum()) % (2 ** 31)])
    frames = sample.frames.astype(np.float32)
    size = frames.shape[1]
    asked = sample.meta.get("color")
    colours = [c for c in synthetic.COLORS if c != asked and c != "white"]
    for _ in range(2 * level):
        shape, colour = synthetic.SHAPES[rng.integers(3)], colours[rng.integers(len(colours))]
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        for f in frames:
            synthetic._paint(f, shape, synthetic.COLORS[colour], cx, cy, size * 0.06)
    frames = frames + rng.normal(0, 12 * level, frames.shape)
    return dataclasses.replace(sample, frames=np.clip(frames, 0, 255).round().astype(np.uint8),
                               meta={**sample.meta, "hardness": level})


def hard_samples(tasks, n_per_task: int, level: int, seed: int = 0) -> list:
    """``n_per_task`` synthetic test questions of each task, rendered then made harder (:func:`harden`)."""
    out = []
    for task in tasks:
        for i, s in enumerate(synthetic.generate(task, n_per_task, seed, "test")):
            h = harden(s, level, seed)
            out.append(IdentifiedSample(task, h.frames, h.question, list(h.candidates), h.answer,
                                        f"hard{level}/{task}/{i}", h.meta))
    return out


def failure_split(sweep, value: str = "relative_change_pct", layers=None, threshold: float = 5.0):
    """Per failure (question answered wrongly), whether blocking lowers or raises the wrong answer's probability:
    ``lowest`` and ``highest`` ``value`` over ``layers`` (0-based; None: all); ``pattern`` "decreases" where the
    lowest is below ``-threshold`` and its size exceeds the highest's, "increases" where the highest is above
    ``threshold`` and exceeds the lowest's size, else "unchanged"."""
    t = sweep if layers is None else sweep[sweep["layer"].isin(list(layers))]
    g = t.groupby(["task", "sample_id"], sort=False)[value].agg(["min", "max"]).reset_index()
    g = g.rename(columns={"min": "lowest", "max": "highest"})

    def pattern(r):
        if r.lowest < -threshold and -r.lowest >= r.highest:
            return "decreases"
        if r.highest > threshold and r.highest > -r.lowest:
            return "increases"
        return "unchanged"

    return g.assign(pattern=[pattern(r) for r in g.itertuples()])


MINORITY_SHARE = 10.0  # % of the failures a pattern must hold for "two patterns" (this book's bar)


def _minority_share(split, bar: float) -> tuple[int, int, float, float, bool | None]:
    """``(decreases, increases, lo, hi, holds)``: the less frequent pattern's Wilson 95% interval against ``bar``."""
    counts = split["pattern"].value_counts()
    down, up = int(counts.get("decreases", 0)), int(counts.get("increases", 0))
    lo, hi = wilson_interval(min(down, up), len(split))
    return down, up, lo, hi, decide(lo, hi, bar, "above", len(split))


def failure_split_claim(split, bar: float = MINORITY_SHARE) -> Claim:
    """F.3 (Fig. AJ): failures split into both patterns under cross-frame knockout (the wrong answer's probability
    falls for some and rises for others): the less frequent of the two patterns holds more than ``bar`` % of the
    failures. Holds where its Wilson 95% interval lies above ``bar``, does not hold where it lies below
    (inconclusive below ``MIN_QUESTIONS`` failures)."""
    finding = "cross-frame knockout on failures: the wrong answer's probability falls for some questions and " \
              f"rises for others (each pattern > {bar:g}% of the failures)"
    n = len(split)
    if n == 0:
        return Claim("F.3", "Figure AJ", finding, "two patterns (Figure AJ)", "no failure found", None, n=0)
    down, up, lo, hi, holds = _minority_share(split, bar)
    return Claim("F.3", "Figure AJ", finding, "two patterns (Figure AJ)",
                 f"{down} decrease, {up} increase, {n - down - up} unchanged (|change| <= 5%) of {n} failures",
                 holds, n=n, interval=f"less frequent pattern: [{max(lo, 0.0):.1f}%, {hi:.1f}%] (Wilson)",
                 stability=stability(lambda h: _minority_share(h, bar)[4], split))


def accuracy_by_level(sweep):
    """Per hardness level (``level`` column) and over its tasks: baseline accuracy (%, Wilson 95%) and questions,
    from a sweep table of every question (``sample_mode="all"``)."""
    import pandas as pd

    from ..analysis.uncertainty import accuracy

    first = sweep.drop_duplicates("sample_id")
    rows = []
    for level, g in first.groupby("level"):
        a = accuracy(g["correct_baseline"])
        rows.append({"level": int(level), "questions": a["questions"], "wrong": int((~g["correct_baseline"]).sum()),
                     "accuracy %": a["accuracy"], "95% CI": f"{a['lo']:.1f}-{a['hi']:.1f}",
                     **{f"{t} %": 100 * h["correct_baseline"].mean() for t, h in g.groupby("task", sort=False)}})
    return pd.DataFrame(rows)


def _same_route(rows, k: int, seed: int = 0):
    """``(successes, failures, holds)``: :func:`drop_verdict` on the questions answered correctly and on those
    answered wrongly, and :func:`same_route_claim`'s verdict on the two."""
    ok = drop_verdict(rows[rows["correct_baseline"]], seed=seed)
    bad = drop_verdict(rows[~rows["correct_baseline"]], seed=seed)
    if ok["holds"] is True and bad["holds"] is True:
        holds = abs(ok["layer"] - bad["layer"]) <= k
    elif {ok["holds"], bad["holds"]} == {True, False}:
        holds = False
    else:
        holds = None
    return ok, bad, holds


def same_route_claim(sweep, flow: str, k: int, seed: int = 0) -> Claim:
    """F.3 (Figs. AK, AL): blocking ``flow`` lowers the *predicted* answer on the failures as it lowers the true one on
    the successes, around the same layer: holds where the drop holds on both (:func:`drop_verdict`) with their lowest
    layers at most ``k`` apart, does not hold where it holds on one and does not on the other or the layers are
    further apart, else inconclusive. Each half of the questions holds successes and failures of its own."""
    from ..knockout.flows import flow_label

    rows = sweep[sweep["flow"] == flow_label(flow)]
    ok, bad, holds = _same_route(rows, k, seed)
    item, paper = f"Figures AK, AL: {flow_label(flow)}", "same patterns (Figs. AK, AL)"
    finding = f"blocking {flow_label(flow)} lowers the wrong predicted answer on failures as it lowers the true " \
              "answer on successes, around the same layer"
    n = ok["n"] + bad["n"]
    halves = stability(lambda t: _same_route(t, k, seed)[2], rows) if n else ""
    if ok["n"] == 0 or bad["n"] == 0:
        return Claim("F.3", item, finding, paper, f"questions: {ok['n']} correct, {bad['n']} wrong", None, n=n,
                     stability=halves)
    return Claim("F.3", item, finding, paper,
                 f"successes: {ok['mean']:.2f} at layer {ok['layer'] + 1} ({verdict_word(ok['holds'])}); failures: "
                 f"{bad['mean']:.2f} at layer {bad['layer'] + 1} ({verdict_word(bad['holds'])}); at most {k} layers "
                 "apart to hold", holds, n=n,
                 interval=f"successes [{ok['lo']:.2f}, {ok['hi']:.2f}]; failures [{bad['lo']:.2f}, {bad['hi']:.2f}]",
                 stability=halves)


# ----------------------------------------------------------------------------- F.4 / F.6: leakage, window size
PROGRESSIVE = ("bottom_up", "top_down")  # Figure V: layers 1..l (green), layers l..L (pink)
MARGINAL_POINTS = 5.0  # accuracy points a knockout may cost and still count as marginal (Table B's reading)


def progressive_accuracy(sweep):
    """Figure V's numbers from a cross-frame sweep of ``bottom_up`` and ``top_down`` windows (``style`` column): per
    style and layer, accuracy (%) under the knockout over the analysed questions, with its Wilson 95% interval."""
    import pandas as pd

    from ..analysis.uncertainty import accuracy

    rows = []
    for (style, layer), g in sweep.groupby(["style", "layer"], sort=True):
        a = accuracy(g["correct_knockout"])
        rows.append({"style": style, "layer": int(layer), "accuracy": a["accuracy"], "lo": a["lo"], "hi": a["hi"],
                     "questions": a["questions"], "change": a["accuracy"] - 100 * g["correct_baseline"].mean()})
    return pd.DataFrame(rows)


def _changes(rows) -> np.ndarray:
    """Accuracy change per question, in points: 100 x (correct under the knockout - correct at baseline)."""
    return 100 * (rows["correct_knockout"].astype(float) - rows["correct_baseline"].astype(float)).to_numpy()


def _top_down(sweep, n_layers: int, points: float, seed: int = 0):
    """``(estimates, holds)``: per top-down window starting in the second half, the mean accuracy change over the
    questions with its interval, and whether every one costs at most ``points`` (each interval above -points)."""
    top = sweep[(sweep["style"] == "top_down") & (sweep["layer"] >= n_layers // 2)] if len(sweep) else sweep
    est = [mean_estimate(f"from layer {int(layer) + 1}", _changes(g), -points, "above", seed=seed)
           for layer, g in top.groupby("layer", sort=True)] if len(top) else []
    return est, all_of(e.holds for e in est) if est else None


def _bottom_up(sweep, n_layers: int, points: float, seed: int = 0):
    """The estimate of what extending the bottom-up blocking from layers 1..L/2 to every layer costs per question
    (points: correct with every layer blocked minus correct with the first half blocked; None: not measured)."""
    bottom = sweep[sweep["style"] == "bottom_up"] if len(sweep) else sweep
    if not len(bottom):
        return None
    by_layer = bottom.pivot_table(index="sample_id", columns="layer", values="correct_knockout", aggfunc="first")
    half, last = n_layers // 2 - 1, n_layers - 1
    if half not in by_layer or last not in by_layer:
        return None
    extra = 100 * (by_layer[last].astype(float) - by_layer[half].astype(float))
    return mean_estimate(f"layers 1-{n_layers // 2} -> all layers", extra.to_numpy(), -points, "above", seed=seed)


def leakage_claims(sweep, n_layers: int, points: float = MARGINAL_POINTS, seed: int = 0) -> list[Claim]:
    """Figure V: (1) blocking cross-frame attention from any layer of the second half to the last costs at most
    ``points`` of accuracy; (2) extending the blocking from the first half (layers 1..L/2) to every layer costs at
    most ``points`` more. ``sweep``: the ``bottom_up`` and ``top_down`` rows (:func:`progressive_accuracy`). Each is
    decided on the bootstrap interval of the mean change per question (as Table B), every window for (1)."""
    acc = progressive_accuracy(sweep)
    n = int(acc["questions"].max()) if len(acc) else 0
    claims = []
    est, holds = _top_down(sweep, n_layers, points, seed)
    if est:
        worst = min(est, key=lambda e: e.value)
        claims.append(Claim("F.4", "Figure V: top-down", f"blocking cross-frame attention from a second-half layer to "
                            f"the last layer costs at most {points:g} accuracy points",
                            "no significant drop outside early-to-middle layers (Figure V)",
                            f"largest cost {worst.value:+.1f} points ({worst.name})", holds, n=n,
                            interval=f"[{worst.lo:+.1f}, {worst.hi:+.1f}] points ({len(est)} windows)",
                            stability=stability(lambda t: _top_down(t, n_layers, points, seed)[1], sweep)))
    extra = _bottom_up(sweep, n_layers, points, seed)
    if extra is not None:
        claims.append(Claim("F.4", "Figure V: bottom-up", "extending the cross-frame blocking from the first half of "
                            f"the layers to all of them costs at most {points:g} more accuracy points",
                            "no additional drop beyond early-to-middle layers (Figure V)",
                            f"{extra.name}: {extra.value:+.1f} points", extra.holds, n=extra.n,
                            interval=f"[{extra.lo:+.1f}, {extra.hi:+.1f}] points",
                            stability=stability(lambda t: getattr(_bottom_up(t, n_layers, points, seed), "holds", None),
                                                sweep)))
    return claims


def window_claim(sweep, seed: int = 0) -> Claim:
    """Figure W: the narrowest window's cross-frame knockout is bypassed: per-question lowest change less negative
    with the smallest ``k`` than with the largest (bootstrap interval of the difference of the means)."""
    ks = sorted(sweep["k"].unique())
    finding = "a very narrow window is bypassed: the cross-frame knockout with the smallest k costs less than with the " \
              "largest"
    n = int(sweep["sample_id"].nunique())

    def narrow_vs_wide(t):  # the whole sweep's narrowest and widest windows, on every half
        if len(ks) < 2:
            return None, None
        return drop_difference(t[t["k"] == ks[-1]], t[t["k"] == ks[0]], f"k={ks[-1]}", f"k={ks[0]}", seed=seed)

    halves = stability(lambda t: narrow_vs_wide(t)[1], sweep) if n else ""
    if len(ks) < 2:
        return Claim("F.6", "Figure W", finding, "k=1 marginal, k=5-13 significant (Figure W)", f"windows {ks}",
                     None, n=n, stability=halves)
    comp, holds = narrow_vs_wide(sweep)
    return Claim("F.6", "Figure W", finding, "k=1 marginal, k=5-13 significant (Figure W)",
                 f"lowest change per question {comp[f'k={ks[0]} mean']:.2f} (k={ks[0]}) vs "
                 f"{comp[f'k={ks[-1]} mean']:.2f} (k={ks[-1]})", holds, n=int(comp[f"k={ks[0]} n"]),
                 interval=f"difference [{comp['lo']:.2f}, {comp['hi']:.2f}]", stability=halves)
