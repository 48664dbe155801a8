"""The knockout attention function, plugged in through transformers' own seams.

``register()`` adds one implementation, ``"flow_knockout"``, to transformers'
``AttentionInterface`` (the attention computation) and ``AttentionMaskInterface`` (the
mask it receives: transformers' boolean SDPA mask, always materialised). The Hugging Face
model is left as it is: its attention modules call this function with their queries, keys
and values, and a :class:`KnockoutState` travels in the forward call's keyword arguments
(``flow_knockout=state``). Modules that are not decoder self-attention layers of the
language model (the vision tower) are passed straight to SDPA.

For a decoder layer ``l`` the function computes attention with the causal mask AND NOT the
plan's cut edges of layer ``l`` (all heads). Two backends:

* ``reference``: the paper's method: a dense additive mask (``-inf`` at cut edges) and an
  explicit eager softmax. Slow and obviously correct: the oracle of the tests.
* ``fast``: ``torch.nn.functional.scaled_dot_product_attention`` on a batch of plans (one per
  batch row) and, optionally, the baseline keys/values of positions before the first recomputed
  query (``prefix_kv``), so that only later positions are recomputed. The mask is additive, built
  once per batch and layer from the plans' compact cuts (:class:`flowutils.engine.cuts.CompactCut`;
  rows with equal cuts share it); on a GPU the rows (plans) that cut nothing in a layer get
  ``causal_lower_right`` instead, which the flash kernel applies without reading a mask; a row that
  cuts, where its cut splits the queries into runs that are plain causal among themselves (a frame
  under the cross-frame cut), attends run by run to the keys it keeps, gathered, in one
  variable-length flash call that skips the cut tiles (:func:`~flowutils.engine.kernels._run_by_run`); only the other cutting
  rows go through the masked kernel (:func:`~flowutils.engine.kernels._by_rows`). The
  prefix is copied once per plan unless the copies would exceed ``SETTINGS.pack_above_bytes`` (long
  prefixes, many plans: e.g. plans that cut edges into the question or the last position);
  then the plans of a batch are packed into one sequence that shares the prefix. The kernels are
  in :mod:`.kernels`, the knobs that choose among them in :mod:`.settings`.

A query row whose every key is cut outputs zeros (no NaN) in both modes.

The state can also capture every layer's keys/values (the fast engine's baseline pass) and
record the attention weights of chosen query rows (``record_rows``) without materialising
the full ``N x N`` maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn.attention.bias import causal_lower_right

from ..models.encoding import to_device
from .cuts import compact_cut, reference_cut
from .kernels import Runs, _allowed, _by_rows, _flash, _packed_attention, _repeat_kv, _sdpa, _with_prefix
from .settings import SETTINGS

ATTENTION_NAME = "flow_knockout"
BACKENDS = ("fast", "reference")


@dataclass
class KnockoutState:
    """What one forward call needs to know: which modules are decoder layers, and what to cut."""

    layer_of: dict  # id(attention module) -> 0-based decoder layer
    n_prompt: int
    backend: str = "fast"  # "fast" | "reference"
    plans: list | None = None  # one KnockoutPlan per batch row (or one for all rows)
    capture_kv: bool = False
    kv: dict = field(default_factory=dict)  # layer -> (keys, values) [batch, kv_heads, n, head_dim]
    prefix_kv: dict | None = None  # layer -> baseline (keys, values) of positions < first query
    record_rows: list | None = None  # query positions whose attention weights are recorded
    records: dict = field(default_factory=dict)  # layer -> [batch, heads, rows, k_len]
    _last_bias: tuple = (None, None)  # (what it was built from, its bias or block mask): reused by the next layer
    _last_runs: tuple = (None, None)  # the same for :meth:`runs`
    _runs_of: dict = field(default_factory=dict)  # (cut key, q_start, q_len) -> CompactCut.runs
    _additive_of: dict = field(default_factory=dict)  # (cut key, query range, dtype) -> its additive mask

    def cut(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, device) -> torch.Tensor | None:
        """Boolean ``[batch or 1, 1, q_len, k_len]`` of cut edges at ``layer`` (None: nothing cut), built
        from the plans' blocks (the reference backend's mask)."""
        if not self.plans:
            return None
        per_row = [reference_cut(p, layer, q_start, q_len, k_len, self.n_prompt, device) for p in self.plans]
        if all(m is None for m in per_row):
            return None
        if len(per_row) == 1:
            return per_row[0][None, None]
        if len(per_row) != batch:
            raise ValueError(f"{len(per_row)} plans for a batch of {batch}")
        zeros = torch.zeros(q_len, k_len, dtype=torch.bool, device=device)
        return torch.stack([zeros if m is None else m for m in per_row])[:, None]

    def cutting(self, layer: int, batch: int) -> list[bool]:
        """Per batch row: whether its plan cuts anything in ``layer``."""
        rows = [layer in p.cut_layers for p in self.plans or []] or [False]
        return rows * batch if len(rows) == 1 else rows

    def _cuts(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, device):
        """``(distinct cuts, index, built_from)``: the distinct compact cuts of the batch's plans at
        ``layer``, ``index[b]``: batch row ``b``'s mask (0: causal alone, ``i``: the ``i``-th distinct
        cut), and what identifies the mask (consecutive layers with the same cuts reuse it)."""
        cuts = [compact_cut(p, layer, self.n_prompt, device) for p in self.plans or []]
        if len(cuts) not in (0, 1, batch):
            raise ValueError(f"{len(cuts)} plans for a batch of {batch}")
        distinct = {c.key: c for c in cuts if c is not None}
        order = {key: i + 1 for i, key in enumerate(distinct)}
        index = [0 if c is None else order[c.key] for c in cuts] or [0]
        # the batch grows as plans join: a mask for fewer rows broadcasts, a block mask does not
        return list(distinct.values()), index, (q_start, q_len, k_len, tuple(distinct), len(index),
                                                tuple(index) if len(set(index)) > 1 else index[0])

    @staticmethod
    def _masked(distinct, q_start: int, q_len: int, k_len: int, device) -> torch.Tensor:
        """``[1 + len(distinct), q_len, k_len]`` booleans, True where a key is not attended: row 0 causal
        alone, row ``i`` causal or the ``i``-th distinct cut."""
        q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None]
        masked = torch.stack([torch.arange(k_len, device=device)[None, :] > q_pos]
                             + [c.mask(q_start, q_len, k_len) for c in distinct])
        masked[1:] |= masked[0]
        return masked

    def _additive(self, cut, q_start: int, q_len: int, k_len: int, dtype, device) -> torch.Tensor:
        """``[q_len, k_len]``: 0 where causal attention is allowed and ``cut`` (None: nothing) does not cut,
        -inf elsewhere; built once per cut and query range, for every layer and batch state that uses it."""
        key = (None if cut is None else cut.key, q_start, q_len, k_len, dtype)
        if key not in self._additive_of:
            masked = self._masked([] if cut is None else [cut], q_start, q_len, k_len, device)[-1]
            self._additive_of[key] = torch.zeros(masked.shape, dtype=dtype, device=device).masked_fill_(
                masked, float("-inf"))
        return self._additive_of[key]

    def bias(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, dtype, device):
        """``(additive mask [batch or 1, 1, q_len, k_len], whole_rows)`` of the fast backend: 0 where
        causal attention is allowed and not cut, -inf elsewhere, from the plans' compact cuts
        (:class:`flowutils.engine.cuts.CompactCut`). Rows with equal cuts share one mask, and
        consecutive layers with the same cuts reuse the last one; each cut's mask is built once per
        query range (:meth:`_additive`), and a layer only stacks the ones its rows use.
        ``whole_rows``: some row may have every key cut."""
        distinct, index, built_from = self._cuts(layer, q_start, q_len, k_len, batch, device)
        if self._last_bias[0] == (built_from, dtype):
            return self._last_bias[1]
        masks = [self._additive(c, q_start, q_len, k_len, dtype, device) for c in [None, *distinct]]
        if len(set(index)) == 1:
            bias = masks[index[0]][None]
        else:  # a device copy of the index through pinned memory: a list index would wait for the queue
            bias = torch.stack(masks)[to_device(torch.tensor(index), device)]
        out = (bias[:, None], any(c.whole_rows for c in distinct))
        self._last_bias = ((built_from, dtype), out)
        return out

    def runs(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, rows: tuple[int, int], device):
        """The variable-length flash layout of batch rows ``rows = (a, b)`` (plans that cut here): every row's
        queries as runs (:meth:`flowutils.engine.cuts.CompactCut.runs`), each a sequence of its own
        whose keys are the ones it keeps before the run, then the run's own: :class:`Runs <flowutils.engine.kernels.Runs>`, or None where a run cuts among its own positions, or the gathered keys
        would exceed ``SETTINGS.run_keys_max`` times the rows' keys (then the masked kernel). Reused like :meth:`bias`."""
        distinct, index, built_from = self._cuts(layer, q_start, q_len, k_len, batch, device)
        if self._last_runs[0] == (built_from, rows):
            return self._last_runs[1]
        a, b = rows
        index = index * batch if len(index) == 1 else index
        per_cut = {}
        for i, c in enumerate(distinct, 1):
            if (c.key, q_start, q_len) not in self._runs_of:
                self._runs_of[c.key, q_start, q_len] = c.runs(q_start, q_len)
            per_cut[i] = self._runs_of[c.key, q_start, q_len]
        out = None
        if all(per_cut.get(index[r]) is not None for r in range(a, b)):
            runs = [(r, *run) for r in range(a, b) for run in per_cut[index[r]]]
            keys = [np.r_[before, s:e] for _, s, e, before in runs]
            total = sum(len(k) for k in keys)
            if total <= SETTINGS.run_keys_max * (b - a) * k_len:
                q_lens, k_lens = [e - s for _, s, e, _ in runs], [len(k) for k in keys]
                # a key's index in its row is its position
                host = np.concatenate([np.repeat([(r - a) * k_len for r, *_ in runs], k_lens) + np.concatenate(keys),
                                       np.r_[0, np.cumsum(q_lens)], np.r_[0, np.cumsum(k_lens)]])
                flat = to_device(torch.from_numpy(host), device)
                s = len(runs) + 1
                cu_q, cu_k = host[total:total + s].tolist(), host[total + s:].tolist()
                out = Runs(flat[:total], flat[total:total + s].int(), flat[total + s:].int(), max(q_lens),
                               max(k_lens), list(zip(cu_q, cu_q[1:], cu_k, cu_k[1:])))
        self._last_runs = ((built_from, rows), out)
        return out




@torch.compiler.disable  # Python decisions per plan and layer: left out of a compiled decoder layer (compile_layers)
def flow_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, flow_knockout=None, **kwargs):
    """``query``: ``[batch, heads, q_len, head_dim]``; ``key``/``value``: ``[batch, kv_heads, len, head_dim]``.

    Returns ``([batch, q_len, heads, head_dim], None)`` as transformers' attention functions do.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    state: KnockoutState | None = flow_knockout
    layer = state.layer_of.get(id(module)) if state is not None else None
    if layer is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if state.backend not in BACKENDS:
        raise ValueError(f"unknown knockout backend {state.backend!r}; valid: {BACKENDS}")
    if state.capture_kv:
        state.kv[layer] = (key.detach(), value.detach())
    batch, heads, q_len, head_dim = query.shape
    rep = heads // key.shape[1]  # grouped-query attention: query heads per key/value head
    scaling = head_dim**-0.5 if scaling is None else scaling
    prefix = state.prefix_kv[layer] if state.prefix_kv is not None else None
    if prefix is not None and state.record_rows is not None:
        raise ValueError("record_rows needs a full forward (no prefix_kv)")
    k_len = key.shape[2] + (prefix[0].shape[2] if prefix is not None else 0)
    q_start = k_len - q_len

    if state.backend == "fast" and state.record_rows is None:
        cutting = state.cutting(layer, batch)
        if prefix is not None:
            copies = batch * prefix[0].shape[2] * prefix[0].shape[1] * head_dim * 2 * query.element_size()
            if batch > 1 and copies > SETTINGS.pack_above_bytes:
                bias, _ = state.bias(layer, q_start, q_len, k_len, batch, query.dtype, query.device)
                split = _flash(query) and q_len * cutting.count(False) >= SETTINGS.split_min_queries
                return _packed_attention(query, key, value, *prefix, bias, scaling,
                                         cutting if split else [True] * batch), None
            key, value = _with_prefix(prefix[0], key), _with_prefix(prefix[1], value)
        if attention_mask is None:
            if not any(cutting) and _flash(query):
                # nothing cut: causal with the queries at the end, which the flash kernel does without a mask
                out = _sdpa(query, _repeat_kv(key, rep), _repeat_kv(value, rep), causal_lower_right(q_len, k_len),
                            scaling, False)
                return out.transpose(1, 2), None
            if _flash(query):
                return _by_rows(query, key, value, cutting, scaling, state, layer), None
        bias, whole_rows = state.bias(layer, q_start, q_len, k_len, batch, query.dtype, query.device)
        if attention_mask is not None:  # a full forward: the model's own mask (padding) too
            allowed = _allowed(attention_mask, q_start, q_len, k_len, query.device)
            bias, whole_rows = bias.masked_fill(~allowed, float("-inf")), True
        out = _sdpa(query, _repeat_kv(key, rep), _repeat_kv(value, rep), bias, scaling, whole_rows)
        return out.transpose(1, 2), None

    allowed = _allowed(attention_mask, q_start, q_len, k_len, query.device)
    cut = state.cut(layer, q_start, q_len, k_len, batch, query.device)
    if cut is not None:
        allowed = allowed & ~cut
    if prefix is not None:
        key, value = _with_prefix(prefix[0], key), _with_prefix(prefix[1], value)
    key = _repeat_kv(key, rep)
    value = _repeat_kv(value, rep)

    if state.record_rows is not None:
        rows = [p - q_start for p in state.record_rows if q_start <= p < k_len]
        if rows:
            scores = torch.matmul(query[:, :, rows].float(), key.float().transpose(-1, -2)) * scaling
            ok = allowed[:, :, rows].expand(batch, heads, -1, -1)
            w = torch.softmax(scores.masked_fill(~ok, float("-inf")), -1)
            state.records[layer] = torch.where(ok.any(-1, keepdim=True), w, 0.0)

    if state.backend == "fast":
        bias = torch.zeros(allowed.shape, dtype=query.dtype, device=query.device).masked_fill(~allowed, float("-inf"))
        out = _sdpa(query, key, value, bias, scaling, whole_rows=True)
    else:
        scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
        additive = torch.zeros(allowed.shape, dtype=torch.float32, device=query.device).masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores.float() + additive, dim=-1)
        probs = torch.where(allowed.any(-1, keepdim=True), probs, 0.0).to(query.dtype)
        out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), None


def flow_mask(*args, **kwargs):
    """transformers' boolean SDPA mask, always materialised (never the is_causal shortcut)."""
    from transformers.masking_utils import sdpa_mask

    kwargs["allow_is_causal_skip"] = False
    return sdpa_mask(*args, **kwargs)


def register() -> str:
    """Register ``flow_knockout`` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, flow_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, flow_mask)
    return ATTENTION_NAME
