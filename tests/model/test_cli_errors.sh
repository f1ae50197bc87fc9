#!/bin/sh
# test_cli_errors.sh RABIT RABITC SAMPLES: the files a command names are
# checked before its work, with one line that names the file: a missing
# input, an output in a missing directory or on a directory, an output that is
# its own input, a GGUF given to quantize; a missing required argument gives
# its reason; every error path frees what it allocated (LeakSanitizer, in the
# sanitizer build: a leak exits 23 and fails the case).
rabit=$1 rabitc=$2 samples=$3
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
ir=$samples/tiny.ir
vocab=$samples/../tests/tokenizer/data/vocab.txt

# bad NAME WANT CMD...: exit status 1, and the whole output is WANT (one line, or more with \n).
bad() {
  name=$1 want=$(printf "$2"); shift 2
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 1 ] && [ "$out" = "$want" ]; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc (want 1)"; printf '%s\n' "$want" | sed 's/^/  want: /'
       printf '%s\n' "$out" | head -6 | sed 's/^/  got:  /'; fi
}
# gpu NAME PATTERN CMD...: exit 1 for want of a GPU (or, on a GPU machine, the
# pattern), and no sanitizer report either way.
gpu() {
  name=$1 pat=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if printf '%s\n' "$out" | grep -q "Sanitizer"; then fail=$((fail + 1)); echo "FAIL $name: sanitizer report"
    printf '%s\n' "$out" | grep -m3 "Sanitizer\|#[0-9] "
  elif { [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "needs an NVIDIA GPU and driver"; } ||
       printf '%s\n' "$out" | grep -q -- "$pat"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL $name: rc=$rc"; printf '%s\n' "$out" | head -4; fi
}
# check NAME COND...: a shell condition.
check() {
  name=$1; shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $name"; fi
}

mkdir -p "$tmp/dir" "$tmp/m"
: > "$tmp/file"
printf 'GGUF\003\000\000\000' > "$tmp/model.gguf"
cp "$vocab" "$tmp/m/tokenizer.txt" && : > "$tmp/m/w.safetensors"
printf 'a small text for the tokenizer, said the test, twice.\n' > "$tmp/text.txt"

# Option values (tools/args.c): unchecked atoi no more.
bad temp "rabit run: --temp needs a number >= 0, got 'abc'" "$rabit" run "$ir" --random-weights --tokens 1 --temp abc
bad max-ctx "rabit run: --max-ctx needs an integer 1..1048576, got 'abc'" \
  "$rabit" run "$ir" --random-weights --tokens 1 --max-ctx abc
bad tokens "rabit run: --tokens needs token ids separated by commas or spaces, got '1,x'" \
  "$rabit" run "$ir" --random-weights --tokens 1,x
bad n-negative "rabit run: -n needs an integer 0..1000000, got '-3'" "$rabit" run "$ir" --random-weights --tokens 1 -n -3
bad bench-ctx "rabit bench: --ctx needs a comma-separated list of 1 to 8 contexts 1..1048576, got '0'" \
  "$rabit" bench "$ir" --random-weights --ctx 0
bad ppl-ctx "rabit ppl: --ctx needs an integer 2..1048576, got '0'" "$rabit" ppl "$ir" --random-weights --ctx 0
bad bench-only "rabit bench: --only needs 2bit or fp16, got 'FP16'" "$rabit" bench "$ir" --random-weights --only FP16
bad rabitc-max-ctx "rabitc: --max-ctx needs an integer 1..1048576, got 'abc'" "$rabitc" --max-ctx abc "$ir"
bad train-tokens "rabit train: --tokens needs an integer 0..18446744073709551615, got '1e6'" \
  "$rabit" train "$ir" --tokens 1e6
bad train-batch "rabit train: --batch needs an integer 1..1024, got 'x'" "$rabit" train "$ir" --batch x
bad eval-windows "rabit eval: --windows needs an integer 0..1000000, got '-1'" "$rabit" eval "$ir" --windows -1
# --only fp16 alone: runs (one column, no speed-up), or says a GPU is needed; never exit 255.
gpu bench-only-fp16 "prefill tokens" "$rabit" bench "$ir" --random-weights --only fp16 --ctx 16 --prefill 16 --steps 2
gpu bench-only-2bit "prefill tokens" "$rabit" bench "$ir" --random-weights --only 2bit --ctx 16 --prefill 16 --steps 2

# A missing required argument: the reason, then the usage line.
bad run-no-weights "rabit run: needs --weights W (or --random-weights)\nusage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options]" \
  "$rabit" run "$ir" --prompt hi
bad run-no-prompt "rabit run: needs --prompt TEXT (or --tokens IDS)\nusage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options]" \
  "$rabit" run "$ir" --random-weights
bad run-no-ir "rabit run: needs a model IR (MODEL.ir)\nusage: rabit run MODEL.ir --weights W.safetensors --prompt TEXT [options]" \
  "$rabit" run --random-weights --prompt hi
bad ppl-no-text "rabit ppl: needs --text FILE\nusage: rabit ppl MODEL.ir --weights W.safetensors --text FILE [options]" \
  "$rabit" ppl "$ir" --random-weights
bad bench-no-weights "rabit bench: needs --weights W (or --random-weights)\nusage: rabit bench MODEL.ir [--random-weights | --weights W [--fp16-weights W16]] [options]" \
  "$rabit" bench "$ir"
bad eval-no-data "rabit eval: needs --data DIR\nusage: rabit eval MODEL.ir --weights W --data DIR [options]" \
  "$rabit" eval "$ir" --random-weights
bad import-no-o "rabit import: needs -o DIR\nusage: rabit import MODEL.gguf -o DIR [--force] [--quiet]" \
  "$rabit" import "$tmp/model.gguf"
bad train-no-ir "rabit train: needs a model IR (MODEL.ir)\nusage: rabit train MODEL.ir --weights W --data DIR --tokens N -o OUT [options]" \
  "$rabit" train --weights w
bad data-no-verb "rabit data: needs a verb (prepare)\nusage: rabit data prepare --tokenizer T --text FILE [--text FILE...] -o DIR [--split train|heldout]" \
  "$rabit" data
bad rabitc-no-file "rabitc: needs an input file (FILE.ir, or - for stdin)\nusage: rabitc [options] FILE.ir...\n       rabitc cache stats|clear\n       rabitc tune --export FILE | --import FILE | MODEL.ir" \
  "$rabitc" --paths 2

# A missing input is named first: not "no tokenizer".
bad run-missing-ir "rabit run: cannot read '$tmp/none.ir': No such file or directory" \
  "$rabit" run "$tmp/none.ir" --random-weights --prompt hi
bad run-missing-weights "rabit run: cannot read weights '$tmp/none.st': No such file or directory" \
  "$rabit" run "$ir" --weights "$tmp/none.st" --prompt hi
bad ppl-missing-weights "rabit ppl: cannot read weights '$tmp/none.st': No such file or directory" \
  "$rabit" ppl "$ir" --weights "$tmp/none.st" --text "$tmp/text.txt"
bad run-weights-dir "rabit run: cannot read weights '$tmp/dir': it is a directory" \
  "$rabit" run "$ir" --weights "$tmp/dir" --prompt hi
bad bench-missing-fp16 "rabit bench: cannot read weights '$tmp/none.st': No such file or directory" \
  "$rabit" bench "$ir" --weights "$tmp/m/w.safetensors" --fp16-weights "$tmp/none.st"
bad data-missing-text "rabit data: cannot read text '$tmp/none.txt': No such file or directory" \
  "$rabit" data prepare --tokenizer "$vocab" --text "$tmp/none.txt" -o "$tmp/shards"
# A library message that ends in a newline is printed with one, not two.
bad data-missing-tokenizer "rabit data: $tmp/none.txt: cannot read the vocabulary: No such file or directory" \
  "$rabit" data prepare --tokenizer "$tmp/none.txt" --text "$tmp/text.txt" -o "$tmp/shards"
# rabit import's library errors carry the command's prefix, one line each.
bad import-not-gguf "rabit import: $tmp/file: error: not a GGUF file (0 bytes)" "$rabit" import "$tmp/file" -o "$tmp/imp"

# Outputs, checked before the work: on a directory, in a missing directory,
# under a file; the whole output is the one line (nothing was compiled first).
bad rabitc-o-dir "rabitc: -o '$tmp/dir' is a directory; it takes a file name (such as '$tmp/dir/model.rplan')" \
  "$rabitc" -o "$tmp/dir" "$ir"
bad rabitc-o-missing-dir "rabitc: cannot write '$tmp/none/d/x.rplan': directory '$tmp/none/d': No such file or directory" \
  "$rabitc" -o "$tmp/none/d/x.rplan" "$ir"
bad rabitc-o-under-file "rabitc: cannot write '$tmp/file/x.rplan': '$tmp/file' is not a directory" \
  "$rabitc" -o "$tmp/file/x.rplan" "$ir"
bad rabitc-o-device "rabitc: -o '/dev/null' exists and is not a regular file" "$rabitc" -o /dev/null "$ir"
bad rabitc-emit-file "rabitc: -o '$tmp/file' exists and is not a directory" "$rabitc" --emit=cuda -o "$tmp/file" "$ir"
bad quantize-o-dir "rabit quantize: -o '$tmp/dir' is a directory; it takes a file name (such as '$tmp/dir/model.safetensors')" \
  "$rabit" quantize "$ir" "$tmp/m/w.safetensors" -o "$tmp/dir"
bad quantize-o-missing-dir "rabit quantize: cannot write '$tmp/none/q.safetensors': directory '$tmp/none': No such file or directory" \
  "$rabit" quantize "$ir" "$tmp/m/w.safetensors" -o "$tmp/none/q.safetensors"
bad import-o-file "rabit import: -o '$tmp/file' exists and is not a directory" "$rabit" import "$tmp/model.gguf" -o "$tmp/file"
bad import-o-under-file "rabit import: cannot create directory '$tmp/file/out': Not a directory" \
  "$rabit" import "$tmp/model.gguf" -o "$tmp/file/out"
bad train-o-file "rabit train: -o '$tmp/file' exists and is not a directory" \
  "$rabit" train "$ir" --weights "$tmp/m/w.safetensors" --data "$tmp/dir" --tokens 100 -o "$tmp/file"
bad data-o-file "rabit data: -o '$tmp/file' exists and is not a directory" \
  "$rabit" data prepare --tokenizer "$vocab" --text "$tmp/text.txt" -o "$tmp/file"
bad run-ids-out "rabit run: cannot write '$tmp/none/ids.txt': directory '$tmp/none': No such file or directory" \
  "$rabit" run "$ir" --random-weights --tokens 1 --ids-out "$tmp/none/ids.txt"
bad ppl-ids-out "rabit ppl: --ids-out '$tmp/dir' is a directory; it takes a file name" \
  "$rabit" ppl "$ir" --random-weights --text "$tmp/text.txt" --ids-out "$tmp/dir"
bad ppl-ids-out-slash "rabit ppl: --ids-out '$tmp/new/' names a directory; it takes a file name" \
  "$rabit" ppl "$ir" --random-weights --text "$tmp/text.txt" --ids-out "$tmp/new/"
# rabit train creates its output directory before the work.
"$rabit" train "$ir" --weights "$tmp/m/w.safetensors" --data "$tmp/dir" --tokens 100 -o "$tmp/train/out" >/dev/null 2>&1
check train-o-created [ -d "$tmp/train/out" ]
if [ "$(id -u)" -ne 0 ]; then # root writes anywhere
  mkdir -p "$tmp/ro" && chmod 555 "$tmp/ro"
  bad rabitc-o-readonly "rabitc: cannot write '$tmp/ro/x.rplan': directory '$tmp/ro': Permission denied" \
    "$rabitc" -o "$tmp/ro/x.rplan" "$ir"
  chmod 755 "$tmp/ro"
fi

# quantize: its own input as output (by device and inode: the same name, a
# link, another spelling), and a GGUF where safetensors are wanted.
cp "$tmp/m/w.safetensors" "$tmp/same.safetensors" && ln -s "$tmp/same.safetensors" "$tmp/link.safetensors"
bad quantize-same "rabit quantize: -o '$tmp/same.safetensors' is the input '$tmp/same.safetensors'; writing it would overwrite it (use --force to overwrite)" \
  "$rabit" quantize "$ir" "$tmp/same.safetensors" -o "$tmp/same.safetensors"
bad quantize-same-link "rabit quantize: -o '$tmp/link.safetensors' is the input '$tmp/same.safetensors'; writing it would overwrite it (use --force to overwrite)" \
  "$rabit" quantize "$ir" "$tmp/same.safetensors" -o "$tmp/link.safetensors"
bad quantize-same-spelling "rabit quantize: -o '$tmp/./same.safetensors' is the input '$tmp/same.safetensors'; writing it would overwrite it (use --force to overwrite)" \
  "$rabit" quantize "$ir" "$tmp/same.safetensors" -o "$tmp/./same.safetensors"
bad quantize-same-ir "rabit quantize: -o '$ir' is the model IR '$ir'; writing it would overwrite it" \
  "$rabit" quantize "$ir" "$tmp/same.safetensors" -o "$ir" --force
# --force passes the check: what stops it now is the (empty) input itself.
bad quantize-force "rabit quantize: $tmp/same.safetensors: error: file is 0 bytes, shorter than the 8-byte header length (truncated?)" \
  "$rabit" quantize "$ir" "$tmp/same.safetensors" -o "$tmp/same.safetensors" --force
bad quantize-gguf "rabit quantize: '$tmp/model.gguf' is a GGUF file; convert it first with 'rabit import $tmp/model.gguf -o DIR', then quantize DIR/model.safetensors" \
  "$rabit" quantize "$ir" "$tmp/model.gguf" -o "$tmp/q.safetensors"
bad quantize-gguf-alone "rabit quantize: '$tmp/model.gguf' is a GGUF file; convert it first with 'rabit import $tmp/model.gguf -o DIR', then quantize DIR/model.safetensors" \
  "$rabit" quantize "$tmp/model.gguf" -o "$tmp/q.safetensors"

# Error paths after the tokenizer is loaded (5.5 MB): the GPU is missing, or
# on a GPU machine the weights file is empty; either way nothing leaks.
gpu run-leak "w.safetensors" "$rabit" run "$ir" --weights "$tmp/m/w.safetensors" --prompt hello
gpu run-leak-chat "w.safetensors" "$rabit" run "$ir" --weights "$tmp/m/w.safetensors" --prompt hello --chat
gpu ppl-leak "w.safetensors" "$rabit" ppl "$ir" --weights "$tmp/m/w.safetensors" --text "$tmp/text.txt"
gpu ppl-leak-windows "fewer than one window" "$rabit" ppl "$ir" --random-weights --text "$tmp/text.txt" \
  --tokenizer "$vocab" --ctx 4096
bad ppl-no-tokenizer "rabit ppl: no tokenizer: give --tokenizer (the model's .gguf, or the tokenizer.txt that rabit import writes), or keep tokenizer.txt beside the weights" \
  "$rabit" ppl "$ir" --random-weights --text "$tmp/text.txt"
bad ppl-bad-tokenizer "rabit ppl: $tmp/file:1: not a rabit vocabulary (expected 'rabit-vocab 1')" \
  "$rabit" ppl "$ir" --random-weights --text "$tmp/text.txt" --tokenizer "$tmp/file"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
