"""Layer 3, ``knockout``: what Attention Knockout cuts, and where; pure data.

Named flows and the (target, source) edges they cut in a token layout (:mod:`.flows`; the
cross-frame mask is built there), layer windows (:mod:`.windows`) and :class:`KnockoutPlan`
(:mod:`.plan`): layer -> cut edges. Running a plan is the engine's (:mod:`flowutils.engine`).
Imports :mod:`flowutils.inputs` (the token layout) only.
"""

from .flows import FLOW_SETS, flow_set, flow_blocks, flow_label
from .plan import KnockoutPlan
from .windows import STYLES, scaled_window_size, window

__all__ = ["FLOW_SETS", "STYLES", "KnockoutPlan", "flow_set", "flow_blocks", "flow_label", "scaled_window_size",
           "window"]
