"""Benchmark: a knockout sweep sharded over 2 GPUs against the same sweep on 1 GPU (issue #14's bar).

A deterministic random-weight LLaVA-NeXT-Video (the toy recipe's architecture, scaled up to a
~0.8B-parameter Llama text model (16 layers, width 2048), bf16, 64 tokens per frame) is saved to ``--workdir`` as a checkpoint so that every
worker loads it with :func:`flowutils.load`, as a user's model is loaded. The synthetic
benchmark is rendered in memory (the GPU machine has no PyAV/decord). The sweep (the paper's
four flow families, every layer, the scaled window) runs

1. once as one process on ``cuda:0`` (1 shard), then
2. as 2 processes at once, shard 0 on ``cuda:0`` and shard 1 on ``cuda:1``,

each into its own fresh results directory. Wall times are end to end (process start to the
last process's exit: imports, loading and hashing the checkpoint, the sweep); each worker
also reports its sweep alone. The merged 2-shard table is compared with the 1-GPU table row
for row. Written to ``benchmarks/results/sharding_2gpu.json``.

GPU (2 GPUs): ``python benchmarks/sharding.py``
CPU smoke test: ``python benchmarks/sharding.py --device cpu --size tiny --n-per-task 2 --json /tmp/sharding_cpu.json``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {  # ToyConfig fields: "gpu": a ~0.8B-parameter Llama text model, "tiny" for the CPU smoke test
    "gpu": dict(text_layers=16, text_hidden=2048, text_heads=16, text_kv_heads=16, text_intermediate=5632,
                vision_layers=4, vision_hidden=256, vision_heads=4, image_size=128, patch_size=8,
                max_positions=4096),
    "tiny": dict(text_layers=4, text_hidden=64, text_heads=4, text_kv_heads=2, text_intermediate=128,
                 vision_layers=2, vision_hidden=32, vision_heads=2, image_size=32),
}


def build_checkpoint(path: Path, size: str) -> int:
    """Save the seeded random-weight model and its processor to ``path``; returns its parameter count."""
    import torch

    from flowutils.toy.models import ToyConfig, build_toy

    model, processor = build_toy(ToyConfig(family="llava_next_video", **SIZES[size]), seed=0)
    model = model.to(torch.bfloat16 if size == "gpu" else torch.float32)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def questions(n_per_task: int):
    """The synthetic test questions, rendered in memory, with unique ids."""
    from flowutils.data import synthetic

    out = []
    for task in synthetic.VIDEO_TASKS:
        for i, s in enumerate(synthetic.generate(task, n_per_task, seed=0, split="test")):
            s.sample_id = f"{task}/{i}"
            out.append(s)
    return out


def worker(args) -> None:
    """One shard: load the checkpoint on ``args.device`` and run the sweep into ``args.out``."""
    import torch

    from flowutils import load, run_sweep
    from flowutils.knockout.flows import FAMILIES

    fm = load(args.checkpoint, dtype=torch.bfloat16 if args.size == "gpu" else torch.float32, device=args.device)
    samples = questions(args.n_per_task)
    flows = [f for family in FAMILIES.values() for f in family]
    start = time.perf_counter()
    table = run_sweep(fm, samples, flows, sample_mode="all", num_frames=args.frames, out=args.out,
                      shard=args.shard, num_shards=args.num_shards, progress=False)
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        torch.cuda.synchronize()
    print(json.dumps({"shard": args.shard, "rows": len(table), "sweep_s": time.perf_counter() - start,
                      "skipped": len(table.attrs["skipped"])}), flush=True)


def launch(args, num_shards: int, out: Path) -> dict:
    """Run ``num_shards`` worker processes at once (shard i on GPU i); wall time of the whole launch."""
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    procs = []
    for shard in range(num_shards):
        device = f"cuda:{shard}" if args.device == "cuda" else args.device
        cmd = [sys.executable, __file__, "--worker", "--checkpoint", str(args.checkpoint), "--size", args.size,
               "--n-per-task", str(args.n_per_task), "--frames", str(args.frames), "--out", str(out),
               "--shard", str(shard), "--num-shards", str(num_shards), "--device", device]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    reports = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed with exit code {p.returncode}")
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return {"wall_s": time.perf_counter() - start, "workers": reports}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (shard i on cuda:i) or cpu")
    ap.add_argument("--size", default="gpu", choices=list(SIZES))
    ap.add_argument("--n-per-task", type=int, default=40, help="questions per task (5 tasks)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--workdir", default="/tmp/flowutils-sharding")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "sharding_2gpu.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--shard", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--num-shards", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    import pandas as pd
    import torch

    from flowutils.analysis import load_results

    work = Path(args.workdir)
    args.checkpoint = work / f"checkpoint-{args.size}"
    if not (args.checkpoint / "config.json").is_file():
        params = build_checkpoint(args.checkpoint, args.size)
    else:
        params = None
    one = launch(args, 1, work / "results-1gpu")
    two = launch(args, 2, work / "results-2gpu")
    tables = []
    for out in (work / "results-1gpu", work / "results-2gpu"):
        (store,) = [d for d in out.iterdir() if d.is_dir()]
        t = load_results(store)
        tables.append(t.sort_values(["sample_id", "flow", "layer"]).reset_index(drop=True))
    single, sharded = tables
    try:
        pd.testing.assert_frame_equal(single, sharded, check_exact=True)
        identical, max_abs = True, 0.0
    except AssertionError:
        identical = False
        numeric = single.select_dtypes("number").columns
        max_abs = float((single[numeric] - sharded[numeric]).abs().max().max()) if len(single) == len(sharded) else None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if args.device == "cuda" else []
    result = {"device": args.device, "gpus": gpus, "size": args.size, "text_model": SIZES[args.size],
              "parameters": params, "questions": 5 * args.n_per_task, "frames": args.frames,
              "rows_1gpu": len(single), "rows_2gpu": len(sharded), "rows_identical": identical,
              "max_abs_diff": max_abs, "wall_1gpu_s": round(one["wall_s"], 2), "wall_2gpu_s": round(two["wall_s"], 2),
              "ratio": round(two["wall_s"] / one["wall_s"], 3),
              "sweep_1gpu_s": round(max(w["sweep_s"] for w in one["workers"]), 2),
              "sweep_2gpu_s": round(max(w["sweep_s"] for w in two["workers"]), 2),
              "sweep_ratio": round(max(w["sweep_s"] for w in two["workers"]) / max(w["sweep_s"] for w in one["workers"]), 3),
              "workers_1gpu": one["workers"], "workers_2gpu": two["workers"], "bar": "ratio <= 0.55, rows identical"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("workers")}, indent=1))


if __name__ == "__main__":
    main()
