#!/bin/sh
# fuse_norm.sh RABITC SAMPLE: which decode buckets of SAMPLE fold the rmsnorm before their
# linear in ("rmsnorm+linear" kernels; runtime/compile.c says why): by default the bmma buckets
# alone (their planes pre-pass normalizes exactly), under RABIT_FUSE_NORM=1 the register design's
# too, under "0" none; any other value keeps the default, with a note. The linears are the same
# kernels in number every way, and a norm stays a kernel of its own for the other batches.
rabitc=$1 sample=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
list() { "$rabitc" --list-kernels "$sample" 2> "$tmp/err" | sed -n '/^kernel /,$p'; }
fused() { list | grep -c '^rmsnorm+'; }
lin=$(list | grep -c 'linear')
dflt=$(fused)
[ "$dflt" -gt 0 ] || { echo "FAIL: $sample has no fused bmma kernel by default"; exit 1; }
[ "$(list | grep '^rmsnorm+linear' | grep -vc ' bmma ')" -eq 0 ] || { echo "FAIL: a default fused kernel is not bmma"; exit 1; }
[ "$(list | grep -c '^rmsnorm+planes .* eps=')" -gt 0 ] || { echo "FAIL: no normalizing planes kernel"; exit 1; }
all=$(RABIT_FUSE_NORM=1 fused)
[ "$all" -gt "$dflt" ] || { echo "FAIL: RABIT_FUSE_NORM=1 fuses no more than the default ($all, $dflt)"; exit 1; }
[ "$(RABIT_FUSE_NORM=0 fused)" -eq 0 ] || { echo "FAIL: RABIT_FUSE_NORM=0 fused a norm"; exit 1; }
for v in 0 1; do
  [ "$(RABIT_FUSE_NORM=$v list | grep -c 'linear')" -eq "$lin" ] || { echo "FAIL: RABIT_FUSE_NORM='$v' changed the linears"; exit 1; }
  [ "$(RABIT_FUSE_NORM=$v list | grep -c '^rmsnorm D=')" -gt 0 ] || { echo "FAIL: RABIT_FUSE_NORM='$v' lists no rmsnorm"; exit 1; }
done
RABIT_FUSE_NORM=2 "$rabitc" "$sample" -o "$tmp/p.rplan" > /dev/null 2> "$tmp/err"
grep -q "RABIT_FUSE_NORM='2' is neither" "$tmp/err" || { echo "FAIL: no note for RABIT_FUSE_NORM=2"; cat "$tmp/err"; exit 1; }
[ "$(RABIT_FUSE_NORM=2 fused)" -eq "$dflt" ] || { echo "FAIL: RABIT_FUSE_NORM=2 is not the default"; exit 1; }
echo "ok: $(basename "$sample") fuses $dflt bmma kernels by default, $all with RABIT_FUSE_NORM=1, none with 0"
