#!/bin/sh
# cli.sh RABITC SAMPLES: rabitc's training options: what they print, and the
# exit status 1 with a clear message for each misuse.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" # a leak on any path exits 23: a failure
rabitc=$1 samples=$2
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

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

tiny=$samples/tiny.ir
expect help 0 "--train" "$rabitc" --help
expect help-gamma 0 "--gamma G" "$rabitc" --help
expect summary 0 "graph 'train': 27 forward ops, 1 loss ops, 26 backward ops" "$rabitc" --train "$tiny"
expect summary-gamma 0 "27 forward ops, 3 loss ops, 28 backward ops" "$rabitc" --train --gamma 100 "$tiny"
expect grad-needs-train 1 "rabitc: --dump-ir=after-grad needs --train" "$rabitc" --dump-ir=after-grad "$tiny"
expect gamma-needs-train 1 "rabitc: --gamma needs --train" "$rabitc" --gamma 1 --no-compile "$tiny"
expect gamma-negative 1 "--gamma needs a number in \[0, " "$rabitc" --train --gamma -1 "$tiny"
expect train-fusion 1 "not --dump-ir=after-fusion" "$rabitc" --train --dump-ir=after-fusion "$tiny"
expect train-out 1 "it takes --dump-ir=after-parse, after-verify or after-grad, not -o" "$rabitc" --train -o "$tmp/p" "$tiny"
expect train-list 1 "not --list-kernels" "$rabitc" --train --list-kernels "$tiny"
# --train stops before fusion: the forward dumps stay the unfused ones.
expect train-verify 0 "t2 = linear(t1, 64, quant = rabit(paths = 2))" "$rabitc" --train --dump-ir=after-verify "$tiny"
# A fused graph has no backward rules: the grad pass refuses it at the op.
"$rabitc" --dump-ir=after-fusion "$tiny" > "$tmp/fused.ir"
expect train-fused 1 "fused.ir:10:8: error: 'linear_add' has no backward rule" "$rabitc" --train "$tmp/fused.ir"
# Nothing to train: every linear dense.
sed 's/quant default = rabit(paths = 2)/quant default = none/; s/quant = rabit(paths = [0-9])/quant = none/' "$tiny" > "$tmp/dense.ir"
expect train-dense 1 "graph 'forward' has nothing to train" "$rabitc" --train "$tmp/dense.ir"
# A training graph cannot be differentiated again.
"$rabitc" --train --dump-ir=after-grad "$tiny" > "$tmp/train.ir"
expect train-twice 1 "'kl_loss' has no backward rule" "$rabitc" --train "$tmp/train.ir"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
