"""Layer 7, ``paper``: one module per section of the paper, each with its run, the paper's numbers
and the claims it tests.

Sec. 3.2, temporal interaction (:mod:`.temporal`); Sec. 3.3, video-language integration
(:mod:`.integration`, with Figure 4's keyword lists of the logit lens in :mod:`.keywords`);
Sec. 3.4, answer generation (:mod:`.answer`); Sec. 3.5, effective pathways, random blocking and
Table 3 (:mod:`.pathways`). :mod:`.claims` holds a claim's record and the criteria the sections share.
Every section runs its questions through :func:`flowutils.analysis.runner.run_questions`.
May import ``analysis`` and the layers below it.
"""

from .answer import answer_table
from .pathways import effective_pathway_plan, random_blocking_plan, run_pathways

__all__ = ["answer_table", "effective_pathway_plan", "random_blocking_plan", "run_pathways"]
