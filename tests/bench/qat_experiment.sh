#!/bin/bash
# qat_experiment.sh: issue 9's runs on the real SmolLM2-135M, one device call's worth.
# run_device.sh exp calls it after qat2's setup, with Q (hf/, shards-train, shards-heldout),
# R (rabit), IR, G (the GGUF, as the tokenizer) and OUT set. What it runs:
#   EXP_SOLO   runs one after another, alone on the GPU: the tokens/s to quote
#   EXP_RUNS   runs EXP_PAR at a time (default 3): the GPU is shared, their tokens/s are not quoted
#              (both: one run a line, "NAME ARGS...", ARGS being rabit train's options past the
#              common ones; --method ptq runs are the initialization alone)
#   EXP_TOKENS the token budget of every run (default 5,000,000); EXP_EVAL_EVERY (default 100 steps)
#   EXP_FP=1   the FP16 model's perplexities
#   EXP_PEER   qat_train_peer.py's options past the data ones, run alone after EXP_SOLO, scored on
#              the same test windows as ours
#   EXP_CHAT   a run's name: its 2-bit model and the fp16 one answer the five prompts
#   EXP_KEEP=1 keep the runs and logs of an earlier invocation in this call (a second list that
#              depends on the first's results)
# Each run is scored by rabit eval on its best.safetensors, the export of its best validation
# (for --method ptq: its only export). Logs go to $OUT/exp.tgz, rewritten after each run so a
# call cut short still returns what finished; the table is printed last.
set -u
L=/tmp/exp-logs
[ -n "${EXP_KEEP:-}" ] || rm -rf $L "$Q/runs" # a warm machine keeps /tmp; EXP_KEEP=1 adds to this call's runs
mkdir -p $L/svg
TOKENS=${EXP_TOKENS:-5000000}
PROMPTS=("What is the capital of France?" "Write a short poem about the sea."
         "Explain what a binary number is." "Give me three tips for staying healthy."
         "Who wrote Pride and Prejudice?")

pack() { tar czf "$OUT/exp.tgz.tmp" -C $L . && mv "$OUT/exp.tgz.tmp" "$OUT/exp.tgz"; }

# one_run NAME ARGS...: train, then score the chosen export on the held-out split.
one_run() {
  local name=$1 d=$Q/runs/$1
  shift
  mkdir -p "$d"
  local start=$(date +%s.%N)
  timeout "${EXP_RUN_LIMIT:-540}" "$R" train "$IR" --weights $Q/hf/model.safetensors --data $Q/shards-train \
    --eval-data $Q/shards-heldout --tokens "$TOKENS" --eval-every "${EXP_EVAL_EVERY:-100}" --ckpt-every 0 \
    --log-every 50 "$@" -o "$d" > $L/train-$name.log 2>&1
  local rc=$? w=$d/best.safetensors
  [ -f "$w" ] || w=$d/model.safetensors
  local paths=$(echo " $* " | sed -n 's/.* --paths \([0-9]\) .*/--paths \1/p')
  "$R" eval "$IR" $paths --weights "$w" --data $Q/shards-heldout --json --quiet > $L/eval-$name.json 2> $L/eval-$name.err
  printf '%s rc=%s wall=%.0f args=%s\n' "$name" "$rc" "$(awk "BEGIN{print $(date +%s.%N) - $start}")" "$*" >> $L/runs.txt
  [ -f "$d/loss.svg" ] && cp "$d/loss.svg" $L/svg/loss-$name.svg
  pack
}

# The runs of a list, $2 at a time.
run_list() {
  local list=$1 par=$2 line
  while IFS= read -r line; do
    [ -z "${line// /}" ] && continue
    while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do wait -n; done
    # shellcheck disable=SC2086 # the options are words
    one_run $line &
  done <<< "$list"
  wait
}

if [ -n "${EXP_FP:-}" ]; then
  "$R" eval "$IR" --fp16 --weights $Q/hf/model.safetensors --data $Q/shards-heldout --json --quiet > $L/eval-fp16.json
  echo "fp16 rc=$? wall=0 args=--fp16" >> $L/runs.txt
fi
run_list "${EXP_SOLO:-}" 1
if [ -n "${EXP_PEER:-}" ]; then # the peer on our test windows (the odd windows of 1024 of the held-out stream)
  python3 - "$Q" <<'EOF'
import sys, numpy as n
q = sys.argv[1]
t = n.fromfile(f"{q}/shards-train/train.shard", dtype=n.int32, offset=72); t[:len(t) // 512 * 512].tofile(f"{q}/train512.bin")
h = n.fromfile(f"{q}/shards-heldout/heldout.shard", dtype=n.int32, offset=72)
h[:len(h) // 1024 * 1024].reshape(-1, 1024)[1::2].tofile(f"{q}/test-windows.bin")
EOF
  nw=$(( $(stat -c %s $Q/test-windows.bin) / 4096 ))
  start=$(date +%s)
  # shellcheck disable=SC2086
  python3 .carry/peers/qat_train_peer.py --hf $Q/hf --train $Q/train512.bin --train-ctx 512 --held $Q/test-windows.bin \
    --held-ctx 1024 --held-windows $nw $EXP_PEER > $L/peer.log 2>&1
  echo "peer rc=$? wall=$(( $(date +%s) - start )) args=$EXP_PEER" >> $L/runs.txt
  pack
fi
run_list "${EXP_RUNS:-}" "${EXP_PAR:-3}"
if [ -n "${EXP_CHAT:-}" ]; then
  for i in "${!PROMPTS[@]}"; do
    "$R" run "$IR" --fp16 --weights $Q/hf/model.safetensors --tokenizer "$G" --chat --prompt "${PROMPTS[$i]}" -n 64 \
      --quiet > $L/chat-fp16-$i.txt 2>&1
    "$R" run "$IR" --weights $Q/runs/$EXP_CHAT/best.safetensors --tokenizer "$G" --chat --prompt "${PROMPTS[$i]}" \
      -n 64 --quiet > $L/chat-2bit-$i.txt 2>&1
  done
  pack
fi
python3 tests/bench/qat_table.py $L
pack
