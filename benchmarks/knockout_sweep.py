"""Benchmark: the paper's full knockout sweep on a 7B-shaped model, ``reference`` vs ``fast``.

A LlavaNextVideoForConditionalGeneration with random weights and the paper's shapes
(CLIP ViT-L/336 vision tower; Vicuna-7B-shaped Llama decoder: 32 layers, hidden 4096,
32 heads, bf16), 8 frames x 144 video tokens and a paper-length prompt. Per sample the
sweep is the four flow sets (11 flows) x every layer with a k=9 window: 352 plans.

Both backends run in the same process on the same input, after a warm-up on another question
of another length (every real question is new to the engine: new shapes). Printed and saved
(``benchmarks/results/speed/knockout_sweep_<gpu>.json``): time per sample of each, their ratio,
max |dp| between them over the whole vocabulary, peak GPU memory against weights + one
KV cache, and the fraction of the bf16 roofline reached by the work ``fast`` must do.

Run on a GPU: ``python benchmarks/knockout_sweep.py`` (``--explore "256:8192,16:4096:0"`` times
``fast`` alone under several batch_size:max_batch_tokens[:pack_above_bytes] settings and prints a
profile). The scaling table: ``--frames 16`` / ``--frames 32`` / ``--shape 13b`` with
``--reference-plans 32`` (the reference runs on an evenly spaced subset of the plans and its time
is scaled by the plan count, said so in the JSON: ``reference_plans_timed``) and ``--name scaling_...``.
``--profile`` adds the top entries of a torch profile of ``fast`` to the JSON.
CPU smoke test: ``python benchmarks/knockout_sweep.py --tiny --device cpu --reference-plans 4 --out /tmp/ks``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flowutils.engine import SETTINGS, batches, compile_layers, knockout_logits, run_baseline  # noqa: E402
from flowutils.engine.logits import joins, work  # noqa: E402
from flowutils.knockout.flows import FLOW_SETS  # noqa: E402
from flowutils.models.flow_model import FlowModel, PreparedInput  # noqa: E402
from flowutils.knockout.plan import KnockoutPlan  # noqa: E402
from flowutils.inputs.layout import TokenLayout  # noqa: E402
from flowutils.knockout.windows import STYLES, layer_windows  # noqa: E402

SPEC_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16 tensor-core peak (SXM)
DEFAULT_PACK = SETTINGS.pack_above_bytes


# decoder shapes: Vicuna-7B and Vicuna-13B (LLaVA-NeXT-7B/13B-Video-FT); tiny: a CPU smoke test
SHAPES = {"7b": dict(hidden=4096, inter=11008, layers=32, heads=32, vision_hidden=1024, vision_layers=24),
          "13b": dict(hidden=5120, inter=13824, layers=40, heads=40, vision_hidden=1024, vision_layers=24),
          "tiny": dict(hidden=64, inter=128, layers=4, heads=4, vision_hidden=32, vision_layers=1)}


def build_model(shape: dict, device):
    import transformers

    config = transformers.LlavaNextVideoConfig(
        vision_config={"model_type": "clip_vision_model", "hidden_size": shape["vision_hidden"],
                       "intermediate_size": 4 * shape["vision_hidden"], "num_hidden_layers": shape["vision_layers"],
                       "num_attention_heads": 16 if shape["vision_hidden"] > 64 else 2, "image_size": 336,
                       "patch_size": 14, "projection_dim": 768},
        text_config={"model_type": "llama", "hidden_size": shape["hidden"], "intermediate_size": shape["inter"],
                     "num_hidden_layers": shape["layers"], "num_attention_heads": shape["heads"],
                     "num_key_value_heads": shape["heads"], "vocab_size": 32064, "max_position_embeddings": 8192},
        video_token_index=32000, image_token_index=32001, spatial_pool_stride=2,
    )
    torch.set_default_dtype(torch.bfloat16 if device.type == "cuda" else torch.float32)
    with torch.device(device):
        model = transformers.LlavaNextVideoForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    return model.eval()


def build_input(device, dtype, frames=8, per_frame=144, n_system=40, n_question=24, option_len=8, n_options=4,
                n_suffix=16, seed=0):
    """Random token ids with the paper's layout; returns (PreparedInput, n)."""
    g = torch.Generator().manual_seed(seed)
    pos = 0

    def take(k):
        nonlocal pos
        r = list(range(pos, pos + k))
        pos += k
        return r

    system = take(n_system)
    video = range(pos, pos + frames * per_frame)
    take(frames * per_frame)
    non_opt = take(n_question)
    options = [take(option_len) for _ in range(n_options)]
    suffix = take(n_suffix)
    n = pos
    ids = torch.randint(100, 30000, (1, n), generator=g)
    ids[0, video.start:video.stop] = 32000
    layout = TokenLayout(n=n, frames=[range(video.start + f * per_frame, video.start + (f + 1) * per_frame)
                                      for f in range(frames)], video_span=video, system=system,
                         non_option_question=non_opt, options=options, separators=[], suffix=suffix, answer_index=0)
    inputs = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
              "pixel_values_videos": torch.randn(1, frames, 3, 336, 336, generator=g).to(device, dtype)}
    return PreparedInput(inputs, layout, option_ids=[319, 350, 315, 360], gold_index=0, sample_id="bench"), n


def fast_flops(plans, n, batch_size, max_batch_tokens=8192, d=4096, inter=11008, vocab=32064, n_layers=32,
               shared=True):
    """Matrix FLOPs the fast backend must do: each plan, positions >= t0, the layers from where it joins its batch on
    (:func:`flowutils.engine.logits.joins`: plans that cut alike in their first layers compute those once); with
    ``shared=False``, every plan from its first layer (the count of the rounds before joins)."""
    per_token_layer = 2 * (4 * d * d + 3 * d * inter) + 4 * n * d  # projections, MLP, QK^T and PV over n keys
    total = 0
    for chunk, t0 in batches(plans, n, batch_size, max_batch_tokens):
        rows = [plans[i] for i in chunk]
        layers = work(n_layers, joins(rows), 1) if shared else sum(n_layers - p.first_layer for p in rows)
        total += layers * (n - t0) * per_token_layer + 2 * d * vocab * len(chunk)
    return total


def matmul_tflops(device):
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shape", choices=list(SHAPES), default="7b")
    ap.add_argument("--tiny", action="store_const", const="tiny", dest="shape")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--k", type=int, default=9)
    ap.add_argument("--style", default="center", choices=STYLES, help="the windows' style (the paper's sweep: center; "
                    "Figure V: bottom_up, top_down)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--max-batch-tokens", type=int, default=8192)
    ap.add_argument("--reference-plans", type=int, default=0, help="time the reference on this many plans (0: all)")
    ap.add_argument("--profile", action="store_true", help="add a torch profile's top entries of fast")
    ap.add_argument("--explore", default="", help="fast only: time 'batch:tokens[:pack_bytes],...', profile, no reference")
    ap.add_argument("--name", default="knockout_sweep", help="output file: <name>_<gpu>.json")
    ap.add_argument("--compile", action="store_true",
                    help="lever: compile_layers (torch.compile of every decoder layer; attention left eager)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "speed"))
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    gpu = torch.cuda.get_device_name() if cuda else "CPU"
    shape = SHAPES[args.shape]
    model = build_model(shape, device)
    fm = FlowModel(model, processor=None, name=f"{args.shape}-shaped LLaVA-NeXT-Video (random weights)")
    dtype = fm.dtype


    def sweep_plans(layout):
        return [KnockoutPlan.from_flows(layout, [f], w, flow=f, layer=l)
                for fam in FLOW_SETS.values() for f in fam for l, w in layer_windows(fm.n_layers, args.k, args.style)]

    # warm up on one question, time on others of other lengths: every question is new to the engine
    warm, _ = build_input(device, dtype, frames=args.frames, n_question=20, seed=1)
    prepared, n = build_input(device, dtype, frames=args.frames)
    layout = prepared.layout
    plans = sweep_plans(layout)
    d = shape["hidden"]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_cache = 2 * fm.n_layers * n * d * dtype.itemsize
    print(f"{gpu}: {args.shape}, {args.frames} frames, {len(plans)} plans, n={n} tokens, weights "
          f"{weights / 2**30:.2f} GiB, one KV cache {kv_cache / 2**30:.2f} GiB", flush=True)

    def timed(fn):
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = fn()
        sync()
        return out, time.perf_counter() - t, torch.cuda.max_memory_allocated() if cuda else 0

    def flops(b=args.batch_size, tokens=args.max_batch_tokens, shared=True):
        return fast_flops(plans, n, b, tokens, d=d, inter=shape["inter"], n_layers=fm.n_layers, shared=shared)

    def warm_up():
        timed(lambda: knockout_logits(fm, warm, sweep_plans(warm.layout), "fast", args.batch_size,
                                      max_batch_tokens=args.max_batch_tokens))

    if args.compile:  # a layer that falls back to eager at dynamo's recompile limit would be timed as compiled
        torch._dynamo.config.fail_on_recompile_limit_hit = True

    def run_fast():
        return knockout_logits(fm, prepared, plans, "fast", args.batch_size, max_batch_tokens=args.max_batch_tokens)

    timed(lambda: knockout_logits(fm, warm, sweep_plans(warm.layout)[:2], "reference"))
    if args.explore:
        if args.compile:
            compile_layers(fm)
        warm_up()
        for i, setting in enumerate(args.explore.split(",")):
            b, tokens, *pack = map(int, setting.split(":"))
            SETTINGS.pack_above_bytes = pack[0] if pack else DEFAULT_PACK
            p_i, _ = build_input(device, dtype, frames=args.frames, n_question=24 + i + 1, seed=2 + i)
            _, t, mem = timed(lambda: knockout_logits(fm, p_i, sweep_plans(p_i.layout), "fast", b,
                                                      max_batch_tokens=tokens))
            print(f"explore batch {b} tokens {tokens} pack above {SETTINGS.pack_above_bytes}"
                  f"{' compiled' if args.compile else ''}: {t:.3f} s/sample, "
                  f"peak {mem / 2**30:.2f} GiB ({mem / (weights + kv_cache):.2f} x weights + KV), "
                  f"{flops(b, tokens) / t / 1e12:.0f} TFLOP/s", flush=True)
        SETTINGS.pack_above_bytes = DEFAULT_PACK

        prof = _profile(run_fast, sync)
        print(profile_table(prof), flush=True)
        print("timeline", json.dumps(timeline(prof), indent=1), flush=True)
        return
    # the reference first, always eager (the paper's method); then fast, compiled with --compile
    subset = list(range(len(plans)))
    if 0 < args.reference_plans < len(plans):  # evenly spaced over flows and layers
        subset = [round(i * (len(plans) - 1) / (args.reference_plans - 1)) for i in range(args.reference_plans)]
    ref, t_ref, mem_ref = timed(lambda: knockout_logits(fm, prepared, [plans[i] for i in subset], "reference"))
    t_ref_all = t_ref * len(plans) / len(subset)
    print(f"reference: {t_ref:.2f} s for {len(subset)} plans, {t_ref_all:.2f} s/sample, peak "
          f"{mem_ref / 2**30:.2f} GiB", flush=True)
    eager = {}
    if args.compile:  # the same question without the lever first, in the same process
        warm_up()
        _, t, _ = timed(run_fast)
        eager["fast_eager_s_per_sample"] = round(t, 3)
        if args.profile:
            eager["timeline_eager"] = timeline(_profile(run_fast, sync))
        print(f"fast eager: {t:.2f} s/sample", flush=True)
        compile_layers(fm)
    warm_up()
    graphs = _compiled_graphs()
    fast, t_fast, mem_fast = timed(run_fast)
    if args.compile:  # dynamic shapes: a new question should compile nothing new
        eager["graphs_compiled_during_timed_question"] = _compiled_graphs() - graphs
    print(f"fast{' compiled' if args.compile else ''}: {t_fast:.2f} s/sample, peak {mem_fast / 2**30:.2f} GiB",
          flush=True)
    dp = (fast[subset].softmax(-1) - ref.softmax(-1)).abs().max().item()
    base = run_baseline(fm, prepared)
    pred = int(base.logits.argmax())
    dp_pred = (fast[subset].softmax(-1)[:, pred] - ref.softmax(-1)[:, pred]).abs().max().item()
    needed = flops()
    achieved = needed / t_fast / 1e12
    peak_mm = matmul_tflops(device) if cuda else None
    spec = next((v for k, v in SPEC_TFLOPS.items() if k in gpu), None)
    result = {
        "gpu": gpu, "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "shape": args.shape, "frames": args.frames,
        "plans_per_sample": len(plans), "tokens": n, "video_tokens": len(layout.video), "layers": fm.n_layers,
        "k": args.k, "style": args.style, "batch_size": args.batch_size, "max_batch_tokens": args.max_batch_tokens,
        "pack_above_bytes": SETTINGS.pack_above_bytes, "compiled_layers": args.compile,
        "reference_plans_timed": len(subset),
        "reference_s_per_sample": round(t_ref_all, 3), "fast_s_per_sample": round(t_fast, 3),
        "speedup": round(t_ref_all / t_fast, 2),
        "max_abs_dp_vocab": dp, "max_abs_dp_predicted_token": dp_pred,
        "peak_mem_fast_gib": round(mem_fast / 2**30, 3), "peak_mem_reference_gib": round(mem_ref / 2**30, 3),
        "weights_gib": round(weights / 2**30, 3), "kv_cache_gib": round(kv_cache / 2**30, 3),
        "peak_mem_fast_over_weights_plus_kv": round(mem_fast / (weights + kv_cache), 3),
        "fast_tflop": round(needed / 1e12, 2), "fast_achieved_tflops": round(achieved, 1),
        # the work as counted before plans shared their first layers (engine.logits.joins): earlier rounds' fast_tflop
        "fast_tflop_every_plan_from_its_first_layer": round(flops(shared=False) / 1e12, 2),
        "bf16_spec_tflops": spec, "fraction_of_spec_roofline": round(achieved / spec, 3) if spec else None,
        "measured_matmul_tflops": round(peak_mm, 1) if peak_mm else None,
        "fraction_of_measured_matmul": round(achieved / peak_mm, 3) if peak_mm else None,
    }
    result.update(eager)
    if args.profile:
        prof = _profile(run_fast, sync)  # one profiled run for both
        result["profile_top"] = profile_top(prof, cuda)
        result["timeline"] = timeline(prof)
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = gpu.replace("NVIDIA ", "").split()[0]
    (out / f"{args.name}_{tag}.json").write_text(json.dumps(result, indent=1))


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _profile(fn, sync):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn()
        sync()
    return prof


def profile_table(prof) -> str:
    return prof.key_averages().table(sort_by="cuda_time_total" if torch.cuda.is_available() else "cpu_time_total",
                                     row_limit=25)


def timeline(prof) -> dict:
    """Where the wall time of the profiled run goes, from its trace: per engine range (the baseline, each
    batch; ``record_function`` names in :mod:`flowutils.engine`) the CPU wall time spent in it and the
    busy time of the GPU kernels it launched; over all, GPU busy against wall, and the CUDA runtime calls by name
    (synchronisations, allocations: where the CPU waits or the GPU starves)."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        events = json.loads(Path(f.name).read_text())["traceEvents"]
    # cuBLAS and Triton launch through the driver API: without its events their kernels would count for
    # whatever range the host was in when they ran
    launch = {e["args"]["correlation"]: e["ts"] for e in events
              if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    kernels = sorted((e["ts"], e["ts"] + e["dur"], launch.get(e["args"].get("correlation"), e["ts"]), e["name"])
                     for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))

    def busy(intervals):
        total, end = 0.0, float("-inf")
        for a, b, *_ in intervals:
            total += max(0.0, b - max(a, end))
            end = max(end, b)
        return total

    ranges = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events
                    if e.get("cat") == "user_annotation" and e["name"].startswith("flow_knockout."))
    # the GPU's idle gaps, each charged to the range whose host launched the kernel that ended it
    idle, end = [], kernels[0][0] if kernels else 0.0  # no gap before the first kernel
    for a, b, launched, _ in kernels:
        if a - end > 5:  # microseconds
            idle.append((launched, a - end))
        end = max(end, b)
    by_name: dict = {}  # a batch runs layer by layer in turn with another: one range per layer, summed
    for a, b, name in ranges:
        mine = [k for k in kernels if a <= k[2] <= b]
        r = by_name.setdefault(name, {"range": name.removeprefix("flow_knockout."), "wall_ms": 0.0,
                                      "gpu_busy_ms": 0.0, "gpu_idle_ms": 0.0, "kernels": 0, "by_class": {},
                                      "by_kernel": {}})
        r["gpu_idle_ms"] += sum(gap for launched, gap in idle if a <= launched <= b) / 1e3
        r["wall_ms"] += (b - a) / 1e3
        r["gpu_busy_ms"] += busy(mine) / 1e3
        r["kernels"] += len(mine)
        for k in mine:  # which kernels a range's GPU time goes to
            for key, table in ((kernel_class(k[3]), r["by_class"]), (k[3][:90], r["by_kernel"])):
                table[key] = table.get(key, 0.0) + (k[1] - k[0]) / 1e3
    rows = [dict(r, wall_ms=round(r["wall_ms"], 2), gpu_busy_ms=round(r["gpu_busy_ms"], 2),
                 gpu_idle_ms=round(r["gpu_idle_ms"], 2),
                 by_class=_top(r["by_class"]), by_kernel=_top(r["by_kernel"], 6)) for r in by_name.values()]
    runtime: dict = {}
    for e in events:
        if e.get("cat") == "cuda_runtime":
            r = runtime.setdefault(e["name"], [0.0, 0])
            r[0] += e["dur"] / 1e3
            r[1] += 1
    # from the first range to the last range's end or its GPU work's end, whichever is later
    end = max([ranges[-1][1]] + [k[1] for k in kernels if k[2] >= ranges[0][0]]) if ranges else None
    wall = (end - ranges[0][0]) / 1e3 if ranges else None
    classes: dict = {}
    for e in events:
        if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"):
            kind = kernel_class(e["name"])
            classes[kind] = classes.get(kind, 0.0) + e["dur"] / 1e3
    return {"wall_ms": round(wall, 1) if wall else None, "gpu_busy_ms": round(busy(kernels) / 1e3, 1),
            "gpu_idle_outside_ranges_ms": round(sum(gap for launched, gap in idle if ranges and launched >= ranges[0][0]
                                                    and not any(a <= launched <= b for a, b, _ in ranges)) / 1e3, 1),
            "gpu_ms_by_kernel_class": {k: round(v, 1) for k, v in sorted(classes.items(), key=lambda kv: -kv[1])},
            "ranges": rows, "runtime_calls": [{"call": k, "ms": round(v[0], 2), "calls": v[1]}
                                              for k, v in sorted(runtime.items(), key=lambda kv: -kv[1][0])[:12]]}


def _top(ms: dict, rows: int | None = None) -> dict:
    """``{name: ms}`` rounded, largest first, the first ``rows``."""
    return {k: round(v, 2) for k, v in sorted(ms.items(), key=lambda kv: -kv[1])[:rows]}


KERNEL_CLASSES = [  # first match wins: attention kernels are CUTLASS too
    ("attention", re.compile(r"fmha|flash|attention|flex", re.I)),
    ("gemm", re.compile(r"gemm|nvjet|xmma|cutlass|cublas", re.I)),
    ("fused (Inductor)", re.compile(r"^triton_")),
    ("copy, cat, fill", re.compile(r"memcpy|memset|copy|\bcat|fill", re.I)),  # copy: dtype casts too; not scatter
]


def kernel_class(name: str) -> str:
    """A GPU kernel's class, from its name: attention, gemm, fused (Inductor), copy/cat/fill, or other
    elementwise and reductions."""
    return next((kind for kind, pattern in KERNEL_CLASSES if pattern.search(name)), "other elementwise, reductions")


def profile_top(prof, cuda: bool, rows: int = 15) -> list[dict]:
    """The ops with the most self device time (CPU time without a GPU), in ms per question."""
    events = prof.key_averages()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    top = sorted(events, key=lambda e: -getattr(e, attr))[:rows]
    return [{"op": e.key, "self_ms": round(getattr(e, attr) / 1e3, 2), "calls": e.count} for e in top]


if __name__ == "__main__":
    main()
