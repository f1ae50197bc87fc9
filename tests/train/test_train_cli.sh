#!/bin/sh
# test_train_cli.sh RABIT SAMPLES: rabit train's help and its errors, which come
# before any GPU is looked for: missing options, bad values, a missing or empty
# shard directory, a corrupted shard and a held-out shard, each exit status 1
# with one message naming the file; on a machine with no GPU, the GPU's absence.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabit=$1 samples=$2
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
ir=$samples/tiny.ir

# expect RC PATTERN CMD...: the exit status is RC and the output matches the grep pattern.
expect() {
  want_rc=$1 pat=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want_rc" ] && printf '%s\n' "$out" | grep -q -- "$pat"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $*: rc=$rc (want $want_rc), want /$pat/"; printf '%s\n' "$out" | head -4 | sed 's/^/  got: /'; fi
}

expect 0 "usage: rabit train MODEL.ir" "$rabit" train --help
expect 0 "--lr-w X" "$rabit" train --help
expect 1 "needs --weights W" "$rabit" train "$ir"
expect 1 "needs --data DIR" "$rabit" train "$ir" --weights w.safetensors
expect 1 "needs --tokens N" "$rabit" train "$ir" --weights w.safetensors --data d
expect 1 "needs -o OUT" "$rabit" train "$ir" --weights w.safetensors --data d --tokens 100
expect 1 "rabit train: --paths needs an integer 1..4, got '7'" "$rabit" train "$ir" --paths 7
expect 1 "rabit train: --method needs rabit, standard or ptq, got 'qat'" "$rabit" train "$ir" --method qat
expect 1 "rabit train: --lr-w needs a number" "$rabit" train "$ir" --lr-w 0

: > "$tmp/in.safetensors"
expect 1 "rabit quantize: needs --data DIR" "$rabit" quantize "$ir" "$tmp/in.safetensors" -o "$tmp/q.safetensors" --init rabit
expect 1 "rabit quantize: --init needs greedy or rabit, got 'x'" "$rabit" quantize "$ir" w.safetensors -o q.safetensors --init x

# shards: a missing directory, an empty one, a corrupted shard, a held-out shard
common="--weights $tmp/w.safetensors --tokens 100000 -o $tmp/out"
# The files are named before the data is read: a missing weights file first.
expect 1 "rabit train: cannot read weights '$tmp/w.safetensors': No such file or directory" \
  "$rabit" train "$ir" $common --data "$tmp/none"
: > "$tmp/w.safetensors"
expect 1 "$tmp/none: cannot open the shard directory" "$rabit" train "$ir" $common --data "$tmp/none"
mkdir -p "$tmp/empty"
expect 1 "$tmp/empty: no .shard files" "$rabit" train "$ir" $common --data "$tmp/empty"
i=0; : > "$tmp/a.txt"
while [ $i -lt 200 ]; do echo "some text for a shard of training tokens, line $i" >> "$tmp/a.txt"; i=$((i + 1)); done
tok="$samples/../tests/tokenizer/data/vocab.txt"
if [ -f "$tok" ] && "$rabit" data prepare --tokenizer "$tok" --text "$tmp/a.txt" -o "$tmp/train" >/dev/null 2>&1 &&
   "$rabit" data prepare --tokenizer "$tok" --text "$tmp/a.txt" -o "$tmp/held" --split heldout >/dev/null 2>&1; then
  expect 1 "held.*a.shard" "$rabit" train "$ir" $common --data "$tmp/held"
  expect 1 "a.shard" "$rabit" train "$ir" $common --data "$tmp/train" --eval-data "$tmp/held"
  cp -r "$tmp/train" "$tmp/bad" && printf 'x' | dd of="$tmp/bad/a.shard" bs=1 seek=80 conv=notrunc 2>/dev/null
  expect 1 "bad/a.shard" "$rabit" train "$ir" $common --data "$tmp/bad"
  # the data is fine: what stops the run now is the weight file, or, first, a missing GPU
  expect 1 "needs an NVIDIA GPU\|w.safetensors" "$rabit" train "$ir" $common --data "$tmp/train"
else
  echo "SKIP: no tokenizer at $tok for the shard cases"
fi
# readers of whole files name their caps (sparse files: nothing is written to disk)
mkdir -p "$tmp/huge"
truncate -s $(( (4 << 30) + 1 )) "$tmp/huge/big.shard"
expect 1 "big.shard: cannot read the shard: it is over 4 GiB, the cap on a shard" "$rabit" train "$ir" $common --data "$tmp/huge"
truncate -s $(( (256 << 20) + 1 )) "$tmp/vocab.txt"
expect 1 "cannot read the vocabulary: it is over 256 MiB, the cap on a vocabulary file" \
  "$rabit" data prepare --tokenizer "$tmp/vocab.txt" --text "$tmp/a.txt" -o "$tmp/v"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
