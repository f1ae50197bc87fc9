#!/bin/sh
# test_limits.sh RABITC RABIT VOCAB SAMPLES: hostile input sizes, generated here. Deep
# and long expressions, deep repeats, too many tokens, files over the caps,
# endless input (/dev/zero by path and on stdin) and a directory: each exits 1
# with its exact message, never a crash or a hang. Every command runs under
# `timeout`, so a regression that hangs fails instead of stalling CI.
rabitc=$1 rabit=$2 vocab=$3 samples=$4
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"

# run CMD...: out, rc of CMD under a 60 s timeout (124: it hung).
run() { out=$(timeout 60 "$@" 2>&1); rc=$?; }
# first NAME LINE CMD...: exit status 1 and the output's first line is LINE.
first() {
  name=$1 want=$2; shift 2
  run "$@"
  got=$(printf '%s\n' "$out" | head -1)
  if [ "$rc" -eq 1 ] && [ "$got" = "$want" ]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want 1)"; echo "  want: $want"; echo "  got:  $got"; fi
}
# whole NAME TEXT CMD...: exit status 1 and the whole output is TEXT.
whole() {
  name=$1 want=$2; shift 2
  run "$@"
  if [ "$rc" -eq 1 ] && [ "$out" = "$want" ]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want 1)"; printf '%s\n' "$out" | head -4 | cut -c1-200 | sed 's/^/  got: /'; fi
}
# rep N STR: STR written N times.
rep() { awk -v n="$1" -v s="$2" 'BEGIN { for (i = 0; i < n; i++) printf "%s", s }'; }

graph='graph f(x: f16[T, 4]) -> f16[T, 4] {
  return x
}'
deep="error: expression is deeper than 256 levels (each operator, '(' and call counts one)"

# 50k nested parentheses: refused at the 257th '(' (column 8 + 257).
{ echo 'rabit 1'; printf 'let A = '; rep 50000 '('; printf 1; rep 50000 ')'; echo; echo "$graph"; } > "$tmp/parens.ir"
# The 50k-byte line is shown as a window around the column, "..." each side.
whole parens "$tmp/parens.ir:2:265: $deep
...$(rep 160 '(')...
$(rep 83 ' ')^" "$rabitc" --no-compile "$tmp/parens.ir"
# 50k nested negations.
{ echo 'rabit 1'; printf 'let A = '; rep 50000 '-'; echo 1; echo "$graph"; } > "$tmp/neg.ir"
first neg "$tmp/neg.ir:2:265: $deep" "$rabitc" --no-compile "$tmp/neg.ir"
# 100k nested calls: the 257th 'rmsnorm(' is at column 7 + 256 * 8.
{ echo 'rabit 1'; echo 'graph f(x: f16[T, 4]) -> f16[T, 4] {'; printf '  y = '; rep 100000 'rmsnorm(';
  printf x; rep 100000 ', eps = 1e-5)'; echo; echo '  return y'; echo '}'; } > "$tmp/calls.ir"
first calls "$tmp/calls.ir:3:2055: $deep" "$rabitc" --no-compile "$tmp/calls.ir"
# A flat sum of 60k terms is as deep as its left-leaning tree: the 256th '+'.
{ echo 'rabit 1'; printf 'let A = 1'; rep 60000 '+1'; echo; echo "$graph"; } > "$tmp/sum.ir"
first flat-sum "$tmp/sum.ir:2:520: $deep" "$rabitc" --no-compile "$tmp/sum.ir"
# The same within a dimension and an attribute: the parser bounds every expression.
{ echo 'rabit 1'; printf 'graph f(x: f16[T, 1'; rep 300 '*1'; echo ']) -> f16[T, 4] {'; echo '  return x'; echo '}'; } > "$tmp/dim.ir"
first dim-sum "$tmp/dim.ir:2:530: $deep" "$rabitc" --no-compile "$tmp/dim.ir"
# 256 levels is still fine: 255 '+' under one let.
{ echo 'rabit 1'; printf 'let A = 1'; rep 255 '+1'; echo; echo 'graph f(x: f16[T, A]) -> f16[T, 256] {'; echo '  return x'; echo '}'; } > "$tmp/sum256.ir"
run "$rabitc" --no-compile "$tmp/sum256.ir"
if [ "$rc" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL sum-256: rc=$rc"; printf '%s\n' "$out" | head -3; fi
# 50k nested repeats: refused at the 257th, and its body is skipped whole.
{ echo 'rabit 1'; echo 'graph f(x: f16[T, 4]) -> f16[T, 4] {'; rep 50000 'repeat i in 0..1 {
'; rep 50000 '}
'; echo '  return x'; echo '}'; } > "$tmp/repeats.ir"
whole repeats "$tmp/repeats.ir:259:1: error: 'repeat' nests deeper than 256 levels
repeat i in 0..1 {
^" "$rabitc" --no-compile "$tmp/repeats.ir"
# A 10 MB line of 5M terms: stopped at the token cap, quickly (the timeout).
{ echo 'rabit 1'; printf 'let A = 1'; rep 5000000 '+1'; echo; echo "$graph"; } > "$tmp/line.ir"
first long-line "$tmp/line.ir:2:4194308: error: the file has more than 4194304 tokens" "$rabitc" --no-compile "$tmp/line.ir"

# Files over the IR's 16 MiB cap, and endless input, by path and on stdin.
{ echo 'rabit 1'; head -c 17825792 /dev/zero | tr '\0' '#'; } > "$tmp/big.ir"
whole big-file "rabitc: cannot read '$tmp/big.ir': it is over 16 MiB, the cap on an IR file" "$rabitc" --no-compile "$tmp/big.ir"
whole big-stdin "rabitc: cannot read '<stdin>': it is over 16 MiB, the cap on an IR file" sh -c "\"$rabitc\" --no-compile - < \"$tmp/big.ir\""
whole dev-zero "rabitc: cannot read '/dev/zero': it is over 16 MiB, the cap on an IR file" "$rabitc" /dev/zero
whole dev-zero-stdin "rabitc: cannot read '<stdin>': it is over 16 MiB, the cap on an IR file" sh -c "\"$rabitc\" - < /dev/zero"
whole directory "rabitc: cannot read '$tmp': Is a directory" "$rabitc" --no-compile "$tmp"

# A --text over its 1 GiB cap (sparse: its size is refused before it is
# read) and a directory, for rabit ppl and rabit data prepare.
truncate -s 1073741825 "$tmp/big.txt"
whole ppl-big "rabit ppl: cannot read '$tmp/big.txt': it is over 1 GiB, the cap on a text" \
  "$rabit" ppl "$samples/tiny.ir" --random-weights --text "$tmp/big.txt"
whole ppl-dir "rabit ppl: cannot read '$tmp': Is a directory" "$rabit" ppl "$samples/tiny.ir" --random-weights --text "$tmp"
whole data-big "rabit data: cannot read '$tmp/big.txt': it is over 1 GiB, the cap on a text" \
  "$rabit" data prepare --tokenizer "$vocab" --text "$tmp/big.txt" -o "$tmp/shards"
whole data-dir "rabit data: cannot read text '$tmp': it is a directory" \
  "$rabit" data prepare --tokenizer "$vocab" --text "$tmp" -o "$tmp/shards"
# rabit eval --check-text reads its text the same way (after the held-out shard).
i=0; : > "$tmp/kjv.txt"; : > "$tmp/austen.txt"
while [ $i -lt 300 ]; do
  echo "And the LORD spake unto Moses in the wilderness of Sinai, saying, number $i." >> "$tmp/kjv.txt"
  echo "It is a truth universally acknowledged, said Elizabeth to her sister, in the year $i." >> "$tmp/austen.txt"
  i=$((i + 1))
done
cat "$tmp/kjv.txt" "$tmp/austen.txt" > "$tmp/heldout.txt"
"$rabit" data prepare --split heldout --tokenizer "$vocab" --text "$tmp/heldout.txt" --text "$tmp/kjv.txt" \
  -o "$tmp/held" > /dev/null && mv "$tmp/held/kjv.shard" "$tmp/held/heldout-kjv.shard"
whole eval-big "rabit eval: cannot read '$tmp/big.txt': it is over 1 GiB, the cap on a text" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/held" --check-text "$tmp/big.txt" --tokenizer "$vocab"
whole eval-dir "rabit eval: cannot read '$tmp': Is a directory" \
  "$rabit" eval "$samples/smollm2-135m.ir" --random-weights --data "$tmp/held" --check-text "$tmp" --tokenizer "$vocab"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
