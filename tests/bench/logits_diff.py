#!/usr/bin/env python3
"""logits_diff.py NAME A.bin B.bin VOCAB: two float32 logits files (tokens x VOCAB, as
`rabit run --logits-out` writes them) side by side, one line: the largest |A - B|, the
relative L2 distance per token (worst and mean), how many tokens' argmax agree, and the
largest |A|; then the positions of the tokens whose distance passes 1e-2. Exits 1 when the files differ in size or hold a non-finite value."""
import sys

import numpy as np


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    name, pa, pb, vocab = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    a, b = np.fromfile(pa, dtype=np.float32), np.fromfile(pb, dtype=np.float32)
    if a.size != b.size or a.size % vocab:
        print(f"{name}: sizes differ or are not whole rows of {vocab}: {a.size} and {b.size} floats")
        sys.exit(1)
    a, b = a.reshape(-1, vocab).astype(np.float64), b.reshape(-1, vocab).astype(np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        print(f"{name}: a non-finite logit (A {np.isfinite(a).all()}, B {np.isfinite(b).all()})")
        sys.exit(1)
    rel = np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-30)
    agree = int((a.argmax(axis=1) == b.argmax(axis=1)).sum())
    print(f"{name}: {a.shape[0]} tokens, max |A-B| {np.abs(a - b).max():.4g}, rel L2 worst {rel.max():.3g} "
          f"mean {rel.mean():.3g}, argmax agree {agree}/{a.shape[0]}, max |A| {np.abs(a).max():.4g}")
    far = [f"{i}:{r:.3g}" for i, r in enumerate(rel) if r > 1e-2]
    if far:
        print(f"{name}: tokens with rel L2 over 1e-2 (position:distance): {' '.join(far)}")


if __name__ == "__main__":
    main()
