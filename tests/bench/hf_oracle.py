# hf_oracle.py: Hugging Face transformers as the oracle for rabit's fp16 path.
# Loads the `rabit import` output with LlamaForCausalLM and checks, on the
# same token ids rabit used:
#   1. the prompt's logits: relative L2 error of ours against HF (float32);
#   2. 32 greedy tokens: identical to HF's greedy generate;
#   3. perplexity on the same windows rabit ppl evaluated.
# usage: hf_oracle.py DIR --logits L.bin --ids IDS.txt --prompt-len N
#                         [--ppl-ids P.bin --ctx C --ours-ppl X]
import argparse, json, math, os
import numpy as np, torch, transformers

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--logits", required=True)
ap.add_argument("--ids", required=True)
ap.add_argument("--prompt-len", type=int, required=True)
ap.add_argument("--ppl-ids")
ap.add_argument("--ctx", type=int, default=1024)
ap.add_argument("--ours-ppl", type=float)
a = ap.parse_args()

res = {}
for dtype in (torch.float32, torch.float16):
    model = transformers.LlamaForCausalLM.from_pretrained(a.dir, torch_dtype=dtype).cuda().eval()
    name = "fp32" if dtype == torch.float32 else "fp16"
    ids = [int(x) for x in open(a.ids)]
    prompt, ours_gen = ids[:a.prompt_len], ids[a.prompt_len:]
    ours = np.fromfile(a.logits, dtype=np.float32).reshape(a.prompt_len, -1)
    with torch.no_grad():
        ref = model(torch.tensor([prompt], device="cuda")).logits[0].float().cpu().numpy()
        out = model.generate(torch.tensor([prompt], device="cuda"), max_new_tokens=32, do_sample=False,
                             attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device="cuda"))
    hf_gen = out[0, len(prompt):].tolist()
    rel = float(np.linalg.norm(ours - ref) / np.linalg.norm(ref))
    same = sum(1 for x, y in zip(hf_gen, ours_gen) if x == y) if hf_gen[:1] else 0
    first_diff = next((i for i, (x, y) in enumerate(zip(hf_gen, ours_gen)) if x != y), None)
    res[name] = dict(logits_rel_l2=rel, greedy_identical=ours_gen[:32] == hf_gen[:32], first_difference=first_diff,
                     hf_greedy=hf_gen[:32], ours_greedy=ours_gen[:32])
    print(f"HF {name}: logits rel L2 {rel:.2e}; greedy 32 identical: {ours_gen[:32] == hf_gen[:32]}"
          f" (first difference at {first_diff})", flush=True)
    if a.ppl_ids and dtype == torch.float32:
        w = np.fromfile(a.ppl_ids, dtype=np.int32).reshape(-1, a.ctx)
        total, count = 0.0, 0
        with torch.no_grad():
            for row in w:
                t = torch.tensor(row[None, :], dtype=torch.long, device="cuda")
                lp = torch.log_softmax(model(t).logits[0].float(), -1)
                total -= lp[:-1].gather(1, t[0, 1:, None]).sum().item()
                count += a.ctx - 1
        ppl = math.exp(total / count)
        res["ppl_hf"] = ppl
        msg = f"HF perplexity {ppl:.4f} over {count} tokens ({len(w)} windows of {a.ctx})"
        if a.ours_ppl:
            res["ppl_ratio"] = a.ours_ppl / ppl
            msg += f"; ours {a.ours_ppl:.4f} ({100 * (a.ours_ppl / ppl - 1):+.2f}%)"
        print(msg, flush=True)
    del model
json.dump(res, open(os.path.join(os.environ.get("OUT", "/tmp"), "hf_oracle.json"), "w"), indent=1)
