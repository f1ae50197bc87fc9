#!/usr/bin/env python3
"""ncu_step.py CSV: one decode step's kernels from `ncu --csv --metrics gpu__time_duration.sum`
over a `rabit bench` run: the launches between the last two embeds (a step begins with its
token's embedding, and the run ends with timed decode steps), per kernel name their count,
summed duration and mean, largest first. Serialized durations (ncu runs one kernel at a time),
so the sum is an upper bound on the step that overlapped launches take."""
import csv
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}  # to us

rows = list(csv.reader(open(sys.argv[1], errors="replace")))
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
cols = rows[head]
name_i, metric_i = cols.index("Kernel Name"), cols.index("Metric Name")
unit_i, value_i = cols.index("Metric Unit"), cols.index("Metric Value")
launches = []
for r in rows[head + 1:]:
    if len(r) > value_i and r[metric_i] == "gpu__time_duration.sum":  # each row has its own unit
        launches.append((r[name_i].split("(")[0], float(r[value_i].replace(",", "")) * SCALE[r[unit_i]]))
embeds = [i for i, (n, _) in enumerate(launches) if n.startswith("rb_embed")]
if len(embeds) < 2:
    sys.exit("ncu_step: fewer than two embeds: no whole decode step in the profile")
step = launches[embeds[-2]:embeds[-1]]
count, total = defaultdict(int), defaultdict(float)
for n, us in step:
    count[n] += 1
    total[n] += us
print(f"{'kernel':64} {'launches':>8} {'us a step':>10} {'us each':>8}")
for n in sorted(total, key=lambda n: -total[n]):
    print(f"{n[:64]:64} {count[n]:8d} {total[n]:10.1f} {total[n] / count[n]:8.2f}")
print(f"{'all':64} {len(step):8d} {sum(total.values()):10.1f}")
