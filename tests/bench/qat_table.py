#!/usr/bin/env python3
"""qat_table.py LOGDIR: the table of qat_experiment.sh's runs, from the logs it left in LOGDIR.

One row a run: its options, the validation perplexity at each evaluation (the best marked), the
test perplexity of the export chosen on validation (overall, KJV, Austen), the tokens/s, the wall
time. Then the peer's result and the chat answers, if there are any."""
import json
import os
import re
import sys


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def ppl(ev, key):
    s = ev.get(key) if ev else None
    return f"{s['ppl']:.2f}" if s else "-"


def main():
    d = sys.argv[1]
    rows = [l.split(" ", 3) for l in read(os.path.join(d, "runs.txt")).splitlines() if l.strip()]
    print(f"{'run':<22} {'rc':<5} {'best val':>9} {'at step':>7} {'final val':>9} {'test':>8} {'KJV':>8} "
          f"{'Austen':>8} {'tok/s':>7} {'wall':>6}  options")
    for name, rc, wall, args in rows:
        log = read(os.path.join(d, f"train-{name}.log"))
        best = re.search(r"best validation ppl ([0-9.]+) at step (\d+)", log)
        vals = re.findall(r"eval at step \d+: validation ppl ([0-9.e+]+)", log)
        speed = re.search(r"([0-9]+) tok/s steady", log)
        try:
            ev = json.loads(read(os.path.join(d, f"eval-{name}.json")) or "null")
        except json.JSONDecodeError:
            ev = None
        if name == "peer":
            m = re.search(r"held ppl ([0-9.]+)", read(os.path.join(d, "peer.log")))
            t = re.search(r"(\d+) steps, (\d+) tokens, (\d+) tok/s", read(os.path.join(d, "peer.log")))
            print(f"{name:<22} {rc[3:]:<5} {'':>9} {'':>7} {'':>9} {m.group(1) if m else '-':>8} {'':>8} {'':>8} "
                  f"{t.group(3) if t else '-':>7} {wall[5:]:>6}  {args[5:]}"
                  + (f" ({t.group(2)} tokens)" if t else ""))
            continue
        final = vals[-1] if vals else (f"{ev['validation']['ppl']:.2f}" if ev and ev.get("validation") else "-")
        print(f"{name:<22} {rc[3:]:<5} {best.group(1) if best else '-':>9} {best.group(2) if best else '-':>7} "
              f"{final:>9} {ppl(ev, 'test'):>8} {ppl(ev, 'test_kjv'):>8} {ppl(ev, 'test_austen'):>8} "
              f"{speed.group(1) if speed else '-':>7} {wall[5:]:>6}  {args[5:]}")
        if vals:
            print(f"{'':<22} validation at each evaluation: {' '.join(vals)}")
        err = [l for l in log.splitlines() if l.startswith("rabit train:")]
        if err:
            print(f"{'':<22} {err[-1][:200]}")
    chats = sorted(f for f in os.listdir(d) if f.startswith("chat-"))
    for f in chats:
        print(f"--- {f}:\n{read(os.path.join(d, f)).strip()[:400]}")


if __name__ == "__main__":
    main()
