#!/bin/sh
# test_import_tokenizer.sh RABIT ROOT: rabit import writes the GGUF's
# tokenizer as tokenizer.txt, byte for byte the vocabulary the tokenizer tests
# check against Hugging Face (tests/tokenizer/data/vocab.txt). Needs the real
# model (tools/fetch_data.sh, or $RABIT_DATA); skips visibly without it.
rabit=$1 root=$2
gguf=${RABIT_DATA:-$root/data}/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$gguf" ] || { echo "SKIP: no $gguf (run tools/fetch_data.sh)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$rabit" import -q "$gguf" -o "$tmp/out" || exit 1
if cmp "$tmp/out/tokenizer.txt" "$root/tests/tokenizer/data/vocab.txt"; then
  echo "1 passed, 0 failed"
else
  echo "FAIL: $tmp/out/tokenizer.txt differs from tests/tokenizer/data/vocab.txt"; echo "0 passed, 1 failed"; exit 1
fi
