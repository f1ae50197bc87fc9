#!/usr/bin/env python3
"""check_layout.py: keep the source layout from rotting.

Usage:
    python3 tools/check_layout.py [ROOT]                 # check the tree at ROOT (default: .)
    python3 tools/check_layout.py --expect-marked DIR    # self-test on a planted tree

Prints one line per violation, `path:line: rule: explanation`, then a one-line
summary. Exits 0 when the tree is clean, 1 when it is not (2 on bad usage).

The tree is made of *library folders* (frontend/ ir/ codegen/ runtime/
trainer/ autotune/) and tools/ (the command-line drivers). Each top folder
and each of its subfolders is one *unit*: runtime, runtime/jit, codegen,
codegen/cuda, ... A file belongs to the unit of its directory; project
includes are written relative to the repository root ("runtime/jit/jit.h"),
so an include names the unit it reaches. tests/ is never checked: tests may
reach into anything.

The rules, and why:

 1. include-cycle   No include cycle between units. A cycle means the units
                    cannot be understood, built or replaced one at a time.
                    Every include that makes an edge lying on a cycle is
                    reported once per edge, with the whole cycle and the
                    other edges' locations, so that one of them can be cut.
 2. tools-include   No library file includes "tools/...". The drivers sit
                    on top of everything; a library that reaches up into
                    them cannot be linked without them.
 3. public-header   Only the public API's implementation (runtime/session.c)
                    includes the public header runtime/rabit.h among library
                    files. The library works on its internal types; the
                    public header is a promise to users, not a shortcut.
 4. layering        Arrows point down (see LAYERS below): a unit never
                    includes a unit of a higher layer, and inside runtime/
                    the parts (jit, cuda, formats, text) never include the
                    runtime's own top layer (runtime.h, rabit.h), nor does
                    formats include text (see SUBUNIT_FORBIDDEN).
 5. op-strcmp       The runtime does not dispatch on op names as strings
                    (strcmp(ps->op, "embed")): the op is an enum from the
                    IR's op table; string dispatch silently breaks when an op
                    is renamed or added.
 6. kernel-index    The runtime does not pick a step's kernels by position
                    (kernel[3], ->k[0]): the order of a step's kernel list is
                    an accident of the planner; name the role instead.
 7. packed-format   The packed weight format is computed in one place,
                    codegen/packed.c: no other file computes the sign-word
                    count ((K + 31) / 32, (K + 31) >> 5) or spells a packed
                    tensor suffix (".bits", "%s.g", ".h", ...). Ask
                    cg_packed_words(), cg_packed_suffix(), cg_packed_name().
                    Prose in help text that documents the format is fine.
 8. library-prints  Library code never prints and never ends the process:
                    no printf/puts/perror, nothing written to stderr/stdout,
                    no exit()/abort(). Errors go back to the caller (a status
                    and an RbBuf/IrDiag message); only tools/ decide what to
                    print. Writing to a FILE* the caller passed is fine.

The tables right below hold the layout; change them, not the rule code, when
the layout changes on purpose.

Self-test: with --expect-marked, the checker runs on DIR and compares what it
finds with the markers planted in DIR's sources: a comment `expect: RULE`
(or `expect: RULE, RULE`) on a line says that exactly those rules fire on
exactly that line. Any difference, or a rule planted nowhere, fails.
"""

import argparse
import bisect
import fnmatch
import os
import re
import sys
from collections import Counter, defaultdict, deque, namedtuple

# ============================================================================
# The layout. Edit these tables when the layout changes on purpose.
# ============================================================================

LIBRARY_DIRS = ("frontend", "ir", "codegen", "runtime", "trainer", "autotune")
TOOLS_DIR = "tools"
SOURCE_EXTS = (".c", ".h")

# Rule 4: the layers, top to bottom. A unit may include units of its own layer
# or of any layer below it, never above. Units of one layer may include one
# another (rule 1 still forbids cycles). A top folder stands for itself and
# all its subfolders.
LAYERS = (
    ("tools",),
    ("trainer", "autotune"),
    ("runtime",),  # runtime and runtime/*
    ("codegen",),  # codegen and codegen/*
    ("frontend",),
    ("ir",),
)

# Rule 4, inside a top folder: (including units, unit it must not include, why).
# Patterns are fnmatch-style: "runtime/*" is every subfolder of runtime/ but
# not runtime itself.
SUBUNIT_FORBIDDEN = (
    ("runtime/*", "runtime",
     "the runtime's own top layer (runtime.h, rabit.h) is built on its parts, not the other way round"),
    ("runtime/formats", "runtime/text",
     "runtime/text reads runtime/formats, not the other way round"),
)

# Rule 3: the public header and the only library files that may include it.
PUBLIC_HEADER = "runtime/rabit.h"
PUBLIC_HEADER_IMPLEMENTATION = ("runtime/session.c",)

# Rule 5: op names the runtime must not compare as strings. The spellings of
# the IR op table (OP_TABLE_HEADER, rows `X(IR_..., "name", ...)`) are added
# when that header exists, so a new op is covered without editing this list.
OP_NAMES = ("embed", "rmsnorm", "attention", "swiglu", "add", "linear", "linear_add",
            "linear_swiglu", "rope_kv", "repack")
OP_TABLE_HEADER = "ir/ir.h"

# Rule 7: the one file that owns the packed format, and the suffixes it owns.
# (cg_dense_name() also owns "%s.weight"; add "weight" here to enforce that too.)
PACKED_FORMAT_OWNER = "codegen/packed.c"
PACKED_SUFFIXES = ("bits", "g", "h")

# Rule 8: macros inside whose definition abort() is allowed (an assert-like
# macro). There is none today: the library has no assert macro that aborts.
ABORT_ALLOWED_IN_MACROS = ()

# ============================================================================

Violation = namedtuple("Violation", "path line rule msg")
Include = namedtuple("Include", "line target")  # target as written: "runtime/jit/jit.h"

RULES = []  # (number, name, function), in order; filled by @rule


def rule(number, name):
    def register(fn):
        RULES.append((number, name, fn))
        return fn
    return register


# ---------------------------------------------------------------------------
# Reading sources
# ---------------------------------------------------------------------------

def blank(s):
    """s with every character but newlines turned into a space (keeps offsets and lines)."""
    return re.sub(r"[^\n]", " ", s)


def strip_c(text):
    """Return (code, bare, strings): code is text with comments blanked; bare
    also has the insides of string and character literals blanked. Both keep
    every offset and line of text, so a match in one can be read in the
    other. strings: the (start, end) offsets of every "string literal"."""
    code, bare, strings = [], [], []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            code.append(blank(text[i:j])); bare.append(blank(text[i:j]))
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            code.append(blank(text[i:j])); bare.append(blank(text[i:j]))
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            closed = j < n and text[j] == c
            j = min(j + 1, n) if closed else j
            if c == '"':
                strings.append((i, j))
            code.append(text[i:j])
            bare.append(c + blank(text[i + 1:j - 1]) + c if closed else c + blank(text[i + 1:j]))
        else:
            j = i + 1
            while j < n and text[j] not in "/\"'":
                j += 1
            code.append(text[i:j]); bare.append(text[i:j])
        i = j
    return "".join(code), "".join(bare), strings


INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*["<]([^">\n]+)[">]', re.M)
EXPECT_RE = re.compile(r"(?://|/\*).*?\bexpect:\s*([a-z0-9][a-z0-9 ,-]*)")


class Source:
    """One C file: its text, comment-free and literal-free copies, includes."""

    def __init__(self, root, path):
        self.path = path  # relative to root, with '/'
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            self.text = f.read()
        self.code, self.bare, self.strings = strip_c(self.text)
        self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        self.top = path.split("/", 1)[0]
        self.unit = unit_of(path)
        self.includes = [Include(self.line_of(m.start()), m.group(1).strip())
                         for m in INCLUDE_RE.finditer(self.code)]

    def line_of(self, offset):
        return bisect.bisect_left(self._newlines, offset) + 1

    def is_include_line(self, offset):
        start = self.code.rfind("\n", 0, offset) + 1
        return re.match(r"[ \t]*#[ \t]*include\b", self.code[start:]) is not None

    def call_args(self, open_paren):
        """The arguments of the call whose '(' is at open_paren, as (start, end)
        spans, split at top-level commas; parens and commas inside literals
        do not count. None when the call does not close."""
        depth, start, spans = 0, open_paren + 1, []
        for i in range(open_paren, len(self.bare)):
            ch = self.bare[i]
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
                if depth == 0:
                    spans.append((start, i))
                    return spans
            elif ch == "," and depth == 1:
                spans.append((start, i))
                start = i + 1
        return None

    def expected(self):
        """The (line, rule) pairs planted with `expect:` markers."""
        out = []
        for no, line in enumerate(self.text.split("\n"), 1):
            m = EXPECT_RE.search(line)
            if m:
                out += [(no, r.strip()) for r in m.group(1).split(",") if r.strip()]
        return out


def unit_of(path):
    """The unit of a file or header: its directory, at most two levels deep."""
    parts = path.split("/")[:-1]
    return "/".join(parts[:2])


def top_of(unit):
    return unit.split("/", 1)[0]


class Tree:
    def __init__(self, root):
        self.root = root
        self.sources = []
        for top in LIBRARY_DIRS + (TOOLS_DIR,):
            base = os.path.join(root, top)
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.endswith(SOURCE_EXTS):
                        rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                        self.sources.append(Source(root, rel))

    def library(self):
        return [s for s in self.sources if s.top in LIBRARY_DIRS]

    def library_and_tools(self):
        return self.sources


def is_project_include(target):
    return "/" in target and top_of(target) in LIBRARY_DIRS + (TOOLS_DIR,)


def in_runtime_c(src):
    """runtime/**/*.c: what rules 5 and 6 look at."""
    return src.top == "runtime" and src.path.endswith(".c")


# ---------------------------------------------------------------------------
# Rule 1: no include cycle between units
# ---------------------------------------------------------------------------

def unit_graph(sources):
    """{(u, v): [(path, line, target), ...]} for every include from unit u into unit v != u."""
    edges = defaultdict(list)
    for src in sources:
        for inc in src.includes:
            if is_project_include(inc.target):
                v = unit_of(inc.target)
                if v != src.unit:
                    edges[(src.unit, v)].append((src.path, inc.line, inc.target))
    return edges


def strongly_connected(nodes, succ):
    """Tarjan: {node: component id}."""
    index, low, comp, stack, on = {}, {}, {}, [], set()
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            while True:
                w = stack.pop()
                on.discard(w)
                comp[w] = v
                if w == v:
                    break

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return comp


def shortest_path(succ, start, goal):
    prev, queue = {start: None}, deque([start])
    while queue:
        v = queue.popleft()
        if v == goal:
            path = []
            while v is not None:
                path.append(v)
                v = prev[v]
            return path[::-1]
        for w in sorted(succ[v]):
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return None


@rule(1, "include-cycle")
def check_include_cycles(tree):
    edges = unit_graph(tree.library_and_tools())
    succ = defaultdict(set)
    for u, v in edges:
        succ[u].add(v)
    nodes = {u for e in edges for u in e}
    comp = strongly_connected(nodes, succ)
    out = []
    for (u, v), where in sorted(edges.items()):
        if comp[u] != comp[v]:
            continue  # not on any cycle
        # In a strongly connected component every edge lies on a cycle: v reaches u.
        back = shortest_path(succ, v, u)
        cycle = [u] + back
        others = []
        for a, b in zip(cycle[1:], cycle[2:]):
            p, l, _ = edges[(a, b)][0]
            others.append("%s:%d" % (p, l))
        path, line, target = where[0]
        more = " (and %d more include(s) of %s from %s)" % (len(where) - 1, v, u) if len(where) > 1 else ""
        out.append(Violation(path, line, "include-cycle",
                             '#include "%s" makes %s -> %s%s, on the cycle %s; cut one edge of it '
                             "(the others: %s)" % (target, u, v, more, " -> ".join(cycle), ", ".join(others))))
    return out


# ---------------------------------------------------------------------------
# Rule 2: nothing under tools/ is included by a library
# ---------------------------------------------------------------------------

@rule(2, "tools-include")
def check_tools_includes(tree):
    out = []
    for src in tree.library():
        for inc in src.includes:
            if is_project_include(inc.target) and top_of(inc.target) == TOOLS_DIR:
                out.append(Violation(src.path, inc.line, "tools-include",
                                     'library file includes "%s": tools/ holds the drivers and sits on top; '
                                     "move what the library needs into a library folder" % inc.target))
    return out


# ---------------------------------------------------------------------------
# Rule 3: only the public API implementation includes the public header
# ---------------------------------------------------------------------------

@rule(3, "public-header")
def check_public_header(tree):
    out = []
    for src in tree.library():
        if src.path in PUBLIC_HEADER_IMPLEMENTATION:
            continue
        for inc in src.includes:
            if inc.target == PUBLIC_HEADER:
                out.append(Violation(src.path, inc.line, "public-header",
                                     'includes the public header "%s"; among library files only %s may: '
                                     "use the internal header and types instead"
                                     % (PUBLIC_HEADER, ", ".join(PUBLIC_HEADER_IMPLEMENTATION))))
    return out


# ---------------------------------------------------------------------------
# Rule 4: arrows point down
# ---------------------------------------------------------------------------

def layer_of(unit):
    for i, names in enumerate(LAYERS):
        if top_of(unit) in names:
            return i
    return None


def layers_text():
    return " -> ".join(", ".join(names) for names in LAYERS)


@rule(4, "layering")
def check_layering(tree):
    out = []
    for src in tree.library():
        for inc in src.includes:
            if not is_project_include(inc.target):
                continue
            target = unit_of(inc.target)
            if top_of(target) == TOOLS_DIR:
                continue  # rule 2 says it
            mine, theirs = layer_of(src.unit), layer_of(target)
            if mine is not None and theirs is not None and theirs < mine:
                out.append(Violation(src.path, inc.line, "layering",
                                     '%s includes "%s" of %s, a higher layer; the layers, top to bottom: %s'
                                     % (src.unit, inc.target, top_of(target), layers_text())))
                continue
            for pattern, forbidden, why in SUBUNIT_FORBIDDEN:
                if fnmatch.fnmatchcase(src.unit, pattern) and target == forbidden:
                    out.append(Violation(src.path, inc.line, "layering",
                                         '%s must not include "%s" (%s): %s' % (src.unit, inc.target, forbidden, why)))
    return out


# ---------------------------------------------------------------------------
# Rule 5: no string comparison on op names in the runtime
# ---------------------------------------------------------------------------

STRCMP_RE = re.compile(r"\b(strn?cmp)\s*\(")
OP_ARG_RE = re.compile(r"\bop\b")
OP_TABLE_ROW_RE = re.compile(r'\bX\(\s*IR_\w+\s*,\s*"(\w+)"')


def op_names(tree):
    names = set(OP_NAMES)
    header = os.path.join(tree.root, OP_TABLE_HEADER)
    if os.path.exists(header):
        with open(header, encoding="utf-8", errors="replace") as f:
            names |= set(OP_TABLE_ROW_RE.findall(f.read()))
    return names


@rule(5, "op-strcmp")
def check_op_strcmp(tree):
    names = op_names(tree)
    out = []
    for src in filter(in_runtime_c, tree.sources):
        for m in STRCMP_RE.finditer(src.bare):
            spans = src.call_args(m.end() - 1)
            if not spans:
                continue
            args = [(src.code[a:b].strip(), src.bare[a:b]) for a, b in spans]
            if not any(OP_ARG_RE.search(bare) for _, bare in args):
                continue
            for code, _ in args:
                lit = re.fullmatch(r'"(\w*)"', code)
                if not lit:
                    continue
                s = lit.group(1)
                if s in names or (m.group(1) == "strncmp" and s and any(n.startswith(s) for n in names)):
                    call = re.sub(r"\s+", " ", src.code[m.start():spans[-1][1] + 1])
                    out.append(Violation(src.path, src.line_of(m.start()), "op-strcmp",
                                         '%s compares an op name as a string; keep the op as its IrOp '
                                         "(ir_op_lookup once, when the plan is read) and compare enums" % call))
                    break
    return out


# ---------------------------------------------------------------------------
# Rule 6: no positional kernel index in the runtime
# ---------------------------------------------------------------------------

KERNEL_INDEX_RE = re.compile(r"\bkernel\s*\[\s*\d+\s*\]|(?:->|\.)\s*k\s*\[\s*\d+\s*\]")


@rule(6, "kernel-index")
def check_kernel_index(tree):
    out = []
    for src in filter(in_runtime_c, tree.sources):
        for m in KERNEL_INDEX_RE.finditer(src.bare):
            what = re.sub(r"\s+", "", m.group(0))
            out.append(Violation(src.path, src.line_of(m.start()), "kernel-index",
                                 "%s picks a step's kernel by its position in the list; "
                                 "look the kernel up by its role (its kind) instead" % what))
    return out


# ---------------------------------------------------------------------------
# Rule 7: the packed format is computed in one place
# ---------------------------------------------------------------------------

# "(x + 31) / 32", "(x + 31) >> 5" and the unparenthesized "x + 31 >> 5".
WORD_COUNT_RE = re.compile(r"\+\s*31\s*\)\s*(?:/\s*32|>>\s*5)\b|\+\s*31\s*>>\s*5\b")
SUFFIX_LITERAL_RE = re.compile(r"(?:%[-+ #0-9.]*s)?\.(?:" + "|".join(map(re.escape, PACKED_SUFFIXES)) + ")")


def expression_start(src, m):
    """Where the "x + 31" of a word-count match starts: the matching '(' of its
    ')' or, unparenthesized, the start of the operand before the '+'."""
    close = src.bare.find(")", m.start(), m.end())
    if close >= 0:
        depth = 0
        for i in range(close, -1, -1):
            depth += {")": 1, "(": -1}.get(src.bare[i], 0)
            if depth == 0:
                return i
        return m.start()
    operand = re.search(r"[\w.\->\[\]]+\s*$", src.bare[:m.start()])
    return operand.start() if operand else m.start()


@rule(7, "packed-format")
def check_packed_format(tree):
    out = []
    for src in tree.library_and_tools():
        if src.path == PACKED_FORMAT_OWNER:
            continue
        for m in WORD_COUNT_RE.finditer(src.code):
            expr = re.sub(r"\s+", " ", src.code[expression_start(src, m):m.end()]).strip()
            out.append(Violation(src.path, src.line_of(m.start()), "packed-format",
                                 "computes the packed word count %s by hand; call cg_packed_words() "
                                 "(%s owns the format)" % (expr, PACKED_FORMAT_OWNER)))
        for start, end in src.strings:
            literal = src.code[start:end]
            if SUFFIX_LITERAL_RE.fullmatch(literal[1:-1]) and not src.is_include_line(start):
                out.append(Violation(src.path, src.line_of(start), "packed-format",
                                     "spells the packed tensor suffix %s; use cg_packed_suffix() or "
                                     "cg_packed_name() (%s owns the format)" % (literal, PACKED_FORMAT_OWNER)))
    return out


# ---------------------------------------------------------------------------
# Rule 8: library code never prints
# ---------------------------------------------------------------------------

PRINT_CALL_RE = re.compile(r"(?<![\w.>])(printf|vprintf|puts|putchar|perror|exit|abort)\s*\(")
STREAM_CALL_RE = re.compile(r"(?<![\w.>])(fprintf|vfprintf|fputs|fputc|putc|fwrite|fflush)\s*\(")
STD_STREAM_RE = re.compile(r"\b(stderr|stdout)\b")


def defining_macro(src, offset):
    """The name of the #define whose (possibly continued) body holds offset, or None."""
    lines = src.code[:offset].split("\n")
    i = len(lines) - 1
    while i > 0 and lines[i - 1].endswith("\\"):
        i -= 1
    m = re.match(r"\s*#\s*define\s+(\w+)", lines[i])
    return m.group(1) if m else None


@rule(8, "library-prints")
def check_library_prints(tree):
    advice = "return a status and put the message in the caller's RbBuf/IrDiag; only tools/ print"
    out = []
    for src in tree.library():
        covered = []  # spans of calls already reported, so stderr inside them is not reported twice
        for m in PRINT_CALL_RE.finditer(src.bare):
            fn = m.group(1)
            if fn == "abort" and defining_macro(src, m.start()) in ABORT_ALLOWED_IN_MACROS:
                continue
            spans = src.call_args(m.end() - 1)
            covered.append((m.start(), spans[-1][1] if spans else m.end()))
            what = "ends the process" if fn in ("exit", "abort") else "prints"
            out.append(Violation(src.path, src.line_of(m.start()), "library-prints",
                                 "%s() %s from library code; %s" % (fn, what, advice)))
        for m in STREAM_CALL_RE.finditer(src.bare):
            spans = src.call_args(m.end() - 1)
            if not spans:
                continue
            streams = {s.group(1) for a, b in spans for s in STD_STREAM_RE.finditer(src.bare[a:b])}
            if streams:
                covered.append((m.start(), spans[-1][1]))
                out.append(Violation(src.path, src.line_of(m.start()), "library-prints",
                                     "%s() to %s from library code; %s"
                                     % (m.group(1), "/".join(sorted(streams)), advice)))
        for m in STD_STREAM_RE.finditer(src.bare):
            if not any(a <= m.start() <= b for a, b in covered):
                out.append(Violation(src.path, src.line_of(m.start()), "library-prints",
                                     "library code uses %s; %s" % (m.group(1), advice)))
    return out


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------

def run_rules(tree):
    found = []
    for _, _, fn in RULES:
        found += fn(tree)
    return sorted(set(found), key=lambda v: (v.path, v.line, v.rule, v.msg))


def summary(found, tree):
    if not found:
        return "check_layout: clean (%d rules, %d files)" % (len(RULES), len(tree.sources))
    counts = Counter(v.rule for v in found)
    per_rule = ", ".join("%d %s: %d" % (no, name, counts[name]) for no, name, _ in RULES if counts[name])
    return "check_layout: %d violation(s) in %d file(s) [%s]" % (
        len(found), len({v.path for v in found}), per_rule)


def self_test(tree, found):
    """Compare the violations with the `expect:` markers; returns the exit code."""
    want = Counter()
    for src in tree.sources:
        for line, name in src.expected():
            want[(src.path, line, name)] += 1
    got = Counter((v.path, v.line, v.rule) for v in found)
    names = {name for _, name, _ in RULES}
    problems = []
    for key in sorted((want - got).keys()):
        problems.append("%s:%d: %s: planted but not reported" % key)
    for key in sorted((got - want).keys()):
        msgs = [v.msg for v in found if (v.path, v.line, v.rule) == key]
        problems.append("%s:%d: %s: reported but not planted (%s)" % (key + (msgs[0],)))
    for path, line, name in sorted(want):
        if name not in names:
            problems.append("%s:%d: %s: marker names no rule" % (path, line, name))
    planted = {name for _, _, name in want}
    for no, name, _ in RULES:
        if name not in planted:
            problems.append("selftest: rule %d %s is planted nowhere" % (no, name))
    for p in problems:
        print(p)
    if problems:
        print("check_layout selftest: FAILED (%d problem(s))" % len(problems))
        return 1
    print("check_layout selftest: ok (%d planted violation(s) of all %d rules, each reported where planted, "
          "nothing else)" % (sum(want.values()), len(RULES)))
    return 0


def main(argv):
    ap = argparse.ArgumentParser(
        description="Check the source layout rules (see the docstring of this script).",
        epilog="rules: " + ", ".join("%d %s" % (no, name) for no, name, _ in RULES))
    ap.add_argument("root", nargs="?", default=".", help="the repository root (default: .)")
    ap.add_argument("--expect-marked", action="store_true",
                    help="self-test: succeed iff the violations are exactly the `expect: RULE` markers")
    args = ap.parse_args(argv)
    if not any(os.path.isdir(os.path.join(args.root, d)) for d in LIBRARY_DIRS):
        ap.error("%s does not look like the repository root (none of %s/)" % (args.root, "/ ".join(LIBRARY_DIRS)))
    tree = Tree(args.root)
    found = run_rules(tree)
    if args.expect_marked:
        return self_test(tree, found)
    for v in found:
        print("%s:%d: %s: %s" % v)
    print(summary(found, tree))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
