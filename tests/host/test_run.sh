#!/bin/sh
# test_run.sh RABIT SAMPLES: rabit run, ppl and bench on the host target from
# the command line: --target host runs tiny.ir with random weights (prefill,
# decode, the fp16 side of bench); with no --target a machine without a GPU
# says so and runs on the host; --target cuda there is refused plainly.
# (host_model checks the numbers against the reference; this checks the driver.)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
rabit=$1 samples=$2
pass=0 fail=0
. "$(dirname "$0")/../common/cli.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rabit-host-run-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
tiny=$samples/tiny.ir
expect run-host 0 "generated 6 tokens" "$rabit" run "$tiny" --target host --threads 2 --random-weights --tokens 1,2,3 -n 6
check run-host-where "$(lines 'MB on the host')" -eq 1
check run-host-no-notice "$(lines 'no GPU')" -eq 0
expect run-host-fp16 0 "fp16, .* on the host" "$rabit" run "$tiny" --target host --random-weights --fp16 --tokens 5,6 -n 3
expect bench-host 0 "decode ctx 16" "$rabit" bench "$tiny" --target host --random-weights --ctx 16 --prefill 16 --steps 3
check bench-host-sides "$(lines '^prefill tokens .*/s .*/s')" -eq 1
expect target-bad 1 "rabit run: --target needs cuda or host, got 'tpu'" "$rabit" run "$tiny" --target tpu --random-weights --tokens 1
# With no --target: the GPU where there is one, else the host, said once on stderr.
if "$rabit" run "$tiny" --target cuda --random-weights --tokens 1 -n 1 > /dev/null 2>&1; then
  echo "host_run: a GPU is present: the no-GPU checks are skipped"
else
  expect auto-host 0 "generated 4 tokens" "$rabit" run "$tiny" --random-weights --tokens 1,2,3 -n 4
  check auto-notice "$(lines '^rabit run: no GPU (.*); running on the host target (LLVM, [0-9]* threads\?)$')" -eq 1
  expect auto-bench 0 "decode ctx 8" "$rabit" bench "$tiny" --random-weights --ctx 8 --prefill 8 --steps 2
  check auto-bench-once "$(lines 'running on the host target')" -eq 1
  expect cuda-refused 1 "rabit run: running kernels needs an NVIDIA GPU and driver" \
    "$rabit" run "$tiny" --target cuda --random-weights --tokens 1
fi
echo "host_run: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
