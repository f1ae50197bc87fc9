#!/bin/sh
# test_cli.sh RABITC SAMPLES: the driver's options, exit codes, input from
# stdin, and the parameter totals of the sample models against their known sizes.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabitc=$1 samples=$2
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"   # never touch the user's cache

# expect NAME WANT_RC PATTERN CMD...: run CMD, check its exit status and that
# its combined output matches the grep pattern.
expect() {
  name=$1 want=$2 pat=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pat"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want $want), output:"; printf '%s\n' "$out" | head -5
  fi
}

expect help 0 "usage: rabitc" "$rabitc" --help
expect version 0 "^rabitc [0-9]" "$rabitc" --version
expect no-args 1 "usage: rabitc" "$rabitc"
expect bad-option 1 "unknown option '--frobnicate'" "$rabitc" --frobnicate x.ir
expect missing-file 1 "cannot read 'nope.ir': No such file or directory" "$rabitc" nope.ir
expect paths-range 1 "needs an integer 1..4, got '5'" "$rabitc" --paths 5 "$samples/tiny.ir"
expect paths-junk 1 "needs an integer 1..4, got '2x'" "$rabitc" --paths=2x "$samples/tiny.ir"
expect dump-stage 1 "--dump-ir needs after-parse, after-verify, after-fusion or after-grad, got 'after-lunch'" "$rabitc" --dump-ir=after-lunch "$samples/tiny.ir"
printf 'rabit 1\n\000junk' > "$tmp/nul.ir"
expect nul-byte 1 "not a text file (it contains a NUL byte at offset 8)" "$rabitc" "$tmp/nul.ir"
expect stdin 0 "total: 102720 parameters" sh -c "\"$rabitc\" --no-compile - < \"$samples/tiny.ir\""
expect smollm2 0 "total: 134515008 parameters" "$rabitc" --no-compile "$samples/smollm2-135m.ir"
expect llama2 0 "total: 6738415616 parameters" "$rabitc" --no-compile "$samples/llama2-7b.ir"
expect single-linear 0 "linear *4096 x 4096 *2 *1 *16777216" "$rabitc" --no-compile "$samples/linear-4096x4096-k2.ir"
# SmolLM2's q/k/v share one input: after fusion they are one 3-segment linear.
expect fused-qkv 0 "linear *576+192+192 x 576 *2 *30" "$rabitc" --no-compile "$samples/smollm2-135m.ir"
# --paths overrides the file default but not an op's own quant (tiny's v_proj has 3).
expect paths-override 0 "linear *64+32 x 64 *4 *2" "$rabitc" --no-compile --paths 4 "$samples/tiny.ir"
expect paths-explicit 0 "linear *32 x 64 *3 *2" "$rabitc" --no-compile --paths 4 "$samples/tiny.ir"
expect dump-parse 0 "t2 = linear(t1, 64, quant = rabit(paths = 2))" "$rabitc" --dump-ir=after-parse "$samples/tiny.ir"
expect dump-fusion 0 "linear_swiglu" "$rabitc" --dump-ir=after-fusion "$samples/tiny.ir"
# Several files: the worst exit status wins, and good files still print.
printf 'rabit 1\ngraph f(x: f16[T, 4]) -> f16[T, 4] {\n  return y\n}\n' > "$tmp/bad.ir"
expect multi-file 1 "total: 102720 parameters" "$rabitc" --no-compile "$samples/tiny.ir" "$tmp/bad.ir"
# The dumped IR is itself a valid program with the same totals.
"$rabitc" --dump-ir=after-fusion "$samples/smollm2-135m.ir" > "$tmp/fused.ir"
expect dump-reparses 0 "total: 134515008 parameters" "$rabitc" --no-compile "$tmp/fused.ir"

# Compiling: every kernel misses a cold cache, then hits it; the plan and the
# CUDA sources are written where -o says.
expect compile-cold 0 "kernels for sm_80: 36 compiled, 0 from the cache" "$rabitc" --arch sm_80 "$samples/tiny.ir"
expect compile-warm 0 "kernels for sm_80: 0 compiled, 36 from the cache" "$rabitc" --arch sm_80 "$samples/tiny.ir"
# The summary says where the cache is.
expect cache-dir-shown 0 "36 from the cache, 0 failed, [0-9.]* s wall; schedules 0 tuned, 0 shipped, 36 default; cache $tmp/cache\$" "$rabitc" --arch sm_80 "$samples/tiny.ir"
expect cache-stats 0 "entries: 36" "$rabitc" cache stats
expect emit-cuda 0 "wrote 36 kernels to $tmp/cu/" "$rabitc" --arch sm_80 --emit=cuda -o "$tmp/cu" "$samples/tiny.ir"
expect cu-header 0 "serves: .*tiny.ir:" sh -c "cat \"$tmp\"/cu/*.cu"
expect plan 0 "wrote plan $tmp/tiny.rplan" "$rabitc" --arch sm_80 -o "$tmp/tiny.rplan" "$samples/tiny.ir"
expect plan-header 0 "^arch sm_80" cat "$tmp/tiny.rplan"
expect emit-needs-o 1 "--emit=cuda needs -o DIR" "$rabitc" --emit=cuda "$samples/tiny.ir"
expect bad-arch 1 "--arch needs a target such as sm_90" "$rabitc" --arch 90 "$samples/tiny.ir"
expect cache-clear 0 "removed 36 entries" "$rabitc" cache clear
expect cache-empty 0 "entries: 0" "$rabitc" cache stats
expect cache-usage 1 "usage: rabitc cache stats|clear" "$rabitc" cache frob
# Every kernel of tiny.ir (all kinds but the stand-alone swiglu and add, which
# tests/codegen covers) also compiles for sm_89 (sm_80 and sm_90 above).
expect compile-sm89 0 "kernels for sm_89: 36 compiled" "$rabitc" --arch sm_89 "$samples/tiny.ir"
# A kernel that cannot be built names the IR line it serves, and fails the run.
printf 'rabit 1\ngraph f(x: f16[T, 2000000]) -> f16[T, 16] {\n  y = linear(x, 16) @weights("w")\n  return y\n}\n' > "$tmp/huge.ir"
expect kernel-error 1 "huge.ir:3: error: kernel .linear xor N=16 K=2000000 k=2 b<=8 tile=0,0,0,0. cannot be built" "$rabitc" --arch sm_90 "$tmp/huge.ir"
# NVRTC's own failure: the log, the dumped .cu to read, the IR line it serves.
expect nvrtc-error 1 "tiny.ir:16,22,28: error: kernel 'rmsnorm D=64 eps=1e-05' cannot be built; its source is in $tmp/rabit-kernels-[A-Za-z0-9]\{6\}/rb_rmsnorm" \
  env RABIT_NVRTC_OPTIONS=--no-such-option TMPDIR="$tmp" "$rabitc" --arch sm_90 "$samples/tiny.ir"
expect nvrtc-log 1 "unrecognized option\|no-such-option" \
  env RABIT_NVRTC_OPTIONS=--no-such-option TMPDIR="$tmp" "$rabitc" --arch sm_90 "$samples/tiny.ir"
# An unwritable cache directory falls back to memory, with a warning, and still compiles.
touch "$tmp/file"
expect cache-fallback 0 "not writable" env RABIT_CACHE_DIR="$tmp/file/cache" "$rabitc" --arch sm_80 "$samples/linear-4096x4096-k2.ir"
expect cache-fallback-shown 0 "s wall; schedules [0-9]* tuned, [0-9]* shipped, [0-9]* default; cache in memory only" env RABIT_CACHE_DIR="$tmp/file/cache" "$rabitc" --arch sm_80 "$samples/linear-4096x4096-k2.ir"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
