#!/bin/sh
# grid_enter.sh RABITC SAMPLE...: every kernel rabitc emits for the samples begins
# with rb_grid_enter(), the wait that makes an overlapped launch (programmatic
# dependent launch, runtime/program.c) safe: a kernel that touched memory before it
# could read its predecessor's output before that was written. A kernel may instead
# open with a comment beginning "weights first:": it loads only weights (no kernel's
# output) before it calls rb_grid_enter() further on, and writes nothing before that.
# The bmma planes pre-pass (weights first) calls rb_grid_release_enter() instead: the same
# wait, after it lets its dependent start launching; safe, as that one waits for it to complete.
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
    case $first in
      "  rb_grid_enter();") ;;
      "  /* weights first:"*)
        grep -q '^ *rb_grid_\(release_\)\{0,1\}enter();' "$f" ||
          { echo "FAIL: $(basename "$f") ($sample) is marked weights first but never calls rb_grid_enter()"; fail=1; } ;;
      *) echo "FAIL: $(basename "$f") ($sample) begins with '$first', not rb_grid_enter()"; fail=1 ;;
    esac
  done
done
[ "$n" -gt 0 ] || { echo "FAIL: no kernels emitted"; exit 1; }
[ $fail = 0 ] && echo "$n kernels, each begins with rb_grid_enter() or loads only weights before it (or its releasing form)"
exit $fail
