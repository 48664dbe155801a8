"""Logit lens (Sec. 3.3) and layerwise answer probability (Sec. 3.4).

The hidden state a decoder layer writes for a position is projected to the vocabulary:

* ``final_norm`` (textbook logit lens): the model's final norm, then its LM head;
* ``input_embedding`` (the official code's Figure 4 variant): the INPUT embedding matrix, with
  no norm, for every layer but the last, which gets the final norm first;
* ``lm_head`` (the official code's Figure 8 default): the LM head with no final norm at any layer.

The paper's text says "LM head"; figures say which variant they used.
"""

from __future__ import annotations

import torch

from ..engine import Baseline
from ..models.flow_model import FlowModel

VARIANTS = ("final_norm", "input_embedding", "lm_head")


@torch.no_grad()
def layer_logits(fm: FlowModel, baseline: Baseline, positions, variant: str = "final_norm") -> torch.Tensor:
    """Vocabulary logits ``[layer, len(positions), vocab]`` (float32) of each layer's output."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown logit-lens variant {variant!r}; valid: {VARIANTS}")
    hidden = torch.stack([h[0, list(positions)] for h in baseline.layer_outputs])  # [layer, pos, d_model]
    if variant == "final_norm":
        return fm.lm_head(fm.decoder.norm(hidden)).float()
    if variant == "lm_head":
        return fm.lm_head(hidden).float()
    embed = fm.decoder.embed_tokens.weight
    out = (hidden @ embed.T).float()
    out[-1] = (fm.decoder.norm(hidden[-1]) @ embed.T).float()
    return out


@torch.no_grad()
def top_tokens(fm: FlowModel, baseline: Baseline, positions, k: int = 5, variant: str = "final_norm"):
    """``(probabilities, token ids)``, each ``[layer, len(positions), k]``, of the top-``k`` tokens."""
    probs = layer_logits(fm, baseline, positions, variant).softmax(-1)
    return probs.topk(k, dim=-1)


@torch.no_grad()
def answer_probability(fm: FlowModel, baseline: Baseline, option_ids, variant: str = "final_norm") -> torch.Tensor:
    """Probability ``[layer, n_options]`` of each option letter at the last position, layer by layer."""
    n = baseline.layer_outputs[0].shape[1]
    return layer_logits(fm, baseline, [n - 1], variant)[:, 0].softmax(-1)[:, list(option_ids)]
