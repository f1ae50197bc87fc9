#!/bin/sh
# test_missing.sh RABITC SAMPLES: a build without LLVM 16 (-DRABIT_LLVM=OFF):
# the host target says plainly that LLVM is missing and exits 1; the CUDA
# target is untouched.
rabitc=$1 samples=$2
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
echo "host_missing: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
