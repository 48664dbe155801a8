#!/bin/bash
# Issue 16's GPU runs on one GPU in one device call. Usage: OUT=<dir> bash benchmarks/gpu_round3.sh [steps]
# steps (default "main levers"):
#   main       7B x 8 frames against the full reference, with the profile and the timeline;
#   levers     FlexAttention block masks, larger batches, compiled decoder layers, each timed with its profile;
#   compiled   main, with fast timed eager and then with compiled decoder layers (flowutils.engine.compile_layers) on the same question;
#   scaling    7B x 16/32 frames and 13B x 8 frames (EXTRA="--compile" compiles their layers);
#   throughput 64 questions end to end, eager and compiled. The device has neither PyAV nor decord: carry a
#              rendered benchmark and a decord build in .gpu/shard/pay (git-excluded), made here with
#              .venv/bin/python -m flowutils data --root .gpu/shard/pay --n-per-task 200   (prints its folder: BENCH)
#              tar cJf .gpu/shard/pay/decord.tar.xz -C .venv/lib/python3.11/site-packages decord decord.libs
set -u
cd "$(dirname "$0")/.."
log() { echo "== $(date +%T) $*" | tee -a "$OUT/log.txt"; }
step() { local t=$1; shift; log "$*"; timeout "$t" "$@" >>"$OUT/log.txt" 2>&1 || log "FAILED ($?): $*"; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv >>"$OUT/log.txt" 2>&1
python3 -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__)" >>"$OUT/log.txt" 2>&1
export TOKENIZERS_PARALLELISM=false
for s in ${1:-main levers}; do
  case $s in
    main) step 200 python3 benchmarks/knockout_sweep.py --profile --out "$OUT" ;;
    levers) step 150 python3 benchmarks/knockout_sweep.py --explore 256:8192,256:16384 --out "$OUT"
            step 240 python3 benchmarks/knockout_sweep.py --explore 256:8192,256:16384 --compile --out "$OUT" ;;
    compiled) step 400 python3 benchmarks/knockout_sweep.py --profile --compile --name compiled_layers --out "$OUT" ;;
    scaling) step 240 python3 benchmarks/knockout_sweep.py --frames 32 --reference-plans 16 --name scaling_7b_32f ${EXTRA:-} --out "$OUT"
             step 180 python3 benchmarks/knockout_sweep.py --frames 16 --reference-plans 32 --name scaling_7b_16f ${EXTRA:-} --out "$OUT"
             step 180 python3 benchmarks/knockout_sweep.py --shape 13b --reference-plans 32 --name scaling_13b_8f ${EXTRA:-} --out "$OUT" ;;
    throughput) mkdir -p /tmp/dd && tar xJf .gpu/shard/pay/decord.tar.xz -C /tmp/dd
                for c in "" --compile; do
                  step 400 env PYTHONPATH="/tmp/dd:$PWD" python3 benchmarks/throughput.py --benchmark "${BENCH:-.gpu/shard/pay/bench-200}" \
                    --workdir /tmp/tp $c --json "$OUT/throughput${c:+_compiled}.json"
                done ;;
  esac
done
log done
grep -h "explore\|^fast\|^reference\|FAILED\|Error\|speedup\|fraction_of_measured\|peak_mem_fast_over\|wall_ms\|gpu_busy_ms\|range\|gemm\|attention\|fused\|copy\|other" "$OUT/log.txt" | tail -80
