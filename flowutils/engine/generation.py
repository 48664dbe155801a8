"""Open-ended greedy generation under a knockout plan (Table 2's open-ended answers, Appendix C.2)."""

from __future__ import annotations

import inspect

import torch

from ..knockout.plan import KnockoutPlan
from ..models.flow_model import FlowModel, PreparedInput
from .arm import check_plans, knockout_state


@torch.no_grad()
def generate(fm: FlowModel, prepared: PreparedInput, plan: KnockoutPlan | None = None, max_new_tokens: int = 16,
             backend: str = "fast", stop_ids=()) -> str:
    """Greedy open-ended continuation under ``plan``; decode steps inherit the last position's cuts. It ends
    after ``max_new_tokens``, at the end-of-sequence token, or after a token of ``stop_ids`` (kept in the text).

    A plain greedy loop over the model's own forward with its KV cache (``generate()`` rejects
    keyword arguments it does not know, such as the knockout state). Eager even in compiled layers
    (:func:`.arm.compile_layers`): the cache's per-layer state would recompile them for every layer and step.
    """
    plans = None if plan is None else check_plans(fm, prepared, [plan])
    state = knockout_state(fm, prepared, backend=backend, plans=plans)
    # transformers 5.25 renamed the KV cache's argument and output field past_key_values -> cache (5.17: the old name)
    cache = "cache" if "cache" in inspect.signature(fm.model.forward).parameters else "past_key_values"
    new = []
    with torch.compiler.set_stance("force_eager"):
        out = fm.forward(prepared, state, use_cache=True, logits_to_keep=1)
        mask = prepared.inputs["attention_mask"]
        for _ in range(max_new_tokens):
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            new.append(int(token))
            if new[-1] == fm.tokenizer.eos_token_id or new[-1] in stop_ids:
                break
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            out = fm.model(input_ids=token, attention_mask=mask, **{cache: getattr(out, cache)}, use_cache=True,
                           flow_knockout=state)
    return fm.tokenizer.decode(new, skip_special_tokens=True)
