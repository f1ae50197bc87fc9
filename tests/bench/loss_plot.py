#!/usr/bin/env python3
"""loss_plot.py OUT.svg LABEL=TRAIN_LOG ...: runs of rabit train side by side, from their logs.

Two panels against training tokens, both on log scales: the training KL (the step lines) and the
validation perplexity (the eval lines). Runs whose labels share the text before a '#' share a
colour (the seeds of one method). Plain SVG, no plotting library."""
import math
import re
import sys

W, H, PAD = 460, 320, 56
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def parse(path, tokens_per_step=4096):
    text = open(path, errors="replace").read()
    m = re.search(r"steps of (\d+) x (\d+) tokens", text)
    if m:
        tokens_per_step = int(m.group(1)) * int(m.group(2))
    train = [(int(s) * tokens_per_step, float(k)) for s, k in re.findall(r"^step (\d+)/\d+ +loss \S+ +kl (\S+)", text, re.M)]
    val = [(int(s) * tokens_per_step, float(p)) for s, p in re.findall(r"^eval at step (\d+): validation ppl (\S+)", text, re.M)]
    return train, val


def panel(x0, title, series, ylabel):
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return []
    xmax = max(x for x, _ in pts)
    ylo, yhi = math.log10(min(y for _, y in pts)), math.log10(max(y for _, y in pts))
    if yhi - ylo < 1e-9:
        yhi = ylo + 1
    sx = lambda x: x0 + PAD + (W - 1.5 * PAD) * x / xmax
    sy = lambda y: H - PAD + (2 * PAD - H) * (math.log10(y) - ylo) / (yhi - ylo)
    out = [f'<text x="{x0 + W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<rect x="{x0 + PAD}" y="{PAD}" width="{W - 1.5 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>']
    for e in range(math.floor(ylo), math.ceil(yhi) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if ylo <= math.log10(v) <= yhi:
                out.append(f'<text x="{x0 + PAD - 4}" y="{sy(v) + 4:.1f}" text-anchor="end" font-size="10">{v:g}</text>')
                out.append(f'<line x1="{x0 + PAD}" x2="{x0 + W - PAD / 2}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>')
    for i in range(5):
        x = xmax * i / 4
        out.append(f'<text x="{sx(x):.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{x / 1e6:.2g}M</text>')
    out.append(f'<text x="{x0 + W / 2}" y="{H - 12}" text-anchor="middle" font-size="11">training tokens</text>')
    out.append(f'<text x="{x0 + 12}" y="{H / 2}" font-size="11" transform="rotate(-90 {x0 + 12} {H / 2})" '
               f'text-anchor="middle">{ylabel}</text>')
    for label, colour, s in series:
        if s:
            d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
            out.append(f'<polyline points="{d}" fill="none" stroke="{colour}" stroke-width="1.4"/>')
    return out


def main():
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
        sys.exit("usage: loss_plot.py OUT.svg LABEL=TRAIN_LOG ...")
    groups, runs = [], []
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        group = label.split("#")[0]
        if group not in groups:
            groups.append(group)
        runs.append((label, COLOURS[groups.index(group) % len(COLOURS)], *parse(path)))
    body = panel(0, "training KL(teacher || student)", [(l, c, t) for l, c, t, _ in runs], "KL per token")
    body += panel(W, "validation perplexity (94 windows)", [(l, c, v) for l, c, _, v in runs], "perplexity")
    for i, g in enumerate(groups):
        y = PAD + 14 * i + 10
        body.append(f'<rect x="{2 * W - 150}" y="{y - 8}" width="10" height="3" fill="{COLOURS[i % len(COLOURS)]}"/>')
        body.append(f'<text x="{2 * W - 136}" y="{y - 3}" font-size="10">{g}</text>')
    with open(sys.argv[1], "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H}" font-family="sans-serif">\n'
                f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


if __name__ == "__main__":
    main()
