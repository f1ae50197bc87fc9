#!/bin/sh
# test_cli_args.sh RABIT RABITC SAMPLES: malformed option values for every
# command (tools/args.c): exit status 1 and one line naming the command, the
# option and the value, before any file is read or a GPU looked for.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabit=$1 rabitc=$2 samples=$3
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
ir=$samples/tiny.ir

# bad LINE CMD...: exit status 1, and the whole output is the one line LINE.
bad() {
  want=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 1 ] && [ "$out" = "$want" ]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $*: rc=$rc (want 1)"; echo "  want: $want"; printf '%s\n' "$out" | head -3 | sed 's/^/  got:  /'; fi
}
# parsed NAME CMD...: the arguments are accepted: the command goes on to the
# GPU (or, on a GPU machine, runs), and no line names an option.
parsed() {
  name=$1; shift
  out=$("$@" 2>&1); rc=$?
  if printf '%s\n' "$out" | grep -q ": -[-a-z]* needs \|unknown option\|takes no value\|got '.*' too\|^usage\|Sanitizer"; then
    fail=$((fail + 1)); echo "FAIL $name: rc=$rc"; printf '%s\n' "$out" | head -3
  elif [ "$rc" -eq 0 ] || printf '%s\n' "$out" | grep -q "needs an NVIDIA GPU and driver"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc"; printf '%s\n' "$out" | head -3; fi
}

# rabit run: every numeric kind, both forms, and a missing value.
bad "rabit run: -n needs an integer 0..1000000, got 'abc'" "$rabit" run "$ir" --random-weights --tokens 1 -n abc
bad "rabit run: -n needs an integer 0..1000000, got '-1'" "$rabit" run "$ir" --random-weights --tokens 1 -n=-1
bad "rabit run: --top-p needs a number in (0, 1], got '2'" "$rabit" run "$ir" --random-weights --tokens 1 --top-p 2
bad "rabit run: --top-p needs a number in (0, 1], got '0'" "$rabit" run "$ir" --random-weights --tokens 1 --top-p=0
bad "rabit run: --top-p needs a number in (0, 1], got 'nan'" "$rabit" run "$ir" --random-weights --tokens 1 --top-p nan
bad "rabit run: --temp needs a number >= 0, got '-0.5'" "$rabit" run "$ir" --random-weights --tokens 1 --temp -0.5
bad "rabit run: --temp needs a number >= 0, got '1x'" "$rabit" run "$ir" --random-weights --tokens 1 --temp 1x
bad "rabit run: --top-k needs an integer 0..1000000, got ''" "$rabit" run "$ir" --random-weights --tokens 1 --top-k ''
bad "rabit run: --seed needs an integer 0..18446744073709551615, got '-1'" \
  "$rabit" run "$ir" --random-weights --tokens 1 --seed -1
bad "rabit run: --seed needs an integer 0..18446744073709551615, got '18446744073709551616'" \
  "$rabit" run "$ir" --random-weights --tokens 1 --seed 18446744073709551616
bad "rabit run: --max-ctx needs an integer 1..1048576, got '0'" "$rabit" run "$ir" --random-weights --tokens 1 --max-ctx 0
bad "rabit run: --tokens needs token ids separated by commas or spaces, got '1,,2'" "$rabit" run "$ir" --random-weights --tokens 1,,2
bad "rabit run: --tokens needs token ids separated by commas or spaces, got '1,-2'" "$rabit" run "$ir" --random-weights --tokens 1,-2
bad "rabit run: --weights needs a non-empty value, got ''" "$rabit" run "$ir" --weights= --tokens 1
bad "rabit run: --quiet takes no value, got 'yes'" "$rabit" run "$ir" --random-weights --tokens 1 --quiet=yes
bad "rabit run: --prompt needs a value" "$rabit" run "$ir" --random-weights --prompt
bad "rabit run: unknown option '--ctx' (see rabit run --help)" "$rabit" run "$ir" --ctx 5
bad "rabit run: one model, got 'b.ir' too" "$rabit" run "$ir" b.ir --random-weights --tokens 1

# rabit ppl
bad "rabit ppl: unknown option '--foo' (see rabit ppl --help)" "$rabit" ppl "$ir" --foo
bad "rabit ppl: --ctx needs an integer 2..1048576, got '-5'" "$rabit" ppl "$ir" --weights w --text t --ctx -5
bad "rabit ppl: --ctx needs an integer 2..1048576, got '1'" "$rabit" ppl "$ir" --weights w --text t --ctx=1
bad "rabit ppl: --max-windows needs an integer 0..1000000, got 'all'" "$rabit" ppl "$ir" --max-windows all
bad "rabit ppl: --paths needs an integer 1..4, got '5'" "$rabit" ppl "$ir" --paths 5
bad "rabit ppl: --text needs a value" "$rabit" ppl "$ir" --weights w --text

# rabit bench
bad "rabit bench: --ctx needs a value" "$rabit" bench "$ir" --random-weights --ctx
bad "rabit bench: --ctx needs a comma-separated list of 1 to 8 contexts 1..1048576, got '128,abc'" \
  "$rabit" bench "$ir" --random-weights --ctx 128,abc
bad "rabit bench: --ctx needs a comma-separated list of 1 to 8 contexts 1..1048576, got '0'" \
  "$rabit" bench "$ir" --random-weights --ctx=0
bad "rabit bench: --ctx needs a comma-separated list of 1 to 8 contexts 1..1048576, got '1,2,3,4,5,6,7,8,9'" \
  "$rabit" bench "$ir" --random-weights --ctx 1,2,3,4,5,6,7,8,9
bad "rabit bench: --prefill needs an integer 1..1048576, got '0'" "$rabit" bench "$ir" --random-weights --prefill 0
bad "rabit bench: --steps needs an integer 1..1000000, got '5.5'" "$rabit" bench "$ir" --random-weights --steps 5.5
bad "rabit bench: --only needs 2bit or fp16, got '3bit'" "$rabit" bench "$ir" --random-weights --only 3bit
bad "rabit bench: one model, got 'b.ir' too" "$rabit" bench "$ir" b.ir --random-weights

# rabit quantize
bad "rabit quantize: --paths needs an integer 1..4, got '0'" "$rabit" quantize "$ir" in.safetensors -o o --paths 0
bad "rabit quantize: --rounds needs an integer 0..1000, got '-1'" "$rabit" quantize "$ir" in.safetensors -o o --rounds=-1
bad "rabit quantize: --threads needs an integer 1..64, got '65'" "$rabit" quantize "$ir" in.safetensors -o o --threads 65
bad "rabit quantize: --output needs a value" "$rabit" quantize "$ir" in.safetensors --output
bad "rabit quantize: --skip needs a non-empty value, got ''" "$rabit" quantize "$ir" in.safetensors -o o --skip ''
bad "rabit quantize: two files, the model IR and the input, got 'c' too" "$rabit" quantize "$ir" in.safetensors c -o o

# rabit import
bad "rabit import: -o needs a value" "$rabit" import m.gguf -o
bad "rabit import: --output needs a non-empty value, got ''" "$rabit" import m.gguf --output=
bad "rabit data: --split needs train or heldout, got 'dev'" "$rabit" data prepare --tokenizer t.txt --text a.txt -o d --split dev
bad "rabit data: unknown verb 'make' (the one verb is prepare; see rabit data --help)" "$rabit" data make
bad "rabit data: prepare needs --text" "$rabit" data prepare --tokenizer t.txt -o d
bad "rabit import: --force takes no value, got '1'" "$rabit" import m.gguf -o d --force=1
bad "rabit import: unknown option '--bogus' (see rabit import --help)" "$rabit" import m.gguf -o d --bogus
bad "rabit import: one input GGUF file, got 'b.gguf' too" "$rabit" import a.gguf b.gguf -o d

# rabitc
bad "rabitc: --paths needs an integer 1..4, got 'two'" "$rabitc" --paths two "$ir"
bad "rabitc: --max-ctx needs an integer 1..1048576, got '0'" "$rabitc" --max-ctx=0 "$ir"
bad "rabitc: -j needs an integer 1..64, got '65'" "$rabitc" -j 65 "$ir"
bad "rabitc: -j needs a value" "$rabitc" "$ir" -j
bad "rabitc: --emit needs plan, cuda or llvm, got 'ptx'" "$rabitc" --emit=ptx -o x "$ir"
bad "rabitc: --dump-ir needs after-parse, after-verify, after-fusion or after-grad, got 'after-lunch'" "$rabitc" --dump-ir after-lunch "$ir"
bad "rabitc: --arch needs a target such as sm_90, got 'sm_'" "$rabitc" --arch=sm_ "$ir"
bad "rabitc: -o needs a non-empty value, got ''" "$rabitc" -o '' "$ir"
bad "rabitc: --no-compile takes no value, got '1'" "$rabitc" --no-compile=1 "$ir"

# Well-formed values in both forms get past the parser.
parsed run-forms "$rabit" run "$ir" --random-weights --tokens=1,2,3 -n=4 --temp 0.7 --top-k=5 --top-p 0.9 \
  --seed=18446744073709551615 --max-ctx 64 --quiet
parsed run-space-ids "$rabit" run "$ir" --random-weights --tokens " 1 2  3 " -n 2 --quiet
parsed bench-forms "$rabit" bench "$ir" --random-weights --ctx=16,32 --prefill 16 --steps=5 --only 2bit
parsed rabitc-forms "$rabitc" --no-compile --paths=3 --max-ctx 64 -j=2 "$ir"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
