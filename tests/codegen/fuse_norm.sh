#!/bin/sh
# fuse_norm.sh RABITC SAMPLE: the decode buckets of SAMPLE can fold rmsnorms into their linears
# ("rmsnorm+linear" kernels), and do so only under RABIT_FUSE_NORM=1 (runtime/compile.c says
# why): by default, and with "0", every norm stays a kernel of its own and the linears are the
# same; any other value keeps them apart with a note.
rabitc=$1 sample=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
list() { "$rabitc" --list-kernels "$sample" 2> "$tmp/err" | sed -n '/^kernel /,$p'; }
fused=$(RABIT_FUSE_NORM=1 list | grep -c '^rmsnorm+')
[ "$fused" -gt 0 ] || { echo "FAIL: RABIT_FUSE_NORM=1 gives $sample no fused rmsnorm+linear kernel"; exit 1; }
lin1=$(RABIT_FUSE_NORM=1 list | grep -c 'linear')
for v in "" 0; do
  [ "$(RABIT_FUSE_NORM=$v list | grep -c '^rmsnorm+')" -eq 0 ] || { echo "FAIL: RABIT_FUSE_NORM='$v' fused a norm"; exit 1; }
  [ "$(RABIT_FUSE_NORM=$v list | grep -c 'linear')" -eq "$lin1" ] || { echo "FAIL: RABIT_FUSE_NORM='$v' changed the linears"; exit 1; }
  [ "$(RABIT_FUSE_NORM=$v list | grep -c '^rmsnorm D=')" -gt 0 ] || { echo "FAIL: RABIT_FUSE_NORM='$v' lists no rmsnorm"; exit 1; }
done
RABIT_FUSE_NORM=2 "$rabitc" "$sample" -o "$tmp/p.rplan" > /dev/null 2> "$tmp/err"
grep -q "RABIT_FUSE_NORM='2' is neither" "$tmp/err" || { echo "FAIL: no note for RABIT_FUSE_NORM=2"; cat "$tmp/err"; exit 1; }
[ "$(RABIT_FUSE_NORM=2 list | grep -c '^rmsnorm+')" -eq 0 ] || { echo "FAIL: RABIT_FUSE_NORM=2 fused a norm"; exit 1; }
echo "ok: $fused fused kernels in $(basename "$sample") with RABIT_FUSE_NORM=1, none without"
