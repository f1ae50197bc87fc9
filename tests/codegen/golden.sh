#!/bin/sh
# golden.sh WHAT RABITC SAMPLE GOLDEN: compare rabitc's output with a golden file.
#   kernels  rabitc --list-kernels SAMPLE      (the kernel list fusion and selection give)
#   fused    rabitc --dump-ir=after-fusion SAMPLE
#   cuda     rabitc --emit=cuda: every kernel's source, concatenated in file-name
#            order, without the key line (it names the NVRTC build)
# With UPDATE=1 it rewrites GOLDEN instead (then review the diff before committing).
what=$1 rabitc=$2 sample=$3 golden=$4
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
name=$(basename "$sample")
cd "$(dirname "$sample")" || exit 2
case $what in
  kernels) "$rabitc" --list-kernels "$name" | sed -n '/^kernel /,$p' > "$tmp/out" ;;
  fused) "$rabitc" --dump-ir=after-fusion "$name" > "$tmp/out" ;;
  cuda)
    "$rabitc" --arch sm_90 --emit=cuda -o "$tmp/cu" "$name" > /dev/null || exit 1
    for f in $(ls "$tmp/cu" | sort); do echo "//// $f"; grep -v ' \* key: ' "$tmp/cu/$f"; done > "$tmp/out" ;;
  *) echo "golden.sh: unknown kind '$what'"; exit 2 ;;
esac
if [ -n "$UPDATE" ]; then cp "$tmp/out" "$golden"; echo "updated $golden"; exit 0; fi
if ! diff -u "$golden" "$tmp/out" > "$tmp/diff"; then
  echo "FAIL: rabitc's $what output for $name differs from $golden:"; head -40 "$tmp/diff"; exit 1
fi
echo "ok: $what of $name matches $golden"
