"""Layer 2, ``knockout``: the mask builders of Attention Knockout.

Prompt segments (:mod:`.prompt`), token groups (:mod:`.spans`), named flows and the edges
they cut (:mod:`.flows`; the cross-frame mask is built there), layer windows
(:mod:`.windows`), :class:`KnockoutPlan` (:mod:`.plan`) and the ``flow_knockout`` attention
function registered with transformers (:mod:`.attention`). Depends on torch and
transformers only: imports no other layer of flowutils.
"""

from .flows import FAMILIES, family_flows, flow_blocks, flow_label
from .plan import KnockoutPlan
from .spans import LayoutError, TokenLayout, build_layout
from .windows import STYLES, scaled_window_size, window

__all__ = ["FAMILIES", "STYLES", "KnockoutPlan", "LayoutError", "TokenLayout", "build_layout", "family_flows",
           "flow_blocks", "flow_label", "scaled_window_size", "window"]
