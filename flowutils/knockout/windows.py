"""Layer windows of an Attention Knockout sweep.

The paper blocks a flow in a window of ``k = 9`` layers centred on layer ``l`` (clipped to
``[0, L-1]``); the appendix also uses ``inverse`` (every layer but the window),
``top_down`` (``l .. L-1``) and ``bottom_up`` (``0 .. l``). Explicit layer lists are
accepted wherever a window is. All layer indices are 0-based.

For a model with fewer layers than the paper's 32, :func:`scaled_window_size` keeps the
window's share of the depth: ``k = 9`` of 32 layers is 28%, i.e. ``k = 3`` (odd, rounded) of 12.
"""

from __future__ import annotations

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


def sweep(n_layers: int, k: int, style: str = "center", layers=None) -> list[tuple[int, tuple[int, ...]]]:
    """``[(layer, window layers)]`` for every sweep point (default: every layer)."""
    points = range(n_layers) if layers is None else layers
    return [(l, window(l, k, n_layers, style)) for l in points]


def scaled_window_size(n_layers: int, paper_k: int = 9, paper_layers: int = 32) -> int:
    """Window size with the paper's share of the depth, rounded to the nearest odd number >= 1."""
    k = paper_k * n_layers / paper_layers
    return max(1, int(2 * round((k - 1) / 2) + 1))


def layer_range(first: int, last: int) -> tuple[int, ...]:
    """0-based layers of the paper's 1-based inclusive range ``L{first}-{last}``."""
    return tuple(range(first - 1, last))
