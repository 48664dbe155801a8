"""Layer windows of an Attention Knockout sweep.

The paper blocks a flow in a window of ``k = 9`` layers centred on layer ``l`` (clipped to
``[0, L-1]``); the appendix also uses ``inverse`` (every layer but the window),
``top_down`` (``l .. L-1``) and ``bottom_up`` (``0 .. l``). Explicit layer lists are
accepted wherever a window is. All layer indices are 0-based.

A :class:`Protocol` says how a model's depth is read: the window size ``k`` and the layers per
interval of Table E and per bin of Figure 4. The paper's code uses ``k = 9`` and 5-layer intervals
on every model it ran, the 40-layer 13B and the 28-layer VideoLLaMA3 included (:data:`PAPER`); a
model manifest says ``protocol: paper`` for those models. Only for models the paper did not run (the
toys, the current families) are both scaled to the depth (:func:`scaled_protocol`): ``k = 9`` of 32
layers is 28%, i.e. ``k = 3`` (odd, rounded) of 12; 5 of 32 layers is 2 of 12.

A protocol also carries the share of the ``n (n + 1) / 2`` causal (query, key) pairs that the paper's code
blocks at random in every layer for Table 3 (``random_share``: 0.58, 0.63, 0.60 and 0.42 for LLaVA-NeXT-7B/13B-
Video-FT, Mini-InternVL-4B-Video-FT and VideoLLaMA3-7B, each model's manifest says ``random_blocking_share``);
``None`` on every other model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

STYLES = ("center", "inverse", "top_down", "bottom_up")


def window(layer: int, k: int, n_layers: int, style: str = "center") -> tuple[int, ...]:
    """Layers blocked for the sweep point ``layer`` (window size ``k``, ``style``)."""
    if not isinstance(layer, int) or isinstance(layer, bool) or not isinstance(k, int) or isinstance(k, bool):
        raise ValueError(f"layer and window size k must be integers, got layer={layer!r}, k={k!r}")
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} outside 0..{n_layers - 1}")
    if style not in STYLES:
        raise ValueError(f"unknown window style {style!r}; valid: {STYLES}")
    if k < 1:
        raise ValueError(f"window size k must be >= 1, got {k}")
    lo, hi = max(0, layer - k // 2), min(n_layers - 1, layer + (k - 1) // 2)
    centred = tuple(range(lo, hi + 1))
    if style == "center":
        return centred
    if style == "inverse":
        return tuple(i for i in range(n_layers) if i not in centred)
    if style == "top_down":
        return tuple(range(layer, n_layers))
    return tuple(range(0, layer + 1))


def layer_windows(n_layers: int, k: int, style: str = "center", layers=None) -> list[tuple[int, tuple[int, ...]]]:
    """``[(layer, window layers)]`` for every sweep point (default: every layer)."""
    points = range(n_layers) if layers is None else layers
    return [(l, window(l, k, n_layers, style)) for l in points]


def scaled_window_size(n_layers: int, paper_k: int = 9, paper_layers: int = 32) -> int:
    """Window size with the paper's share of the depth, rounded to the nearest odd number >= 1."""
    k = paper_k * n_layers / paper_layers
    return max(1, int(2 * round((k - 1) / 2) + 1))


def scaled_interval(n_layers: int, paper_interval: int = 5, paper_layers: int = 32) -> int:
    """Layers per interval (Table E) or bin (Figure 4) with the paper's share of the depth (5 of 32), at least 1."""
    return max(1, round(paper_interval * n_layers / paper_layers))


def in_paper_range(layers, first: int, last: int, n_layers: int, scaled: bool, paper_layers: int = 32) -> bool:
    """Whether the 0-based ``layers`` (an interval) lie in the paper's 1-based range ``first-last``: where their centre
    does. ``scaled`` (a model the paper did not run): the range is read as a share of the paper's ``paper_layers``
    (layer ``l`` of ``n_layers`` sits at ``(l + 0.5) / n_layers`` of the depth; L6-20 of 32 is 5/32 to 20/32), as the
    window and the intervals are scaled; else the range is read as it is, as the paper's code does on its models."""
    centre = sum(layers) / len(layers)
    if scaled:
        return (first - 1) / paper_layers <= (centre + 0.5) / n_layers <= last / paper_layers
    return first <= centre + 1 <= last


def paper_range_layers(first: int, last: int, n_layers: int, scaled: bool, paper_layers: int = 32) -> tuple[int, ...]:
    """The 0-based layers of ``n_layers`` in the paper's 1-based range ``first-last`` (:func:`in_paper_range` of each
    layer alone): ``(6, 20)`` of 12 layers, scaled, is layers 2-7 (L3-8)."""
    return tuple(l for l in range(n_layers) if in_paper_range((l,), first, last, n_layers, scaled, paper_layers))


@dataclass(frozen=True)
class Protocol:
    """How a sweep reads a model's depth: the knockout window's size, and the layers of an interval (Table E,
    Table 3's effective pathways) or of a logit-lens bin (Figure 4); ``rule`` says in words which rule gave them.
    ``random_share``: the share of the causal pairs Table 3's random blocking cuts per layer in the paper's code
    (only on the models it ran Table 3 on; ``None`` elsewhere)."""

    window_size: int
    interval: int
    rule: str
    random_share: float | None = None


PAPER = Protocol(9, 5, "the paper's: k = 9 and 5-layer intervals, on every model it ran")
PROTOCOLS = ("paper", "scaled")


def scaled_protocol(n_layers: int) -> Protocol:
    """The paper's k = 9 and 5-layer intervals of 32 layers, scaled to ``n_layers`` (models the paper did not run)."""
    k, interval = scaled_window_size(n_layers), scaled_interval(n_layers)
    return Protocol(k, interval, f"scaled to {n_layers} layers from the paper's k = 9 and 5-layer intervals of 32: "
                                 f"k = {k}, {interval}-layer intervals (a model the paper did not run)")


def protocol_for(n_layers: int, name: str | None = None, random_share: float | None = None) -> Protocol:
    """The protocol named by a model manifest (``paper``), else (``None``, ``scaled``) the depth-scaled one;
    ``random_share``: the manifest's ``random_blocking_share`` (the paper's models only)."""
    if name not in (None, *PROTOCOLS):
        raise ValueError(f"unknown protocol {name!r}; valid: {PROTOCOLS}")
    if random_share is not None and (name != "paper" or isinstance(random_share, bool)
                                     or not isinstance(random_share, (int, float)) or not 0 < random_share < 1):
        raise ValueError(f"random_blocking_share={random_share!r}: a number in (0, 1), on a model of protocol "
                         f"'paper' only (the share the paper's code blocks at random for Table 3)")
    protocol = PAPER if name == "paper" else scaled_protocol(n_layers)
    return protocol if random_share is None else replace(protocol, random_share=float(random_share))
