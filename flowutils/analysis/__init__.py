"""Layer 5, ``analysis``: what the paper measures.

Knockout sweeps over questions and their summaries (:mod:`.sweep`), the logit lens and the
layerwise answer probability (:mod:`.logit_lens`), attention maps (:mod:`.attention_maps`),
Sec. 3.4's answer-generation curves and claims (:mod:`.answer`), Sec. 3.5's effective
pathways, random blocking and Table 3 (:mod:`.pathways`).
May import ``engine``, ``models``, ``knockout`` and ``data``.
"""

from .answer import answer_table
from .attention_maps import attention_rows, attention_to_video
from .logit_lens import answer_probability, layer_logits, top_tokens
from .pathways import effective_pathway_plan, random_blocking_plan, run_pathways
from .sweep import run_sweep, summarize, sweep_plans

__all__ = ["answer_probability", "answer_table", "attention_rows", "attention_to_video", "effective_pathway_plan",
           "layer_logits", "random_blocking_plan", "run_pathways", "run_sweep", "summarize", "sweep_plans", "top_tokens"]
