"""The knockout attention function, plugged in through transformers' own seams.

``register()`` adds one implementation, ``"flow_knockout"``, to transformers'
``AttentionInterface`` (the attention computation) and ``AttentionMaskInterface`` (the
mask it receives: transformers' boolean SDPA mask, always materialised). The Hugging Face
model is left as it is: its attention modules call this function with their queries, keys
and values, and a :class:`KnockoutState` travels in the forward call's keyword arguments
(``flow_knockout=state``). Modules that are not decoder self-attention layers of the
language model (the vision tower) are passed straight to SDPA.

For a decoder layer ``l`` the function computes attention with the causal mask AND NOT the
plan's cut edges of layer ``l`` (all heads). Two modes:

* ``reference``: the paper's method: a dense additive mask (``-inf`` at cut edges) and an
  explicit eager softmax. Slow and obviously correct: the oracle of the tests.
* ``fast``: ``torch.nn.functional.scaled_dot_product_attention`` on a batch of plans (one per
  batch row) and, optionally, the baseline keys/values of positions before the first recomputed
  query (``prefix_kv``), so that only later positions are recomputed. The mask is additive, built
  once per batch and layer from the plans' compact cuts (:class:`flowutils.knockout.plan.CompactCut`;
  rows with equal cuts share it); on a GPU the rows (plans) that cut nothing in a layer get
  ``causal_lower_right`` instead, which the flash kernel applies without reading a mask; a row that
  cuts, where its cut splits the queries into runs that are plain causal among themselves (a frame
  under the cross-frame cut), attends run by run to the keys it keeps, gathered, in one
  variable-length flash call that skips the cut tiles (:func:`_segmented`); only the other cutting
  rows go through the masked kernel (:func:`_by_rows`). The
  prefix is copied once per plan unless the copies would exceed ``PACK_ABOVE_BYTES`` (long
  prefixes, many plans: e.g. plans that cut edges into the question or the last position);
  then the plans of a batch are packed into one sequence that shares the prefix. With
  ``USE_FLEX`` (off by default: it did not pay on an H200), layers where a plan cuts edges run
  FlexAttention with a block mask instead (:meth:`KnockoutState.block_mask`), which skips the
  tiles that every key of is masked.

A query row whose every key is cut outputs zeros (no NaN) in both modes.

The state can also capture every layer's keys/values (the fast engine's baseline pass) and
record the attention weights of chosen query rows (``record_rows``) without materialising
the full ``N x N`` maps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.attention
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from .plan import to_device

ATTENTION_NAME = "flow_knockout"
_SDPA_BACKENDS = [torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION, torch.nn.attention.SDPBackend.FLASH_ATTENTION,
                  torch.nn.attention.SDPBackend.MATH]
# A batch of plans copies the shared prefix keys/values once per plan unless these copies would
# exceed this many bytes; then all plans' queries attend to the one prefix instead (``_packed_attention``),
# which keeps memory flat at the cost of a second attention call and a merge.
PACK_ABOVE_BYTES = 2**28
# Layers where some plan of a batch cuts edges: FlexAttention with a block mask (skipping wholly
# masked tiles; compiled on CUDA, an unfused reference loop elsewhere) instead of SDPA with an additive
# mask. Off: on an H200 it did not pay (benchmarks/results/levers_round3_H200.json; ``--flex on`` measures it).
USE_FLEX = False
FLEX_BLOCK = 128  # FlexAttention's tile (queries x keys)
_flex_compiled = None
# Devices whose rows that cut nothing get unmasked kernels (flash). Not the CPU: there the masked path is
# as fast, and it keeps the CPU's numbers (the book's) as they were; the tests add "cpu" to check the split.
FLASH_DEVICES = ("cuda",)
# A cutting row whose cut splits its queries into runs that are each plain causal among themselves (a frame
# under the cross-frame cut: :meth:`flowutils.knockout.plan.CompactCut.segments`) attends run by run
# to the keys it keeps, gathered, in one variable-length flash call, skipping the cut tiles that the masked
# kernel would compute; unless the gathered keys would exceed this many times the row's keys.
SEGMENT_KEYS_MAX = 4
# A packed batch splits off its rows that cut nothing (unmasked kernels) only where they have at least this many
# queries: below it the split's extra launches cost the host more than the masked kernel costs the GPU (on an
# H200, 192 plans of one query each spent 7 ms of host time a layer in up to a dozen runs).
SPLIT_MIN_QUERIES = 1024


class Segments(NamedTuple):
    """Batch rows' queries as runs, each a sequence of its own (:meth:`KnockoutState.segments`): the keys of
    run ``i`` are the flat keys ``[rows * k_len, kv_heads, d]`` at ``index[cu_k[i]:cu_k[i + 1]]``, its queries the flat queries
    ``cu_q[i]:cu_q[i + 1]``; ``bounds``: the same offsets on the host, ``(q_a, q_b, k_a, k_b)`` per run."""

    index: torch.Tensor  # [gathered keys] row * k_len + position (rows counted from the first of the rows)
    cu_q: torch.Tensor  # [runs + 1] int32
    cu_k: torch.Tensor  # [runs + 1] int32
    max_q: int
    max_k: int
    bounds: list


@dataclass
class KnockoutState:
    """What one forward call needs to know: which modules are decoder layers, and what to cut."""

    layer_of: dict  # id(attention module) -> 0-based decoder layer
    n_prompt: int
    mode: str = "fast"  # "fast" | "reference"
    plans: list | None = None  # one KnockoutPlan per batch row (or one for all rows)
    capture_kv: bool = False
    kv: dict = field(default_factory=dict)  # layer -> (keys, values) [batch, kv_heads, n, head_dim]
    prefix_kv: dict | None = None  # layer -> baseline (keys, values) of positions < first query
    record_rows: list | None = None  # query positions whose attention weights are recorded
    records: dict = field(default_factory=dict)  # layer -> [batch, heads, rows, k_len]
    _last_bias: tuple = (None, None)  # (what it was built from, its bias or block mask): reused by the next layer
    _last_segments: tuple = (None, None)  # the same for :meth:`segments`
    _runs_of: dict = field(default_factory=dict)  # (cut key, q_start, q_len) -> CompactCut.segments
    _additive_of: dict = field(default_factory=dict)  # (cut key, query range, dtype) -> its additive mask

    def cut(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, device) -> torch.Tensor | None:
        """Boolean ``[batch or 1, 1, q_len, k_len]`` of cut edges at ``layer`` (None: nothing cut), built
        from the plans' blocks (the reference backend's mask)."""
        if not self.plans:
            return None
        per_row = [p.cut(layer, q_start, q_len, k_len, self.n_prompt, device) for p in self.plans]
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
        cuts = [p.compact(layer, self.n_prompt, device) for p in self.plans or []]
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
        (:class:`flowutils.knockout.plan.CompactCut`). Rows with equal cuts share one mask, and
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

    def segments(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, rows: tuple[int, int], device):
        """The variable-length flash layout of batch rows ``rows = (a, b)`` (plans that cut here): every row's
        queries as runs (:meth:`flowutils.knockout.plan.CompactCut.segments`), each a sequence of its own
        whose keys are the ones it keeps before the run, then the run's own: :class:`Segments`, or None where a run cuts among its own positions, or the gathered keys
        would exceed ``SEGMENT_KEYS_MAX`` times the rows' keys (then the masked kernel). Reused like :meth:`bias`."""
        distinct, index, built_from = self._cuts(layer, q_start, q_len, k_len, batch, device)
        if self._last_segments[0] == (built_from, rows):
            return self._last_segments[1]
        a, b = rows
        index = index * batch if len(index) == 1 else index
        per_cut = {}
        for i, c in enumerate(distinct, 1):
            if (c.key, q_start, q_len) not in self._runs_of:
                self._runs_of[c.key, q_start, q_len] = c.segments(q_start, q_len)
            per_cut[i] = self._runs_of[c.key, q_start, q_len]
        out = None
        if all(per_cut.get(index[r]) is not None for r in range(a, b)):
            runs = [(r, *run) for r in range(a, b) for run in per_cut[index[r]]]
            keys = [np.r_[before, s:e] for _, s, e, before in runs]
            total = sum(len(k) for k in keys)
            if total <= SEGMENT_KEYS_MAX * (b - a) * k_len:
                q_lens, k_lens = [e - s for _, s, e, _ in runs], [len(k) for k in keys]
                # a key's index in its row is its position
                host = np.concatenate([np.repeat([(r - a) * k_len for r, *_ in runs], k_lens) + np.concatenate(keys),
                                       np.r_[0, np.cumsum(q_lens)], np.r_[0, np.cumsum(k_lens)]])
                flat = to_device(torch.from_numpy(host), device)
                s = len(runs) + 1
                cu_q, cu_k = host[total:total + s].tolist(), host[total + s:].tolist()
                out = Segments(flat[:total], flat[total:total + s].int(), flat[total + s:].int(), max(q_lens),
                               max(k_lens), list(zip(cu_q, cu_q[1:], cu_k, cu_k[1:])))
        self._last_segments = ((built_from, rows), out)
        return out

    def block_mask(self, layer: int, q_start: int, q_len: int, k_len: int, batch: int, device):
        """The same mask as :meth:`bias` as a FlexAttention ``BlockMask`` (``batch`` rows, all heads):
        tiles of ``FLEX_BLOCK`` queries x keys that are wholly masked (the future; a frame's earlier
        frames under the cross-frame cut) are skipped, wholly allowed ones are computed without
        reading a mask, and only the rest read the boolean mask. Reused by the next layer like
        :meth:`bias`."""
        from torch.nn.attention.flex_attention import BlockMask

        distinct, index, built_from = self._cuts(layer, q_start, q_len, k_len, batch, device)
        if self._last_bias[0] == (built_from, "block"):
            return self._last_bias[1]
        masked = self._masked(distinct, q_start, q_len, k_len, device)
        tile = FLEX_BLOCK
        qb, kb = -(-q_len // tile), -(-k_len // tile)
        # padded to whole tiles (padding masked) so that mask_mod never reads outside the tensor
        allowed = torch.zeros(len(masked), qb * tile, kb * tile, dtype=torch.bool, device=device)
        allowed[:, :q_len, :k_len] = ~masked
        tiles = allowed.view(len(masked), qb, tile, kb, tile)
        some, full = tiles.any(4).any(2), tiles.all(4).all(2)
        partial = some & ~full
        rows = to_device(torch.tensor(index), device).expand(batch)  # one index for all rows, or one per row

        def blocks(which):  # per query tile: how many key tiles, and which (those first)
            return (which.sum(-1, dtype=torch.int32)[rows, None],
                    torch.argsort(~which, dim=-1, stable=True).to(torch.int32)[rows, None])

        def mask_mod(b, h, q_idx, kv_idx):
            return allowed[rows[b], q_idx, kv_idx]

        out = BlockMask.from_kv_blocks(*blocks(partial), *blocks(full), BLOCK_SIZE=tile, mask_mod=mask_mod,
                                       seq_lengths=(q_len, k_len))
        self._last_bias = ((built_from, "block"), out)
        return out


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``[b, kv_heads, n, d]`` -> ``[b, kv_heads * n_rep, n, d]`` (grouped-query attention)."""
    if n_rep == 1:
        return x
    b, h, n, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, n, d).reshape(b, h * n_rep, n, d)


def _allowed(attention_mask, q_start: int, q_len: int, k_len: int, device) -> torch.Tensor:
    """Causal AND the model's own mask (padding), as booleans ``[b or 1, 1, q_len, k_len]``."""
    q_pos = torch.arange(q_start, q_start + q_len, device=device)[:, None]
    allowed = (torch.arange(k_len, device=device)[None, :] <= q_pos)[None, None]
    if attention_mask is not None:
        m = attention_mask[..., -q_len:, :k_len]
        allowed = allowed & (m if m.dtype == torch.bool else m == 0)
    return allowed


def _sdpa(query, key, value, bias, scaling, whole_rows: bool):
    """SDPA with an additive mask; with ``whole_rows``, rows with no allowed key output zeros
    (SDPA alone would give NaN)."""
    if whole_rows:
        any_key = (bias == 0).any(-1, keepdim=True)
        bias = bias.masked_fill(~any_key & (torch.arange(key.shape[2], device=query.device) == 0), 0.0)
    # not cuDNN: it builds a new execution plan for every new shape, and the fast engine's
    # batches change shape from layer to layer and from question to question
    with torch.nn.attention.sdpa_kernel(_SDPA_BACKENDS):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scaling)
    return torch.where(any_key, out, 0.0) if whole_rows else out


def _flex(query, key, value, block_mask, scaling):
    """FlexAttention under ``block_mask`` (compiled on CUDA, once, for dynamic shapes: every question
    brings new lengths). A query row with every key masked outputs zeros, as :func:`_sdpa`'s do."""
    global _flex_compiled
    from torch.nn.attention.flex_attention import flex_attention

    fn = flex_attention
    if query.is_cuda:
        if _flex_compiled is None:
            _flex_compiled = torch.compile(flex_attention, dynamic=True)
        fn = _flex_compiled
    return fn(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=key.shape[1] != query.shape[1])


def _flash(query) -> bool:
    """Whether rows that cut nothing get unmasked kernels on ``query``'s device (:data:`FLASH_DEVICES`)."""
    return query.device.type in FLASH_DEVICES


def _runs(flags: list[bool]) -> list[tuple[int, int, bool]]:
    """``[(start, end, flag)]``: the maximal runs of equal ``flags``."""
    out: list = []
    for i, f in enumerate(flags):
        if out and out[-1][2] == f:
            out[-1] = (out[-1][0], i + 1, f)
        else:
            out.append((i, i + 1, f))
    return out


def _with_prefix(prefix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[batch, kv_heads, t0 + len, d]``: the shared prefix ``[1, kv_heads, t0, d]`` before each row's own
    ``x``. Two copies into one buffer: ``torch.cat`` of the expanded prefix and the strided keys is slower.
    The buffer is position-major (``[batch, t0 + len, kv_heads, d]`` in memory, the layout of the model's own
    projections): :func:`_segmented` gathers whole positions from it."""
    batch, heads, n, d = x.shape
    out = x.new_empty(batch, prefix.shape[2] + n, heads, d)
    out[:, :prefix.shape[2]] = prefix.transpose(1, 2)
    out[:, prefix.shape[2]:] = x.transpose(1, 2)
    return out.transpose(1, 2)


def _causal_bias(q_len: int, k_len: int, dtype, device) -> torch.Tensor:
    """``[1, 1, q_len, k_len]`` additive causal mask aligned lower right (the queries are the last ``q_len``
    positions of the keys): the unmasked kernels' causal attention as a bias, for their twins."""
    future = torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(k_len - q_len + 1)
    return torch.zeros(1, 1, q_len, k_len, dtype=dtype, device=device).masked_fill_(future, float("-inf"))


def _attend(query, key, value, bias, scaling, causal: bool = False):
    """Attention and its log-sum-exp: ``(out [b, h, q, d], lse [b, h, q] float32)``; ``bias``: additive,
    broadcast to ``[b, h, q, k]``, or None: every key (``causal``: key ``j`` for queries ``i >= j``, ``q == k``).
    A row with every key masked has ``lse = -inf`` and zero output.

    On CUDA the memory-efficient kernel returns both (the flash kernel where there is no bias, in half
    precision); elsewhere an explicit fp32 softmax, its twin."""
    b, h, q, _ = query.shape
    k = key.shape[2]
    if bias is None and query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, 0.0, causal,
                                                                      scale=scaling)[:2]
        return out, lse[..., :q]
    if bias is None:
        bias = (_causal_bias(q, k, query.dtype, query.device) if causal
                else torch.zeros(1, 1, q, k, dtype=query.dtype, device=query.device))
    if query.is_cuda:
        # the kernel reads the bias with a last-dim stride that is a multiple of 16 elements
        aligned = torch.empty(*bias.shape[:-1], -(-k // 16) * 16, dtype=query.dtype, device=query.device)
        aligned[..., :k] = bias
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, aligned[..., :k].expand(b, h, q, k), True, scale=scaling)[:2]
        # the kernel gives a row with no key lse 0; it has none (-inf)
        lse = torch.where((bias > float("-inf")).any(-1).expand(b, h, q), lse[..., :q], float("-inf"))
    else:
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scaling + bias.float()
        lse = torch.logsumexp(scores, -1)
        out = torch.matmul(torch.softmax(scores, -1), value.float()).to(query.dtype)
    return torch.where(torch.isfinite(lse)[..., None], out, 0.0), lse


def _packed_attention(query, key, value, pk, pv, bias, scaling, cutting):
    """Fast attention of a batch of plans that share the baseline prefix keys, without copying the prefix:
    ``[batch, q, heads, d]``.

    ``query``/``key``/``value``: the plans' recomputed positions ``[batch, heads, q, d]``;
    ``pk``/``pv``: the prefix ``[1, kv_heads, t0, d]``; ``bias``: ``[batch or 1, 1, q, t0 + q]``;
    ``cutting``: per row, whether its plan cuts anything here (the other rows attend to every prefix key
    and causally to their own keys: no mask). Attention over the keys ``[prefix, own]`` is split in two
    and merged exactly by the log-sum-exp of each part: the queries of a run of rows, as one sequence,
    against the shared prefix, and each plan's queries against its own keys. Each query is scored
    against its own plan's keys only.
    """
    batch, heads, q_len, d = query.shape
    t0, rep = pk.shape[2], heads // key.shape[1]
    pk, pv = _repeat_kv(pk, rep), _repeat_kv(pv, rep)
    key, value = _repeat_kv(key, rep), _repeat_kv(value, rep)
    out = query.new_empty(batch, q_len, heads, d)
    for a, b, cut in _runs(cutting):
        rows = b - a
        q = query[a:b]
        part = bias[a:b] if len(bias) > 1 else bias
        part = part.expand(rows, 1, q_len, t0 + q_len) if cut else None
        flat_q = q.transpose(0, 1).reshape(1, heads, rows * q_len, d)
        out_p, lse_p = _attend(flat_q, pk, pv, None if part is None else
                               part[..., :t0].reshape(1, 1, rows * q_len, t0), scaling)
        out_p = out_p.reshape(heads, rows, q_len, d).transpose(0, 1)
        lse_p = lse_p.reshape(heads, rows, q_len).transpose(0, 1)
        out_o, lse_o = _attend(q, key[a:b], value[a:b], None if part is None else part[..., t0:], scaling,
                               causal=part is None)
        lse = torch.logaddexp(lse_p, lse_o)
        some = torch.isfinite(lse)  # a row with no key in either part outputs zeros
        w_p = torch.where(some, torch.exp(lse_p - lse), 0.0)[..., None]
        w_o = torch.where(some, torch.exp(lse_o - lse), 0.0)[..., None]
        out[a:b] = (out_p.float() * w_p + out_o.float() * w_o).to(query.dtype).transpose(1, 2)
    return out


def _by_rows(query, key, value, cutting, scaling, state: KnockoutState, layer: int):
    """``[batch, q, heads, d]``: attention of a batch whose rows (plans) that cut nothing in this layer
    (``cutting``) get ``causal_lower_right``, which the flash kernel applies without reading a mask; the
    others run by run of their queries (:func:`_segmented`) where their cut allows, else under the
    additive mask (:meth:`KnockoutState.bias`). ``key``/``value``: ``[batch, kv_heads, k, d]``."""
    batch, heads, q_len, d = query.shape
    k_len, rep = key.shape[2], heads // key.shape[1]
    out = query.new_empty(batch, q_len, heads, d)
    for a, b, cut in _runs(cutting):
        seg = state.segments(layer, k_len - q_len, q_len, k_len, batch, (a, b), query.device) if cut else None
        if seg is not None:
            out[a:b] = _segmented(query[a:b], key[a:b], value[a:b], seg, scaling)
            continue
        if cut:
            bias, whole_rows = state.bias(layer, k_len - q_len, q_len, k_len, batch, query.dtype, query.device)
            mask = bias[a:b] if len(bias) > 1 else bias
        else:
            mask, whole_rows = causal_lower_right(q_len, k_len), False
        out[a:b] = _sdpa(query[a:b], _repeat_kv(key[a:b], rep), _repeat_kv(value[a:b], rep), mask, scaling,
                         whole_rows).transpose(1, 2)
    return out


def _segmented(query, key, value, seg: Segments, scaling):
    """``[rows, q, heads, d]``: the rows' attention run by run (:meth:`KnockoutState.segments`): the queries
    of a run attend to their gathered keys, the run's own causally (the last keys, aligned lower right).
    ``query``: ``[rows, heads, q, d]``; ``key``/``value``: ``[rows, kv_heads, k, d]``.

    On CUDA in half precision one variable-length flash call; elsewhere its twin, run by run, an explicit
    lower-right causal mask."""
    rows, heads, q_len, d = query.shape
    flat_q = query.transpose(1, 2).reshape(rows * q_len, heads, d)
    # whole positions of position-major keys (:func:`_with_prefix`): a view, and a gather of contiguous rows
    k, v = (x.transpose(1, 2).reshape(-1, x.shape[1], d).index_select(0, seg.index) for x in (key, value))
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        out = torch.ops.aten._flash_attention_forward(flat_q, k, v, seg.cu_q, seg.cu_k, seg.max_q, seg.max_k, 0.0,
                                                      True, False, scale=scaling)[0]
    else:
        out = torch.empty_like(flat_q)
        rep = heads // k.shape[1]
        for qa, qb, ka, kb in seg.bounds:
            bias = _causal_bias(qb - qa, kb - ka, query.dtype, query.device)
            q_, k_, v_ = (x[None].transpose(1, 2) for x in (flat_q[qa:qb], k[ka:kb], v[ka:kb]))
            out[qa:qb] = _attend(q_, _repeat_kv(k_, rep), _repeat_kv(v_, rep), bias, scaling)[0][0].transpose(0, 1)
    return out.view(rows, q_len, heads, d)


@torch.compiler.disable  # Python decisions per plan and layer: left out of a compiled decoder layer (FlowModel.compile)
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
    if state.mode not in ("fast", "reference"):
        raise ValueError(f"unknown knockout mode {state.mode!r}; valid: 'fast', 'reference'")
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

    if state.mode == "fast" and state.record_rows is None:
        cutting = state.cutting(layer, batch)
        if prefix is not None:
            copies = batch * prefix[0].shape[2] * prefix[0].shape[1] * head_dim * 2 * query.element_size()
            if batch > 1 and copies > PACK_ABOVE_BYTES:
                bias, _ = state.bias(layer, q_start, q_len, k_len, batch, query.dtype, query.device)
                split = _flash(query) and q_len * cutting.count(False) >= SPLIT_MIN_QUERIES
                return _packed_attention(query, key, value, *prefix, bias, scaling,
                                         cutting if split else [True] * batch), None
            key, value = _with_prefix(prefix[0], key), _with_prefix(prefix[1], value)
        if attention_mask is None:
            if not any(cutting) and _flash(query):
                # nothing cut: causal with the queries at the end, which the flash kernel does without a mask
                out = _sdpa(query, _repeat_kv(key, rep), _repeat_kv(value, rep), causal_lower_right(q_len, k_len),
                            scaling, False)
                return out.transpose(1, 2), None
            if USE_FLEX:
                mask = state.block_mask(layer, q_start, q_len, k_len, batch, query.device)
                return _flex(query, key, value, mask, scaling).transpose(1, 2), None
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

    if state.mode == "fast":
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
