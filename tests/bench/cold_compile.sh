#!/bin/sh
# cold_compile.sh: the cold compile (empty kernel cache) and the warm load
# (every cubin cached) of one model, REPS times each, on this machine; each run
# and the medians, with the load average before and after (other work on the
# machine inflates the wall times; the CPU seconds less so).
#   sh tests/bench/cold_compile.sh [RABITC [MODEL.ir [REPS]]]
# RABIT_NVRTC_OPTIONS passes through, for trying NVRTC options.
rabitc=${1:-build-rel/tools/rabitc}
ir=${2:-samples/llama2-7b.ir}
reps=${3:-5}
dir=$(mktemp -d /tmp/cold-compile.XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT

# One rabitc run into $dir/cache; prints "wall cpu build" (seconds): the whole
# process, its CPU time, and the build's own wall time from rabitc's summary
# line ("... 1.234 s wall; schedules ...; cache ...").
run() {
  RABIT_CACHE_DIR="$dir/cache" /usr/bin/time -f "%e %U %S" -o "$dir/time" "$rabitc" -o "$dir/l.rplan" "$ir" \
    > "$dir/out" 2>&1 || { cat "$dir/out" >&2; exit 1; }
  echo "$(cat "$dir/time") $(sed -n 's/.* failed, \([0-9.]*\) s wall;.*/\1/p' "$dir/out")" |
    awk '{print $1, $2 + $3, $4}'
}
median() { sort -n | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "load before: $(cat /proc/loadavg)"
: > "$dir/cold"
: > "$dir/warm"
i=0
while [ $i -lt "$reps" ]; do
  rm -rf "$dir/cache"
  run | tee -a "$dir/cold" | awk '{printf "cold %d: %.2f s wall, %.2f s CPU (build %.3f s)\n", '$i', $1, $2, $3}'
  [ $i -eq 0 ] && cp "$dir/out" "$dir/first"
  run | tee -a "$dir/warm" | awk '{printf "warm %d: %.2f s wall (build %.1f ms)\n", '$i', $1, $3 * 1e3}'
  i=$((i + 1))
done
echo "load after: $(cat /proc/loadavg)"
echo "median cold: $(cut -d' ' -f1 "$dir/cold" | median) s wall, $(cut -d' ' -f2 "$dir/cold" | median) s CPU;" \
     "median warm build: $(cut -d' ' -f3 "$dir/warm" | median | awk '{print $1 * 1e3}') ms"
echo "the first cold run's kernels, slowest first (ms):"
awk 'NF > 2 && $(NF-1) == "miss" {print $NF "\t" $0}' "$dir/first" | sort -rn | cut -f2- | head -8
