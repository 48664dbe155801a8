"""Layer 6, ``analysis``: what the paper measures.

The per-question runner every analysis goes through (:mod:`.runner`: checks, the crash-safe
result store :mod:`.store`, sharding over GPUs and nodes :mod:`.shards`, counted skips,
out-of-memory retry), knockout sweeps over questions and their summaries (:mod:`.sweep`), the
logit lens and the layerwise answer probability (:mod:`.logit_lens`), attention maps (:mod:`.attention_maps`),
Sec. 3.2's temporal interaction (:mod:`.temporal`), Sec. 3.3's video-language integration
(:mod:`.integration`, keyword lists of the logit lens in :mod:`.keywords`), Sec. 3.4's
answer-generation curves (:mod:`.answer`), Sec. 3.5's effective pathways, random blocking and
Table 3 (:mod:`.pathways`); the claims they test (:mod:`.claims`), notebook parameters
(:mod:`.parameters`), uncertainty (:mod:`.uncertainty`) and the status page (:mod:`.status`).
May import ``engine``, ``models``, ``knockout`` and ``data``.
"""

from .answer import answer_table
from .attention_maps import attention_rows, attention_to_video
from .logit_lens import answer_probability, layer_logits, top_tokens
from .pathways import effective_pathway_plan, random_blocking_plan, run_pathways
from .runner import run_questions
from .store import load_results, load_skipped, skip_summary
from .sweep import run_sweep, summarize, sweep_plans

__all__ = ["answer_probability", "answer_table", "attention_rows", "attention_to_video", "effective_pathway_plan",
           "layer_logits", "load_results", "load_skipped", "random_blocking_plan", "run_pathways", "run_questions",
           "run_sweep", "skip_summary", "summarize", "sweep_plans", "top_tokens"]
