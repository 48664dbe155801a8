"""Effective information-flow pathways (Sec. 3.5, Table 3, Table E).

The paper keeps only the attention edges its analysis found to matter and checks that the
model still answers as well, while blocking as many *random* edges hurts it.

1. **Selecting the effective layers (Table E).** From the Attention Knockout sweep of the
   Action Antonym questions, the layers are split into 5-layer intervals (of 32; scaled to
   the model's depth, :class:`flowutils.knockout.windows.Protocol`), the relative change of the predicted
   answer's probability is averaged over each interval (:func:`interval_table`), and an
   interval is *effective* for a flow when its mean is below -5% (:func:`effective_layers`).
   This is done for cross-frame, video->question and question->last (``EFFECTIVE_FLOWS``).
2. **The combined plan (Table 3, "effective pathways").** :func:`effective_pathway_plan`:
   cross-frame, video->question and question->last are cut outside their effective layers;
   video->last and last->last are cut in every layer; video->video is cut after the last
   effective video->question layer and question->question after the last effective
   question->last layer (the video and question tokens are no longer read there).
3. **Random blocking (Table 3).** Edges drawn uniformly and independently per layer and per
   question among the causal (query, key) pairs whose query and key both come after the
   system prompt (:func:`random_blocking_plan`); several seeds give a mean and a spread (the paper's
   code draws once). How many, a named rule says (``RANDOM_RULES``):

   * ``fixed share`` (the paper's code): ``int(share * n (n + 1) / 2)`` pairs in every layer of an
     ``n``-token input (:func:`fixed_share_cuts`), ``share`` = 0.58 / 0.63 / 0.60 / 0.42 for
     LLaVA-NeXT-7B / 13B-Video-FT, Mini-InternVL-4B-Video-FT and VideoLLaMA3-7B, i.e. 1 - the share of the
     edges the effective pathways kept on average; the default on those models (their manifests'
     ``random_blocking_share``, :attr:`flowutils.knockout.windows.Protocol.random_share`);
   * ``matched`` (a variant): as many edges as this question's combined plan cuts, spread evenly over
     the layers (:func:`matched_cuts`); the default on every other model, which has no paper share.
4. :func:`run_pathways` evaluates every question (also those answered wrongly at baseline)
   under full causal attention, the combined plan and each random draw (edges counted from the plans), through the
   per-question runner (:mod:`.runner`: result store, resume, counted skips, out-of-memory
   retry); :func:`table3` summarises accuracy and edge counts; the ``claim_*`` functions state
   the findings.

"# attention edges" counts the valid causal (query, key) pairs over all layers
(:meth:`flowutils.knockout.KnockoutPlan.attention_edges`): full causal attention has
``L * N (N + 1) / 2``. Layers are 0-based in code and 1-based (``L6-15``) in labels.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import torch

from ..engine import BACKENDS
from ..knockout.flows import CROSS_FRAME, flow_blocks, flow_label
from ..knockout.plan import KnockoutPlan, RowBlocks, flat_blocks
from ..inputs.layout import TokenLayout
from .claims import Claim, all_of, curve_estimate, intervals_text, mean_estimate, questions, stability
from ..analysis.runner import choice_problems, knockout_with_retry, require_finite, run_questions
from ..analysis.sweep import logit_difference
from ..data.video import NUM_FRAMES

EFFECTIVE_FLOWS = (CROSS_FRAME, "video->question", "question->last")
ALWAYS_CUT = ("video->last", "last->last")
THRESHOLD_PCT = -5.0  # an interval is effective when its mean relative change is below this
CONDITIONS = ("full causal attention", "effective pathways", "random blocking")
RANDOM_RULES = ("fixed share", "matched")  # the paper's code's rule; the per-question variant

# The paper's numbers for LLaVA-NeXT-7B-Video-FT (Table E(a), 1-based inclusive; Table 3, TVBench).
PAPER_RANGES = {CROSS_FRAME: "L6-15", "video->question": "L6-20", "question->last": "L16-25"}
PAPER_TABLE3 = {"full causal attention": 51.5, "effective pathways": 51.2, "random blocking": 40.1, "kept_pct": 42.0}
# This book's reading of "marginal" and "significant" accuracy changes (percentage points).
RETAINED_POINTS = 5.0
RANDOM_GAP_POINTS = 5.0
MAX_KEPT_PCT = 58.0  # the largest share kept among the paper's four models (VideoLLaMA3-7B)


def intervals(n_layers: int, size: int) -> list[tuple[int, ...]]:
    """Consecutive 0-based layer intervals of ``size`` (the last one clipped at the depth)."""
    return [tuple(range(a, min(a + size, n_layers))) for a in range(0, n_layers, size)]


def range_label(layers) -> str:
    """0-based layers -> the paper's 1-based ranges: ``(5, 6, 7, 10)`` -> ``"L6-8, L11"``; empty -> ``"none"``."""
    layers = sorted(layers)
    if not layers:
        return "none"
    runs, start = [], layers[0]
    for a, b in zip(layers, layers[1:] + [None]):
        if b != a + 1:
            runs.append(f"L{start + 1}" if start == a else f"L{start + 1}-{a + 1}")
            start = b
    return ", ".join(runs)


def interval_table(table, n_layers: int, size: int, value: str = "relative_change_pct"):
    """Table E(b): mean ``value`` per flow over each ``size``-layer interval of a knockout sweep (``size``: the
    model's protocol's interval, ``fm.protocol.interval``: 5 on the paper's models).

    ``table``: rows of :func:`flowutils.analysis.run_sweep` (``flow``, ``layer`` = window
    centre, 0-based). Returns columns ``flow``, ``interval`` (``"L1-2"``), ``layers`` (tuple,
    0-based), ``mean``, ``questions``.
    """
    import pandas as pd

    rows = []
    for flow, g in table.groupby("flow", sort=False):
        for layers in intervals(n_layers, size):
            sel = g[g["layer"].isin(layers)]
            rows.append({"flow": flow, "interval": range_label(layers), "layers": layers,
                         "mean": float(sel[value].mean()) if len(sel) else float("nan"),
                         "questions": int(sel["sample_id"].nunique()) if len(sel) else 0})
    return pd.DataFrame(rows)


def selection_samples(samples, task: str = "action_antonym") -> list:
    """The questions of ``task`` (the paper selects the effective layers on Action Antonym)."""
    samples = list(samples)
    chosen = [s for s in samples if s.task == task]
    if not chosen:
        raise ValueError(f"parameter selection_task={task!r} has no question among the loaded tasks "
                         f"{sorted({s.task for s in samples})}; add it to tasks or choose one of those")
    return chosen


def effective_layers(table_e, threshold: float = THRESHOLD_PCT) -> dict[str, tuple[int, ...]]:
    """``{flow: 0-based layers}``: the union of the intervals whose mean is below ``threshold``.

    ``table_e``: the output of :func:`interval_table`. Every one of ``EFFECTIVE_FLOWS``
    must have rows (flow names in code or paper spelling).
    """
    named = {flow_label(f): f for f in EFFECTIVE_FLOWS}
    have = set(table_e["flow"])
    missing = [f for f in named if f not in have]
    if missing:
        raise ValueError(f"Table E has no rows for flow(s) {missing}; it has {sorted(have)}")
    out = {}
    for label, flow in named.items():
        g = table_e[(table_e["flow"] == label) & (table_e["mean"] < threshold)]
        out[flow] = tuple(sorted(l for layers in g["layers"] for l in layers))
    return out


def effective_problems(effective) -> list[str]:
    """Problems with ``effective``: each of ``EFFECTIVE_FLOWS`` needs its (possibly empty) layers."""
    missing = [f for f in EFFECTIVE_FLOWS if f not in effective]
    return [f"effective layers missing for {missing}; need {list(EFFECTIVE_FLOWS)}"] if missing else []


def effective_pathway_plan(layout: TokenLayout, n_layers: int, effective: dict) -> KnockoutPlan:
    """Table 3's combined plan: only the effective pathways stay open (see the module docstring).

    ``effective``: ``{flow: 0-based layers}`` for each of ``EFFECTIVE_FLOWS``
    (:func:`effective_layers`). A flow with no effective layer is cut everywhere, and its
    late cut (video->video / question->question) is then not made (there is no range end).
    """
    problems = effective_problems(effective)
    if problems:
        raise ValueError(problems[0])
    late = {"video->video": effective["video->question"], "question->question": effective["question->last"]}
    blocks = {flow: flow_blocks(flow, layout) for flow in (*EFFECTIVE_FLOWS, *ALWAYS_CUT, *late)}
    plan = {}
    for layer in range(n_layers):
        cut = [f for f in EFFECTIVE_FLOWS if layer not in effective[f]] + list(ALWAYS_CUT)
        cut += [f for f, rng in late.items() if rng and layer > max(rng)]
        plan[layer] = [b for f in cut for b in blocks[f]]
    return KnockoutPlan(plan, {"plan": "effective pathways", **{f: range_label(l) for f, l in effective.items()}})


def cut_edges(plan: KnockoutPlan, n: int, n_layers: int) -> int:
    """Causal (query, key) pairs a plan cuts over all layers of an ``n``-token input."""
    return n_layers * n * (n + 1) // 2 - plan.attention_edges(n, n_layers)


def matched_cuts(total: int, n_layers: int) -> list[int]:
    """``total`` cut edges spread over the layers as evenly as possible (earlier layers take the remainder)."""
    return [total // n_layers + (layer < total % n_layers) for layer in range(n_layers)]


def fixed_share_cuts(n: int, share: float, n_layers: int) -> list[int]:
    """The paper's code's random blocking: ``int(share * n (n + 1) / 2)`` pairs in every layer of an ``n``-token
    input, whatever its effective-pathway plan cuts (``n (n + 1) / 2``: all causal pairs, the system prompt's too)."""
    return [int(n * (n + 1) // 2 * share)] * n_layers


def resolve_random_rule(protocol, rule: str | None = None, share: float | None = None) -> tuple[str, float | None]:
    """``(rule, share)`` of Table 3's random blocking: ``rule`` None is the model's default (``fixed share`` where
    its ``protocol`` has the paper's share, else ``matched``); ``share`` overrides the protocol's (``fixed share``
    only: a model the paper did not run has none)."""
    if rule is None:
        rule = RANDOM_RULES[0] if protocol.random_share is not None or share is not None else RANDOM_RULES[1]
    if rule not in RANDOM_RULES:
        raise ValueError(f"random_rule={rule!r}; valid: {RANDOM_RULES} (or None: the model's default)")
    if rule == RANDOM_RULES[1]:
        if share is not None:
            raise ValueError(f"random_share={share!r} applies to the 'fixed share' rule only, not 'matched'")
        return rule, None
    share = protocol.random_share if share is None else share
    if share is None:
        raise ValueError("random_rule='fixed share' needs a share: this model's manifest has no random_blocking_share "
                         "(the paper ran Table 3 on four models only); pass random_share, or use 'matched'")
    if isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share < 1:
        raise ValueError(f"random_share={share!r}: a number in (0, 1)")
    return rule, float(share)


def rule_label(rule: str, share: float | None) -> str:
    """The rule in words, as Table 3 names it."""
    if rule == RANDOM_RULES[0]:
        return f"fixed share: {share:g} of the n(n+1)/2 causal pairs in every layer (the paper's code)"
    return "matched: as many edges as the question's effective pathways cut (a variant)"


def post_system_start(layout: TokenLayout) -> int:
    """The first position after the system prompt (random edges are drawn from there on): the end of
    the leading run of system positions (chat-format text after the video is not the system prompt)."""
    system, start = set(layout.system), 0
    while start in system:
        start += 1
    return start


def random_blocking_plan(layout: TokenLayout, cuts_per_layer, rng: np.random.Generator) -> KnockoutPlan:
    """Cut ``cuts_per_layer[l]`` causal (query, key) pairs in layer ``l``, drawn uniformly without
    replacement among pairs whose query and key both lie after the system prompt.

    One block per query row (``([q], keys)``). ``rng``: a seeded numpy Generator (one per
    question and seed, so each question gets its own draw).
    """
    start = post_system_start(layout)
    q_idx, k_idx = np.tril_indices(layout.n - start)
    plan = {}
    for layer, count in enumerate(cuts_per_layer):
        if count > len(q_idx):
            raise ValueError(f"layer {layer}: cannot cut {count} random edges; only {len(q_idx)} causal pairs "
                             f"lie after the system prompt (positions {start}..{layout.n - 1})")
        pick = np.sort(rng.choice(len(q_idx), size=int(count), replace=False))  # sorted: row-major order
        plan[layer] = RowBlocks(q_idx[pick] + start, k_idx[pick] + start)
    return KnockoutPlan(plan, {"plan": "random blocking"})


def drawn_edges(plan: KnockoutPlan) -> int:
    """Pairs a :func:`random_blocking_plan` cuts over all layers (each block: one query, its distinct keys)."""
    return sum(int(flat_blocks(blocks).source_counts.sum()) for blocks in plan.blocks.values())


def pathway_rows(fm, question, effective: dict, seeds, rule: str, share: float | None, backend: str = "fast",
                 batch_size: int = 256) -> list[dict]:
    """Table 3's rows of one :class:`flowutils.analysis.runner.Question` (see :func:`run_pathways`)."""
    prepared = question.prepared
    lay, L = prepared.layout, fm.n_layers
    full = L * lay.n * (lay.n + 1) // 2
    eff = effective_pathway_plan(lay, L, effective)
    total_cut = cut_edges(eff, lay.n, L)
    cuts = fixed_share_cuts(lay.n, share, L) if rule == RANDOM_RULES[0] else matched_cuts(total_cut, L)
    # one draw per question and seed, seeded by the question's place in the sample list (any shard draws the same)
    rand = [random_blocking_plan(lay, cuts, np.random.default_rng([seed, question.index])) for seed in seeds]
    conds = [(CONDITIONS[0], -1, full), (CONDITIONS[1], -1, full - total_cut)]
    conds += [(CONDITIONS[2], int(s), full - drawn_edges(r)) for s, r in zip(seeds, rand)]
    knocked = knockout_with_retry(fm, question, [eff, *rand], backend, batch_size)
    labels = [cond if seed < 0 else f"{cond} (seed {seed})" for cond, seed, _ in conds[1:]]
    require_finite(knocked, "knockout logits", labels)
    logits = torch.cat([question.baseline.logits.cpu()[None], knocked])
    diffs = logit_difference(logits, prepared.option_ids, prepared.gold_index)
    probs = logits.softmax(-1)
    label = rule_label(rule, share)
    return [{"sample_id": question.sample_id, "task": prepared.task, "condition": cond, "seed": seed,
             "rule": label if cond == CONDITIONS[2] else "", "edges": edges, "edges_full": full,
             "p_gold": float(p[prepared.gold_id]),
             "logit_diff": float(d), "correct": int(p.argmax()) == prepared.gold_id}
            for (cond, seed, edges), p, d in zip(conds, probs, diffs)]


def run_pathways(fm, samples, effective: dict, seeds=range(5), num_frames: int = NUM_FRAMES, backend: str = "fast",
                 progress: bool = True, *, random_rule: str | None = None, random_share: float | None = None, out=None,
                 benchmark=None, shard: int | None = None, num_shards: int | None = None, batch_size: int = 256):
    """Every question under full causal attention, the effective pathways and ``len(seeds)`` random draws.

    ``random_rule``/``random_share``: how many edges each random draw cuts (:func:`resolve_random_rule`; default:
    the paper's fixed share on the paper's models, ``matched`` elsewhere). Returns one row per question x
    condition x seed (``seed`` is -1 for the two fixed conditions): ``sample_id``, ``task``, ``condition``,
    ``seed``, ``rule`` (the random rule in words; empty for the fixed conditions), ``edges`` (kept, counted
    from each plan), ``edges_full``,
    ``p_gold``, ``logit_diff`` (true option vs best false option), ``correct`` (argmax over
    the vocabulary = the true option's letter). Questions answered wrongly at baseline are
    kept (Table 3 evaluates the whole split). ``out``, ``benchmark``, ``shard``/``num_shards``,
    ``batch_size``, ``attrs["skipped"]``/``attrs["store"]``: as :func:`flowutils.analysis.run_sweep`'s
    (the result store resumes a killed run; skipped questions are counted).
    """
    seeds = list(seeds)
    rule, share = resolve_random_rule(fm.protocol, random_rule, random_share)
    problems = effective_problems(effective) + choice_problems("backend", backend, BACKENDS)
    measure = functools.partial(pathway_rows, fm, effective=effective, seeds=seeds, rule=rule, share=share,
                                backend=backend, batch_size=batch_size)
    key = {"effective": {f: list(effective.get(f, ())) for f in EFFECTIVE_FLOWS}, "seeds": seeds, "backend": backend,
           "random_rule": rule, "random_share": share}
    return run_questions(fm, samples, measure, analysis="run_pathways", params=key, num_frames=num_frames,
                         problems=problems, out=out, benchmark=benchmark, shard=shard, num_shards=num_shards,
                         progress=progress)


def table3(results):
    """Table 3 from :func:`run_pathways` rows: per condition, the random rule, mean edges kept and blocked
    (per question, over all layers), share kept, accuracy.

    Accuracy of the fixed conditions has a Wilson 95% interval; random blocking gives the
    mean and standard deviation over seeds (each seed's accuracy over all questions).
    """
    import pandas as pd

    from ..analysis.uncertainty import accuracy

    out = []
    for cond in CONDITIONS:
        g = results[results["condition"] == cond]
        if not len(g):
            continue
        per_seed = g.groupby("seed")["correct"].mean() * 100
        acc = accuracy(g[g["seed"] == g["seed"].iloc[0]]["correct"])
        out.append({"condition": cond, "rule": g["rule"].iloc[0], "edges": g["edges"].mean(),
                    "edges_blocked": (g["edges_full"] - g["edges"]).mean(),
                    "kept_pct": 100 * (g["edges"] / g["edges_full"]).mean(),
                    "accuracy": per_seed.mean(), "std_over_seeds": per_seed.std(ddof=1) if len(per_seed) > 1 else 0.0,
                    "seeds": len(per_seed), "lo": acc["lo"] if len(per_seed) == 1 else float("nan"),
                    "hi": acc["hi"] if len(per_seed) == 1 else float("nan"), "questions": acc["questions"],
                    "logit_diff": g["logit_diff"].mean()})
    return pd.DataFrame(out)


def _selection_matrix(sweep, value: str = "relative_change_pct"):
    """``[questions, flows x layers]``: each question's curve of each of ``EFFECTIVE_FLOWS`` side by side (the
    questions every flow has), and the layers."""
    import pandas as pd

    labels = [flow_label(f) for f in EFFECTIVE_FLOWS]
    missing = [f for f in labels if f not in set(sweep["flow"])]
    if missing:
        raise ValueError(f"the selection sweep has no rows for flow(s) {missing}")
    wide = [sweep[sweep["flow"] == f].pivot_table(index="sample_id", columns="layer", values=value, aggfunc="mean",
                                                  sort=True) for f in labels]
    layers = sorted(set.intersection(*(set(w.columns) for w in wide)))
    both = pd.concat([w[layers] for w in wide], axis=1, join="inner")
    return both.to_numpy(), layers


def _selection_statistics(n_layers: int, size: int, threshold: float, layers):
    """Functions of ``[m, flows x layers]`` mean curves -> ``[m]``: each flow's lowest interval mean, and the mean
    layer (0-based) of each flow's effective intervals (NaN without one), as :func:`effective_layers` selects."""
    spans = [[layers.index(l) for l in rng if l in layers] for rng in intervals(n_layers, size)]
    spans = [s for s in spans if s]
    width = len(layers)

    def means(c, j):
        block = c[:, j * width:(j + 1) * width]
        return np.stack([block[:, s].mean(-1) for s in spans], axis=-1)  # [m, intervals]

    def lowest(j):
        return lambda c: means(c, j).min(-1)

    def centre(j):
        def f(c):
            eff = means(c, j) < threshold
            total = (eff * np.array([sum(layers[i] for i in s) for s in spans])).sum(-1)
            count = (eff * np.array([len(s) for s in spans])).sum(-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)
        return f

    return lowest, centre


def _selection_estimates(sweep, n_layers: int, size: int, threshold: float = THRESHOLD_PCT, seed: int = 0):
    values, layers = _selection_matrix(sweep)
    lowest, centre = _selection_statistics(n_layers, size, threshold, layers)
    labels = [flow_label(f) for f in EFFECTIVE_FLOWS]
    out = [curve_estimate(f"{label}: lowest interval mean", values, lowest(j), threshold, "below", seed=seed)
           for j, label in enumerate(labels)]
    ql = centre(2)
    for j in (0, 1):
        out.append(curve_estimate(f"{labels[2]} minus {labels[j]}: mean effective layer", values,
                                  lambda c, j=j: ql(c) - centre(j)(c), 0.0, "above", seed=seed))
    return out


def claim_effective_layers(sweep, n_layers: int, size: int, threshold: float = THRESHOLD_PCT, seed: int = 0) -> Claim:
    """Table E: every flow has an effective interval (its lowest interval mean below ``threshold``), and the
    effective layers of question->last lie later than those of cross-frame and video->question (mean effective
    layer). The selection itself is bootstrapped over the selection questions: each resample selects its own
    intervals. ``sweep``: the selection sweep (:func:`flowutils.analysis.run_sweep` rows of ``EFFECTIVE_FLOWS``)."""
    def verdict(t):
        return all_of(e.holds for e in _selection_estimates(t, n_layers, size, threshold, seed)) if len(t) else None

    est = _selection_estimates(sweep, n_layers, size, threshold, seed)
    found = effective_layers(interval_table(sweep, n_layers, size), threshold)
    measured = "; ".join(f"{flow_label(f)} {range_label(l)}" for f, l in found.items())
    return Claim("3.5", "Table E", "effective layers: cross-frame and video->question early-to-middle, "
                 f"question->last middle-to-late (interval means below {threshold:g}%; the selection redone on every "
                 "bootstrap resample of the questions)",
                 "; ".join(f"{flow_label(f)} {r}" for f, r in PAPER_RANGES.items()), measured, verdict(sweep),
                 questions(sweep), intervals_text(est), stability(verdict, sweep))


def _per_question(results, cond):
    """Per question, the share of seeds answered correctly under ``cond`` (in points: 0 to 100)."""
    g = results[results["condition"] == cond]
    return 100.0 * g.groupby("sample_id", sort=True)["correct"].mean()


def _retains(results, points, seed=0):
    full, eff = _per_question(results, CONDITIONS[0]), _per_question(results, CONDITIONS[1])
    return mean_estimate("effective minus full accuracy", eff - full.reindex(eff.index), -points, "above", seed=seed)


def _hurts(results, points, seed=0):
    eff, rnd = _per_question(results, CONDITIONS[1]), _per_question(results, CONDITIONS[2])
    return mean_estimate("effective minus random accuracy", eff - rnd.reindex(eff.index), points, "above", seed=seed)


def _kept(results, max_kept, seed=0):
    g = results[results["condition"] == CONDITIONS[1]]
    kept = 100.0 * (g["edges"] / g["edges_full"]).groupby(g["sample_id"], sort=True).mean()
    return mean_estimate("edges kept (%)", kept, max_kept, "below", seed=seed)


def _table3_claim(results, needs, estimate, finding, paper, measured):
    """A Table 3 claim read by ``estimate(results)``; "not run" where ``results`` lack a condition of ``needs``."""
    have = set(results["condition"]) if len(results) else set()
    if not set(needs) <= have:
        return Claim("3.5", "Table 3", finding, paper, "not run", None)
    e = estimate(results)
    return Claim("3.5", "Table 3", finding, paper, f"{measured} (n={e.n})", e.holds, e.n, str(e),
                 stability(lambda t: estimate(t).holds, results))


def _accuracy(results, cond):
    g = results[results["condition"] == cond] if len(results) else results
    return 100.0 * g.groupby("seed")["correct"].mean() if len(g) else None


def claim_effective_retains(results, points: float = RETAINED_POINTS, seed: int = 0) -> Claim:
    """Table 3: accuracy with only the effective pathways is within ``points`` of full causal attention: per
    question, correct under the effective pathways minus correct under full attention (points), its mean above
    ``-points``. ``results``: :func:`run_pathways` rows."""
    full, eff = _accuracy(results, CONDITIONS[0]), _accuracy(results, CONDITIONS[1])
    measured = "" if full is None or eff is None else f"{full.mean():.1f} -> {eff.mean():.1f}"
    return _table3_claim(results, CONDITIONS[:2], lambda t: _retains(t, points, seed),
                         f"effective pathways alone retain accuracy (drop <= {points:g} points)",
                         f"{PAPER_TABLE3[CONDITIONS[0]]} -> {PAPER_TABLE3[CONDITIONS[1]]} (TVBench, 7B)", measured)


def claim_random_hurts(results, points: float = RANDOM_GAP_POINTS, seed: int = 0) -> Claim:
    """Table 3: random blocking of about as many edges (the run's rule, named in ``measured``) lowers accuracy more
    than ``points`` below the effective pathways: per question, correct under the effective pathways minus its
    share of correct random draws, its mean above ``points``."""
    eff, rnd = _accuracy(results, CONDITIONS[1]), _accuracy(results, CONDITIONS[2])
    measured = ""
    if eff is not None and rnd is not None:
        rules = results[results["condition"] == CONDITIONS[2]]["rule"]
        rule = str(rules.iloc[0]).split(" (")[0] if len(rules) else ""
        spread = rnd.std(ddof=1) if len(rnd) > 1 else 0.0
        measured = (f"{eff.mean():.1f} vs {rnd.mean():.1f} +- {spread:.1f} ({len(rnd)} seeds"
                    + (f"; {rule}" if rule else "") + ")")
    return _table3_claim(results, CONDITIONS[1:], lambda t: _hurts(t, points, seed),
                         f"random blocking of the same proportion of edges is worse (by > {points:g} points)",
                         f"{PAPER_TABLE3[CONDITIONS[1]]} vs {PAPER_TABLE3[CONDITIONS[2]]} (TVBench, 7B)", measured)


def claim_edges_suppressed(results, max_kept: float = MAX_KEPT_PCT, seed: int = 0) -> Claim:
    """Table 3: the effective pathways keep at most ``max_kept`` % of the attention edges (per question's share,
    its mean below ``max_kept``)."""
    g = results[results["condition"] == CONDITIONS[1]] if len(results) else results
    measured = "" if not len(g) else \
        f"{100 * (g['edges'] / g['edges_full']).mean():.1f}% kept ({g['edges'].mean():,.0f} edges)"
    return _table3_claim(results, CONDITIONS[1:2], lambda t: _kept(t, max_kept, seed),
                         f"the effective pathways suppress a substantial share of the edges (keep <= {max_kept:g}%)",
                         f"{PAPER_TABLE3['kept_pct']:g}% kept (7B); 37-58% over four models", measured)
