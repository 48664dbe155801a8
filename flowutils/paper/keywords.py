"""Section 3.3, Figure 4: spatial and temporal keywords read from the video tokens by the logit lens.

The paper projects the hidden state of every video token at every layer to the vocabulary
(:func:`flowutils.analysis.logit_lens.layer_logits`), takes the top-1 token and counts how often
it is the first sub-token of a spatial or a temporal keyword. The keywords are parsed from the
benchmark's own question and option texts, lower-cased (Table D for TVBench's Action Sequence,
:data:`TABLE_D`; :func:`synthetic_keywords` for the synthetic benchmark: colours, shapes and
scenes are spatial; actions, directions and "begins"/"ends" are temporal). Following the
official analysis, hits are summed over bins of layers (5, the protocol's interval: scaled to the depth only on models the paper did not run), keywords
with too few hits in total are dropped, each keyword's row is normalised to sum to 1 over the
bins, and a category's curve is the mean over its keywords (:func:`keyword_frequency`).

Both projections are offered: ``final_norm`` (final norm + LM head, the paper's text) and
``input_embedding`` (the input embedding matrix without the final norm, the official code).
"""

from __future__ import annotations

import functools
import re

import torch

from ..data import synthetic
from .claims import Claim
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


def keyword_token_ids(tokenizer, word: str) -> list[int]:
    """First sub-token of the keyword, lower case and capitalised (a case-sensitive vocabulary may
    only have one of them); unknown tokens are left out."""
    ids = []
    for form in dict.fromkeys([word.lower(), word.capitalize()]):
        enc = tokenizer(form, add_special_tokens=False)["input_ids"]
        if enc and enc[0] != tokenizer.unk_token_id and enc[0] not in ids:
            ids.append(enc[0])
    return ids


def keyword_rows(fm, question, ids: dict, variants=LENSES) -> list[dict]:
    """:func:`keyword_hits`' rows of one :class:`flowutils.analysis.runner.Question`; ``ids``:
    ``{(category, keyword): token ids}``."""
    prepared, rows = question.prepared, []
    for variant in variants:
        top = layer_logits(fm, question.baseline, prepared.layout.video, variant).argmax(-1)  # [layer, pos]
        for (cat, word), token_ids in ids.items():
            hits = torch.isin(top, torch.tensor(token_ids, device=top.device)).sum(-1).tolist()  # [layer]
            rows += [{"variant": variant, "sample_id": question.sample_id, "task": prepared.task, "layer": l,
                      "keyword": word, "category": cat, "hits": h} for l, h in enumerate(hits)]
    return rows


def keyword_hits(fm, samples, keywords: dict[str, list[str]], variants=LENSES, num_frames: int = NUM_FRAMES,
                 progress: bool = False, *, out=None, benchmark=None, shard: int | None = None,
                 num_shards: int | None = None):
    """Logit-lens top-1 hits of each keyword on the video tokens: a DataFrame with one row per
    variant x question x layer x keyword (``variant``, ``sample_id``, ``task``, ``layer``, ``keyword``,
    ``category``, ``hits``: how many video positions of that layer have the keyword's token as top-1).
    ``out``, ``benchmark``, ``shard``/``num_shards``, ``attrs``: as :func:`flowutils.analysis.run_sweep`'s
    (:mod:`.runner`)."""
    variants = list(variants)
    ids = {(cat, w): keyword_token_ids(fm.tokenizer, w) for cat in keywords for w in keywords[cat]}
    ids = {k: v for k, v in ids.items() if v}
    problems = [p for v in variants for p in choice_problems("logit-lens variant", v, VARIANTS)]
    return run_questions(fm, samples, functools.partial(keyword_rows, fm, ids=ids, variants=variants),
                         analysis="keyword_hits", params={"keywords": keywords, "variants": variants},
                         num_frames=num_frames, problems=problems, out=out, benchmark=benchmark, shard=shard,
                         num_shards=num_shards, progress=progress)


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


def emergence_layer(freq) -> dict[str, float]:
    """Per category, the frequency-weighted mean layer (1-based bin centre): where it emerges on average."""
    out = {}
    for cat, g in freq.groupby("category", sort=False):
        centre = (g["first_layer"] + g["last_layer"]) / 2
        out[cat] = float((g["frequency"] * centre).sum() / g["frequency"].sum()) if g["frequency"].sum() > 0 \
            else float("nan")
    return out


def spatial_before_temporal_claim(freq, variant: str) -> Claim:
    """Figure 4: spatial keywords emerge in earlier layers than temporal ones (frequency-weighted mean layer)."""
    layer = emergence_layer(freq)
    kept = freq.groupby("category")["keywords"].max().to_dict()
    finding = ("spatial keywords appear in earlier layers than temporal keywords (frequency-weighted mean layer, "
               f"logit lens: {variant})")
    if any(kept.get(c, 0) == 0 for c in CATEGORIES):
        return Claim("3.3", f"Figure 4 ({variant})", finding, "spatial early, temporal in middle layers",
                     f"too few hits: keywords kept {kept}", None)
    measured = "; ".join(f"{c}: layer {layer[c]:.2f} ({kept[c]} keywords)" for c in CATEGORIES)
    return Claim("3.3", f"Figure 4 ({variant})", finding, "spatial early, temporal in middle layers", measured,
                 bool(layer["spatial"] < layer["temporal"]))
