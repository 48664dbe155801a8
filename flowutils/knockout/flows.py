"""Named information flows (source -/-> target) and the blocks of attention edges they cut.

A flow ``source->target`` forbids every target position to attend to every source position
(a *block* ``(targets, sources)``; the Cartesian product is cut). The cross-frame flow is
the union of one block per frame: queries in frame ``i`` may not attend to keys in frames
``< i``. Group names are those of :class:`flowutils.inputs.layout.TokenLayout`; the paper's
spelling (``non-option question``, ``true option``) is accepted too.

Flow sets of the official analysis (``FLOW_SETS``):

* ``cross-frame``
* ``vql-to-ql``: video->question, video->last, question->last, last->last
* ``question-and-options-to-last``: non-option question->last, true option->last, false options->last
* ``vq-to-true-opt``: video->non-option question, non-option question->true option, video->true option
"""

from __future__ import annotations

import torch

from ..inputs.layout import GROUP_NAMES, TokenLayout, frame_index

CROSS_FRAME = "cross-frame"
FLOW_SETS = {
    "cross-frame": [CROSS_FRAME],
    "vql-to-ql": ["video->question", "video->last", "question->last", "last->last"],
    "question-and-options-to-last": ["non_option_question->last", "true_option->last", "false_options->last"],
    "vq-to-true-opt": ["video->non_option_question", "non_option_question->true_option", "video->true_option"],
}

Block = tuple[torch.Tensor, torch.Tensor]  # (target positions, source positions), LongTensors


# Where each group lies in every prompt, first to last: (first, last) of its rank. A flow whose source lies
# wholly after its target cuts nothing under causal attention (a target never attends to a later source).
# The labels wrap the non-option question; the options follow it; the last position ends the suffix.
_SPAN = {"system": (0, 0), "video": (1, 1), "labels": (2, 2), "non_option_question": (2, 2), "true_option": (3, 3),
         "false_options": (3, 3), "question": (2, 3), "suffix": (4, 5), "last": (5, 5)}


def _group_name(name: str) -> str:
    g = name.strip().replace("non-option", "non_option").replace(" ", "_")
    if g.startswith("frame:"):
        frame_index(g)
    elif g not in GROUP_NAMES:
        raise ValueError(f"unknown token group {name!r} in a flow; valid: {GROUP_NAMES + ('frame:<i>',)}")
    return g


def _span(group: str) -> tuple:
    if group.startswith("frame:"):
        return ((1, frame_index(group)),) * 2
    first, last = _SPAN[group]
    return (first, -1), (last, float("inf"))  # a frame lies inside the video's rank


def parse_flow(flow: str) -> tuple[str, str]:
    """``"video->last"`` -> ``("video", "last")``. A flow whose source always comes after its target (e.g.
    ``last->video``) cuts nothing under causal attention, so it is refused."""
    if "->" not in flow:
        raise ValueError(f"a flow is 'source->target' or {CROSS_FRAME!r}, got {flow!r}")
    src, tgt = (_group_name(g) for g in flow.split("->", 1))
    if _span(src)[0] > _span(tgt)[1]:
        raise ValueError(f"flow {flow!r} cuts nothing: every {src} position comes after every {tgt} position, and "
                         f"under causal attention a position never attends to a later one (did you mean '{tgt}->{src}'?)")
    return src, tgt


def flow_label(flow: str) -> str:
    """The paper's spelling: ``non_option_question->last`` -> ``non-option question->last``."""
    return flow.replace("non_option", "non-option").replace("_", " ")


def cross_frame_blocks(layout: TokenLayout) -> list[Block]:
    """Queries of frame ``i`` may not attend to keys of frames ``0..i-1``, for every ``i >= 1``
    (the frames' own tokens: text between frames, such as frame labels, stays visible)."""
    blocks, earlier = [], []
    for f in range(1, layout.num_frames):
        earlier += layout.frame(f - 1)
        blocks.append((torch.tensor(layout.frame(f)), torch.tensor(earlier)))
    return blocks


def flow_blocks(flow: str, layout: TokenLayout) -> list[Block]:
    """The blocks of attention edges that ``flow`` cuts in ``layout``."""
    if flow == CROSS_FRAME:
        return cross_frame_blocks(layout)
    src, tgt = parse_flow(flow)
    targets, sources = layout.group(tgt), layout.group(src)
    if targets and sources and min(sources) > max(targets):  # e.g. the true option after a false one
        raise ValueError(f"flow {flow!r} cuts nothing in this input: every {src} position comes after every {tgt} "
                         f"position ({layout.describe()})")
    return [(torch.tensor(targets), torch.tensor(sources))]


def flow_set(name: str) -> list[str]:
    """The flows of the flow set ``name`` (a key of :data:`FLOW_SETS`)."""
    if name not in FLOW_SETS:
        raise ValueError(f"unknown flow set {name!r}; valid: {list(FLOW_SETS)}")
    return list(FLOW_SETS[name])


def flow_set_of(flow: str) -> str | None:
    return next((name for name, flows in FLOW_SETS.items() if flow in flows), None)
