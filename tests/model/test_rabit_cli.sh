#!/bin/sh
# test_rabit_cli.sh RABIT SAMPLES: the rabit driver's help and error paths,
# which need no GPU: bad usage, missing files, and a clear message when a
# command needs the GPU (on a GPU machine those commands run instead).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabit=$1 samples=$2
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"

expect() { # NAME WANT_RC PATTERN CMD...
  name=$1 want=$2 pat=$3; shift 3
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ] && printf '%s\n' "$out" | grep -q -- "$pat"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want $want)"; printf '%s\n' "$out" | head -5; fi
}
# Either the GPU runs it, or the message says plainly that a GPU is needed
# (SmolLM2's commands take --target cuda: the host would run them, slowly;
# tests/host/test_run.sh checks the choice of the host).
expect_gpu() { # NAME PATTERN_WHEN_RUN CMD...
  name=$1 pat=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if printf '%s\n' "$out" | grep -q "needs an NVIDIA GPU and driver"; then
    [ "$rc" -eq 1 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL $name: no-GPU exit status $rc, want 1"; }
  elif [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q -- "$pat"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc"; printf '%s\n' "$out" | head -5; fi
}

expect help 0 "usage: rabit COMMAND" "$rabit" --help
expect version 0 "^rabit [0-9]" "$rabit" --version
expect no-command 1 "usage: rabit COMMAND" "$rabit"
expect unknown-command 1 "unknown command 'fly'" "$rabit" fly
for c in import quantize run ppl bench eval; do
  expect "$c-help" 0 "usage: rabit $c" "$rabit" "$c" --help
done
expect run-usage 1 "usage: rabit run" "$rabit" run "$samples/tiny.ir"
expect run-bad-option 1 "unknown option '--frob'" "$rabit" run "$samples/tiny.ir" --frob
expect run-missing-weights 1 "cannot read weights '$tmp/none.safetensors'" \
  "$rabit" run "$samples/tiny.ir" --weights "$tmp/none.safetensors" --tokens 1,2
expect run-missing-ir 1 "cannot read '$tmp/none.ir'" "$rabit" run "$tmp/none.ir" --random-weights --tokens 1,2
expect run-tokenizer 1 "cannot read\|No such file" "$rabit" run "$samples/tiny.ir" --random-weights \
  --tokenizer "$tmp/none.gguf" --prompt hi
expect ppl-missing-text 1 "cannot read '$tmp/none.txt'" "$rabit" ppl "$samples/tiny.ir" --random-weights --text "$tmp/none.txt"
expect bench-usage 1 "usage: rabit bench" "$rabit" bench "$samples/tiny.ir"
expect import-missing 1 "none.gguf" "$rabit" import "$tmp/none.gguf" -o "$tmp/out"
expect quantize-missing 1 "none.safetensors" "$rabit" quantize "$samples/tiny.ir" "$tmp/none.safetensors" -o "$tmp/q.safetensors"
expect quantize-old-form 1 "usage: rabit quantize MODEL.ir IN.safetensors" \
  "$rabit" quantize --paths 2 "$tmp/none.safetensors" -o "$tmp/q.safetensors"
expect quantize-missing-ir 1 "cannot read '$tmp/none.ir'" \
  "$rabit" quantize "$tmp/none.ir" "$tmp/none.safetensors" -o "$tmp/q.safetensors"
# The tokenizer.txt beside the weights is found without --tokenizer (the run
# then stops at the GPU, or at the empty weights file on a GPU machine).
mkdir -p "$tmp/m" && cp "$samples/../tests/tokenizer/data/vocab.txt" "$tmp/m/tokenizer.txt" && : > "$tmp/m/w.safetensors"
out=$("$rabit" run "$samples/tiny.ir" --weights "$tmp/m/w.safetensors" --prompt "hello" 2>&1); rc=$?
if [ "$rc" -ne 0 ] && ! printf '%s\n' "$out" | grep -q "no tokenizer" && \
   printf '%s\n' "$out" | grep -q "needs an NVIDIA GPU\|w.safetensors"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL tokenizer-beside-weights: rc=$rc"; printf '%s\n' "$out" | head -3; fi
expect run-no-tokenizer 1 "no tokenizer: give --tokenizer" "$rabit" run "$samples/tiny.ir" --weights "$samples/tiny.ir" --prompt hi
# rabit eval: the held-out shards are read and checked before the GPU is asked for.
vocab="$samples/../tests/tokenizer/data/vocab.txt"
expect eval-usage 1 "usage: rabit eval" "$rabit" eval "$samples/smollm2-135m.ir" --random-weights
expect eval-missing-dir 1 "rabit eval: $tmp/none: No such file or directory" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/none"
mkdir -p "$tmp/empty"
expect eval-missing-shard 1 "$tmp/empty/heldout.shard: cannot read the shard" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/empty"
i=0; : > "$tmp/kjv.txt"; : > "$tmp/austen.txt"
while [ $i -lt 300 ]; do
  echo "And the LORD spake unto Moses in the wilderness of Sinai, saying, number $i." >> "$tmp/kjv.txt"
  echo "It is a truth universally acknowledged, said Elizabeth to her sister, in the year $i." >> "$tmp/austen.txt"
  i=$((i + 1))
done
cat "$tmp/kjv.txt" "$tmp/austen.txt" > "$tmp/heldout.txt"
"$rabit" data prepare --split heldout --tokenizer "$vocab" --text "$tmp/heldout.txt" --text "$tmp/kjv.txt" \
  -o "$tmp/held" > /dev/null && mv "$tmp/held/kjv.shard" "$tmp/held/heldout-kjv.shard"
"$rabit" data prepare --split train --tokenizer "$vocab" --text "$tmp/heldout.txt" -o "$tmp/train" > /dev/null
cp "$tmp/held/heldout-kjv.shard" "$tmp/train/heldout-kjv.shard"
expect eval-train-shard 1 "$tmp/train/heldout.shard: this shard is tagged train; evaluation reads held-out" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/train"
mkdir -p "$tmp/bad" && cp "$tmp/held/"*.shard "$tmp/bad/"
printf 'Z' | dd of="$tmp/bad/heldout.shard" bs=1 seek=200 conv=notrunc 2>/dev/null
expect eval-corrupt-shard 1 "$tmp/bad/heldout.shard: checksum mismatch" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/bad"
expect eval-check-text-differs 1 "differs from '$tmp/kjv.txt' tokenized now" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/held" --check-text "$tmp/kjv.txt" \
  --tokenizer "$vocab"
out=$("$rabit" eval "$samples/smollm2-135m.ir" --target cuda --random-weights --data "$tmp/held" \
      --check-text "$tmp/heldout.txt" --tokenizer "$vocab" --quiet 2>&1)
if printf '%s\n' "$out" | grep -q "check: the evaluated .* tokens equal" && \
   printf '%s\n' "$out" | grep -q "needs an NVIDIA GPU and driver\|test perplexity"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL eval-check-text"; printf '%s\n' "$out" | head -5; fi
expect_gpu eval-random "test perplexity, Austen" "$rabit" eval "$samples/smollm2-135m.ir" --target cuda --random-weights \
  --data "$tmp/held" --quiet
expect_gpu ppl-random "^speed .* NLL on the GPU" "$rabit" ppl "$samples/smollm2-135m.ir" --target cuda --random-weights \
  --text "$tmp/heldout.txt" --tokenizer "$vocab" --max-windows 2 --quiet
expect_gpu run-random "generated" "$rabit" run "$samples/tiny.ir" --random-weights --tokens 1,2,3 -n 4
expect_gpu bench-random "decode ctx" "$rabit" bench "$samples/tiny.ir" --random-weights --ctx 16 --prefill 16 --steps 5

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
