#!/bin/bash
# Issue 26's whole-benchmark sweep (part 2) on one GPU, over back-to-back device calls (one call may run 10 minutes,
# the sweep about 20). Usage: OUT=<dir> bash benchmarks/gpu_issue26.sh STEP
#   install  (carry .whl: decord's wheel at least, made here as the device README says) the wheels into /tmp/site;
#            then the GPU-only tests of the engine and the runner (pytest is on the device)
#   start    (carry BENCH, default .gpu/synthetic-test-seed0-n283-336px: 1,415 questions, 283 under each of
#            TVBench's five task names at 336 px, rendered here with
#            .venv/bin/python -m flowutils data --root .gpu --n-per-task 283 --size 336)
#            copies this checkout and the benchmark to /tmp/issue26 (later calls sync the checkout again; the
#            sweep must not import a file changed under it), writes the random-weight checkpoint (untimed), starts
#            benchmarks/throughput.py --compile in the background and waits up to WAIT seconds (default 540);
#            PROCESSES=N: sweep --processes N (N processes on the one GPU), N_PER_TASK: questions of each
#            task (default 283), LEASE: the JSON's lease field (the card, the commit; the checkout here has no .git)
#   wait     waits up to WAIT seconds for it; once it has ended, copies its JSON and logs to $OUT
# Every step prints the tail of the logs. Start each call as soon as the previous one returns: an idle machine is
# given back after 30 s. A dry run of start/wait on the CPU, with the rehearsal's tiny widths (its sitecustomize
# switches the manifest's shape check off): PYTHON=.venv/bin/python DEVICE=cpu N_PER_TASK=1
# PYTHONPATH_EXTRA=<folder of benchmarks/rehearsal.py's smoke_site> BENCH=<a small benchmark> OUT=<dir> bash ... start
set -u
cd "$(dirname "$0")/.."
W=/tmp/issue26
# the compilers' caches live in $W and start empty at each start: a run after another on one machine found them warm
# (a first question of 11 s instead of 31 s), so the two runs' starts did not compare
export PYTHONPATH=${PYTHONPATH_EXTRA:+$PYTHONPATH_EXTRA:}/tmp/site:$W/repo PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1 TQDM_DISABLE=1 \
  HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false TORCHINDUCTOR_CACHE_DIR=$W/inductor TRITON_CACHE_DIR=$W/triton
TASKS="action_antonym action_sequence scene_transition moving_direction object_count"

wait_for_sweep() {
  local waited=0
  while [ -f $W/pid ] && kill -0 "$(cat $W/pid)" 2>/dev/null && [ $waited -lt "${WAIT:-540}" ]; do
    sleep 10; waited=$((waited + 10))
  done
  tail -n 5 $W/throughput.log; tail -n 2 $W/work/log.txt 2>/dev/null
  if [ -f $W/pid ] && ! kill -0 "$(cat $W/pid)" 2>/dev/null; then
    echo "== ended $(date +%T)"
    cp $W/out/*.json $W/throughput.log "$OUT"/ 2>/dev/null
    cp $W/work/log.txt "$OUT"/sweep_log.txt 2>/dev/null
  else
    echo "== still running $(date +%T): call again with the step wait"
  fi
}

case ${1:?step: install, start or wait} in
  install)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      >"$OUT/pip.log" 2>&1 || { tail "$OUT/pip.log"; exit 3; }
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    PYTHONPATH=/tmp/site:$PWD python3 -m pytest -q -p no:cacheprovider tests/test_engine.py \
      -k "cuda or gpu or queue or pipelined or preparing or host" 2>&1 | tail -n 15 ;;
  start)
    rm -rf $W/repo $W/out $W/work $W/bench $W/pid $W/inductor $W/triton && mkdir -p $W/repo $W/out  # the checkpoint is kept: a second start reuses it
    tar --exclude=./.gpu --exclude=./.whl --exclude=./.git -cf - . | tar -xf - -C $W/repo
    cp -r "${BENCH:-.gpu/synthetic-test-seed0-n283-336px}" $W/bench
    # its own session (setsid), so that it outlives this call; the shell writes its pid, then becomes the benchmark
    (cd $W/repo && setsid nohup sh -c "echo \$\$ >$W/pid; exec ${PYTHON:-python3} benchmarks/throughput.py --device ${DEVICE:-cuda} \
       --checkpoint $W/models/llava-next-7b-video-ft --benchmark $W/bench --tasks $TASKS \
       --n-per-task ${N_PER_TASK:-283} --compile --processes ${PROCESSES:-1} --workdir $W/work \
       --json $W/out/throughput_${N_PER_TASK:-283}x5_compiled_${PROCESSES:-1}proc.json --lease '${LEASE:-}'" >$W/throughput.log 2>&1 </dev/null &)
    sleep 5
    wait_for_sweep ;;
  wait) wait_for_sweep ;;
esac
