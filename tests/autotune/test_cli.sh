#!/bin/sh
# test_cli.sh RABITC SAMPLES: rabitc tune --export and --import over the
# tuning database in the cache directory: round trips, the merge rule as the
# user sees it, broken imports refused (exit 1, the file and the problem
# named, the cache's copy untouched), a broken cache copy said once and
# replaced, usage errors, and tune MODEL.ir asking for a GPU.
rabitc=$1 samples=$2
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export RABIT_CACHE_DIR="$tmp/cache"
db="$RABIT_CACHE_DIR/tuning.json"

. "$(dirname "$0")/../common/cli.sh" # expect, check, lines

head='{"format": "rabit-tune", "version": 1, "records": ['
rec() { # rec BATCH ROWS US DATE
  printf '{"device": "NVIDIA H200", "arch": "sm_90", "nvrtc": "nvrtc 13.0 builtins 8f321440913759e2", "op": "linear+add N=4096 K=4096 k=2", "batch": %s, "schedule": {"strategy": "mma", "tile": [%s, 8, 0, 16]}, "us": %s, "default_us": 30, "date": "%s"}' "$1" "$2" "$3" "$4"
}
printf '%s%s, %s]}\n' "$head" "$(rec 16 2 20 2025-06-01T00:00:00Z)" "$(rec 512 4 200 2025-06-01T00:00:00Z)" > "$tmp/two.json"
printf '%s%s]}\n' "$head" "$(rec 16 1 25 2025-07-01T00:00:00Z)" > "$tmp/newer.json"
printf '%s%s]}\n' "$head" "$(rec 512 8 150 2024-01-01T00:00:00Z)" > "$tmp/older.json"

# 1. An empty cache exports an empty database, which imports.
expect export-empty 0 "exported 0 records from $db to $tmp/empty.json" "$rabitc" tune --export "$tmp/empty.json"
check no-db-made "! -e $db"
expect import-empty 0 "imported 0 records from $tmp/empty.json into $db: 0 added, 0 replaced, 0 kept" \
  "$rabitc" tune --import "$tmp/empty.json"

# 2. Import, export, the merge rule.
expect import-two 0 "imported 2 records from $tmp/two.json into $db: 2 added, 0 replaced, 0 kept" \
  "$rabitc" tune --import "$tmp/two.json"
check db-mode "$(stat -c %a "$RABIT_CACHE_DIR")" = 700
expect import-again 0 ": 0 added, 0 replaced, 2 kept" "$rabitc" tune --import "$tmp/two.json"
expect import-newer 0 ": 0 added, 1 replaced, 0 kept" "$rabitc" tune --import "$tmp/newer.json"
expect import-older 0 ": 0 added, 0 replaced, 1 kept" "$rabitc" tune --import "$tmp/older.json"
expect export-two 0 "exported 2 records" "$rabitc" tune --export "$tmp/out.json"
check export-newer-won "$(grep -c '"batch": 16, "schedule": {"strategy": "mma", "tile": \[1, 8, 0, 16\]}, "us": 25.000' "$tmp/out.json")" -eq 1
check export-older-lost "$(grep -c '"batch": 512, "schedule": {"strategy": "mma", "tile": \[4, 8, 0, 16\]}, "us": 200.000' "$tmp/out.json")" -eq 1
expect export-stdout 0 '"format": "rabit-tune"' "$rabitc" tune --export -
check export-stdout-same "$("$rabitc" tune --export - | cmp -s - "$tmp/out.json" && echo same)" = same
# An export imports into a fresh cache as it was.
expect import-fresh 0 ": 2 added" env RABIT_CACHE_DIR="$tmp/cache2" "$rabitc" tune --import "$tmp/out.json"
check fresh-same "$(cmp -s "$tmp/cache2/tuning.json" "$db" && echo same)" = same

# 3. Broken imports: exit 1, the file and the problem named, the cache untouched.
cp "$db" "$tmp/before.json"
printf '\177ELF\001' > "$tmp/garbage.json"
expect import-garbage 1 "rabitc tune: $tmp/garbage.json: not valid JSON at line 1, column 1 (byte 0)" \
  "$rabitc" tune --import "$tmp/garbage.json"
head -c 150 "$tmp/out.json" > "$tmp/cut.json"
expect import-truncated 1 "rabitc tune: $tmp/cut.json: not valid JSON at line [0-9]*, column [0-9]* (byte [0-9]*); the file ends before its JSON does (truncated?)" \
  "$rabitc" tune --import "$tmp/cut.json"
printf '{"format": "rabit-tune", "version": 2, "records": []}' > "$tmp/v2.json"
expect import-stale 1 "rabitc tune: $tmp/v2.json: is format version 2; this rabitc reads version 1" \
  "$rabitc" tune --import "$tmp/v2.json"
sed 's/"us": 20,/"us": "fast",/' "$tmp/two.json" > "$tmp/type.json"
expect import-type 1 "rabitc tune: $tmp/type.json: record 1: \"us\" must be a time in microseconds" \
  "$rabitc" tune --import "$tmp/type.json"
expect import-missing 1 "rabitc tune: cannot read database '$tmp/none.json'" "$rabitc" tune --import "$tmp/none.json"
expect import-dir 1 "rabitc tune: cannot read database '$tmp': it is a directory" "$rabitc" tune --import "$tmp"
check cache-untouched "$(cmp -s "$tmp/before.json" "$db" && echo same)" = same

# 4. A broken database in the cache: said once, ignored, replaced by an import.
printf '{"format": "rabit-tune", "vers' > "$db"
expect export-broken 0 "exported 0 records" "$rabitc" tune --export "$tmp/e.json"
check broken-said-once "$(lines "rabitc tune: warning: tuning database ignored: $db: not valid JSON at line 1")" -eq 1
expect import-over-broken 0 "warning: tuning database ignored: $db.*truncated?" "$rabitc" tune --import "$tmp/two.json"
check over-broken-said-once "$(lines 'warning: tuning database ignored')" -eq 1
expect export-repaired 0 "exported 2 records" "$rabitc" tune --export "$tmp/e.json"
check repaired-quiet "$(lines warning)" -eq 0

# 5. Usage.
expect help 0 "usage: rabitc tune --export FILE" "$rabitc" tune --help
expect help-main 0 "rabitc tune --export FILE | --import FILE | MODEL.ir" "$rabitc" --help
expect none 1 "rabitc tune: needs --export FILE, --import FILE or MODEL.ir" "$rabitc" tune
expect both 1 "rabitc tune: give one of --export FILE, --import FILE or MODEL.ir" \
  "$rabitc" tune --export "$tmp/a" --import "$tmp/two.json"
expect export-nodir 1 "rabitc tune: cannot write '$tmp/no/such/x.json': directory" "$rabitc" tune --export "$tmp/no/such/x.json"
expect bad-batch 1 "rabitc tune: --batch needs at most 8 batches 1..1048576 separated by commas, got '1,x'" \
  "$rabitc" tune "$samples/tiny.ir" --batch 1,x
expect many-batches 1 "rabitc tune: --batch needs at most 8 batches" "$rabitc" tune "$samples/tiny.ir" --batch 1,2,3,4,5,6,7,8,9
expect zero-batch 1 "rabitc tune: --batch needs" "$rabitc" tune "$samples/tiny.ir" --batch 0
expect bad-budget 1 "rabitc tune: --budget needs" "$rabitc" tune "$samples/tiny.ir" --budget -3
expect budget-alone 1 "rabitc tune: --budget, --batch, --plot and --twice go with MODEL.ir" "$rabitc" tune --export "$tmp/a" --budget 5
expect plot-alone 1 "rabitc tune: --budget, --batch, --plot and --twice go with MODEL.ir" "$rabitc" tune --import "$tmp/a" --plot "$tmp/p.svg"
expect twice-alone 1 "go with MODEL.ir" "$rabitc" tune --export "$tmp/a" --twice
expect plot-nodir 1 "rabitc tune: cannot write '$tmp/no/such/p.svg': directory" \
  "$rabitc" tune "$samples/tiny.ir" --plot "$tmp/no/such/p.svg"
expect unknown 1 "rabitc tune: unknown option '--frob'" "$rabitc" tune --frob
expect model-missing 1 "rabitc tune: cannot read model '$tmp/none.ir'" "$rabitc" tune "$tmp/none.ir"
expect model-bad 1 "error" "$rabitc" tune "$samples/../tests/autotune/test_cli.sh"
# Without a GPU the model cannot be tuned (and nothing is written); with one,
# a short tuning of the toy model ends with its table, records and plot.
out=$("$rabitc" tune "$samples/tiny.ir" 2>&1); rc=$?
if printf '%s\n' "$out" | grep -q "needs a GPU, and there is none here"; then
  check model-nogpu "$rc" -eq 1
  check model-nogpu-nothing-written "$(lines 'wrote')" -eq 0
else
  expect model-gpu 0 "the choices agree" "$rabitc" tune "$samples/tiny.ir" --batch 1 --plot "$tmp/tiny.svg" --twice
  check model-gpu-table "$(lines "of floor")" -eq 1
  check model-gpu-records "$(lines 'tuned record')" -eq 1
  check model-gpu-plot "$(grep -c '<svg ' "$tmp/tiny.svg")" -eq 1
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
