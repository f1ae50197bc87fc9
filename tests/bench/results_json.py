#!/usr/bin/env python3
"""results_json.py LOGDIR OUT.json: the speed issue's numbers of one device call, as JSON.

Reads what run_device.sh's `bench` and `model` steps leave in LOGDIR, all from the same call:
  bench_linear.log      gpu_test_linear --bench-only: "bench NxK k=P b=B STRATEGY T us ..."
  graph_bench.json      ../shared/peers/graph_bench.py: cuBLAS fp16, torch int4, the k = 2 read floor
  bench_chain.log       bench_chain: "chain batch 1: T ms ...; fp16 cuBLAS chain T ms ..."
  bench_llama.log       rabit bench samples/llama2-7b.ir --random-weights (2-bit beside our fp16)
  bench_smollm2.log     rabit bench samples/smollm2-135m.ir --random-weights
  peer_fp16_decode.log  ../shared/peers/fp16_decode_peer.py: "fp16 graph decode ctx C: T ms/token"
and writes {"date", "device", "shapes": [...], "chain", "decode", "prefill", "smollm2_decode_ms"}.
A shape's ours_us is its fastest strategy at that (N, K, paths, batch), named in "strategy";
floor_us is the measured k = 2 read floor (null at other k: the peer reads k = 2's bytes only);
int4_us is torch's batch-1 int4 kernel (null at other batches). A missing log is an error that
names it: a JSON with holes would read as a measurement."""
import datetime
import json
import os
import re
import sys


def read(logdir, name):
    path = os.path.join(logdir, name)
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        sys.exit(f"results_json.py: {path}: {e.strerror}")


def need(match, what, name):
    if not match:
        sys.exit(f"results_json.py: {name}: no {what} line")
    return match


def shapes(logdir):
    peers = {(p["N"], p["K"]): p for p in json.loads(read(logdir, "graph_bench.json"))}
    best = {}
    # A bmma line's own time leaves out its planes pre-pass: its "seq" time (the pair as a plan
    # launches it) is the one that counts.
    for n, k, paths, batch, strategy, us, seq in re.findall(
            r"^bench +(\d+)x(\d+) +k=(\d) b=(\d+) +(\S+) +([\d.]+) us(?:.*; seq +([\d.]+) us)?",
            read(logdir, "bench_linear.log"), re.M):
        if strategy == "bmma":
            if not seq:
                continue
            us = seq
        key = (int(n), int(k), int(paths), int(batch))
        if key not in best or float(us) < best[key][1]:
            best[key] = (strategy, float(us))
    if not best:
        sys.exit("results_json.py: bench_linear.log: no bench lines")
    out = []
    for (n, k, paths, batch), (strategy, us) in sorted(best.items()):
        peer = peers.get((n, k), {})
        out.append({"n": n, "k_in": k, "paths": paths, "batch": batch, "strategy": strategy, "ours_us": us,
                    "floor_us": peer.get("read_k2_bytes") if paths == 2 else None,
                    "cublas_us": peer.get(f"fp16_M{batch}"),
                    "int4_us": peer.get("int4_M1") if batch == 1 else None})
    return out


def bench_table(text, name):
    """rabit bench's table: prefill tokens/s and decode ms per context, 2-bit and fp16 columns."""
    prefill = need(re.search(r"^prefill tokens +([\d.]+)/s +([\d.]+)/s", text, re.M), "prefill", name)
    decode = {int(c): (float(q), float(h)) for c, q, h in
              re.findall(r"^decode ctx (\d+) +([\d.]+) ms +([\d.]+) ms", text, re.M)}
    need(decode, "decode ctx", name)
    return (float(prefill.group(1)), float(prefill.group(2))), decode


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: results_json.py LOGDIR OUT.json")
    logdir, out = sys.argv[1:]
    device = need(re.search(r"^device: (.+?) \(", read(logdir, "bench_linear.log"), re.M), "device",
                  "bench_linear.log").group(1)
    chain = need(re.search(r"^chain batch +1: ([\d.]+) ms .*fp16 cuBLAS chain ([\d.]+) ms",
                           read(logdir, "bench_chain.log"), re.M), "chain batch 1", "bench_chain.log")
    (ours_tps, fp16_tps), llama = bench_table(read(logdir, "bench_llama.log"), "bench_llama.log")
    _, smollm2 = bench_table(read(logdir, "bench_smollm2.log"), "bench_smollm2.log")
    peer = {int(c): float(ms) for c, ms in
            re.findall(r"^fp16 graph decode ctx (\d+): ([\d.]+) ms", read(logdir, "peer_fp16_decode.log"), re.M)}
    need(peer, "fp16 graph decode", "peer_fp16_decode.log")
    if 128 not in smollm2:
        sys.exit("results_json.py: bench_smollm2.log: no decode ctx 128 line")
    result = {
        "date": datetime.date.today().isoformat(), "device": device, "shapes": shapes(logdir),
        "chain": {"ours_ms": float(chain.group(1)), "fp16_ms": float(chain.group(2))},
        "decode": [{"ctx": c, "ours_ms": llama[c][0], "peer_ms": peer.get(c)} for c in sorted(llama)],
        "prefill": {"ours_tok_s": ours_tps, "fp16_tok_s": fp16_tps},
        "smollm2_decode_ms": smollm2[128][0],
    }
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
