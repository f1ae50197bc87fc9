#!/bin/sh
# golden.sh RABITC DIR NAME: compile DIR/NAME.ir and compare the diagnostics
# with DIR/NAME.err byte for byte; the exit status must be 1 (a user error).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabitc=$1 dir=$2 name=$3
cd "$dir" || exit 2
out=$("$rabitc" "$name.ir" 2>&1 >/dev/null); rc=$?
if [ "$rc" -ne 1 ]; then
  echo "FAIL: $name.ir: expected exit status 1, got $rc"; exit 1
fi
if [ "$out" != "$(cat "$name.err")" ]; then
  echo "FAIL: $name.ir: diagnostics differ from $name.err"
  printf '%s\n' "$out" | diff -u "$name.err" - ; exit 1
fi
echo "ok: $name.ir"
