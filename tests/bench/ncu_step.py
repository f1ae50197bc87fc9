#!/usr/bin/env python3
"""ncu_step.py CSV RUNS: one decode step's kernels from `ncu --csv --metrics gpu__time_duration.sum`
over a `rabit bench` run whose decode step executed RUNS times: per kernel name, its launches
and summed duration divided by RUNS, largest first; names with fewer than RUNS launches (the
prefill's) are left out, and the prefill's launches of shared names (norms, attention) count
in, a few percent. Serialized durations (ncu runs one kernel at a time), so the sum is an upper
bound on the step the overlapped launches take."""
import csv
import sys
from collections import defaultdict

rows = list(csv.reader(open(sys.argv[1])))
steps = int(sys.argv[2])
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
cols = rows[head]
name_i, metric_i, value_i = cols.index("Kernel Name"), cols.index("Metric Name"), cols.index("Metric Value")
unit_i = cols.index("Metric Unit")
SCALE = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}  # to us
count, total = defaultdict(int), defaultdict(float)
for r in rows[head + 1:]:
    if len(r) <= value_i or r[metric_i] != "gpu__time_duration.sum":
        continue
    n = r[name_i].split("(")[0]
    count[n] += 1
    total[n] += float(r[value_i].replace(",", "")) * SCALE[r[unit_i]]  # each row has its own unit
step = {n: (count[n] / steps, total[n] / steps) for n in count if count[n] >= steps}
print(f"{'kernel':70} {'a step':>7} {'us a step':>12}")
for n, (c, t) in sorted(step.items(), key=lambda kv: -kv[1][1]):
    print(f"{n[:70]:70} {c:7.1f} {t:12.1f}")
print(f"{'all':70} {sum(c for c, _ in step.values()):7.1f} {sum(t for _, t in step.values()):12.1f}")
