#!/bin/sh
# run_device.sh MODE: what we run on the lent GPU machine, in one call per mode.
#   tests  GPU tests (every kernel kind against the CPU reference), then
#          compute-sanitizer memcheck over the kernel tests
#   bench  per-shape kernel timings, the 32-layer chain, compile and load
#          times, and the peers (cuBLAS fp16, torch int4, read floor) in the same call
#   model  the executor against the reference decoder, then whole-model decode
#          and prefill speed (rabit bench, random weights) beside the PyTorch
#          fp16 decode peer
# Expects a Release build in build-dev (carried) and the peer scripts in
# .carry/peers. Logs go to $OUT; a short table is printed last.
set -u
mode=${1:-tests}
B=${BUILD:-build-dev}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export RABIT_CACHE_DIR=/tmp/rabit-cache PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # libcjson
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
summary="$OUT/summary-$mode.txt"
: > "$summary"

run() { # run NAME CMD...: log to $OUT/NAME.log, record the exit status and tail
  name=$1; shift
  start=$(date +%s.%N)
  "$@" > "$OUT/$name.log" 2>&1; rc=$?
  secs=$(awk "BEGIN{print $(date +%s.%N) - $start}")
  printf '%-28s rc=%-3s %6.1fs  %s\n' "$name" "$rc" "$secs" "$(grep -E 'passed|ERROR SUMMARY|chain batch|kernels for' "$OUT/$name.log" | tail -1)" >> "$summary"
}

if [ "$mode" = tests ]; then
  run smoke "$B/tests/runtime/runtime_test_gpu_smoke"
  run test_linear "$B/tests/gpu/gpu_test_linear" samples
  run test_ops "$B/tests/gpu/gpu_test_ops" samples
  run test_plan_api "$B/tests/gpu/gpu_test_plan_api" samples
  for t in test_ops test_plan_api test_linear; do
    run "memcheck_$t" timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/tests/gpu/gpu_$t" samples
  done
elif [ "$mode" = model ]; then
  run test_ops "$B/tests/gpu/gpu_test_ops" samples
  run test_model "$B/tests/gpu/gpu_test_model" samples
  run bench_llama "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run bench_smollm2 "$B/tools/rabit" bench samples/smollm2-135m.ir --random-weights
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  grep -E "FAIL" "$OUT/test_model.log" | head
  cat "$OUT/bench_llama.log" "$OUT/bench_smollm2.log" "$OUT/peer_fp16_decode.log"
else
  rm -rf "$RABIT_CACHE_DIR"
  run rabitc_cold "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run rabitc_warm "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run bench_chain "$B/tests/bench/bench_chain" /tmp/llama.rplan
  run bench_linear "$B/tests/gpu/gpu_test_linear" --bench-only
  run peer_graph_bench python3 .carry/peers/graph_bench.py
  run peer_baseline python3 .carry/peers/baseline_device.py
  grep -E "session open|chain batch" "$OUT/bench_chain.log"
  grep -E "^(bench|  )" "$OUT/bench_linear.log" | head -60
  cat "$OUT/peer_graph_bench.log" | tail -6
  grep -iE "chain|copy" "$OUT/peer_baseline.log"
fi
echo "== $mode summary"
cat "$summary"
