#!/bin/bash
# Issue 16's GPU measurements in one device call (nvidia-h200). Usage: OUT=<dir> bash benchmarks/gpu_round2.sh
# First call (BEFORE=<checkout of the engine before this round> set): that engine, fast only with its
# profile, then this round's. Every call: 7B x 8 frames against the full reference with a profile,
# the scaling table (7B x 32 / 16 frames, 13B x 8 frames; reference on a subset of plans) and the
# levers (pack threshold, batch tokens, torch.compile of the decoder layers).
set -u
cd "$(dirname "$0")/.."
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
step() { local t=$1; shift; log "$*"; timeout "$t" "$@" >>"$OUT/log.txt" 2>&1 || log "FAILED ($?): $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv >>"$OUT/log.txt" 2>&1
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)" >>"$OUT/log.txt" 2>&1
export TOKENIZERS_PARALLELISM=false
step 150 python3 benchmarks/knockout_sweep.py --profile --out "$OUT"
if [ -n "${BEFORE:-}" ]; then step 90 python3 "$BEFORE/benchmarks/knockout_sweep.py" --explore 256:8192 --out "$OUT"; fi
step 120 python3 benchmarks/knockout_sweep.py --frames 32 --reference-plans 16 --name scaling_7b_32f --out "$OUT"
step 90 python3 benchmarks/knockout_sweep.py --frames 16 --reference-plans 32 --name scaling_7b_16f --out "$OUT"
step 100 python3 benchmarks/knockout_sweep.py --shape 13b --reference-plans 32 --name scaling_13b_8f --out "$OUT"
if [ -n "${BEFORE:-}" ]; then
  step 90 python3 benchmarks/knockout_sweep.py --explore 256:8192:0,256:8192:1099511627776,256:16384,256:32768 --out "$OUT"
else
  step 200 python3 benchmarks/knockout_sweep.py --explore 256:8192,256:16384 --compile --out "$OUT"
fi
log done
grep -h "explore\|^fast\|^reference\|FAILED\|speedup\|fraction_of_measured\|peak_mem_fast_over" "$OUT/log.txt" | tail -40
