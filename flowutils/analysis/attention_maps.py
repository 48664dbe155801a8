"""Attention weights of chosen query rows over the video tokens (Sec. 3.3, Fig. 5).

Only the chosen rows are computed (``KnockoutState.record_rows``), per layer and head,
never the full ``N x N`` maps; with a knockout plan the weights are those of the
knocked-out model (e.g. question words attending to the video with cross-frame
interactions cut).
"""

from __future__ import annotations

import numbers

import torch

from ..engine import check_plans, knockout_state
from ..knockout.plan import KnockoutPlan
from ..models.flow_model import FlowModel, PreparedInput


@torch.no_grad()
def attention_rows(fm: FlowModel, prepared: PreparedInput, query_positions, plan: KnockoutPlan | None = None):
    """Attention weights ``[layer, head, len(query_positions), n]`` (float32) of the chosen query rows."""
    rows = list(query_positions)
    n = prepared.layout.n
    bad = [q for q in rows if isinstance(q, bool) or not isinstance(q, numbers.Integral) or not 0 <= q < n]
    if bad:
        raise ValueError(f"query positions {bad} outside 0..{n - 1} of the {n}-token "
                         f"input {prepared.sample_id or ''}")
    plans = None if plan is None else check_plans(fm, prepared, [plan])
    state = knockout_state(fm, prepared, plans=plans, record_rows=[int(q) for q in rows])
    fm.forward(prepared, state, logits_to_keep=1)
    return torch.stack([state.records[l][0] for l in range(fm.n_layers)])


@torch.no_grad()
def attention_to_video(fm: FlowModel, prepared: PreparedInput, query_positions, plan: KnockoutPlan | None = None):
    """``[layer, head, query, frame, tokens per frame]``: the chosen rows' weights on each frame's tokens."""
    rows = attention_rows(fm, prepared, query_positions, plan)
    lay = prepared.layout
    idx = torch.tensor([i for f in lay.frames for i in f])
    per_frame = len(lay.frames[0])
    return rows[..., idx].unflatten(-1, (lay.num_frames, per_frame))
