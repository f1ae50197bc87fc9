/* space.c: the search space of one kernel: its default schedule, then every
 * combination of the knobs its target's emitter honours, pruned by the
 * device's limits. The knob values are the emitter's documented tiles
 * (codegen/cuda/linear.c), kept to those that change the work split; each
 * candidate goes through the target's geometry, so the space never holds a
 * schedule the emitter refuses. README.md documents the order and the rules. */
#include <string.h>

#include "autotune/autotune.h"

/* What the enumeration carries: the kernel, the limits, the space it fills. */
typedef struct {
  const CgTarget *t;
  const CgKernel *k;
  const AtLimits *lim;
  AtSpace *out;
  int rc;
} Walk;

static int div_up(int a, int b) { return (a + b - 1) / b; }

/* The per-thread register budget of a block of `threads`: __launch_bounds__
 * makes the compiler fit the block, so past it values spill. Registers are
 * allocated per thread in units of 8. 0: unknown. */
static int reg_budget(const AtLimits *l, unsigned threads) {
  int b = l->regs_per_thread;
  if (l->regs_per_block > 0 && threads) {
    int per = (int)((unsigned)l->regs_per_block / threads) & ~7;
    if (!b || per < b) b = per;
  }
  return b;
}

static int push(AtSpace *s, const AtCandidate *c) {
  if (s->n == s->cap) {
    int cap = s->cap ? 2 * s->cap : 64;
    AtCandidate *p = rb_realloc(s->c, (size_t)cap * sizeof *p);
    if (!p) return RB_EINTERNAL;
    s->c = p;
    s->cap = cap;
  }
  s->c[s->n++] = *c;
  return RB_OK;
}

/* Add schedule sc unless the target refuses it or a limit prunes it. rows is
 * its rows-per-block knob, regs its register estimate (0: none). The SM rule:
 * more rows per block with a grid (at the bucket's largest batch) that leaves
 * over half the SMs without a block starves the memory system, and fewer rows
 * give more blocks; a bandwidth-bound kernel needs most SMs pulling. */
static void consider(Walk *w, const CgSchedule *sc, int rows, int regs) {
  if (w->rc) return;
  CgKernel k = {.op = w->k->op, .sched = *sc};
  CgGeometry g;
  RbBuf why = {0};
  int rc = w->t->geometry(&k, &g, &why);
  rb_buf_free(&why);
  AtSpace *s = w->out;
  if (rc == RB_EINTERNAL) {
    w->rc = rc;
    return;
  }
  if (rc) {
    s->pruned[AT_PRUNE_TARGET]++;
    return;
  }
  AtCandidate c = {.sched = *sc, .threads = g.block[0] * g.block[1] * g.block[2], .smem = g.smem, .regs = regs};
  const AtLimits *l = w->lim;
  int budget = reg_budget(l, c.threads);
  CgLaunch at_max = cg_geometry_launch(&g, sc->batch_max > 0 ? sc->batch_max : 1);
  unsigned long long blocks = (unsigned long long)at_max.grid[0] * at_max.grid[1] * at_max.grid[2];
  if (l->threads_per_block > 0 && c.threads > (unsigned)l->threads_per_block) s->pruned[AT_PRUNE_THREADS]++;
  else if (l->smem_per_block > 0 && c.smem > (unsigned)l->smem_per_block) s->pruned[AT_PRUNE_SMEM]++;
  else if (regs > 0 && budget > 0 && regs > budget) s->pruned[AT_PRUNE_REGS]++;
  else if (l->sm_count > 0 && rows > 1 && 2 * blocks < (unsigned long long)l->sm_count) s->pruned[AT_PRUNE_SMS]++;
  else w->rc = push(s, &c);
}

/* ---- the CUDA linear (codegen/cuda/linear.c's tiles) ---- */

/* The shape facts the linear's knobs act on, as linear.c's plan derives them:
 * 16-row tiles per block group (a segment, or gate+up together for swiglu),
 * 256-column groups (the register design's K steps) and 64-column steps (the
 * staged design's). */
typedef struct {
  int ngroup, ntile[CG_MAX_SEG];
  int C256, C64, nsb, paths;
} LinShape;

static LinShape lin_shape(const CgOp *op) {
  LinShape s = {0};
  s.nsb = op->epilogue == CG_EPI_SWIGLU ? 2 : 1;
  s.ngroup = op->epilogue == CG_EPI_SWIGLU ? 1 : op->nseg;
  for (int i = 0; i < s.ngroup && i < CG_MAX_SEG; i++) s.ntile[i] = div_up(op->N[i], 16);
  s.C256 = div_up(op->K, 256);
  s.C64 = div_up(op->K, 64);
  s.paths = op->paths;
  return s;
}

static long lin_blocks(const LinShape *s, int rows) {
  long b = 0;
  for (int i = 0; i < s->ngroup; i++) b += div_up(s->ntile[i], rows);
  return b;
}

/* A knob value is worth a candidate only when it changes the split: rows per
 * block that add blocks' worth of dead tiles only (the same block count as
 * rows - 1) and splits that leave the longest share as long as split - 1
 * does are left out. */
static int rows_useful(const LinShape *s, int rows) {
  return rows == 1 || lin_blocks(s, rows) < lin_blocks(s, rows - 1);
}
static int split_useful(int steps, int split) { return split == 1 || div_up(steps, split) < div_up(steps, split - 1); }

/* The registers the register design keeps live across its K loop, per
 * thread: the bits of this group and the next (2 x paths x segments x rows x
 * 4 words), one fp32 accumulator set (rows x segments x n8 tiles x 4), the g
 * pairs (paths x segments x rows x 2) and this step's x and h fragments. A
 * lower bound: addresses and temporaries come on top. */
static int regs_reg(const LinShape *s, int rows, int bt) {
  int nb = bt / 8;
  return 2 * s->paths * s->nsb * rows * 4 + rows * s->nsb * nb * 4 + s->paths * s->nsb * rows * 2 + nb * 8 +
         s->paths * s->nsb * 8;
}

/* The lop3 decode's, on top: an accumulator set per path (the xor form has two), the
 * per-path sums of F . u (segments x n8 tiles x paths x 4), the four forms of a word,
 * C and F (4 each). */
static int regs_lop3(const LinShape *s, int rows, int bt) {
  int nb = bt / 8, sets = s->paths > 2 ? s->paths - 2 : 0;
  return regs_reg(s, rows, bt) + rows * s->nsb * nb * 4 * sets + s->nsb * nb * s->paths * 4 + 12;
}

/* The bmma design's: the bits of this group and the next, its accumulators (rows x segments x
 * batch rows x paths x 2), the g values, one group's planes (batch rows x 8) and the U sums. */
static int regs_bmma(const LinShape *s, int rows, int nbr) {
  return 2 * s->paths * s->nsb * rows * 4 + rows * s->nsb * nbr * s->paths * 2 + s->paths * s->nsb * rows * 2 +
         nbr * 8 + s->nsb * nbr * s->paths;
}

/* The xsmem design's: the bits of this group and the next, the accumulators, the g pairs (as the
 * register design's), this step's x fragments and products (2 x n8 tiles x 8) and h fragment (8),
 * and ~24 of addresses and loop state (ptxas, 2026-12-05: 122 at RT 1 for gate/up b16, estimate
 * 120; 178 at RT 2, estimate 176). */
static int regs_xsmem(const LinShape *s, int rt, int bt) {
  int nb = bt / 8;
  return 2 * s->paths * s->nsb * rt * 4 + rt * s->nsb * nb * 4 + s->paths * s->nsb * rt * 2 + 2 * nb * 8 + 8 + 24;
}

/* The staged design's: its accumulators (segments x n8 tiles x 4), the g
 * pairs, one A fragment and the bit words. */
static int regs_staged(const LinShape *s, int bt) { return s->nsb * (bt / 8) * 4 + s->nsb * 2 + 4 + s->nsb; }

/* The batch tiles a bucket can use: up to the smallest tile that covers its
 * batch_max (a larger one computes rows no batch in the bucket has). */
static int bt_cover(int batch_max) { return batch_max <= 8 ? 8 : batch_max <= 16 ? 16 : batch_max <= 32 ? 32 : 64; }

/* The order: batch tile (8, 16: the register design; 32, 64: the staged
 * design), then rows per block (1..8), then for the register design the K
 * split (1..32), for the staged design the staged K chunk (64..1024 by 64),
 * then its K split (1..min(32 / rows, chunk / 64)). The register design is
 * spelled with the default's strategy (xor and mma emit the same kernel for
 * it; the strategy only picks the default batch tile), then at batch tiles of 8
 * again as lop3 (its decode, codegen/cuda/lop3.c), the staged one mma. */
static void linear_space(Walk *w, const CgSchedule *def) {
  static const int bts[] = {8, 16, 32, 64};
  LinShape s = lin_shape(&w->k->op);
  /* A bmma bucket's register-design alternative is spelled xor. */
  const CgStrategy reg_strategy = def->strategy == CG_STRAT_BMMA ? CG_STRAT_XOR : def->strategy;
  int cover = bt_cover(def->batch_max);
  for (size_t b = 0; b < sizeof bts / sizeof bts[0] && bts[b] <= cover; b++) {
    int bt = bts[b], reg = bt <= 16;
    for (int rows = 1; rows <= 8; rows++) {
      if (!rows_useful(&s, rows)) continue;
      CgSchedule sc = {.strategy = reg ? reg_strategy : CG_STRAT_MMA, .batch_max = def->batch_max};
      sc.tile[0] = rows;
      sc.tile[3] = bt;
      if (reg) {
        /* lop3 at batch tiles of 8 only: with two n8 tiles its per-path sets and F mma double
         * and it measured 1.5-1.8x slower than mma on every 7B shape (RESULTS.md, 2026-12-02). */
        for (int lop3 = 0; lop3 <= (bt == 8); lop3++) {
          sc.strategy = lop3 ? CG_STRAT_LOP3 : reg_strategy;
          for (int split = 1; split <= 32 && split <= s.C256; split++) {
            if (!split_useful(s.C256, split)) continue;
            sc.tile[1] = split;
            consider(w, &sc, rows, lop3 ? regs_lop3(&s, rows, bt) : regs_reg(&s, rows, bt));
          }
        }
        continue;
      }
      for (int chunk = 64; chunk <= 1024 && chunk <= s.C64 * 64; chunk += 64) {
        if (!split_useful(s.C64, chunk / 64)) continue; /* fewer chunks, or it only pads */
        sc.tile[2] = chunk;
        for (int split = 1; split * rows <= 32 && split <= chunk / 64; split++) {
          if (!split_useful(chunk / 64, split)) continue;
          sc.tile[1] = split;
          consider(w, &sc, rows, regs_staged(&s, bt));
        }
      }
    }
  }
}

/* The bmma strategy (its buckets, up to CG_BMMA_BATCH_MAX): row tiles a warp (1..8), then the
 * K split (1..32), before the register design's decodes (linear_space), which may beat it. */
static void bmma_space(Walk *w, const CgSchedule *def) {
  if (def->strategy != CG_STRAT_BMMA) return;
  LinShape s = lin_shape(&w->k->op);
  for (int rows = 1; rows <= 8; rows++) {
    if (!rows_useful(&s, rows)) continue;
    for (int split = 1; split <= 32 && split <= s.C256; split++) {
      if (!split_useful(s.C256, split)) continue;
      CgSchedule sc = {.strategy = CG_STRAT_BMMA, .batch_max = def->batch_max, .tile = {rows, split, 0, 0}};
      consider(w, &sc, rows, regs_bmma(&s, rows, def->batch_max));
    }
  }
}

/* The xsmem strategy (buckets up to batch 16, above bmma's): batch tile (8, 16), row tiles a warp
 * (1..3: 4 needs over 255 registers at two segments), row warps (1, 2, 4, 8), then K warp groups
 * (1..32 / row warps), each ascending. rows (for the SM rule) is the block's row tiles. */
static void xsmem_space(Walk *w, const CgSchedule *def) {
  static const int bts[] = {8, 16}, wrs[] = {1, 2, 4, 8};
  if (def->batch_max > 16 || def->batch_max <= CG_BMMA_BATCH_MAX) return;
  LinShape s = lin_shape(&w->k->op);
  int cover = bt_cover(def->batch_max);
  for (size_t b = 0; b < sizeof bts / sizeof bts[0] && bts[b] <= cover; b++)
    for (int rt = 1; rt <= 3; rt++)
      for (size_t wi = 0; wi < sizeof wrs / sizeof wrs[0]; wi++) {
        const int wr = wrs[wi];
        if (!rows_useful(&s, rt * wr)) continue;
        for (int ks = 1; ks * wr <= 32 && ks <= s.C256; ks++) {
          if (!split_useful(s.C256, ks)) continue;
          CgSchedule sc = {.strategy = CG_STRAT_XSMEM, .batch_max = def->batch_max, .tile = {rt, ks, wr, bts[b]}};
          consider(w, &sc, rt * wr, regs_xsmem(&s, rt, bts[b]));
        }
      }
}

/* The dequant strategy (buckets above batch 16): the bits expanded to fp16 for a
 * cuBLAS GEMM, after every mma candidate, by warps per block (tile[0]: 4, 8, 16).
 * Its time is the kernel's, the GEMM's and the epilogue's together (rt_linear_run),
 * not the kernel's alone, when the measuring half compares it with the others. */
static void dequant_space(Walk *w, const CgSchedule *def) {
  static const int warps[] = {4, 8, 16};
  if (def->batch_max <= 16) return;
  for (size_t i = 0; i < sizeof warps / sizeof warps[0]; i++) {
    CgSchedule sc = {.strategy = CG_STRAT_DEQUANT, .batch_max = def->batch_max};
    sc.tile[0] = warps[i];
    if (!memcmp(&sc, def, sizeof sc)) continue; /* the default already leads the space */
    consider(w, &sc, 1, 0);
  }
}

/* The targets and kinds with knobs; every other kernel has its default alone. */
typedef void (*SpaceFn)(Walk *w, const CgSchedule *def);
static const struct {
  const char *target;
  CgKind kind;
  SpaceFn fn;
} spaces[] = {
    {"cuda", CG_LINEAR, bmma_space},
    {"cuda", CG_LINEAR, linear_space},
    {"cuda", CG_LINEAR, xsmem_space},
    {"cuda", CG_LINEAR, dequant_space},
};

/* The default schedule of k: for a linear, the target's bucket with k's
 * batch_max (a tuned kernel's strategy may differ from it); otherwise k's
 * schedule with the tiles cleared. */
static CgSchedule default_schedule(const CgTarget *t, const CgKernel *k) {
  CgSchedule d = k->sched;
  memset(d.tile, 0, sizeof d.tile);
  if (k->op.kind != CG_LINEAR || !t->linear_buckets) return d;
  CgSchedule b[CG_MAX_BUCKETS];
  int n = t->linear_buckets(&k->op, b);
  for (int i = 0; i < n && i < CG_MAX_BUCKETS; i++)
    if (b[i].batch_max == k->sched.batch_max) return b[i];
  return d;
}

int at_space_build(const CgTarget *t, const CgKernel *k, const AtLimits *lim, AtSpace *out, RbBuf *err) {
  static const AtLimits none;
  memset(out, 0, sizeof *out);
  Walk w = {t, k, lim ? lim : &none, out, RB_OK};
  CgSchedule def = default_schedule(t, k);
  CgKernel dk = {.op = k->op, .sched = def};
  CgGeometry g;
  int rc = t->geometry(&dk, &g, err);
  if (rc) return rc;
  AtCandidate c0 = {.sched = def, .threads = g.block[0] * g.block[1] * g.block[2], .smem = g.smem};
  if ((rc = push(out, &c0))) return rc;
  for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++)
    if (spaces[i].kind == k->op.kind && strcmp(spaces[i].target, t->name) == 0) spaces[i].fn(&w, &def);
  if (w.rc == RB_EINTERNAL) rb_buf_puts(err, "out of memory building the search space");
  return w.rc;
}

void at_space_free(AtSpace *s) {
  rb_free(s->c);
  memset(s, 0, sizeof *s);
}
