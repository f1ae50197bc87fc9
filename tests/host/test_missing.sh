#!/bin/sh
# test_missing.sh RABITC RABIT SAMPLES: a build without LLVM 16 (-DRABIT_LLVM=OFF):
# the host target says plainly that LLVM is missing and exits 1; the CUDA
# target is untouched; rabit run on a machine with neither a GPU nor the host
# target says that neither is available and exits 1.
rabitc=$1 rabit=$2 samples=$3
pass=0 fail=0
. "$(dirname "$0")/../common/cli.sh"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rabit-host-missing-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
expect host-missing 1 "rabitc: the host target needs LLVM 16, which this build lacks" "$rabitc" --target host "$samples/tiny.ir"
check one-line "$(lines 'needs LLVM 16')" -eq 1
expect llvm-missing 1 "needs LLVM 16" "$rabitc" --target host --emit=llvm -o "$tmp/ll" "$samples/tiny.ir"
check nothing-written ! -e "$tmp/ll"
expect cuda-still 0 "kernels" "$rabitc" --list-kernels "$samples/tiny.ir"
expect run-host-missing 1 "rabit run: the host target needs LLVM 16, which this build lacks" \
  "$rabit" run "$samples/tiny.ir" --target host --random-weights --tokens 1,2
if ! "$rabit" run "$samples/tiny.ir" --target cuda --random-weights --tokens 1 -n 1 > /dev/null 2>&1; then
  expect run-neither 1 "rabit run: neither target is available: no GPU (.*), and no host target (the host target needs LLVM 16" \
    "$rabit" run "$samples/tiny.ir" --random-weights --tokens 1,2
fi
echo "host_missing: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
