"""Benchmark: the full knockout sweep (``fast``) at the paper models' real LM shapes, random weights.

Per model, the decoder-only LM of the checkpoint's shape (transformers' own Llama / Phi-3 / Qwen2
classes, bf16) on one question of the paper's layout: system, 8 frames x tokens per frame, a
question with 4 options, the answer suffix. The sweep is the four flow sets (11 flows) x
every layer with a k = 9 window. Video embeddings enter through ``inputs_embeds`` (random): the
vision tower runs once per question and is not part of the sweep's cost. One warm-up question of
another length first; ``--check-reference N`` also runs the first N plans with the ``reference``
backend and reports max |dp| over the vocabulary.

Printed and saved (``benchmarks/results/shapes/model_shapes_<gpu>.json``): seconds per question of the
full sweep, plans, tokens, peak GPU memory, weights. Shapes (the LM inside each checkpoint):

* LLaVA-NeXT-7B-Video-FT: Vicuna-7B (Llama, 32 x 4096, 32 heads, MLP 11008), 8 x 144 video tokens
* LLaVA-NeXT-13B-Video-FT: Vicuna-13B (40 x 5120, 40 heads, MLP 13824), 8 x 144
* Mini-InternVL-4B-Video-FT: Phi-3-mini (32 x 3072, 32 heads, MLP 8192), 8 x 256
* VideoLLaMA3-7B: Qwen2.5-7B (28 x 3584, 28 heads, 4 KV heads, MLP 18944, vocab 152064), 8 x 144

GPU: ``python benchmarks/model_shapes.py`` (one H200: about 5 minutes). CPU smoke test:
``python benchmarks/model_shapes.py --tiny --device cpu --check-reference 8``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flowutils.engine import knockout_logits  # noqa: E402
from flowutils.knockout.flows import FLOW_SETS  # noqa: E402
from flowutils.knockout.plan import KnockoutPlan  # noqa: E402
from flowutils.inputs.layout import TokenLayout  # noqa: E402
from flowutils.knockout.windows import layer_windows  # noqa: E402
from flowutils.models.adapter import FamilyAdapter  # noqa: E402
from flowutils.models.flow_model import FlowModel, PreparedInput  # noqa: E402

SHAPES = {
    "llava-next-7b-video-ft": dict(model_type="llama", num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                                   num_key_value_heads=32, intermediate_size=11008, vocab_size=32064, per_frame=144),
    "llava-next-13b-video-ft": dict(model_type="llama", num_hidden_layers=40, hidden_size=5120,
                                    num_attention_heads=40, num_key_value_heads=40, intermediate_size=13824,
                                    vocab_size=32064, per_frame=144),
    "mini-internvl-4b-video-ft": dict(model_type="phi3", num_hidden_layers=32, hidden_size=3072,
                                      num_attention_heads=32, num_key_value_heads=32, intermediate_size=8192,
                                      vocab_size=32064, per_frame=256),
    "videollama3-7b": dict(model_type="qwen2", num_hidden_layers=28, hidden_size=3584, num_attention_heads=28,
                           num_key_value_heads=4, intermediate_size=18944, vocab_size=152064, per_frame=144),
}
TINY = dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128, vocab_size=512)

# the bare LM: decoder at ``model``, LM head at ``lm_head``
LM_ADAPTER = FamilyAdapter(family="lm-shape", model_class="AutoModelForCausalLM", processor_class="",
                           template="eval_mvbench", video_token="<image>", video_token_id_attr="pad_token_id",
                           trailing_video_tokens=0, tokens_per_frame=lambda c, h, w: None, decoder_path="model")


def build_lm(shape: dict, tiny: bool, device, dtype):
    import transformers

    kw = {k: v for k, v in shape.items() if k not in ("model_type", "per_frame")}
    if tiny:
        grouped = shape["num_key_value_heads"] < shape["num_attention_heads"]  # keep GQA where the model has it
        kw.update(TINY, num_key_value_heads=2 if grouped else TINY["num_attention_heads"])
    config = transformers.AutoConfig.for_model(shape["model_type"], max_position_embeddings=4096,
                                               tie_word_embeddings=False, pad_token_id=0, **kw)
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(torch.float32)
    return FlowModel(model.eval(), processor=None, adapter=LM_ADAPTER, name=shape["model_type"])


def build_question(fm: FlowModel, per_frame: int, frames=8, n_system=40, n_question=24, option_len=8, n_options=4,
                   n_suffix=16, seed=0) -> PreparedInput:
    """Random embeddings laid out as one question of the paper's prompt."""
    g = torch.Generator().manual_seed(seed)
    sizes = [n_system, frames * per_frame, n_question] + [option_len] * n_options + [n_suffix]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    n = sum(sizes)
    video = range(starts[1], starts[2])
    layout = TokenLayout(
        n=n, frames=[range(video.start + f * per_frame, video.start + (f + 1) * per_frame) for f in range(frames)],
        video_span=video, system=list(range(n_system)), non_option_question=list(range(starts[2], starts[3])),
        options=[list(range(starts[3 + i], starts[3 + i] + option_len)) for i in range(n_options)], separators=[],
        suffix=list(range(starts[-1], n)), answer_index=0)
    d = fm.model.config.hidden_size
    embeds = (torch.randn(1, n, d, generator=g) * 0.02).to(fm.device, fm.dtype)
    inputs = {"inputs_embeds": embeds, "attention_mask": torch.ones(1, n, dtype=torch.long, device=fm.device)}
    return PreparedInput(inputs, layout, option_ids=[1, 2, 3, 4], gold_index=0, sample_id="bench")


def sweep_plans(layout, n_layers, k):
    return [KnockoutPlan.from_flows(layout, [f], w, flow=f, layer=l)
            for fam in FLOW_SETS.values() for f in fam for l, w in layer_windows(n_layers, k)]


def measure(name, shape, args, device, dtype) -> dict:
    cuda = device.type == "cuda"
    fm = build_lm(shape, args.tiny, device, dtype)
    per_frame = 4 if args.tiny else shape["per_frame"]
    warm = build_question(fm, per_frame, n_question=20, seed=1)
    knockout_logits(fm, warm, sweep_plans(warm.layout, fm.n_layers, args.k), "fast", args.batch_size,
                    max_batch_tokens=args.max_batch_tokens)
    prepared = build_question(fm, per_frame)
    plans = sweep_plans(prepared.layout, fm.n_layers, args.k)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    fast = knockout_logits(fm, prepared, plans, "fast", args.batch_size, max_batch_tokens=args.max_batch_tokens)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    result = {"model": name, "lm": shape["model_type"], "layers": fm.n_layers, "hidden": fm.model.config.hidden_size,
              "video_tokens": len(prepared.layout.video), "tokens": prepared.layout.n, "plans": len(plans),
              "k": args.k, "fast_s_per_question": round(seconds, 3),
              "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
              "weights_gib": round(sum(p.numel() * p.element_size() for p in fm.model.parameters()) / 2**30, 2)}
    if args.check_reference:
        ref = knockout_logits(fm, prepared, plans[:args.check_reference], "reference")
        result["max_abs_dp_vs_reference"] = float((ref.softmax(-1) - fast[:args.check_reference].softmax(-1))
                                                  .abs().max())
    del fm
    if cuda:
        torch.cuda.empty_cache()
    print(json.dumps(result), flush=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(SHAPES), help=f"comma-separated, of {list(SHAPES)}")
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--check-reference", type=int, default=0, help="also run the first N plans with 'reference'")
    ap.add_argument("--tiny", action="store_true", help="tiny dims (CPU smoke test of this script)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "shapes"))
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    names = args.models.split(",")
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; valid: {list(SHAPES)}")
    torch.manual_seed(0)
    results = [measure(n, SHAPES[n], args, device, dtype) for n in names]
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    record = {"gpu": gpu, "torch": torch.__version__, "transformers": __import__("transformers").__version__,
              "tiny": args.tiny, "batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens,
              "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "tiny-cpu" if args.tiny else gpu.replace("NVIDIA ", "").split()[0]
    path = out / f"model_shapes_{tag}.json"
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
