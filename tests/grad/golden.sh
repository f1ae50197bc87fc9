#!/bin/sh
# golden.sh RABITC SAMPLE GOLDEN [OPTION...]: compare the training graph
# (rabitc --train --dump-ir=after-grad OPTION... SAMPLE) with GOLDEN, and
# check that the dump parses back and prints the same text.
# With UPDATE=1 it rewrites GOLDEN instead (then review the diff before committing).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabitc=$1 sample=$2 golden=$3; shift 3
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
name=$(basename "$sample")
cd "$(dirname "$sample")" || exit 2
"$rabitc" --train --dump-ir=after-grad "$@" "$name" > "$tmp/out" || { echo "FAIL: rabitc failed on $name"; exit 1; }
if [ -n "$UPDATE" ]; then cp "$tmp/out" "$golden"; echo "updated $golden"; exit 0; fi
if ! diff -u "$golden" "$tmp/out" > "$tmp/diff"; then
  echo "FAIL: the training graph of $name $* differs from $golden:"; head -40 "$tmp/diff"; exit 1
fi
"$rabitc" --dump-ir=after-verify "$tmp/out" > "$tmp/again" || { echo "FAIL: the dump does not parse back"; exit 1; }
if ! diff -u "$tmp/out" "$tmp/again" > "$tmp/diff"; then
  echo "FAIL: the reparsed training graph prints differently:"; head -40 "$tmp/diff"; exit 1
fi
echo "ok: the training graph of $name $* matches $golden and parses back"
