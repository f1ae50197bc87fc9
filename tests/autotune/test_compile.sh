#!/bin/sh
# test_compile.sh RABITC SAMPLES: rabitc compiling samples/tiny.ir with the
# schedules of the tuning databases, as users meet it: a tuned record
# imported into a scratch cache (rabitc tune --import) gives its kernel that
# schedule, in the plan (schedule=tuned, its tiles) and in rabitc's table and
# summary; shipped records (RABIT_SHIPPED_DIR) come after tuned ones; another
# --device, or none on a machine without a GPU, compiles the defaults; a
# record the target refuses is ignored with a note; a corrupted database is
# said once and ignored. No GPU needed.
rabitc=$1 samples=$2 ir=$2/tiny.ir
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
unset RABIT_SHIPPED_DIR
db="$RABIT_CACHE_DIR/tuning.json" plan="$tmp/tiny.rplan"

. "$(dirname "$0")/../common/cli.sh" # expect, check, lines
plan_lines() { grep -c -- "$1" "$plan"; }

# The key: the device, the arch, this rabitc's compiler (as 'cache stats' says
# it) and the op as at_op_describe writes it (the kernel's description without
# the strategy, bucket and tiles), with the bucket.
nvrtc=$("$rabitc" cache stats | sed -n 's/^compiler: //p')
check nvrtc-id -n "$nvrtc"
rec() { # rec DEVICE OP BATCH RT KS KC BT
  printf '{"device": "%s", "arch": "sm_90", "nvrtc": "%s", "op": "%s", "batch": %s, "schedule": {"strategy": "mma", "tile": [%s, %s, %s, %s]}, "us": 2.5, "default_us": 3, "date": "2026-12-01T00:00:00Z"}' \
    "$1" "$nvrtc" "$2" "$3" "$4" "$5" "$6" "$7"
}
# The records below name the fused rmsnorm+linear kernels, which RABIT_FUSE_NORM=1 turns on.
export RABIT_FUSE_NORM=1
down='linear+add N=64 K=160 k=1' qk='linear N=64+32 K=64 k=2' ffn='rmsnorm+linear+swiglu N=160+160 K=64 k=2 eps=1e-05' # the b<=16 kernel folds in its rmsnorm
# Tuned: the down projection's b<=16 kernel with one row tile over batch tiles
# of 8 (the default has 2 row tiles over 16), and the q/k projection's with
# 99 row tiles (the target allows 1..8).
printf '{"format": "rabit-tune", "version": 1, "records": [%s, %s]}\n' \
  "$(rec 'NVIDIA H200' "$down" 16 1 1 0 8)" "$(rec 'NVIDIA H200' "$qk" 16 99 1 0 16)" > "$tmp/tuned.json"
expect import 0 "imported 2 records from $tmp/tuned.json into $db: 2 added" "$rabitc" tune --import "$tmp/tuned.json"

# 1. The tuned record's kernel takes its schedule; the refused one stays default, with a note.
expect tuned 0 "wrote plan $plan" "$rabitc" --device 'NVIDIA H200' --arch sm_90 -o "$plan" "$ir"
check plan-tuned-one "$(plan_lines ' schedule=tuned ')" -eq 1
check plan-tuned-tiles "$(grep ' schedule=tuned ' "$plan" | grep -c 'kind=linear strategy=mma batch=16 K=160 N=64 paths=1 epilogue=add tile=1,1,0,8 ')" -eq 1
check plan-default-rest "$(plan_lines ' schedule=default ')" -eq 35
check plan-kernels "$(plan_lines '^kernel ')" -eq 36
check table-tuned "$(lines '^linear+add mma N=64 K=160 k=1 b<=16 tile=1,1,0,8  *25  *tuned ')" -eq 1
check table-default "$(lines '^[a-z].* default  *\(hit\|miss\) ')" -eq 35
check summary "$(lines '^36 kernels for sm_90: .* s wall; schedules 1 tuned, 0 shipped, 35 default; cache ')" -eq 1
check note-once "$(lines 'note: ')" -eq 1
check note-refused "$(lines "^rabitc: note: tuned schedule ignored, the cuda target refuses 'linear mma N=64+32 K=64 k=2 b<=16 tile=99,1,0,16': linear mma: bad tile 99,1,0,16 .*; kernel 'linear mma N=64+32 K=64 k=2 b<=16 tile=0,0,0,0' keeps its default schedule\$")" -eq 1
check refused-stays-default "$(lines '^linear mma N=64+32 K=64 k=2 b<=16 tile=0,0,0,0  *17  *default ')" -eq 1
check no-warning "$(lines 'warning')" -eq 0

# 2. Another GPU's name: nothing recorded for it, every kernel default, nothing said.
expect other-device 0 "schedules 0 tuned, 0 shipped, 36 default" "$rabitc" --device 'NVIDIA H100 80GB HBM3' --arch sm_90 -o "$plan" "$ir"
check other-plan-default "$(plan_lines ' schedule=default ')" -eq 36
check other-no-note "$(lines 'note: ')" -eq 0
# The same GPU under another arch: another key.
expect other-arch 0 "schedules 0 tuned, 0 shipped, 36 default" "$rabitc" --device 'NVIDIA H200' --arch sm_89 "$ir"
# No --device on a machine without a GPU: the defaults (with a GPU, its own name's records apply).
expect no-device 0 "wrote plan" "$rabitc" -o "$plan" "$ir"
if printf '%s\n' "$out" | grep -q 'no GPU here'; then
  check no-device-default "$(plan_lines ' schedule=default ')" -eq 36
fi

# 3. Shipped records: used where no tuned one is; a tuned one beats them.
mkdir -p "$tmp/shipped"
printf '{"format": "rabit-tune", "version": 1, "records": [%s, %s]}\n' \
  "$(rec 'NVIDIA H200' "$ffn" 16 1 1 0 8)" "$(rec 'NVIDIA H200' "$down" 16 4 1 0 8)" > "$tmp/shipped/h200.json"
expect shipped 0 "schedules 1 tuned, 1 shipped, 34 default" \
  env RABIT_SHIPPED_DIR="$tmp/shipped" "$rabitc" --device 'NVIDIA H200' --arch sm_90 -o "$plan" "$ir"
check table-shipped "$(lines '^rmsnorm+linear+swiglu mma N=160+160 K=64 k=2 eps=1e-05 b<=16 tile=1,1,0,8  *23  *shipped ')" -eq 1
check tuned-beats-shipped "$(lines '^linear+add mma N=64 K=160 k=1 b<=16 tile=1,1,0,8  *25  *tuned ')" -eq 1
check plan-shipped "$(grep ' schedule=shipped ' "$plan" | grep -c 'epilogue=swiglu tile=1,1,0,8 ')" -eq 1
check plan-shipped-rest "$(plan_lines ' schedule=default ')" -eq 34

# 4. A corrupted database in the cache: said once (two files in one run), ignored: defaults.
printf '{"format": "rabit-tune", "version": 1, "records": [{"dev' > "$db"
expect corrupted 0 "schedules 0 tuned, 0 shipped, 36 default" "$rabitc" --device 'NVIDIA H200' --arch sm_90 "$ir" "$ir"
check corrupted-once "$(lines "^rabitc: warning: tuning database ignored: $db: not valid JSON")" -eq 1
check corrupted-all-default "$(lines 'schedules 0 tuned, 0 shipped, 36 default')" -eq 2
# An import replaces it, and the tuned record applies again.
expect reimport 0 "2 added" "$rabitc" tune --import "$tmp/tuned.json"
expect repaired 0 "schedules 1 tuned, 0 shipped, 35 default" "$rabitc" --device 'NVIDIA H200' --arch sm_90 "$ir"

# 5. Usage.
expect help 0 "take the tuned and shipped schedules recorded for the GPU" "$rabitc" --help
expect device-list 1 "rabitc: --device picks the schedules of compiled kernels; it does not go with --list-kernels" \
  "$rabitc" --device 'NVIDIA H200' --list-kernels "$ir"
expect empty-device 1 "rabitc: --device needs a GPU's name such as 'NVIDIA H200'" "$rabitc" --device '' "$ir"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
