"""Section 3.3, Figure 4: spatial and temporal keywords read from the video tokens by the logit lens.

The paper projects the hidden state of every video token at every layer to the vocabulary
(:func:`flowutils.analysis.logit_lens.layer_logits`), takes the top-1 token and counts how often
it is the first sub-token of a spatial or a temporal keyword: as in the official code, a top-1 token hits
a keyword when its text, decoded alone, equals the decoded first sub-token of the lower-case keyword
(:func:`keyword_token_ids`; a capitalised form is not counted). The keywords are parsed from the
benchmark's own question and option texts, lower-cased (Table D for TVBench's Action Sequence,
:data:`TABLE_D`; :func:`synthetic_keywords` for the synthetic benchmark: colours, shapes and
scenes are spatial; actions, directions and "begins"/"ends" are temporal). On TVBench the paper uses Table D
and the Action Sequence videos only (:func:`figure4_choice`). Following the
official analysis, hits are summed over bins of layers (5, the protocol's interval: scaled to the depth only on
models the paper did not run), keywords with too few hits in total are dropped, each keyword's row is
normalised to sum to 1 over the bins, and a category's curve is the mean over its keywords
(:func:`keyword_frequency`).

The claims (:func:`figure4_claims`) read intervals, bootstrapped over questions: keyword hits against the
chance rate of a uniform top-1 token; spatial concepts in the "very early" layers (the first quarter of the
depth) and temporal ones in the "middle" layers (the middle third), each against a flat profile; and the
spatial-minus-temporal gap of the frequency-weighted mean layers. A claim holds where its interval clears the
bar, does not hold where it clears it on the other side, and is inconclusive (``holds=None``) otherwise or
below ``MIN_QUESTIONS`` questions.

Both projections are offered: ``final_norm`` (final norm + LM head, the paper's text) and
``input_embedding`` (the input embedding matrix without the final norm, the official code).
"""

from __future__ import annotations

import functools
import re
from dataclasses import replace

import numpy as np
import torch

from ..data import synthetic
from .claims import MIN_QUESTIONS, Claim, all_of, decide, split_halves, verdict_word  # noqa: F401 (the minimum)
from ..analysis.logit_lens import VARIANTS, layer_logits
from ..analysis.runner import choice_problems, run_questions
from ..data.video import NUM_FRAMES

# Table D of the paper: keywords of TVBench's Action Sequence question prompts (lower case, present tense).
TABLE_D = {
    "spatial": ["bag", "bed", "blank", "book", "box", "cabinet", "camera", "clothes", "cup", "door", "floor", "food",
                "glass", "laptop", "paper", "person", "phone", "sandwich", "table"],
    "temporal": ["close", "down", "drink", "eat", "hold", "on", "open", "put", "sit", "take", "throw", "tidy", "up"],
}
CATEGORIES = ("spatial", "temporal")
# Figure 4's logit lenses: the textbook one and the official code's (see :mod:`.logit_lens`)
LENSES = ("final_norm", "input_embedding")
STOP_WORDS = {"and", "the", "to", "from"}
# Figure 4 on TVBench (the paper's choice): Table D's keywords, the Action Sequence videos only
TVBENCH_CHOICE = ("table_d", "action_sequence")
# "very early": layers 1 .. L/4; "middle": the middle third, L/3 .. 2L/3 (1-based; a bin belongs to a range when
# its centre lies in it): 1-8 and 12-21 of 32 layers, 1-10 and 14-27 of 40
VERY_EARLY = (0.0, 0.25)
MIDDLE = (1 / 3, 2 / 3)


def _words(texts) -> list[str]:
    words = []
    for text in texts:
        words += [w.lower() for w in re.findall(r"[A-Za-z]+", text) if w.lower() not in STOP_WORDS]
    return list(dict.fromkeys(words))


def synthetic_keywords() -> dict[str, list[str]]:
    """The synthetic benchmark's keywords, parsed from its option and question vocabulary:
    spatial = colours, shapes, scenes; temporal = actions, directions, "begins"/"ends"."""
    spatial = _words(list(synthetic.COLORS) + list(synthetic.SHAPES) + list(synthetic.SCENES))
    temporal = _words([a for pair in synthetic.ANTONYMS for a in pair] + list(synthetic.SEQUENCE_ACTIONS)
                      + list(synthetic.DIRECTIONS) + ["begins ends"])
    return {"spatial": spatial, "temporal": [w for w in temporal if w not in spatial]}


KEYWORD_SETS = {"synthetic": synthetic_keywords, "table_d": lambda: {k: list(v) for k, v in TABLE_D.items()}}


def figure4_choice(manifest: str, keywords: str | None = None, task: str | None = None) -> tuple[str, str | None]:
    """``(keyword set, task or None for every task)`` of Figure 4: on TVBench the paper's (Table D, Action Sequence),
    on the synthetic benchmark its own vocabulary over every task, elsewhere Table D over every task; ``keywords``
    and ``task`` override the default."""
    default = TVBENCH_CHOICE if manifest == "tvbench" else ("synthetic", None) if manifest == "synthetic" \
        else ("table_d", None)
    if keywords is not None and keywords not in KEYWORD_SETS:
        raise ValueError(f"keywords={keywords!r}; valid: {list(KEYWORD_SETS)} (or None: {default[0]!r} on {manifest})")
    return (keywords or default[0]), (task if task is not None else default[1])


def token_texts(tokenizer) -> list[str]:
    """Every vocabulary token's text, decoded alone (as the official code decodes each top-1 token)."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


def keyword_token_ids(tokenizer, word: str, texts: list[str] | None = None) -> list[int]:
    """The vocabulary tokens that count as ``word``, as the official code counts them: those whose text, decoded
    alone, equals the decoded first sub-token of ``word`` (lower case). With a SentencePiece vocabulary ``bag``
    is ``▁bag`` decoded, so ``▁bag`` and a word-inner ``bag`` both count, ``Bag`` does not. ``texts``:
    :func:`token_texts` (computed here when not given); an unknown first sub-token gives no id."""
    enc = tokenizer(word.lower(), add_special_tokens=False)["input_ids"]
    if not enc or enc[0] == tokenizer.unk_token_id:
        return []
    first = tokenizer.decode([enc[0]])
    texts = token_texts(tokenizer) if texts is None else texts
    return [i for i, t in enumerate(texts) if t == first]


def keyword_rows(fm, question, ids: dict, variants=LENSES) -> list[dict]:
    """:func:`keyword_hits`' rows of one :class:`flowutils.analysis.runner.Question`; ``ids``:
    ``{(category, keyword): token ids}``."""
    prepared, rows = question.prepared, []
    for variant in variants:
        top = layer_logits(fm, question.baseline, prepared.layout.video, variant).argmax(-1)  # [layer, pos]
        for (cat, word), token_ids in ids.items():
            hits = torch.isin(top, torch.tensor(token_ids, device=top.device)).sum(-1).tolist()  # [layer]
            rows += [{"variant": variant, "sample_id": question.sample_id, "task": prepared.task, "layer": l,
                      "keyword": word, "category": cat, "hits": h, "positions": top.shape[1]}
                     for l, h in enumerate(hits)]
    return rows


def keyword_hits(fm, samples, keywords: dict[str, list[str]], variants=LENSES, num_frames: int = NUM_FRAMES,
                 progress: bool = False, *, sample_mode: str = "correct", out=None, benchmark=None,
                 shard: int | None = None, num_shards: int | None = None):
    """Logit-lens top-1 hits of each keyword on the video tokens: a DataFrame with one row per
    variant x question x layer x keyword (``variant``, ``sample_id``, ``task``, ``layer``, ``keyword``,
    ``category``, ``hits``: how many video positions of that layer have the keyword's token as top-1,
    ``positions``: the video positions read). ``sample_mode``: the questions read (the official code's default:
    those answered correctly). ``out``, ``benchmark``, ``shard``/``num_shards``, ``attrs``: as
    :func:`flowutils.analysis.run_sweep`'s (:mod:`.runner`)."""
    variants = list(variants)
    texts = token_texts(fm.tokenizer)
    ids = {(cat, w): keyword_token_ids(fm.tokenizer, w, texts) for cat in keywords for w in keywords[cat]}
    ids = {k: v for k, v in ids.items() if v}
    problems = [p for v in variants for p in choice_problems("logit-lens variant", v, VARIANTS)]
    return run_questions(fm, samples, functools.partial(keyword_rows, fm, ids=ids, variants=variants),
                         analysis="keyword_hits", params={"keywords": keywords, "variants": variants},
                         num_frames=num_frames, sample_mode=sample_mode, problems=problems, out=out,
                         benchmark=benchmark, shard=shard, num_shards=num_shards, progress=progress)


def chance_rates(tokenizer, keywords: dict[str, list[str]]) -> dict[str, float]:
    """Per category, the share of the vocabulary that counts as one of its keywords: the hit rate of a top-1 token
    drawn uniformly from the vocabulary (Figure 4's chance rate)."""
    texts = token_texts(tokenizer)
    return {cat: len({i for w in words for i in keyword_token_ids(tokenizer, w, texts)}) / len(texts)
            for cat, words in keywords.items()}


def keyword_frequency(hits, n_layers: int, bin_size: int, min_hits: int):
    """Normalised keyword frequency per layer bin and category.

    Hits are summed per keyword and bin over questions; keywords with fewer than ``min_hits``
    hits in total are dropped; each keyword's row is divided by its total; a category's value
    per bin is the mean over its kept keywords. Returns a DataFrame: ``category``, ``bin``
    (0-based), ``first_layer``/``last_layer`` (1-based), ``frequency``, ``keywords`` (kept).
    """
    import pandas as pd

    if bin_size < 1:
        raise ValueError(f"bin_size must be >= 1, got {bin_size}")
    n_bins = -(-n_layers // bin_size)
    h = hits.assign(bin=hits["layer"] // bin_size)
    per = h.pivot_table(index=["category", "keyword"], columns="bin", values="hits", aggfunc="sum", fill_value=0)
    per = per.reindex(columns=range(n_bins), fill_value=0)
    per = per[per.sum(axis=1) >= min_hits]
    rows = []
    for cat in CATEGORIES:
        kept = per.loc[cat] if cat in per.index.get_level_values(0) else None
        for b in range(n_bins):
            freq = float((kept[b] / kept.sum(axis=1)).mean()) if kept is not None else float("nan")
            rows.append({"category": cat, "bin": b, "first_layer": b * bin_size + 1,
                         "last_layer": min(n_layers, (b + 1) * bin_size), "frequency": freq,
                         "keywords": 0 if kept is None else len(kept)})
    return pd.DataFrame(rows)


def layer_range(n_layers: int, share: tuple[float, float]) -> tuple[int, int]:
    """1-based layers ``(first, last)`` of a share of the depth: ``VERY_EARLY`` of 32 -> (1, 8), ``MIDDLE`` -> (12, 21)."""
    return int(round(share[0] * n_layers)) + 1, int(round(share[1] * n_layers))


def figure4_statistics(hits, n_layers: int, bin_size: int, min_hits: int, n_boot: int = 1000, seed: int = 0):
    """Figure 4's quantities on one lens's ``hits`` (:func:`keyword_hits` rows), with a percentile bootstrap over
    questions (the same resampled questions for every quantity): ``{name: (value, lo, hi)}`` for ``rate:<category>``
    (hits per video position and layer), ``very_early:spatial`` and ``middle:temporal`` (the category's
    normalised frequency summed over the bins of that range, :func:`layer_range`) and ``gap`` (the temporal minus
    the spatial frequency-weighted mean layer, 1-based bin centres); ``"questions"``: their number; ``"flat"``:
    ``{range: a flat profile's share}``. The frequencies follow :func:`keyword_frequency` in every resample."""
    n_bins = -(-n_layers // bin_size)
    keys = sorted({(c, w) for c, w in zip(hits["category"], hits["keyword"])})
    questions = list(dict.fromkeys(hits["sample_id"]))
    col = {k: j for j, k in enumerate(keys)}
    row = {q: i for i, q in enumerate(questions)}
    arr = np.zeros((len(questions), len(keys), n_bins))
    np.add.at(arr, (hits["sample_id"].map(row).to_numpy(), [col[k] for k in zip(hits["category"], hits["keyword"])],
                    (hits["layer"] // bin_size).to_numpy()), hits["hits"].to_numpy())
    positions = hits.groupby("sample_id", sort=False)["positions"].first().reindex(questions).to_numpy() * n_layers
    rng = np.random.default_rng(seed)
    weights = np.vstack([np.ones(len(questions)), rng.multinomial(len(questions), [1 / len(questions)] * len(questions),
                                                                    size=n_boot)])  # row 0: the sample itself
    summed = np.einsum("bq,qkn->bkn", weights, arr)  # [1 + n_boot, keywords, bins]
    total = summed.sum(-1, keepdims=True)
    kept = total >= max(min_hits, 1)
    norm = np.where(kept, summed / np.where(total > 0, total, 1), np.nan)
    first = np.arange(n_bins) * bin_size + 1
    centre = (first + np.minimum(first + bin_size - 1, n_layers)) / 2
    ranges = {"very_early": layer_range(n_layers, VERY_EARLY), "middle": layer_range(n_layers, MIDDLE)}
    in_range = {r: (centre >= a) & (centre <= b) for r, (a, b) in ranges.items()}
    values, freq = {}, {}
    for cat in CATEGORIES:
        idx = [col[k] for k in keys if k[0] == cat]
        values[f"rate:{cat}"] = summed[:, idx].sum((1, 2)) / (weights @ positions)
        count = kept[:, idx, 0].sum(1)[:, None]  # kept keywords per resample; none: no value
        with np.errstate(invalid="ignore", divide="ignore"):
            freq[cat] = np.where(count > 0, np.nansum(norm[:, idx], axis=1) / count, np.nan)  # [1 + n_boot, bins]
    values["very_early:spatial"] = freq["spatial"][:, in_range["very_early"]].sum(1)
    values["middle:temporal"] = freq["temporal"][:, in_range["middle"]].sum(1)
    mean_layer = {c: (freq[c] * centre).sum(1) / freq[c].sum(1) for c in CATEGORIES}
    values["gap"] = mean_layer["temporal"] - mean_layer["spatial"]
    out = {}
    for name, v in values.items():
        boot = v[1:]
        ok = np.isfinite(v[0]) and np.isfinite(boot).mean() >= 0.95  # a resample without kept keywords: no value
        out[name] = (float(v[0]), *(np.nanquantile(boot, [0.025, 0.975]).tolist() if ok else [np.nan, np.nan]))
    out["questions"] = len(questions)
    out["flat"] = {r: float(m.sum() / n_bins) for r, m in in_range.items()}
    out["ranges"] = ranges
    return out


def _decide(value, lo, hi, bar, questions) -> bool | None:
    """Holds where the interval clears ``bar`` from above, does not where it lies below, else inconclusive
    (:func:`flowutils.paper.claims.decide`, with its minimum number of questions)."""
    return decide(lo, hi, bar, "above", questions)


def _interval(value, lo, hi, digits=2) -> str:
    return f"{value:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def figure4_claims(hits, chance: dict[str, float], n_layers: int, bin_size: int, min_hits: int,
                   decide_on: str = "input_embedding", n_boot: int = 1000, seed: int = 0) -> list[Claim]:
    """Figure 4's four claims, each one row holding both lenses' numbers and decided on ``decide_on`` (default: the
    official code's lens), with the verdicts on two disjoint halves of the questions beside each
    (:func:`flowutils.paper.claims.split_halves`). ``hits``: :func:`keyword_hits` rows (one lens or several);
    ``chance``: :func:`chance_rates`. Intervals: :func:`figure4_statistics` (95%, bootstrap over questions); a claim
    is inconclusive below ``MIN_QUESTIONS`` questions."""
    claims = _figure4(hits, chance, n_layers, bin_size, min_hits, decide_on, n_boot, seed)
    halves = [_figure4(h, chance, n_layers, bin_size, min_hits, decide_on, n_boot, seed) if len(h) else None
              for (h,) in split_halves(hits)]
    words = [[verdict_word(c.holds) for c in half] if half else ["not measured"] * len(claims) for half in halves]
    return [replace(c, stability=f"halves: {a} / {b}") for c, a, b in zip(claims, *words)]


def _figure4(hits, chance: dict[str, float], n_layers: int, bin_size: int, min_hits: int,
             decide_on: str = "input_embedding", n_boot: int = 1000, seed: int = 0) -> list[Claim]:
    """Figure 4's four claims, each one row holding both lenses' numbers and decided on ``decide_on`` (default: the
    official code's lens). ``hits``: :func:`keyword_hits` rows (one lens or several); ``chance``:
    :func:`chance_rates`. Intervals: :func:`figure4_statistics` (95%, bootstrap over questions); a claim is
    inconclusive below ``MIN_QUESTIONS`` questions."""
    lenses = list(dict.fromkeys(hits["variant"]))
    if decide_on not in lenses:
        raise ValueError(f"decide_on={decide_on!r}: the hits hold lenses {lenses}")
    stats = {v: figure4_statistics(hits[hits["variant"] == v], n_layers, bin_size, min_hits, n_boot, seed)
             for v in lenses}
    main = stats[decide_on]
    n = main["questions"]
    (e0, e1), (m0, m1) = main["ranges"]["very_early"], main["ranges"]["middle"]
    item, tail = "Figure 4", f"(decided on the {decide_on} lens; n={n})"

    def both(text):
        return "; ".join(f"{v}: {text(stats[v])}" for v in lenses)

    above = all_of(_decide(*main[f"rate:{c}"], chance[c], n) for c in CATEGORIES)
    claims = [Claim("3.3", item, f"spatial and temporal keywords are read from the video tokens above chance "
                    f"(hits per video position and layer against a uniform top-1 token) {tail}",
                    "both concepts are captured in video tokens",
                    both(lambda s: ", ".join(f"{c} {_interval(*s[f'rate:{c}'])} vs chance {chance[c]:.2g}"
                                             for c in CATEGORIES)), above, n,
                    ", ".join(f"{c} {_interval(*main[f'rate:{c}'])} > {chance[c]:.2g}" for c in CATEGORIES))]
    flat = main["flat"]
    claims.append(Claim("3.3", item, f"spatial concepts appear in the very early layers (L{e0}-{e1}: share of the "
                        f"normalised frequency above a flat profile's {flat['very_early']:.2f}) {tail}",
                        "spatial concepts start to appear in the very early layers",
                        both(lambda s: _interval(*s["very_early:spatial"])),
                        _decide(*main["very_early:spatial"], flat["very_early"], n), n,
                        f"{_interval(*main['very_early:spatial'])} > {flat['very_early']:.2f}"))
    claims.append(Claim("3.3", item, f"temporal concepts develop in the middle layers (L{m0}-{m1}: share of the "
                        f"normalised frequency above a flat profile's {flat['middle']:.2f}) {tail}",
                        "temporal concepts develop later in the middle layers",
                        both(lambda s: _interval(*s["middle:temporal"])),
                        _decide(*main["middle:temporal"], flat["middle"], n), n,
                        f"{_interval(*main['middle:temporal'])} > {flat['middle']:.2f}"))
    claims.append(Claim("3.3", item, f"temporal concepts emerge later than spatial ones (frequency-weighted mean layer, "
                        f"temporal minus spatial, above 0) {tail}", "spatial early, temporal in middle layers",
                        both(lambda s: f"{_interval(*s['gap'])} layers"), _decide(*main["gap"], 0.0, n), n,
                        f"{_interval(*main['gap'])} > 0 layers"))
    return claims
