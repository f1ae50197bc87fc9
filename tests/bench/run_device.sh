#!/bin/sh
# run_device.sh MODE: what we run on the lent GPU machine, in one call per mode.
#   tests  GPU tests (every kernel kind against the CPU reference), then
#          compute-sanitizer memcheck over the kernel tests
#   gpu    the GPU tests named in TESTS (default test_linear), memcheck over MEMCHECK (default none)
#   bench  per-shape kernel timings, the 32-layer chain, compile and load
#          times, and the peers (cuBLAS fp16, torch int4, read floor) in the same call
#   real1  stores the first half of the SmolLM2 GGUF (.carry/m1) in /tmp/rabit-model
#   real2  joins it with the second half (.carry/m2), then: import, PTQ k=2 and 3,
#          fp16 logits and greedy tokens against Hugging Face transformers,
#          perplexity (fp16, PTQ k=2, k=3) on the held-out text, chat, bench
#   train  the training kernels and step against their CPU references, the loop
#          (resume and kill -9), memcheck of the step, the STE against the PyTorch peer
#   qat1   stores the first half of the GGUF (data-dev/d1, carried alone) in /tmp/rabit-qat
#   qat2   joins the second half and the shards (data-dev/d2, with .carry): the step test; import; rabit train SmolLM2 k = 2
#          (QAT_TOKENS, default 2M) beside qat_train_peer.py and rabit_qat_peer.py (speed, same
#          call); the export through rabit run, rabit ppl and rabit eval; ppl speed against prefill
#   overlap  the op and model tests (overlapped launches on), then the same random
#          models with RABIT_PDL=0 and 1: identical logits, and the speed of each
#   exp    as qat2's setup, then tests/bench/qat_experiment.sh: the issue-9 runs (EXP_* variables)
#   all    tests (memcheck on the model-level tests only), bench and model in one call
#   model  the executor against the reference decoder, then whole-model decode
#          and prefill speed (rabit bench, random weights) beside the PyTorch
#          fp16 decode peer
#   same   old against new build: the GPU tests of the new one, then the same
#          random models through both (1, 12 and 100 prompt tokens: the b<=1,
#          b<=16 and b<=512 kernels; 2-bit and fp16), whose logits must be
#          byte-identical
#   prefill  the dequant prefill strategy (issue 11, item 4): the linear table (every
#          strategy, dequant among them) and the model test (its RABIT_PREFILL=dequant
#          prefill), memcheck of both, the 7B prefill layers at batch 512 beside cuBLAS
#          fp16, then rabit bench of llama2-7b (k = 2 against fp16) with and without it
#   speed  old against new build: per-shape kernels, the 32-layer chain and
#          whole-model decode and prefill, alternating old and new, beside the peers
#   json   bench and model in one call, then their numbers as results-h200.json
#          (tests/bench/results_json.py; the speed issue's schema)
#   report json's runs, then beside them in the same call: the old build's per-shape
#          kernels (.carry/old, the regression check at k = 1..4), its chain and whole
#          models (then the new chain again), whole models with
#          overlapped launches off (RABIT_PDL=0) and llama2-7b with the dequant prefill
#   ab     old against new build, kernels only: per-shape timings and the 32-layer chain of
#          each, one after the other, then the tuner's GPU test (TESTS to change it)
#   nll    as qat2's setup (after qat1), then the GPU half of issue 13's comparison: the
#          mean NLL of the first 8 held-out windows (4 validation) with the fp16 weights,
#          PTQ k = 2 (checked by sha256 against the file the host run used) and a short
#          RaBiT k = 2 training (NLL_TOKENS); the trained export comes back in 16 MB parts
#          (trained-k2.part-*) for the host target to score the same file
#   fusecheck  as qat2's setup (after qat1): the fused rmsnorm on real weights (a short training,
#          PTQ k = 2): prompt logits with and without RABIT_FUSE_NORM=0, chat both ways
#   fuseab  the model and plan-API tests, then both models with the fused rmsnorm off and on
#          (RABIT_FUSE_NORM), alternating, beside the fp16 decode peer
#   bmma   the bmma strategy: its linear cases and their memcheck, the model and plan-API tests,
#          per-shape bmma beside xor and mma (batches 1, 4) with the peers, both models with and
#          without it (RABIT_BMMA) beside the fp16 decode peer
#   bmma2  the bmma cases (fused norms too) and memcheck, the model, plan-API and op tests, bmma tiles
#          by hand (BMMA_TILES1, BMMA_TILES4), the chain, both models three ways beside the fp16 peer
#   bmma3  the model and plan-API tests, the chain with the norm in the planes and apart, both models
#          (default twice, norms apart) beside the fp16 peer
#   realbmma  after qat1: a short RaBiT training of SmolLM2 k = 2, its held-out perplexity token by
#          token through the bmma kernels and through the xor ones, and through the dequant prefill
#   tuneb1 llama2-7b's batch-1 kernels tuned (TUNE_BUDGET seconds), exported, then the chain and
#          both models with those records beside the fp16 peer
#   bmmaab  a bmma kernel change: old against new (tests, memcheck, bench, chain, models, ncu)
#   bmmaprof  ncu of the bmma kernel at batch 1 and 4 (stall reasons, pipes, hit rates)
#   probe  tests/bench/probe_mma.cu: the tensor pipe's rate for f16, s8 and b1 mma.sync shapes
#   ring   the register kernels' bit ring (tile[2]): gpu_test_linear's table (the ring cases
#          among them), then the per-shape bench with the default loads and with rings of
#          2, 4 and 8 stages (RABIT_TILE_XOR / RABIT_TILE_MMA), one after the other
#   lop3   the lop3 decode: its table cases and memcheck, per-shape bench (LOP3_TILES by hand),
#          chain and whole models with and without RABIT_DECODE=lop3 beside the fp16 peer
#   lop3b  the lop3 cases and memcheck again, then one tuning of llama2-7b (lop3 in the space),
#          its export, and the tuned model beside the fp16 peer
#   sweep  the register kernels' row tiles and K split by hand (SWEEP_TILES), per shape at k = 2
#   xsmem  the xsmem strategy: its table, memcheck over a sixth, its tiles (XSMEM_TILES) at XSMEM_BATCH
#   explore  the GPU tests named in TESTS (default none), then batch-1 schedules by hand
#          (EXPLORE_TILES) for xor and lop3 per shape, and ncu of a few (EXPLORE_NCU)
#   decode  a decode-step change: the op, model, plan and linear tests, memcheck of the op
#          test, logits with RABIT_PDL=0 and 1 (identical), old (.carry/old) and new whole models
#          alternating beside the fp16 peer, then stepprof (PROF_MODELS)
#   prenorm  the fused rmsnorm: the model, plan-API and linear tests, memcheck of the model test,
#          logits with RABIT_PDL=0 and 1, one tuning of llama2-7b (exported), then old and new
#          whole models alternating beside the fp16 peer
#   stepprof  one decode step of smollm2-135m and llama2-7b kernel by kernel (ncu, serialized;
#          tests/bench/ncu_step.py), beside the step's own time
#   tune1  one tuning of llama2-7b (no test, no second run), its export, the tuned model and the peer
#   wgprobe  the tensor pipe's rate for wgmma with A in registers at N = 8, 16, 32, beside mma.sync
#   tune4  the kernels serving batch 4 (TUNE_BATCH) tuned (TUNE_BUDGET), exported; the chain of .carry/old (shipped
#          records, its own cache) before and after, the new one's with the shipped records, then tuned
#   chainprof  ncu over the chain's kernels (old and new, CHAINPROF_OLD / _NEW name regexes, 8 launches):
#          the fused forms the model runs, serialized
#   dqprobe  the dequant table cases and the GPU tests in TESTS, ncu of the dequant prefill kernel,
#          the prefill layers at DEQUANT_WPB warps per block, llama2-7b's rabit bench
#   tune   the tuner's GPU test, then rabitc tune of llama2-7b (batches 1, 4, 16) twice
#          in one call with its plot; the database comes back as tuning-h200.json,
#          the model's speed before and after it beside each other
# Expects the binaries tests/bench/pack_device.sh puts in .carry/new (and
# .carry/old for same and speed), and the peer scripts in .carry/peers.
# Each step's log is appended to $OUT/logs-MODE.txt as soon as it ends, and its
# summary line printed, so a call cut by its time limit still says how far it got
# (at most 8 files come back); a short table is printed last.
set -u
mode=${1:-tests}
B=${BUILD:-.carry/new}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export RABIT_CACHE_DIR=/tmp/rabit-cache PYTHONUNBUFFERED=1
# Every build reads this tree's shipped tuning records: a binary names the folder of the tree it
# was built from, which for .carry/old (built in /tmp/rabit-old-tree) is not on the device.
export RABIT_SHIPPED_DIR="${RABIT_SHIPPED_DIR:-$PWD/autotune/shipped}"
export LD_LIBRARY_PATH="$PWD/.carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # libcjson
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
summary="$OUT/summary-$mode.txt"
L=/tmp/rabit-logs # the logs by name, for the greps below; only their concatenation comes back
rm -rf "$L"; mkdir -p "$L"
: > "$summary"; : > "$OUT/logs-$mode.txt"

run() { # run NAME CMD...: log to $L/NAME.log and $OUT/logs-MODE.txt, record the exit status and tail
  name=$1; shift
  start=$(date +%s.%N)
  "$@" > "$L/$name.log" 2>&1; rc=$?
  secs=$(awk "BEGIN{print $(date +%s.%N) - $start}")
  printf '%-28s rc=%-3s %6.1fs  %s\n' "$name" "$rc" "$secs" "$(grep -E 'passed|ERROR SUMMARY|chain batch|kernels for' "$L/$name.log" | tail -1)" | tee -a "$summary"
  { echo "==== $name"; cat "$L/$name.log"; } >> "$OUT/logs-$mode.txt"
}

# Correctness: the GPU tests named in $1, then memcheck over those in $2.
gpu_tests() {
  run smoke "$B/tests/runtime/runtime_test_gpu_smoke"
  for t in $1; do run "$t" "$B/tests/gpu/gpu_$t" samples; done
  for t in $2; do
    run "memcheck_$t" timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 "$B/tests/gpu/gpu_$t" samples
  done
}

# Kernels: compile and load times, per-shape timings, the 32-layer chain, and the peers.
kernel_bench() {
  rm -rf "$RABIT_CACHE_DIR"
  run rabitc_cold "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run rabitc_warm "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run bench_chain "$B/tests/bench/bench_chain" /tmp/llama.rplan
  run bench_linear "$B/tests/gpu/gpu_test_linear" --bench-only
  run peer_graph_bench python3 .carry/peers/graph_bench.py
  run peer_baseline python3 .carry/peers/baseline_device.py
  grep -E "session open|chain batch|fp16 peer" "$L/bench_chain.log"
  grep -E "^bench" "$L/bench_linear.log" | sed "s/ of bits//"
  tail -n 6 "$L/peer_graph_bench.log"
  grep -iE "chain|copy" "$L/peer_baseline.log"
}

# Whole models with random weights, beside the PyTorch fp16 decode peer.
model_bench() {
  run bench_llama "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run bench_smollm2 "$B/tools/rabit" bench samples/smollm2-135m.ir --random-weights
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  cat "$L/bench_llama.log" "$L/bench_smollm2.log" "$L/peer_fp16_decode.log"
}

# The trainer: its kernels, the step against the CPU reference, the loop, the peer's gradcheck.
train_tests() {
  gpu_tests "${TESTS-test_train_ops test_train_optim test_nll test_train_step test_train_loop test_train_calib}" "${MEMCHECK-test_train_step}"
  run peer_gradcheck python3 .carry/peers/rabit_qat_peer.py --gradcheck /tmp/gradcheck.safetensors
  run gradcheck "$B/tests/train/test_gradcheck_peer" /tmp/gradcheck.safetensors
  for t in test_train_ops test_train_optim test_nll test_train_step test_train_loop gradcheck; do
    grep -E "FAIL|fail|error|Error" "$L/$t.log" | head -n 12
  done
  grep -E "^  B=|worst|grad norm|run A|kill -9" "$L/test_train_step.log" "$L/test_train_loop.log"
}

# The real SmolLM2 in /tmp/rabit-qat (its halves carried by qat1 and qat2, the shards by qat2), imported;
# then the GPU tests named in TESTS (memcheck over MEMCHECK).
qat_setup() {
  Q=/tmp/rabit-qat R="$B/tools/rabit" IR=samples/smollm2-135m.ir
  [ -f $Q/paa ] && [ -f data-dev/d2/pab ] || { echo "$mode: the first half is missing (run qat1 just before)"; exit 1; }
  G=$Q/model.gguf
  cat $Q/paa data-dev/d2/pab > $G
  cp -r data-dev/d2/shards-train data-dev/d2/shards-heldout data-dev/d2/heldout.txt $Q/ && gunzip -f $Q/shards-*/*.gz
  gpu_tests "${TESTS-test_train_step}" "${MEMCHECK-}"
  echo "$(cat data-dev/d2/sha256)  $G" | sha256sum -c || exit 1
  rm -rf $Q/hf $Q/runs # a machine still warm from the last call keeps /tmp
  run import "$R" import $G -o $Q/hf
}

# RaBiT QAT of the real SmolLM2.
qat_real() {
  qat_setup
  if [ -n "${QAT_INIT_GRID:-}" ]; then # the initialization alone (--method ptq): greedy, then --init rabit per "a,b"
    run ptq_greedy "$R" train $IR --method ptq --weights $Q/hf/model.safetensors --data $Q/shards-train \
        --eval-data $Q/shards-heldout -o $Q/ptq-greedy
    for ab in $QAT_INIT_GRID; do
      a=${ab%,*} b=${ab#*,}
      run ptq_rabit_$a-$b "$R" train $IR --method ptq --init rabit --init-a $a --init-b $b --weights $Q/hf/model.safetensors \
          --data $Q/shards-train --eval-data $Q/shards-heldout -o $Q/ptq-$a-$b
    done
    grep -H -E "^train: init|^eval" "$L"/ptq_*.log
    return
  fi
  if [ -n "${QAT_PPL_ONLY:-}" ]; then # evaluation speed alone: PTQ weights, ppl by chunk size, prefill
    run quantize_k2 "$R" quantize $IR $Q/hf/model.safetensors -o $Q/k2.safetensors
    for c in 512 1024; do
      run ppl_k2_c$c "$R" ppl $IR --weights $Q/k2.safetensors --tokenizer $G --text $Q/heldout.txt --ctx 1024 --max-windows 40 --chunk $c --quiet
      run ppl_fp16_c$c "$R" ppl $IR --fp16 --weights $Q/hf/model.safetensors --tokenizer $G --text $Q/heldout.txt --ctx 1024 --max-windows 40 --chunk $c --quiet
    done
    run bench_prefill "$R" bench $IR --weights $Q/k2.safetensors --fp16-weights $Q/hf/model.safetensors
    grep -H -E "^perplexity|^speed" "$L"/ppl_*.log; cat "$L/bench_prefill.log"
    return
  fi
  tail -c +73 $Q/shards-train/train.shard > $Q/train.bin   # the ids after the 72-byte header
  tail -c +73 $Q/shards-heldout/heldout.shard > $Q/held.bin
  head -c $((40 * 1024 * 4)) $Q/held.bin > $Q/held40.bin # the peer takes whole windows: the first 40
  python3 -c "import numpy as n; a=n.fromfile('$Q/train.bin',dtype=n.int32); a[:len(a)//512*512].tofile('$Q/train512.bin')"
  run train timeout ${QAT_LIMIT:-300} "$R" train $IR --weights $Q/hf/model.safetensors --data $Q/shards-train --eval-data $Q/shards-heldout \
      --tokens ${QAT_TOKENS:-2000000} --seed 0 --eval-every ${QAT_EVAL_EVERY:-100} --ckpt-every 0 --log-every 20 \
      ${QAT_TRAIN_ARGS:-} -o $Q/out
  if [ -n "${QAT_GAMMA_TOKENS:-}" ]; then # the hidden-state MSE on the real model: a short run
    run train_gamma timeout 120 "$R" train $IR --weights $Q/hf/model.safetensors --data $Q/shards-train \
        --eval-data $Q/shards-heldout --tokens $QAT_GAMMA_TOKENS --gamma 100 --ckpt-every 0 --log-every 20 -o $Q/out-gamma
    grep -E "^step|^eval|^trained" "$L/train_gamma.log" | tail -n 8
  fi
  if [ -n "${SKIP_PEERS:-}" ]; then
    grep -E "^train:|^step|^eval|^trained" "$L/train.log" | tail -n 40
    run eval_export "$R" eval $IR --weights $Q/out/model.safetensors --data $Q/shards-heldout
    run ppl_export "$R" ppl $IR --weights $Q/out/model.safetensors --tokenizer $G --text $Q/heldout.txt --ctx 1024 --max-windows 40
    grep -hE "perplexity" "$L/eval_export.log" "$L/ppl_export.log"
    return
  fi
  run peer_train python3 .carry/peers/qat_train_peer.py --hf $Q/hf --train $Q/train512.bin --train-ctx 512 \
      --held $Q/held40.bin --held-ctx 1024 --held-windows 40 --methods rabit --paths 2 --seconds ${PEER_SECONDS:-45} \
      --lr-w 1e-3 --lr-s 3e-4 --seed 0
  run peer_step python3 .carry/peers/rabit_qat_peer.py --paths 2 --batch 8 --seq 512 --steps 20 --gamma 0
  W=$Q/out/model.safetensors
  run eval_export "$R" eval $IR --weights $W --data $Q/shards-heldout
  run eval_fp16 "$R" eval $IR --fp16 --weights $Q/hf/model.safetensors --data $Q/shards-heldout
  run ppl_export "$R" ppl $IR --weights $W --tokenizer $G --text $Q/heldout.txt --ctx 1024 --max-windows 40
  run ppl_fp16 "$R" ppl $IR --fp16 --weights $Q/hf/model.safetensors --tokenizer $G --text $Q/heldout.txt --ctx 1024 --max-windows 40
  run bench_prefill "$R" bench $IR --weights $W --fp16-weights $Q/hf/model.safetensors
  run chat_export "$R" run $IR --weights $W --tokenizer $G --chat --prompt "What is the capital of France?" -n 40
  grep -E "^train:|^step|^eval|^trained" "$L/train.log" | head -n 60
  grep -E "tok/s|held ppl|RESULT" "$L/peer_train.log" | tail -n 6
  tail -n 2 "$L/peer_step.log"
  cat "$L/eval_export.log" "$L/eval_fp16.log"
  grep -hE "^perplexity|^speed" "$L/ppl_export.log" "$L/ppl_fp16.log"
  cat "$L/bench_prefill.log" "$L/chat_export.log"
  cp $Q/out/loss.svg "$OUT/loss-smollm2-k2.svg"
}

# The real model: import, PTQ, Hugging Face as the oracle, perplexity, chat, speed.
real_model() {
  M=/tmp/rabit-model G=/tmp/rabit-model/smollm2.gguf R="$B/tools/rabit" IR=samples/smollm2-135m.ir
  [ -f $M/part-aa ] && [ -f .carry/m2/part-ab ] || { echo "real2: the first half is missing (run real1 just before)"; exit 1; }
  cat $M/part-aa .carry/m2/part-ab > $G
  echo "$(cat .carry/m2/sha256)  $G" | sha256sum -c || exit 1
  TEXT=.carry/m2/heldout.txt
  run test_model "$B/tests/gpu/gpu_test_model" samples
  run import "$R" import $G -o $M/hf
  run quantize_k2 "$R" quantize $IR --paths 2 $M/hf/model.safetensors -o $M/k2.safetensors
  run quantize_k3 "$R" quantize $IR --paths 3 $M/hf/model.safetensors -o $M/k3.safetensors
  PROMPT="The King James Bible begins: In the beginning God created"
  run run_fp16 "$R" run $IR --fp16 --weights $M/hf/model.safetensors --tokenizer $G --prompt "$PROMPT" -n 32 \
      --logits-out $M/logits.bin --ids-out $M/ids.txt
  run ppl_fp16 "$R" ppl $IR --fp16 --weights $M/hf/model.safetensors --tokenizer $G --text $TEXT --ctx 1024 \
      --max-windows 40 --ids-out $M/ppl_ids.bin --quiet
  run ppl_k2 "$R" ppl $IR --paths 2 --weights $M/k2.safetensors --tokenizer $G --text $TEXT --ctx 1024 --max-windows 40 --quiet
  run ppl_k3 "$R" ppl $IR --paths 3 --weights $M/k3.safetensors --tokenizer $G --text $TEXT --ctx 1024 --max-windows 40 --quiet
  ours=$(sed -n 's/^perplexity \([0-9.]*\).*/\1/p' "$L/ppl_fp16.log")
  np=$(wc -l < $M/ids.txt); plen=$((np - 32))
  run hf_oracle python3 tests/bench/hf_oracle.py $M/hf --logits $M/logits.bin --ids $M/ids.txt --prompt-len $plen \
      --ppl-ids $M/ppl_ids.bin --ctx 1024 --ours-ppl "$ours"
  run chat_k2 "$R" run $IR --weights $M/k2.safetensors --tokenizer $G --chat --prompt "What is the capital of France?" -n 48
  run chat_fp16 "$R" run $IR --fp16 --weights $M/hf/model.safetensors --tokenizer $G --chat --prompt "What is the capital of France?" -n 48
  run bench_real "$R" bench $IR --weights $M/k2.safetensors --fp16-weights $M/hf/model.safetensors
  tail -3 "$L/run_fp16.log"; cat "$L/hf_oracle.log"
  grep -h "^perplexity" "$L"/ppl_*.log
  tail -n 4 "$L/quantize_k2.log" "$L/quantize_k3.log"
  cat "$L/chat_k2.log" "$L/chat_fp16.log" "$L/bench_real.log"
}

# The same random model through the old and the new build: identical bytes out.
same_outputs() {
  printf '%-16s %-6s %-6s %-18s %-18s %s\n' model path prompt old new same >> "$summary"
  for m in tiny smollm2-135m llama2-7b; do
    for p in 1 12 100; do
      toks=$(seq 1 $p | tr '\n' ' ')
      for fp in "" --fp16; do
        [ "$m" = llama2-7b ] && [ -n "$fp" ] && continue
        for b in old new; do
          .carry/$b/tools/rabit run samples/$m.ir --random-weights $fp --tokens "$toks" -n 4 --quiet \
            --logits-out /tmp/logits-$b.bin --ids-out /tmp/ids-$b.txt > "$L/run-$m-$p$fp-$b.log" 2>&1
          sums=$(cat /tmp/logits-$b.bin /tmp/ids-$b.txt | sha256sum | cut -c1-16)
          eval "sum_$b=$sums"
        done
        same=$([ "$sum_old" = "$sum_new" ] && echo yes || echo NO)
        printf '%-16s %-6s %-6s %-18s %-18s %s\n' $m "${fp:-2bit}" $p $sum_old $sum_new $same >> "$summary"
      done
    done
  done
}

# Overlapped launches (programmatic dependent launch) against plain ones: the same
# random models give the same logits byte for byte, then decode and prefill speed of each.
overlap_ids() { # the same random models with overlapped launches off and on: identical bytes out
  printf '%-16s %-6s %-6s %-18s %-18s %s\n' model path prompt plain overlapped same >> "$summary"
  for m in tiny smollm2-135m llama2-7b; do
    for p in 1 12 100; do
      toks=$(seq 1 $p | tr '\n' ' ')
      for pdl in 0 1; do
        RABIT_PDL=$pdl "$B/tools/rabit" run samples/$m.ir --random-weights --tokens "$toks" -n 4 --quiet \
          --logits-out /tmp/logits-$pdl.bin --ids-out /tmp/ids-$pdl.txt > "$L/run-$m-$p-pdl$pdl.log" 2>&1
        eval "sum_$pdl=$(cat /tmp/logits-$pdl.bin /tmp/ids-$pdl.txt | sha256sum | cut -c1-16)"
      done
      printf '%-16s %-6s %-6s %-18s %-18s %s\n' $m 2bit $p $sum_0 $sum_1 "$([ "$sum_0" = "$sum_1" ] && echo yes || echo NO)" >> "$summary"
    done
  done
}

overlap_compare() {
  overlap_ids
  for round in 1 2; do
    for pdl in 0 1; do
      for m in smollm2-135m llama2-7b; do
        RABIT_PDL=$pdl run "bench_${m}_pdl${pdl}_$round" "$B/tools/rabit" bench samples/$m.ir --random-weights
      done
    done
  done
  for f in "$L"/bench_*_pdl*.log; do echo "== $(basename $f)"; grep -vE "^$" "$f" | tail -n 6; done
}

# Old and new, alternating, in one call: kernels, the chain, whole models.
speed_compare() {
  for round in $(seq 1 "${ROUNDS:-2}"); do
    for b in old new; do
      R=.carry/$b
      run "linear_${b}_$round" "$R/tests/gpu/gpu_test_linear" --bench-only
      "$R/tools/rabitc" -o /tmp/llama-$b.rplan samples/llama2-7b.ir > /dev/null 2>&1
      run "chain_${b}_$round" "$R/tests/bench/bench_chain" /tmp/llama-$b.rplan
      run "llama_${b}_$round" "$R/tools/rabit" bench samples/llama2-7b.ir --random-weights
      run "smollm2_${b}_$round" "$R/tools/rabit" bench samples/smollm2-135m.ir --random-weights
    done
  done
  run peer_graph_bench python3 .carry/peers/graph_bench.py
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/linear_*.log; do echo "== $(basename $f)"; grep -E "^bench" "$f" | sed "s/ of bits//"; done
  for f in "$L"/chain_*.log "$L"/llama_*.log "$L"/smollm2_*.log; do echo "== $(basename $f)"; grep -vE "^$" "$f" | tail -n 8; done
  tail -n 8 "$L/peer_graph_bench.log" "$L/peer_fp16_decode.log"
}

# What json leaves out, measured in the same call: the old kernels, PDL off, the dequant prefill.
report_extra() {
  if [ -d .carry/old ]; then
    run linear_old .carry/old/tests/gpu/gpu_test_linear --bench-only
    .carry/old/tools/rabitc -o /tmp/llama-old.rplan samples/llama2-7b.ir > /dev/null 2>&1
    run chain_old .carry/old/tests/bench/bench_chain /tmp/llama-old.rplan
    run bench_llama_old .carry/old/tools/rabit bench samples/llama2-7b.ir --random-weights
    run bench_smollm2_old .carry/old/tools/rabit bench samples/smollm2-135m.ir --random-weights
    run chain_again "$B/tests/bench/bench_chain" /tmp/llama.rplan # new, old, new: drift shows
    grep -h "^chain" "$L/bench_chain.log" "$L/chain_old.log" "$L/chain_again.log"
  fi
  for m in llama2-7b smollm2-135m; do
    run "bench_${m}_pdl0" env RABIT_PDL=0 "$B/tools/rabit" bench samples/$m.ir --random-weights
  done
  run bench_llama_dequant env RABIT_PREFILL=dequant "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run bench_llama_mma env RABIT_PREFILL=mma "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  if [ -f "$L/linear_old.log" ]; then # old | new, row by row
    grep -E "^bench" "$L/linear_old.log" > /tmp/old.txt; grep -E "^bench" "$L/bench_linear.log" > /tmp/new.txt
    paste -d'|' /tmp/old.txt /tmp/new.txt
  fi
  for f in "$L"/bench_*_old.log "$L"/bench_*_pdl0.log "$L"/bench_llama_dequant.log "$L"/bench_llama_mma.log; do
    echo "== $(basename $f)"; grep -vE "^$" "$f" | tail -n 8
  done
}

# Old and new kernels one after the other: the per-shape table and the chain.
kernels_ab() {
  for b in old new; do
    run "linear_$b" .carry/$b/tests/gpu/gpu_test_linear --bench-only
    .carry/$b/tools/rabitc -o /tmp/llama-$b.rplan samples/llama2-7b.ir > /dev/null 2>&1
    run "chain_$b" .carry/$b/tests/bench/bench_chain /tmp/llama-$b.rplan
  done
  grep -E "^bench" "$L/linear_old.log" > /tmp/old.txt; grep -E "^bench" "$L/linear_new.log" > /tmp/new.txt
  paste -d'|' /tmp/old.txt /tmp/new.txt
  grep -h "^chain" "$L/chain_old.log" "$L/chain_new.log"
}

# The GPU's NLL on the windows the host target scored (RESULTS.md, issue 13), and a trained model for it.
nll_compare() {
  qat_setup
  W=$Q/hf/model.safetensors
  run quantize_k2 "$R" quantize $IR --paths 2 $W -o $Q/k2.safetensors
  sha256sum $Q/hf/model.safetensors $Q/k2.safetensors | tee -a "$OUT/logs-$mode.txt"
  run eval8_fp16 "$R" eval $IR --fp16 --weights $W --data $Q/shards-heldout --windows 8 --json --quiet
  run eval8_k2 "$R" eval $IR --paths 2 --weights $Q/k2.safetensors --data $Q/shards-heldout --windows 8 --json --quiet
  run train_short "$R" train $IR --weights $W --data $Q/shards-train --eval-data $Q/shards-heldout \
      --tokens ${NLL_TOKENS:-1100000} --method rabit --init rabit --lr-w 1e-3 --eval-every 100 --ckpt-every 0 -o $Q/short
  run eval8_trained "$R" eval $IR --weights $Q/short/model.safetensors --data $Q/shards-heldout --windows 8 --json --quiet
  sha256sum $Q/short/model.safetensors | tee -a "$OUT/logs-$mode.txt"
  split -b 16000000 $Q/short/model.safetensors "$OUT/trained-k2.part-"
  grep -h '"validation"\|"test"' "$L"/eval8_*.log
}

# The fused rmsnorm on real weights (after qat1): a short RaBiT k = 2 training of SmolLM2, then
# the prompt logits of the trained export and of PTQ k = 2 with the decode buckets' fused norms
# (the default) and without them (RABIT_FUSE_NORM=0), prompts of 1, 5, 12 and 16 tokens (the b1,
# b<=8 and b<=16 kernels) and 40 (the prefill kernels, which never fuse: the control), compared
# by tests/bench/logits_diff.py; greedy chat both ways; the trained model's rabit bench.
fuse_check() {
  qat_setup
  W=$Q/hf/model.safetensors
  run quantize_k2 "$R" quantize $IR --paths 2 $W -o $Q/k2.safetensors
  [ -n "${FUSE_REUSE:-}" ] && [ -f $Q/short/model.safetensors ] || \
  run train_short "$R" train $IR --weights $W --data $Q/shards-train --eval-data $Q/shards-heldout \
      --tokens ${NLL_TOKENS:-1100000} --method rabit --init rabit --lr-w 1e-3 --eval-every 100 --ckpt-every 0 -o $Q/short
  for wt in ${FUSE_WEIGHTS:-short/model k2}; do
    for p in ${FUSE_PROMPTS:-1 5 12 16 40}; do
      toks=$(awk -v n=$p -v m=${FUSE_MUL:-7919} -v o=${FUSE_SKIP:-0} 'BEGIN { for (i = 1; i <= n; i++) printf "%s%d", (i > 1 ? "," : ""), ((i + o) * m + 13) % 49152 }')
      for f in 1 0; do
        RABIT_FUSE_NORM=$f run "logits_$(basename $wt)_p${p}_fuse$f" "$R" run $IR --weights $Q/$wt.safetensors \
            --tokens "$toks" -n 1 --quiet --logits-out $Q/lg-$(basename $wt)-$p-$f.bin
      done
      python3 tests/bench/logits_diff.py "$(basename $wt) prompt $p" $Q/lg-$(basename $wt)-$p-1.bin \
          $Q/lg-$(basename $wt)-$p-0.bin 49152 | tee -a "$summary"
    done
  done
  if [ -n "${FUSE_EXPORT:-}" ]; then # the trained export and the logits, for the host target to score here
    tar -C $Q -cf - short/model.safetensors $(cd $Q && ls lg-model-*.bin) | gzip -1 | split -b 16000000 - "$FUSE_EXPORT/fuse.tgz.part-"
    ls -la "$FUSE_EXPORT"
  fi
  for f in 1 0; do
    RABIT_FUSE_NORM=$f run "chat_fuse$f" "$R" run $IR --weights $Q/short/model.safetensors --tokenizer $G --chat \
        --prompt "What is the capital of France?" -n 32 --quiet
  done
  grep -v "^rabit run: note" "$L/chat_fuse0.log" | cmp -s "$L/chat_fuse1.log" - && echo "chat: the same text fused and unfused" | tee -a "$summary" \
    || echo "chat: the texts differ" | tee -a "$summary"
  run bench_trained "$R" bench $IR --weights $Q/short/model.safetensors --fp16-weights $W
  cat "$L/chat_fuse1.log" "$L/chat_fuse0.log"; grep -vE "^$" "$L/bench_trained.log" | tail -n 8
}

# The bit ring against the plain register loads, per shape, in one call.
ring_bench() {
  gpu_tests "${TESTS-test_linear}" ""
  run ring0 "$B/tests/gpu/gpu_test_linear" --bench-only
  for st in 2 4 8; do
    run ring$st env RABIT_TILE_XOR=0,0,$st,0 RABIT_TILE_MMA=0,0,$st,0 RABIT_BENCH_PATHS=${RING_PATHS:-2} \
        "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  for st in 0 2 4 8; do echo "== ring $st"; grep -E "^bench [ 0-9]" "$L/ring$st.log" | sed "s/ of bits//"; done
  # Where the batch-1 kernel's time goes at 22016 x 4096, k = 2, plain and with 4 stages.
  for st in 0 4; do
    run "ncu_ring$st" timeout 120 env RABIT_TILE_XOR=0,0,$st,0 RABIT_BENCH_PATHS=2 ncu --clock-control none \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section ComputeWorkloadAnalysis --section InstructionStats --section Occupancy --section LaunchStats \
        -k regex:xor_n22016_k4096_p2 -c 1 "$B/tests/gpu/gpu_test_linear" --bench-only
    grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Issue Slots|Achieved Occupancy|Registers Per|Stall|Executed Ipc|Pipe|Warp Cycles Per Issued|Block Limit|Theoretical Occ" "$L/ncu_ring$st.log" | head -n 40
  done
}

# The register kernels' row tiles and K split (tile[0], tile[1]) by hand, k = 2, per shape:
# how far the default (2 rows, 16 warps: one group a warp at K = 4096) is from the best.
tile_sweep() {
  tiles=${SWEEP_TILES:-2,16 2,8 2,4 2,2 1,8 1,4 4,8 4,4 4,2 8,4}
  for t in $tiles; do
    run "tiles_$t" env RABIT_TILE_XOR=$t,0,0 RABIT_TILE_MMA=$t,0,0 RABIT_BENCH_PATHS=${SWEEP_PATHS:-2} \
        "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  for t in $tiles; do
    echo "== tiles $t"; grep -E "^bench [ 0-9]" "$L/tiles_$t.log" | grep -v "b=16" | sed "s/ of bits//"
  done
}

# The xsmem strategy: its table (and memcheck over a sixth of it), then its tiles by hand at
# XSMEM_BATCH (default 16), k = 2, beside the register design's mma at its default and shipped tiles.
xsmem_sweep() {
  run table_xsmem env RABIT_TABLE_ONLY=xsmem "$B/tests/gpu/gpu_test_linear"
  run memcheck_xsmem timeout 240 env RABIT_TABLE_ONLY=xsmem RABIT_TABLE_PART=0/6 compute-sanitizer --tool memcheck \
      --error-exitcode 9 "$B/tests/gpu/gpu_test_linear"
  b=${XSMEM_BATCH:-16}
  for t in 0,0,0,0 ${MMA_TILES:-3,4,0,16}; do
    run "mma_$t" env RABIT_TILE_MMA=$t RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=$b RABIT_BENCH_STRATEGY=mma \
        "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  tiles=${XSMEM_TILES:-0,0,0,0 1,2,4,0 1,4,2,0 1,8,1,0 1,4,4,0 1,2,8,0 2,2,4,0 2,4,2,0 1,16,1,0 1,8,2,0}
  for t in $tiles; do
    run "xsmem_$t" env RABIT_TILE_XSMEM=$t RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=$b RABIT_BENCH_STRATEGY=xsmem \
        "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  [ -n "${XSMEM_PEERS-1}" ] && run peer_graph_bench python3 .carry/peers/graph_bench.py
  for t in 0,0,0,0 ${MMA_TILES:-3,4,0,16}; do echo "== mma $t"; grep -E "^bench [ 0-9]" "$L/mma_$t.log" | sed "s/ of bits//"; done
  for t in $tiles; do echo "== xsmem $t"; grep -E "^bench [ 0-9]" "$L/xsmem_$t.log" | sed "s/ of bits//"; done
  grep -E "FAIL" "$L/table_xsmem.log" | head -n 20
  tail -n 3 "$L/memcheck_xsmem.log"
  [ -f "$L/peer_graph_bench.log" ] && grep -iE "cublas|fp16" "$L/peer_graph_bench.log" | head -n 20
}

# Batch-1 schedules by hand (k = 2; EXPLORE_TILES of rows,split,stages,batch for xor and
# lop3), then ncu of 22016 x 4096 under each of EXPLORE_NCU: where each one's time goes.
explore() {
  tiles=${EXPLORE_TILES:-0,0,0,0 4,4,0,0 1,1,4,0 1,1,8,0 2,1,4,0 1,2,4,0 2,2,4,0 4,1,4,0 4,2,4,0}
  profiled=${EXPLORE_NCU-0,0,0,0 1,1,4,0 2,2,4,0 4,4,0,0}
  for t in $tiles; do
    run "explore_$t" env RABIT_TILE_XOR=$t RABIT_TILE_LOP3=$t RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=1 \
        RABIT_BENCH_STRATEGY=xor,lop3 "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  for t in $profiled; do
    run "ncu_$t" timeout 120 env RABIT_TILE_XOR=$t RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=1 RABIT_BENCH_STRATEGY=xor \
        ncu --clock-control none --section SpeedOfLight --section WarpStateStats --section Occupancy \
        --section LaunchStats --section InstructionStats -k regex:xor_n22016_k4096_p2 -c 1 \
        "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  # Why each warp issues so rarely: the stall reasons per issued instruction and the pipes.
  for st in xor lop3; do
    for t in ${EXPLORE_STALLS:-0,0,0,0 4,4,0,0 2,4,0,0}; do
      run "stalls_${st}_$t" timeout 120 env RABIT_TILE_XOR=$t RABIT_TILE_LOP3=$t RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=1 \
          RABIT_BENCH_STRATEGY=$st ncu --clock-control none \
          --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,launch__registers_per_thread" \
          -k regex:${st}_n22016_k4096_p2 -c 1 "$B/tests/gpu/gpu_test_linear" --bench-only
    done
  done
  for t in $tiles; do
    echo "== tiles $t"; grep -E "^bench [ 0-9]" "$L/explore_$t.log" | sed "s/ of bits//"
  done
  for t in $profiled; do
    echo "== ncu $t"
    grep -E "Duration|DRAM Throughput|Issue Slots|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Block Limit|Executed Instructions  " "$L/ncu_$t.log" | head -n 24
  done
  for f in "$L"/stalls_*.log; do
    echo "== $(basename $f .log)"
    grep -E "stalled|hmma|issue_active|inst_executed|warps_active|duration|registers" "$f" | awk '$NF+0 >= 0.05 || /hmma|issue_active|inst_exec|warps_active|duration|registers/' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
  done
}

# A bmma kernel change, old (.carry/old) against new: the new bmma table cases and their
# memcheck, the bmma rows of the per-shape bench and the chain for both builds (old, new, old,
# new), the profile of both, and both whole models.
bmma_ab() {
  run table_bmma env RABIT_TABLE_ONLY=bmma "$B/tests/gpu/gpu_test_linear" samples
  run memcheck_bmma env RABIT_TABLE_ONLY=bmma RABIT_TABLE_PART=1/8 compute-sanitizer --tool memcheck \
      --error-exitcode 1 "$B/tests/gpu/gpu_test_linear" samples
  for b in old new; do .carry/$b/tools/rabitc -o /tmp/llama-$b.rplan samples/llama2-7b.ir > /dev/null 2>&1; done
  for i in 1 2; do
    for b in old new; do
      run "linear_${b}_$i" env RABIT_BENCH_STRATEGY=bmma .carry/$b/tests/gpu/gpu_test_linear --bench-only
      run "chain_${b}_$i" .carry/$b/tests/bench/bench_chain /tmp/llama-$b.rplan
    done
  done
  for b in old new; do
    run "bench_llama_$b" .carry/$b/tools/rabit bench samples/llama2-7b.ir --random-weights --only 2bit
    run "bench_smollm2_$b" .carry/$b/tools/rabit bench samples/smollm2-135m.ir --random-weights --only 2bit
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  grep -E "^bench" "$L/linear_old_2.log" > /tmp/old.txt; grep -E "^bench" "$L/linear_new_2.log" > /tmp/new.txt
  paste -d'|' /tmp/old.txt /tmp/new.txt | grep "k=2"
  for b in old new; do for i in 1 2; do echo "== chain $b $i"; grep -h "^chain" "$L/chain_${b}_$i.log"; done; done
  for b in old new; do grep -H "decode" "$L/bench_llama_$b.log" "$L/bench_smollm2_$b.log"; done
  cat "$L/peer_fp16_decode.log"
  [ "${BMMAAB_PROFILE:-1}" = 0 ] || for b in old new; do BMMAPROF_SHAPES=n12288_k4096 B=.carry/$b bmma_profile_named "$b"; done
}

# Why the bmma kernel at batch 4 takes 2.2-2.5x its batch-1 time: the stall reasons per
# issued instruction, the pipes, occupancy and the L1 / L2 hit rates of its loads, at batch 1
# and 4 on two shapes (BMMAPROF_SHAPES).
bmma_profile() { bmma_profile_named ""; }
bmma_profile_named() { # $1: a prefix for the logs (the build's name)
  for sh in ${BMMAPROF_SHAPES:-n4096_k4096 n12288_k4096}; do
    for b in 1 4; do
      run "bmmaprof$1_${sh}_b$b" timeout 120 env RABIT_BENCH_PATHS=2 RABIT_BENCH_BATCH=$b RABIT_BENCH_STRATEGY=bmma \
          ncu --clock-control none \
          --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,launch__registers_per_thread,launch__grid_size,launch__block_size,launch__occupancy_limit_registers,l1tex__t_sector_hit_rate.pct,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__inst_executed_pipe_tensor.avg.pct_of_peak_sustained_active,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active" \
          -k regex:bmma_${sh}_p2_b$b -c 1 "$B/tests/gpu/gpu_test_linear" --bench-only
    done
  done
  for f in "$L"/bmmaprof$1_*.log; do
    echo "== $(basename $f .log)"
    grep -E "stalled|issue_active|inst_executed|warps_active|duration|registers|grid_size|block_size|occupancy|hit_rate|throughput|pipe" "$f" | awk '$NF+0 >= 0.05 || !/stalled/' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
  done
}

# The dequant prefill kernel: where its time goes (ncu of the 4096 x 4096 one at batch 512), and the
# prefill layers at other warps per block (DEQUANT_WPB).
dequant_probe() {
  wpbs=${DEQUANT_WPB:-4 16}
  run ncu_dequant timeout 120 env RABIT_BENCH_BATCH=512 ncu --clock-control none --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,dram__bytes_write.sum,dram__bytes_read.sum" \
      -k regex:dequant_n4096_k4096 -c 1 "$B/tests/gpu/gpu_test_linear" --bench-only
  for w in $wpbs; do
    run "prefill_wpb$w" env RABIT_TILE_DEQUANT=$w,0,0,0 RABIT_BENCH_BATCH=512 "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  grep -E "Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Achieved Occupancy|Registers Per|stalled|inst_executed|issue_active|dram__bytes|Block Limit Reg" "$L/ncu_dequant.log" | \
    awk '!/stalled/ || $NF+0 >= 0.1' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//'
  for w in $wpbs; do echo "== wpb $w"; grep -E "^bench prefill" "$L/prefill_wpb$w.log"; done
}

# The dequant kernel's table cases, the GPU tests in TESTS, its probe, and llama2-7b's rabit bench.
dequant_check() {
  run smoke "$B/tests/runtime/runtime_test_gpu_smoke"
  run table_dequant env RABIT_TABLE_ONLY=dequant "$B/tests/gpu/gpu_test_linear" samples
  gpu_tests "${TESTS-}" ""
  dequant_probe
  run bench_llama "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  grep -vE "^$" "$L/bench_llama.log" | tail -n 6
}

# Old (.carry/old) and new whole models alternating, two rounds (2-bit; decode at contexts 128 and
# 1024, prefill), beside the fp16 decode peer.
models_ab() {
  for round in 1 2; do
    for b in old new; do
      for m in smollm2-135m llama2-7b; do
        run "bench_${m}_${b}_$round" ".carry/$b/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
      done
    done
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/bench_*_old_*.log "$L"/bench_*_new_*.log "$L/peer_fp16_decode.log"; do
    echo "== $(basename "$f")"; grep -E "decode|prefill|fp16 graph" "$f"
  done
}

# The fused rmsnorm off (the default) and on (RABIT_FUSE_NORM=1): the model and plan-API tests,
# then both whole models each way, twice, alternating, beside the fp16 decode peer.
fuse_ab() {
  gpu_tests "${TESTS-test_model test_plan_api}" ""
  for round in 1 2; do
    for f in 0 1; do
      for m in smollm2-135m llama2-7b; do
        RABIT_FUSE_NORM=$f run "bench_${m}_fuse${f}_$round" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
      done
    done
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/bench_*_fuse*.log "$L/peer_fp16_decode.log"; do
    echo "== $(basename "$f")"; grep -E "decode|prefill|fp16 graph" "$f"
  done
}

# The bmma strategy (issue 11): its linear cases (and memcheck of them), the model and plan-API
# tests, per-shape timings of bmma beside xor at batch 1 and 4 with the peers, then both models
# with and without it (RABIT_BMMA), alternating, beside the fp16 decode peer.
bmma_check() {
  RABIT_TABLE_ONLY=bmma gpu_tests "test_linear" "${MEMCHECK-test_linear}"
  gpu_tests "${TESTS-test_model test_plan_api}" ""
  RABIT_BENCH_PATHS=2 RABIT_BENCH_STRATEGY=bmma,xor,mma run bench_bmma "$B/tests/gpu/gpu_test_linear" --bench-only
  grep -E "^bench" "$L/bench_bmma.log" | grep -v "b=16" | sed "s/ of bits//"
  run peer_graph_bench python3 .carry/peers/graph_bench.py
  tail -n 6 "$L/peer_graph_bench.log"
  for round in 1 2; do
    for v in 0 1; do
      for m in smollm2-135m llama2-7b; do
        RABIT_BMMA=$v run "bench_${m}_bmma${v}_$round" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
      done
    done
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/bench_*_bmma?_*.log "$L/peer_fp16_decode.log"; do
    echo "== $(basename "$f")"; grep -E "decode|fp16 graph" "$f"
  done
}

# The bmma strategy, second look: its cases (fused rmsnorm shapes among them) and memcheck, the
# model, plan-API and op tests, its tiles by hand at batch 1 and 4 (BMMA_TILES1, BMMA_TILES4), the
# 32-layer chain, then both models three ways (RABIT_BMMA=0 with the norms apart, the bmma buckets
# with their norms apart, the default: bmma with the norm in its planes) beside the fp16 peer.
bmma_tiles() {
  RABIT_TABLE_ONLY=bmma gpu_tests "test_linear" "${MEMCHECK-test_linear}"
  gpu_tests "${TESTS-test_model test_plan_api test_ops}" ""
  for b in 1 4; do
    eval "tiles=\${BMMA_TILES$b}"
    for t in 0,0,0,0 $tiles; do
      RABIT_TILE_BMMA=$t RABIT_BENCH_BATCH=$b RABIT_BENCH_PATHS=2 RABIT_BENCH_STRATEGY=bmma \
        run "tiles_b${b}_$t" "$B/tests/gpu/gpu_test_linear" --bench-only
      grep -E "^bench" "$L/tiles_b${b}_$t.log" | sed "s/ of bits//; s/^/tile $t: /"
    done
  done
  run rabitc_plan "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run bench_chain "$B/tests/bench/bench_chain" /tmp/llama.rplan
  grep -E "chain batch|fp16 peer" "$L/bench_chain.log"
  for m in smollm2-135m llama2-7b; do
    RABIT_BMMA=0 RABIT_FUSE_NORM=0 run "bench_${m}_xor" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
    RABIT_FUSE_NORM=0 run "bench_${m}_bmma" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
    run "bench_${m}_default" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/bench_*_xor.log "$L"/bench_*_bmma.log "$L"/bench_*_default.log "$L/peer_fp16_decode.log"; do
    echo "== $(basename "$f")"; grep -E "decode|fp16 graph" "$f"
  done
}

# The bmma defaults, third look: the model and plan-API tests, the 32-layer chain with the norm in
# the planes and apart (RABIT_FUSE_NORM=0), both models (default twice, and with the norms apart)
# beside the fp16 peer.
bmma_defaults() {
  RABIT_TABLE_ONLY=bmma gpu_tests "test_linear" "${MEMCHECK-test_linear}"
  gpu_tests "${TESTS-test_model test_plan_api}" ""
  run rabitc_plan "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run bench_chain "$B/tests/bench/bench_chain" /tmp/llama.rplan
  RABIT_FUSE_NORM=0 run rabitc_plan0 "$B/tools/rabitc" -o /tmp/llama0.rplan samples/llama2-7b.ir
  run bench_chain0 "$B/tests/bench/bench_chain" /tmp/llama0.rplan
  for f in bench_chain bench_chain0; do echo "== $f"; grep -E "chain batch|fp16 peer" "$L/$f.log"; done
  for r in 1 2; do
    for m in smollm2-135m llama2-7b; do
      run "bench_${m}_default$r" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
    done
  done
  for m in smollm2-135m llama2-7b; do
    RABIT_FUSE_NORM=0 run "bench_${m}_apart" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  for f in "$L"/bench_*_default?.log "$L"/bench_*_apart.log "$L/peer_fp16_decode.log"; do
    echo "== $(basename "$f")"; grep -E "decode|prefill|fp16 graph" "$f"
  done
}

# The bmma strategy on real weights (after qat1): a short RaBiT training of SmolLM2 k = 2, then
# the held-out perplexity of the export three ways: --chunk 1 (every token a batch-1 forward: the
# bmma kernels with the norm in their planes, the default), --chunk 1 with RABIT_BMMA=0
# RABIT_FUSE_NORM=0 (the xor kernels, the norms apart: the previous default), and --chunk 256
# (the dequant prefill: fp16 W_hat and cuBLAS, the reference on the GPU); then chat both ways.
real_bmma() {
  TESTS= qat_setup
  W=$Q/hf/model.safetensors M=$Q/short/model.safetensors
  run train_short "$R" train $IR --weights $W --data $Q/shards-train --eval-data $Q/shards-heldout \
      --tokens ${NLL_TOKENS:-1100000} --method rabit --init rabit --lr-w 1e-3 --eval-every 100 --ckpt-every 0 -o $Q/short
  P="$R ppl $IR --weights $M --tokenizer $G --text $Q/heldout.txt --ctx ${PPL_CTX:-512} --max-windows ${PPL_WINDOWS:-4} --quiet"
  run ppl_bmma $P --chunk 1
  RABIT_BMMA=0 RABIT_FUSE_NORM=0 run ppl_xor $P --chunk 1
  run ppl_dequant $P --chunk 256
  for f in ppl_bmma ppl_xor ppl_dequant; do echo "== $f: $(grep -iE "perplexity|nll" "$L/$f.log" | tail -n 2 | tr '\n' ' ')" | tee -a "$summary"; done
  run chat_bmma "$R" run $IR --weights $M --tokenizer $G --chat --prompt "What is the capital of France?" -n 32 --quiet
  RABIT_BMMA=0 RABIT_FUSE_NORM=0 run chat_xor "$R" run $IR --weights $M --tokenizer $G --chat \
      --prompt "What is the capital of France?" -n 32 --quiet
  cat "$L/chat_bmma.log" "$L/chat_xor.log"
  run bench_trained "$R" bench $IR --weights $M --fp16-weights $W
  grep -vE "^$" "$L/bench_trained.log" | tail -n 8
  gpu_tests "${TUNE_TESTS-test_tune}" "" # the tuner's GPU test: bmma candidates after their pre-pass
}

# A decode-step change (issue 11): the op, model, plan and linear tests, memcheck of the op
# test, the overlap's identical logits, old and new whole models, then one profiled step of
# each model (PROF_MODELS).
decode_check() {
  gpu_tests "test_ops test_model test_plan_api test_linear" "${MEMCHECK-test_ops}"
  overlap_ids
  models_ab
  step_profile
}

# The fused rmsnorm (issue 11): the model, plan-API and linear tests, memcheck of the model
# test, the overlap's identical logits, one tuning of llama2-7b (its kernels' keys changed;
# the export comes back), then old and new whole models (both read the tuning).
prenorm_check() {
  gpu_tests "test_model test_plan_api test_linear" "${MEMCHECK-test_model}"
  overlap_ids
  rm -rf "$RABIT_CACHE_DIR"
  run tune_llama "$B/tools/rabitc" tune samples/llama2-7b.ir
  run tune_export "$B/tools/rabitc" tune --export "$OUT/tuning-h200.json"
  grep -A30 "^kernel  " "$L/tune_llama.log" | head -n 20
  models_ab
}

# One decode step of each model, kernel by kernel (ncu, serialized), beside the step's own time.
step_profile() {
  for m in ${PROF_MODELS-smollm2-135m llama2-7b}; do
    run "bench_$m" "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit --ctx 128 --prefill 16
    run "ncu_$m" timeout 200 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
        "$B/tools/rabit" bench samples/$m.ir --random-weights --only 2bit --ctx 128 --prefill 16 --steps ${PROF_STEPS:-20}
    grep -E "decode" "$L/bench_$m.log"
    python3 tests/bench/ncu_step.py "$L/ncu_$m.log" | head -n 24 # the last whole decode step
  done
}

# The lop3 decode's table cases against the reference, then memcheck of an eighth of them.
lop3_cases() {
  run smoke "$B/tests/runtime/runtime_test_gpu_smoke"
  run table_lop3 env RABIT_TABLE_ONLY=lop3 "$B/tests/gpu/gpu_test_linear" samples
  run memcheck_lop3 timeout 60 env RABIT_TABLE_ONLY=lop3 RABIT_TABLE_PART=0/8 compute-sanitizer --tool memcheck \
      --error-exitcode 9 "$B/tests/gpu/gpu_test_linear" samples
  grep -E "ERROR SUMMARY|passed" "$L/memcheck_lop3.log" | tail -n 2
}

# The lop3 decode (issue 11, item 1): its cases, the per-shape bench (xor, mma and lop3
# rows) with the default tiles and a few by hand, the 32-layer chain and whole models with
# and without RABIT_DECODE=lop3 beside the fp16 peer.
lop3_check() {
  lop3_cases
  run bench_default env RABIT_BENCH_PATHS=2 "$B/tests/gpu/gpu_test_linear" --bench-only
  tiles=${LOP3_TILES:-4,4 2,4 3,6}
  for t in $tiles; do
    run "bench_lop3_$t" env RABIT_BENCH_PATHS=2 RABIT_TILE_LOP3=$t,0,0 RABIT_TILE_XOR=$t,0,0 "$B/tests/gpu/gpu_test_linear" --bench-only
  done
  "$B/tools/rabitc" -o /tmp/llama-xor.rplan samples/llama2-7b.ir > /dev/null 2>&1
  RABIT_DECODE=lop3 "$B/tools/rabitc" -o /tmp/llama-lop3.rplan samples/llama2-7b.ir > /dev/null 2>&1
  run chain_xor "$B/tests/bench/bench_chain" /tmp/llama-xor.rplan
  run chain_lop3 "$B/tests/bench/bench_chain" /tmp/llama-lop3.rplan
  for m in llama2-7b smollm2-135m; do
    run "model_${m}_default" "$B/tools/rabit" bench samples/$m.ir --random-weights
    run "model_${m}_lop3" env RABIT_DECODE=lop3 "$B/tools/rabit" bench samples/$m.ir --random-weights
  done
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  echo "== per shape, k = 2 (default tiles)"; grep -E "^bench [ 0-9]" "$L/bench_default.log" | sed "s/ of bits//"
  for t in $tiles; do
    echo "== tiles $t"; grep -E "^bench [ 0-9].* (xor|lop3) " "$L/bench_lop3_$t.log" | sed "s/ of bits//"
  done
  grep -h "^chain" "$L/chain_xor.log" "$L/chain_lop3.log"
  for f in "$L"/model_*.log "$L/peer_fp16_decode.log"; do echo "== $(basename $f)"; grep -E "decode|prefill|fp16 graph" "$f"; done
}

# One tuning of llama2-7b from an empty cache, its export, and the tuned model beside the fp16 peer.
tune_once() {
  rm -rf "$RABIT_CACHE_DIR"
  run tune_llama "$B/tools/rabitc" tune samples/llama2-7b.ir
  run tune_export "$B/tools/rabitc" tune --export "$OUT/tuning-h200.json"
  run bench_llama_tuned "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  grep -A30 "^kernel  " "$L/tune_llama.log" | head -n 20
  grep -E "decode|prefill" "$L/bench_llama_tuned.log"; cat "$L/peer_fp16_decode.log"
}

# The batch-1 kernels tuned (the bmma buckets' space: their tiles, then xor and lop3), exported,
# then the chain and llama2-7b with those records beside the fp16 peer.
tune_b1() {
  rm -rf "$RABIT_CACHE_DIR"
  "$B/tools/rabitc" -o /tmp/llama-shipped.rplan samples/llama2-7b.ir > /dev/null 2>&1
  run bench_chain_shipped "$B/tests/bench/bench_chain" /tmp/llama-shipped.rplan # the records shipped, before tuning
  run tune_b1 "$B/tools/rabitc" tune samples/llama2-7b.ir --batch 1 --budget ${TUNE_BUDGET:-150}
  run tune_export "$B/tools/rabitc" tune --export "$OUT/tuning-h200.json"
  run rabitc_plan "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run bench_chain "$B/tests/bench/bench_chain" /tmp/llama.rplan
  run bench_llama_tuned "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights --only 2bit
  run bench_smollm2 "$B/tools/rabit" bench samples/smollm2-135m.ir --random-weights --only 2bit
  run peer_fp16_decode python3 .carry/peers/fp16_decode_peer.py
  grep -A12 "^kernel  " "$L/tune_b1.log" | head -n 14
  grep -H -E "chain batch" "$L/bench_chain_shipped.log" "$L/bench_chain.log"
  grep -E "decode" "$L/bench_llama_tuned.log" "$L/bench_smollm2.log"; cat "$L/peer_fp16_decode.log"
}

# The chain's own kernels at one batch under the profiler (serialized: no overlap), old and new:
# the model runs the fused forms (q/k/v and gate/up with the rmsnorm, o and down with the residual),
# whose times the per-shape bench does not show. CHAINPROF_OLD / _NEW: kernel name regexes.
chain_profile() {
  m="gpu__time_duration.sum,launch__registers_per_thread,launch__grid_size,launch__block_size,smsp__inst_executed.sum,sm__warps_active.avg.pct_of_peak_sustained_active,dram__throughput.avg.pct_of_peak_sustained_elapsed"
  # CHAINPROF_PIPES=1: where the issue slots go too (issue active, the tensor, ALU and FMA pipes, the stalls)
  [ -n "${CHAINPROF_PIPES-}" ] && m="$m,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio"
  for b in ${CHAINPROF_BUILDS:-old new}; do
    .carry/$b/tools/rabitc -o /tmp/llama-$b.rplan samples/llama2-7b.ir > /dev/null 2>&1
    [ $b = old ] && re=${CHAINPROF_OLD:-xor} || re=${CHAINPROF_NEW:-xor}
    run "chainprof_$b" timeout 150 ncu --clock-control none --metrics "$m" -k "regex:$re" -c 8 \
        .carry/$b/tests/bench/bench_chain /tmp/llama-$b.rplan
    echo "== $b ($re)"
    grep -E "^  rb_|duration|registers|grid_size|inst_executed|warps_active|dram__|issue_active|pipe_|stalled" "$L/chainprof_$b.log" | sed -E 's/ +/ /g'
  done
}

# The kernels serving batch 4 tuned, exported, with the chain of the old build (.carry/old, its
# own cache: the shipped records) before and after, and the new one's chain with the shipped
# records alone, then tuned.
tune_b4() {
  rm -rf "$RABIT_CACHE_DIR" /tmp/rabit-cache-old
  RABIT_CACHE_DIR=/tmp/rabit-cache-old .carry/old/tools/rabitc -o /tmp/llama-old.rplan samples/llama2-7b.ir > /dev/null 2>&1
  run chain_old env RABIT_CACHE_DIR=/tmp/rabit-cache-old .carry/old/tests/bench/bench_chain /tmp/llama-old.rplan
  "$B/tools/rabitc" -o /tmp/llama-shipped.rplan samples/llama2-7b.ir > /dev/null 2>&1
  run chain_shipped "$B/tests/bench/bench_chain" /tmp/llama-shipped.rplan
  run tune_b4 "$B/tools/rabitc" tune samples/llama2-7b.ir --batch ${TUNE_BATCH:-4} --budget ${TUNE_BUDGET:-200}
  run tune_export "$B/tools/rabitc" tune --export "$OUT/tuning-h200.json"
  run rabitc_plan "$B/tools/rabitc" -o /tmp/llama.rplan samples/llama2-7b.ir
  run chain_tuned "$B/tests/bench/bench_chain" /tmp/llama.rplan
  run chain_old2 env RABIT_CACHE_DIR=/tmp/rabit-cache-old .carry/old/tests/bench/bench_chain /tmp/llama-old.rplan
  grep -A12 "^kernel  " "$L/tune_b4.log" | head -n 14
  grep -H -E "chain batch" "$L/chain_old.log" "$L/chain_shipped.log" "$L/chain_tuned.log" "$L/chain_old2.log"
}

# The tuner on the GPU: its test, a whole model tuned twice (the choices must agree),
# the database exported, and the model's decode speed with the defaults and tuned.
tune_model() {
  gpu_tests "test_tune" ""
  rm -rf "$RABIT_CACHE_DIR"
  run bench_llama_default "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run tune_llama "$B/tools/rabitc" tune samples/llama2-7b.ir --twice --plot "$OUT/tune-llama2-7b-h200.svg"
  run tune_export "$B/tools/rabitc" tune --export "$OUT/tuning-h200.json"
  run bench_llama_tuned "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  grep -E "^tuned|passed|FAIL" "$L/test_tune.log" | tail -n 8
  tail -n 40 "$L/tune_llama.log"
  for f in "$L"/bench_llama_default.log "$L"/bench_llama_tuned.log; do echo "== $(basename $f)"; grep -vE "^$" "$f" | tail -n 8; done
}

# The dequant prefill: its layers beside cuBLAS fp16, then the whole model with and without it.
prefill_bench() {
  run bench_prefill "$B/tests/gpu/gpu_test_linear" --bench-only
  run bench_llama_mma "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  run bench_llama_dequant env RABIT_PREFILL=dequant "$B/tools/rabit" bench samples/llama2-7b.ir --random-weights
  grep -E "^bench prefill" "$L/bench_prefill.log"
  for f in "$L"/bench_llama_mma.log "$L"/bench_llama_dequant.log; do echo "== $(basename $f)"; grep -vE "^$" "$f" | tail -n 8; done
}

case $mode in
  tests) gpu_tests "test_linear test_ops test_plan_api test_model" "test_ops test_plan_api test_linear" ;;
  gpu) gpu_tests "${TESTS-test_linear}" "${MEMCHECK-}" ;;
  bench) kernel_bench ;;
  model) gpu_tests "test_ops test_model" ""; model_bench ;;
  all) gpu_tests "test_linear test_ops test_plan_api test_model" "test_model test_plan_api"; kernel_bench; model_bench ;;
  train) train_tests ;;
  qat1) mkdir -p /tmp/rabit-qat && cp -r data-dev/d1/* /tmp/rabit-qat/ && ls -la /tmp/rabit-qat ;;
  qat2) qat_real ;;
  exp) qat_setup # a failed test or import stops it before the runs spend the call
       if grep -E "rc=[1-9]" "$summary"; then cat "$summary"; exit 1; fi
       Q=$Q R=$R IR=$IR G=$G OUT=$OUT bash tests/bench/qat_experiment.sh ;;
  real1) mkdir -p /tmp/rabit-model && cp .carry/m1/* /tmp/rabit-model/ && ls -la /tmp/rabit-model ;;
  real2) real_model ;;
  same) gpu_tests "test_linear test_ops test_plan_api test_model" "${MEMCHECK-test_plan_api test_model}"; same_outputs ;;
  speed) speed_compare ;;
  json) export OUT; kernel_bench; model_bench # graph_bench.py writes $OUT/graph_bench.json
        cp "$OUT/graph_bench.json" "$L/" && python3 tests/bench/results_json.py "$L" "$OUT/results-h200.json" && cat "$OUT/results-h200.json" | head -c 600 ;;
  prefill) gpu_tests "test_linear test_model" "${MEMCHECK-test_model}"; prefill_bench ;;
  overlap) gpu_tests "test_ops test_model" "${MEMCHECK-test_ops}"; overlap_compare ;;
  outputs) same_outputs ;;
  tune) tune_model ;;
  stepprof) step_profile ;;
  decode) decode_check ;;
  prenorm) prenorm_check ;;
  tune1) tune_once ;;
  tune4) tune_b4 ;;
  chainprof) chain_profile ;;
  nll) nll_compare ;;
  fusecheck) fuse_check ;;
  fuseab) fuse_ab ;;
  bmma) bmma_check ;;
  bmma2) bmma_tiles ;;
  bmma3) bmma_defaults ;;
  realbmma) real_bmma ;;
  tuneb1) tune_b1 ;;
  bmmaprof) bmma_profile ;;
  bmmaab) bmma_ab ;;
  wgprobe) nvcc -gencode arch=compute_90a,code=sm_90a -o /tmp/probe_wgmma tests/bench/probe_wgmma.cu && /tmp/probe_wgmma ;;
  probe) nvcc -arch=sm_90a -o /tmp/probe_mma tests/bench/probe_mma.cu && /tmp/probe_mma; cuobjdump -sass /tmp/probe_mma | grep -oE "(HMMA|IMMA|BMMA)[.A-Z0-9_]*" | sort | uniq -c ;;
  ring) ring_bench ;;
  sweep) tile_sweep ;;
  xsmem) xsmem_sweep ;;
  explore) gpu_tests "${TESTS-}" ""; explore ;;
  dqprobe) dequant_check ;;
  lop3) lop3_check ;;
  lop3b) lop3_cases; tune_once ;;
  ab) kernels_ab; gpu_tests "${TESTS-test_tune}" "" ;;
  report) gpu_tests "${TESTS-test_linear}" ""; export OUT; kernel_bench; model_bench; report_extra
          cp "$OUT/graph_bench.json" "$L/" && python3 tests/bench/results_json.py "$L" "$OUT/results-h200.json" && head -c 600 "$OUT/results-h200.json" ;;
  *) echo "run_device.sh: unknown mode '$mode' (tune4, wgprobe, chainprof, bmmaab, bmmaprof, fusecheck, fuseab, probe, tests, gpu, bench, model, all, real1, real2, same, speed, json, prefill, overlap, ab, nll, ring, sweep, explore, dqprobe, lop3, lop3b, tune, tune1, stepprof, decode, prenorm, report, train, qat1, qat2, exp)"; exit 2 ;;
esac
echo "== $mode summary"
cat "$summary"
for f in "$L"/run-*.log; do [ -f "$f" ] && { echo "==== $(basename "$f")"; cat "$f"; }; done >> "$OUT/logs-$mode.txt"
