#!/bin/sh
# grid_enter.sh RABITC SAMPLE...: every kernel rabitc emits for the samples begins
# with rb_grid_enter(), the wait that makes an overlapped launch (programmatic
# dependent launch, runtime/program.c) safe: a kernel that touched memory before it
# could read its predecessor's output before that was written. The one statement
# allowed before it is prefetch_bits(bits): L2 prefetches of the weights, no loads
# (its body is checked to hold no other memory access).
rabitc=$1; shift
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
fail=0 n=0
for sample in "$@"; do
  rm -rf "$tmp/cu"
  "$rabitc" --arch sm_90 --emit=cuda -o "$tmp/cu" "$sample" > /dev/null || { echo "FAIL: rabitc $sample"; exit 1; }
  for f in "$tmp"/cu/*.cu; do
    n=$((n + 1))
    # the first statement after the line that opens the __global__ function's body
    first=$(awk '/__global__/ { g = 1 } g && /\) \{$/ { getline; print; exit }' "$f")
    if [ "$first" = "  prefetch_bits(bits);" ]; then
      first=$(awk '/__global__/ { g = 1 } g && /\) \{$/ { getline; getline; print; exit }' "$f")
      # prefetch_bits's body: no ld/st/atom, and its asm is prefetch.global.L2 alone
      body=$(awk '/void prefetch_bits\(/ { p = 1 } p { print } p && /^}/ { exit }' "$f")
      if echo "$body" | grep -qE 'ld\.|st\.|atom|\[[a-z]' ||
         [ "$(echo "$body" | grep -c 'asm')" != "$(echo "$body" | grep -c 'asm volatile("prefetch.global.L2')" ]; then
        echo "FAIL: $(basename "$f") ($sample): prefetch_bits does more than prefetch into L2"; fail=1
      fi
    fi
    case $first in
      "  rb_grid_enter();") ;;
      *) echo "FAIL: $(basename "$f") ($sample) begins with '$first', not rb_grid_enter()"; fail=1 ;;
    esac
  done
done
[ "$n" -gt 0 ] || { echo "FAIL: no kernels emitted"; exit 1; }
[ $fail = 0 ] && echo "$n kernels, each begins with rb_grid_enter()"
exit $fail
