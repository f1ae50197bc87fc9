#!/bin/sh
# strategy_archs.sh RABITC SAMPLE: every strategy's kernels compile through NVRTC for
# each arch they are written for (codegen/cuda/archs.c: sm_80 on; no strategy is
# sm_90a-only yet), and an arch below that is refused by name, before NVRTC, exit 1.
# The default schedules give bmma (and its planes pre-pass), xor and mma; RABIT_PREFILL=dequant adds dequant, and
# RABIT_DECODE=lop3 (in the same pass) the lop3 decode; a third pass takes RABIT_DECODE=xsmem.
rabitc=$1 sample=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
fail=0
for arch in sm_80 sm_86 sm_89 sm_90 sm_90a; do
  for pass in mma:xor dequant:lop3 mma:xsmem; do
    prefill=${pass%:*} decode=${pass#*:}
    if ! RABIT_PREFILL=$prefill RABIT_DECODE=$decode "$rabitc" --arch $arch -o "$tmp/p.rplan" "$sample" > "$tmp/out" 2>&1; then
      echo "FAIL: $arch (RABIT_PREFILL=$prefill RABIT_DECODE=$decode):"; tail -n 20 "$tmp/out"; fail=1
    elif ! grep -q " 0 failed" "$tmp/out"; then
      echo "FAIL: $arch (RABIT_PREFILL=$prefill RABIT_DECODE=$decode): no '0 failed' in rabitc's summary"; fail=1
    fi
    cp "$tmp/out" "$tmp/out.$decode"
  done
  grep -q "dequant" "$tmp/out.lop3" || { echo "FAIL: $arch: no dequant kernel under RABIT_PREFILL=dequant"; fail=1; }
  grep -q "^linear.* lop3 " "$tmp/out.lop3" || { echo "FAIL: $arch: no lop3 kernel under RABIT_DECODE=lop3"; fail=1; }
  grep -q "^linear.* xsmem " "$tmp/out.xsmem" || { echo "FAIL: $arch: no xsmem kernel under RABIT_DECODE=xsmem"; fail=1; }
  grep -q "^linear.* bmma " "$tmp/out.xor" || { echo "FAIL: $arch: no bmma kernel in the default buckets"; fail=1; }
  grep -q "^planes " "$tmp/out.xor" || { echo "FAIL: $arch: no planes kernel beside the bmma buckets"; fail=1; }
done
RABIT_PREFILL=dequant "$rabitc" --arch sm_75 -o "$tmp/p.rplan" "$sample" > "$tmp/out" 2>&1; rc=$?
if [ $rc != 1 ] || ! grep -q "its source needs sm_80 or later, not sm_75" "$tmp/out" || grep -q "nvrtc" "$tmp/out"; then
  echo "FAIL: sm_75: rc=$rc (want 1, refused by name before NVRTC):"; tail -n 5 "$tmp/out"; fail=1
fi
[ $fail = 0 ] && echo "bmma, planes, xor, mma, lop3, xsmem and dequant kernels of $(basename "$sample") compile for sm_80, 86, 89, 90 and 90a; sm_75 refused"
exit $fail
