"""Benchmark: the book's toy sweep on the CPU, the cost that sets the book's build time.

The toy VideoLLM (12 layers, fp32) on the synthetic benchmark's questions, the four flow sets
(11 flows) x every layer with the book's window (``scaled_window_size``: k = 3), ``fast``
backend, through :func:`flowutils.analysis.run_sweep` end to end: question loading, processor,
vision tower, baseline, knockout and the table rows. ``sample_mode="all"`` so every question
costs the same work whatever the model answers.

The machine is shared, so the sweep is repeated and the fastest repetition is kept (timings only
get slower under contention). Printed and saved (``benchmarks/results/cpu/cpu_sweep_<label>.json``):
seconds per question end to end and of the engine alone (baseline + knockout), the torch
threads, and the top entries of a torch profile of the engine.

``python benchmarks/cpu_sweep.py --label after`` (about a minute on 2 cores). To measure the code
of another commit with the same script, run it with ``--repo`` pointing at a checkout of that commit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from machine import host  # the script's folder is on sys.path

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--label", default="after")
ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent), help="flowutils checkout to time")
ap.add_argument("--questions", type=int, default=2, help="questions per task (5 tasks)")
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cpu"))
args = ap.parse_args()
sys.path.insert(0, args.repo)
from flowutils.book.parameters import SYNTHETIC_DEFAULT, benchmark_root  # noqa: E402
from flowutils.analysis.sweep import Sweep, run_sweep, sweep_plans  # noqa: E402
from flowutils.data import load_benchmark  # noqa: E402
from flowutils.engine import knockout_logits, run_baseline  # noqa: E402
from flowutils.knockout import FLOW_SETS, scaled_window_size  # noqa: E402
from flowutils.models import load  # noqa: E402


def main():
    fm = load("toy-videollm", dtype=torch.float32, device="cpu")
    root = benchmark_root({"benchmark_root": SYNTHETIC_DEFAULT, "manifest": "synthetic"})
    samples = load_benchmark(root, "synthetic", None, args.questions)
    flows = [f for fam in FLOW_SETS.values() for f in fam]
    k = scaled_window_size(fm.n_layers)
    prepared = [fm.prepare_sample(s, 8) for s in samples]

    def sweep():
        return run_sweep(fm, samples, Sweep(flows, k, sample_mode="all"), progress=False)

    def engine():
        for p in prepared:
            base = run_baseline(fm, p)
            knockout_logits(fm, p, sweep_plans(p.layout, flows, fm.n_layers, k), "fast", baseline=base)

    sweep()  # warm-up
    t_sweep, t_engine = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        table = sweep()
        t_sweep.append((time.perf_counter() - t) / len(samples))
        t = time.perf_counter()
        engine()
        t_engine.append((time.perf_counter() - t) / len(samples))
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        engine()
    top = [{"op": e.key, "self_cpu_ms_per_question": round(e.self_cpu_time_total / 1e3 / len(samples), 2),
            "calls_per_question": e.count / len(samples)}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]]
    result = {"label": args.label, "torch": torch.__version__, "threads": torch.get_num_threads(),
              **host(), "questions": len(samples),
              "plans_per_question": len(flows) * fm.n_layers, "k": k, "rows": len(table),
              "tokens": sorted({p.layout.n for p in prepared}),
              "sweep_s_per_question": round(min(t_sweep), 4), "engine_s_per_question": round(min(t_engine), 4),
              "sweep_s_per_question_all": [round(t, 4) for t in t_sweep],
              "engine_s_per_question_all": [round(t, 4) for t in t_engine], "profile_top": top}
    print(json.dumps(result, indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cpu_sweep_{args.label}.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
