/* test_space.c: the search space (autotune/space.c), CPU only. For every
 * kernel the sample models select (llama2-7b, smollm2-135m, tiny) under the
 * H200's limits: the default comes first, every candidate is distinct, keeps
 * the op and the bucket, fits the limits, follows the documented order and
 * is emitted by the CUDA target without error; building twice gives the same
 * list; buckets above batch 16 end in the dequant strategy's candidates. Tight
 * limits remove candidates (counted by reason) and keep the
 * default; kinds without knobs have the default alone.
 * Usage: test_space SAMPLES_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/autotune.h"
#include "runtime/runtime.h"
#include "tests/common/check.h"

static const AtLimits h200 = {.regs_per_thread = 255, .regs_per_block = 65536, .smem_per_block = 232448,
                              .threads_per_block = 1024, .sm_count = 132};

static void describe(const CgKernel *k, char *out, size_t n) {
  RbBuf b = {0};
  cg_kernel_describe(k, &b);
  snprintf(out, n, "%s", b.data ? b.data : "?");
  rb_buf_free(&b);
}

/* The documented order: batch tile, rows, then (register design) the decode (the
 * default's, then lop3) and split, or (staged design) chunk and split, each ascending. */
static int order_key_less(const CgSchedule *a, const CgSchedule *b) {
  const int la = a->strategy == CG_STRAT_LOP3, lb = b->strategy == CG_STRAT_LOP3; /* after the other decode */
  const int ka[5] = {a->tile[3], a->tile[0], a->tile[2], la, a->tile[1]};
  const int kb[5] = {b->tile[3], b->tile[0], b->tile[2], lb, b->tile[1]};
  for (int i = 0; i < 5; i++)
    if (ka[i] != kb[i]) return ka[i] < kb[i];
  return 0;
}

static int emitted, kernels_checked;

/* Every property of one kernel's space under lim. */
static void check_kernel(const CgKernel *k, const AtLimits *lim) {
  char what[200];
  describe(k, what, sizeof what);
  AtSpace s, again;
  RbBuf err = {0};
  int rc = at_space_build(&cg_target_cuda, k, lim, &s, &err);
  CHECK(rc == RB_OK, "%s: space: %s", what, err.data ? err.data : "?");
  CHECK(at_space_build(&cg_target_cuda, k, lim, &again, &err) == RB_OK, "%s: second build", what);
  CHECK(s.n == again.n && s.n > 0 && !memcmp(s.c, again.c, (size_t)s.n * sizeof *s.c),
        "%s: two builds differ (%d and %d candidates)", what, s.n, again.n);
  /* The default first: the select's schedule (the target's bucket), tiles 0. */
  CHECK(s.n > 0 && !memcmp(&s.c[0].sched, &k->sched, sizeof k->sched), "%s: candidate 0 is not the default", what);
  if (k->op.kind != CG_LINEAR) CHECK(s.n == 1, "%s: a kind without knobs has %d candidates", what, s.n);
  else CHECK(s.n >= 2, "%s: only %d candidates", what, s.n);
  for (int i = 0; i < s.n; i++) {
    const AtCandidate *c = &s.c[i];
    CgKernel ck = {.op = k->op, .sched = c->sched};
    char cw[200];
    describe(&ck, cw, sizeof cw);
    CHECK(c->sched.batch_max == k->sched.batch_max, "%s: bucket changed", cw);
    CHECK(c->threads >= 1 && c->threads <= (unsigned)lim->threads_per_block, "%s: %u threads", cw, c->threads);
    CHECK(i == 0 || c->smem <= (unsigned)lim->smem_per_block, "%s: %u bytes of shared memory", cw, c->smem);
    CHECK(i == 0 || c->regs <= lim->regs_per_thread, "%s: %d registers", cw, c->regs);
    if (i > 0 && c->sched.strategy == CG_STRAT_DEQUANT) {
      /* The dequant tail: prefill buckets only, warps per block ascending, after every mma candidate. */
      CHECK(k->sched.batch_max > 16 && c->sched.tile[0] >= 1 && !c->sched.tile[1] && !c->sched.tile[2] &&
                !c->sched.tile[3],
            "%s: a dequant candidate's knobs", cw);
      CHECK(i == 1 || s.c[i - 1].sched.strategy != CG_STRAT_DEQUANT || s.c[i - 1].sched.tile[0] < c->sched.tile[0],
            "%s: out of order after candidate %d", cw, i - 1);
      for (int j = i + 1; j < s.n; j++)
        CHECK(s.c[j].sched.strategy == CG_STRAT_DEQUANT, "%s: candidate %d after the dequant tail", cw, j);
    } else if (i > 0 && c->sched.strategy == CG_STRAT_BMMA) {
      /* A bmma bucket's own knobs first: rows, then split, ascending; no batch tile. */
      const CgSchedule *p = &s.c[i - 1].sched;
      CHECK(k->sched.strategy == CG_STRAT_BMMA && c->sched.tile[0] >= 1 && c->sched.tile[1] >= 1 && !c->sched.tile[2] &&
                !c->sched.tile[3],
            "%s: a bmma candidate's knobs", cw);
      CHECK(i == 1 || (p->strategy == CG_STRAT_BMMA && (p->tile[0] < c->sched.tile[0] ||
                                                        (p->tile[0] == c->sched.tile[0] && p->tile[1] < c->sched.tile[1]))),
            "%s: out of order after candidate %d", cw, i - 1);
    } else if (i > 0 && c->sched.strategy == CG_STRAT_XSMEM) {
      /* The xsmem tail of a bucket in 5..16: batch tile, row tiles, row warps, K groups ascending. */
      const CgSchedule *p = &s.c[i - 1].sched;
      CHECK(k->sched.batch_max > CG_BMMA_BATCH_MAX && k->sched.batch_max <= 16 && c->sched.tile[0] >= 1 &&
                c->sched.tile[0] <= 3 && c->sched.tile[1] >= 1 && c->sched.tile[2] >= 1 &&
                c->sched.tile[1] * c->sched.tile[2] <= 32 && (c->sched.tile[3] == 8 || c->sched.tile[3] == 16),
            "%s: an xsmem candidate's knobs", cw);
      const int ka[4] = {p->tile[3], p->tile[0], p->tile[2], p->tile[1]};
      const int kb[4] = {c->sched.tile[3], c->sched.tile[0], c->sched.tile[2], c->sched.tile[1]};
      int less = 0;
      for (int e = 0; e < 4 && !less; e++) {
        if (ka[e] != kb[e]) {
          less = ka[e] < kb[e] ? 1 : -1;
          break;
        }
      }
      CHECK(p->strategy != CG_STRAT_XSMEM || less == 1, "%s: out of order after candidate %d", cw, i - 1);
      for (int j = i + 1; j < s.n; j++)
        CHECK(s.c[j].sched.strategy == CG_STRAT_XSMEM, "%s: candidate %d after the xsmem tail", cw, j);
    } else if (i > 0) {
      /* The register design after a bmma bucket's own candidates is spelled xor. */
      const CgStrategy reg = k->sched.strategy == CG_STRAT_BMMA ? CG_STRAT_XOR : k->sched.strategy;
      CHECK(c->sched.tile[0] >= 1 && c->sched.tile[1] >= 1 && c->sched.tile[3] >= 8, "%s: a knob left 0", cw);
      CHECK(c->sched.tile[3] <= 16 ? c->sched.strategy == reg || c->sched.strategy == CG_STRAT_LOP3
                                   : c->sched.strategy == CG_STRAT_MMA,
            "%s: strategy", cw);
      CHECK(c->sched.strategy != CG_STRAT_LOP3 || c->sched.tile[3] == 8, "%s: lop3 at a batch tile of 16", cw);
      for (int j = 1; j < i; j++)
        CHECK(memcmp(&s.c[j].sched, &c->sched, sizeof c->sched) != 0, "%s: candidates %d and %d repeat", cw, j, i);
      if (i > 1 && s.c[i - 1].sched.strategy != CG_STRAT_BMMA)
        CHECK(order_key_less(&s.c[i - 1].sched, &c->sched), "%s: out of order after candidate %d", cw, i - 1);
    }
    /* The target emits it: the space holds nothing the emitter refuses. */
    RbBuf src = {0}, eerr = {0};
    char entry[CG_ENTRY_MAX];
    rc = cg_target_cuda.emit(&ck, &src, entry, &eerr);
    CHECK(rc == RB_OK && src.len > 0, "%s: emit failed: %s", cw, eerr.data ? eerr.data : "?");
    emitted++;
    rb_buf_free(&src);
    rb_buf_free(&eerr);
  }
  kernels_checked++;
  at_space_free(&s);
  at_space_free(&again);
  rb_buf_free(&err);
}

/* The kernels a sample model selects. */
static void check_sample(const char *dir, const char *name, int print) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  RtCompileOptions o = {.path = path, .stop = RT_STAGE_SELECT};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&o, &c, &err);
  CHECK(rc == RB_OK && c.kernels.n > 0, "%s: compile: %s%s", name, err.data ? err.data : "",
        c.diag.data ? c.diag.data : "");
  for (int i = 0; rc == RB_OK && i < c.kernels.n; i++) {
    const CgKernel *k = &c.kernels.k[i].kernel;
    check_kernel(k, &h200);
    if (print && k->op.kind == CG_LINEAR) { /* the sizes README.md quotes */
      AtSpace s;
      char what[200];
      describe(k, what, sizeof what);
      if (at_space_build(&cg_target_cuda, k, &h200, &s, &err) == RB_OK)
        printf("  %-64s %4d candidates (pruned: %d threads, %d smem, %d regs, %d sms, %d target)\n", what, s.n,
               s.pruned[AT_PRUNE_THREADS], s.pruned[AT_PRUNE_SMEM], s.pruned[AT_PRUNE_REGS], s.pruned[AT_PRUNE_SMS],
               s.pruned[AT_PRUNE_TARGET]);
      at_space_free(&s);
    }
  }
  rb_buf_free(&err);
  rt_compiled_free(&c);
}

static CgKernel linear(CgStrategy st, int batch, int K, int nseg, int n0, int n1, CgEpilogue epi) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR;
  k.op.K = K;
  k.op.nseg = nseg;
  k.op.N[0] = n0;
  k.op.N[1] = n1;
  k.op.paths = 2;
  k.op.epilogue = epi;
  k.sched.strategy = st;
  k.sched.batch_max = batch;
  return k;
}

static int count(const CgKernel *k, const AtLimits *lim, AtSpace *s) {
  RbBuf err = {0};
  int rc = at_space_build(&cg_target_cuda, k, lim, s, &err);
  rb_buf_free(&err);
  return rc == RB_OK ? s->n : -1;
}

/* Tight limits: each removes candidates, counted under its reason; the
 * default survives all of them. */
static void check_pruning(void) {
  CgKernel k = linear(CG_STRAT_DEQUANT, 512, 4096, 2, 11008, 11008, CG_EPI_SWIGLU); /* the bucket's default */
  AtSpace full, s;
  int n = count(&k, NULL, &full);
  CHECK(n > 100, "unlimited space of the swiglu b<=512: %d", n);
  int ndq = 0;
  for (int i = 0; i < full.n; i++) ndq += full.c[i].sched.strategy == CG_STRAT_DEQUANT;
  CHECK(ndq == 4 && full.c[n - 1].sched.strategy == CG_STRAT_DEQUANT && full.c[n - 1].sched.tile[0] == 16,
        "the swiglu b<=512 space: the dequant default, then 3 dequant candidates at its end (4, 8, 16 warps): %d",
        ndq);
  CHECK(full.pruned[AT_PRUNE_THREADS] + full.pruned[AT_PRUNE_SMEM] + full.pruned[AT_PRUNE_REGS] +
                full.pruned[AT_PRUNE_SMS] == 0,
        "no limits, yet device pruning");
  struct {
    const char *what;
    AtLimits lim;
    AtPrune reason;
  } tight[] = {
      {"threads", {.threads_per_block = 128}, AT_PRUNE_THREADS},
      {"smem", {.smem_per_block = 8192}, AT_PRUNE_SMEM},
      {"regs per thread", {.regs_per_thread = 64}, AT_PRUNE_REGS},
      {"regs per block", {.regs_per_block = 16384}, AT_PRUNE_REGS},
      {"sms", {.sm_count = 100000}, AT_PRUNE_SMS},
  };
  for (size_t i = 0; i < sizeof tight / sizeof tight[0]; i++) {
    int m = count(&k, &tight[i].lim, &s);
    CHECK(m > 0 && m < n, "%s: %d of %d candidates left", tight[i].what, m, n);
    CHECK(s.pruned[tight[i].reason] == n - m, "%s: %d pruned under its reason, %d gone", tight[i].what,
          s.pruned[tight[i].reason], n - m);
    CHECK(m > 0 && !memcmp(&s.c[0].sched, &k.sched, sizeof k.sched), "%s: the default did not survive", tight[i].what);
    /* What is left is the full space's candidates, in the same order. */
    int j = 0;
    for (int c = 1; c < m; c++) {
      while (j < n && memcmp(&full.c[j].sched, &s.c[c].sched, sizeof s.c[c].sched)) j++;
      CHECK(j < n, "%s: candidate %d is not in the full space, in order", tight[i].what, c);
    }
    for (int c = 1; c < m; c++) {
      const AtCandidate *x = &s.c[c];
      if (tight[i].reason == AT_PRUNE_THREADS) CHECK(x->threads <= 128, "%s: %u threads kept", tight[i].what, x->threads);
      if (tight[i].reason == AT_PRUNE_SMEM) CHECK(x->smem <= 8192, "%s: %u bytes kept", tight[i].what, x->smem);
      if (tight[i].reason == AT_PRUNE_SMS && x->sched.strategy != CG_STRAT_DEQUANT) /* its grid covers the weights */
        CHECK(x->sched.tile[0] == 1, "%s: rows %d kept", tight[i].what, x->sched.tile[0]);
    }
    at_space_free(&s);
  }
  /* The default survives even limits it breaks itself. */
  AtLimits none_fit = {.threads_per_block = 16, .smem_per_block = 1, .regs_per_thread = 1};
  CHECK(count(&k, &none_fit, &s) == 1 && !memcmp(&s.c[0].sched, &k.sched, sizeof k.sched), "impossible limits");
  at_space_free(&s);
  at_space_free(&full);

  /* Knob values that only add dead tiles or idle warps are left out: one
   * 16-row tile and one 256-column group leave rows 1 and split 1 alone. */
  CgKernel tiny = linear(CG_STRAT_XOR, 8, 64, 1, 16, 0, CG_EPI_NONE);
  CHECK(count(&tiny, NULL, &s) == 4 && s.c[1].sched.tile[0] == 1 && s.c[1].sched.tile[1] == 1 &&
            s.c[1].sched.tile[3] == 8 && s.c[2].sched.strategy == CG_STRAT_LOP3 &&
            !memcmp(s.c[2].sched.tile, s.c[1].sched.tile, sizeof s.c[1].sched.tile) &&
            s.c[3].sched.strategy == CG_STRAT_XSMEM && s.c[3].sched.tile[0] == 1 && s.c[3].sched.tile[1] == 1 &&
            s.c[3].sched.tile[2] == 1 && s.c[3].sched.tile[3] == 8,
        "N=16 K=64 b<=8: %d candidates (the default, then rows 1 split 1 as xor, lop3 and xsmem)", s.n);
  at_space_free(&s);
  /* The bmma bucket of the same: its own rows 1 split 1, then the register design's two. */
  CgKernel tinyb = linear(CG_STRAT_BMMA, 1, 64, 1, 16, 0, CG_EPI_NONE);
  CHECK(count(&tinyb, NULL, &s) == 4 && s.c[1].sched.strategy == CG_STRAT_BMMA && s.c[1].sched.tile[0] == 1 &&
            s.c[1].sched.tile[1] == 1 && s.c[2].sched.strategy == CG_STRAT_XOR && s.c[3].sched.strategy == CG_STRAT_LOP3,
        "N=16 K=64 b<=1: %d candidates (the default, then rows 1 split 1 as bmma, xor and lop3)", s.n);
  at_space_free(&s);
  /* Batch tiles past the bucket's batch are left out: b<=8 has the 8-row tile alone, spelled xor
   * or lop3 (the register design's two decodes) or xsmem, each at least once. */
  CgKernel b8 = linear(CG_STRAT_XOR, 8, 4096, 1, 4096, 0, CG_EPI_NONE);
  CHECK(count(&b8, &h200, &s) > 1, "b<=8 space");
  int nxor = 0, nlop3 = 0, nxsmem = 0;
  for (int i = 1; i < s.n; i++) {
    const CgStrategy st = s.c[i].sched.strategy;
    CHECK(s.c[i].sched.tile[3] == 8 && (st == CG_STRAT_XSMEM ? s.c[i].sched.tile[2] >= 1 : s.c[i].sched.tile[2] == 0) &&
              (st == CG_STRAT_XOR || st == CG_STRAT_LOP3 || st == CG_STRAT_XSMEM),
          "b<=8 candidate %d: tile[3] %d, %s", i, s.c[i].sched.tile[3], cg_strategy_name(st));
    nxor += st == CG_STRAT_XOR, nlop3 += st == CG_STRAT_LOP3, nxsmem += st == CG_STRAT_XSMEM;
  }
  CHECK(nxor > 0 && nlop3 > 0 && nxsmem > 0, "b<=8: %d xor, %d lop3 and %d xsmem candidates", nxor, nlop3, nxsmem);
  at_space_free(&s);
  /* A kernel the target refuses is an error, not an empty space. */
  CgKernel bad = linear(CG_STRAT_XOR, 1, 4096, 1, 4096, 0, CG_EPI_NONE);
  bad.op.paths = 9;
  RbBuf err = {0};
  CHECK(at_space_build(&cg_target_cuda, &bad, NULL, &s, &err) == RB_EUSER && err.len, "paths 9 accepted");
  at_space_free(&s);
  rb_buf_free(&err);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: test_space SAMPLES_DIR\n");
    return 2;
  }
  printf("llama2-7b under the H200's limits:\n");
  check_sample(argv[1], "llama2-7b.ir", 1);
  printf("smollm2-135m under the H200's limits:\n");
  check_sample(argv[1], "smollm2-135m.ir", 1);
  check_sample(argv[1], "tiny.ir", 0);
  check_pruning();
  printf("%d kernels, %d candidates emitted\n", kernels_checked, emitted);
  return CHECK_SUMMARY();
}
