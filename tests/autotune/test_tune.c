/* test_tune.c: the tuner's search loop (autotune/tune.c) driven by a fake
 * backend on the CPU: the units a model's kernels give, the fixed visiting
 * order, the 3% rule, a deliberately broken candidate (the test hook) and a
 * wrong one rejected by the real check against the CPU reference and never
 * chosen, candidates that do not build, the budget, two noisy tunings that
 * agree, the records, the table and the SVG. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/autotune.h"
#include "tests/common/check.h"

/* ---- the fake backend ---- */

#define MAXC 1024
typedef struct {
  /* what the test sets */
  double (*factor)(int unit, int cand); /* a candidate's time against the default's */
  int nobuild[MAXC], wrong[MAXC];       /* per candidate index (every unit): does not build; writes NaN */
  double noise;                          /* relative, uniform in [-noise, noise] */
  uint64_t seed;
  double per_visit;                      /* fake seconds a validation takes */
  /* what the fake keeps */
  int unit;                              /* the unit begun, -1 between */
  const AtUnit *u;
  const AtSpace *s;
  AtLinearData data;
  double clock;
  int order[8][MAXC], norder[8];         /* validations, in call order, per unit */
  int compiled[8][MAXC];                 /* how often each candidate was compiled */
  int ends, begins;
} Fake;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static int fake_begin(void *ctx, const AtUnit *u, const AtSpace *s, RbBuf *log) {
  (void)log;
  Fake *f = ctx;
  f->unit = f->begins++;
  f->u = u;
  f->s = s;
  return at_linear_data_make(&f->data, &u->kernel.op, u->batch[u->nbatch - 1], u->batch, u->nbatch, 42 + f->unit);
}

static int fake_compile(void *ctx, int from, int to, int *ok, RbBuf *log) {
  Fake *f = ctx;
  for (int i = from; i < to; i++) {
    ok[i - from] = !f->nobuild[i];
    f->compiled[f->unit][i]++;
    if (f->nobuild[i]) rb_buf_printf(log, "candidate %d did not build: fake\n", i);
  }
  return RB_OK;
}

/* The "kernel": the reference rows rounded to fp16, other rows 0; wrong ones
 * write NaN (an unwritten output), the broken one is off in its first row. */
static int fake_validate(void *ctx, int i, int broken, int *valid, RbBuf *log) {
  Fake *f = ctx;
  const AtLinearData *d = &f->data;
  f->clock += f->per_visit;
  f->order[f->unit][f->norder[f->unit]++] = i;
  *valid = 1;
  for (int j = 0; j < f->u->nbatch && *valid; j++) {
    int b = f->u->batch[j];
    uint16_t *y = calloc((size_t)b * d->nout, 2);
    for (int r = 0; r < d->nrows && d->rows[r] < b; r++)
      for (int n = 0; n < d->nout; n++)
        y[(size_t)d->rows[r] * d->nout + n] = rb_f16_from_f32((float)d->ref[(size_t)r * d->nout + n]);
    if (f->wrong[i]) y[0] = 0x7E00; /* a NaN */
    if (broken)
      for (int n = 0; n < d->nout; n++) y[n] = rb_f16_from_f32(rb_f32_from_f16(y[n]) * 1.5f + 0.25f);
    *valid = at_linear_data_check(d, &f->s->c[i].sched, y, b, NULL, log);
    free(y);
  }
  return RB_OK;
}

static int fake_time(void *ctx, int i, int batch, double *us, RbBuf *log) {
  (void)log;
  Fake *f = ctx;
  double base = 10.0 * (1 + f->unit) + 0.5 * batch;
  double noise = f->noise * (2.0 * (double)(mix(f->seed ^ ((uint64_t)f->unit << 40) ^ ((uint64_t)i << 8) ^
                                                (uint64_t)batch) >> 11) / 9007199254740992.0 - 1.0);
  *us = base * f->factor(f->unit, i) * (1.0 + noise);
  return RB_OK;
}

static void fake_end(void *ctx) {
  Fake *f = ctx;
  at_linear_data_free(&f->data);
  f->unit = -1;
  f->ends++;
}

static double fake_now(void *ctx) { return ((Fake *)ctx)->clock; }

static AtBackend backend(Fake *f) {
  AtBackend b = {f, fake_begin, fake_compile, fake_validate, fake_time, fake_end, fake_now};
  return b;
}

/* A candidate's speed in [0.6, 1.2) of the default's, fixed per unit and candidate. */
static double scattered(int unit, int cand) {
  if (!cand) return 1.0;
  return 0.6 + 0.6 * (double)(mix(((uint64_t)unit << 20) ^ (uint64_t)cand) >> 11) / 9007199254740992.0;
}

/* ---- the model: two linears at three buckets and an rmsnorm ---- */

static CgKernelSet kernels;

static void add_kernel(CgKernel k) {
  kernels.k = realloc(kernels.k, (size_t)(kernels.n + 1) * sizeof *kernels.k);
  memset(&kernels.k[kernels.n], 0, sizeof kernels.k[0]);
  kernels.k[kernels.n++].kernel = k;
}

static void make_model(void) {
  CgOp ops[2] = {{.kind = CG_LINEAR, .K = 1024, .nseg = 1, .N = {512}, .paths = 2, .epilogue = CG_EPI_ADD},
                 {.kind = CG_LINEAR, .K = 512, .nseg = 2, .N = {256, 256}, .paths = 2, .epilogue = CG_EPI_SWIGLU}};
  CgKernel norm = {.op = {.kind = CG_RMSNORM, .dim = 512, .eps = 1e-5f}};
  add_kernel(norm);
  for (int o = 0; o < 2; o++) {
    CgSchedule b[CG_MAX_BUCKETS];
    int nb = cg_target_cuda.linear_buckets(&ops[o], b);
    for (int i = 0; i < nb; i++) add_kernel((CgKernel){.op = ops[o], .sched = b[i]});
  }
}

static AtUnit *units;
static int nunits;

/* The bucket of the CUDA target serving batch: the smallest that holds it, else the last. */
static int bucket_of(const CgOp *op, int batch) {
  CgSchedule b[CG_MAX_BUCKETS];
  int n = cg_target_cuda.linear_buckets(op, b);
  for (int i = 0; i < n; i++)
    if (batch <= b[i].batch_max) return b[i].batch_max;
  return b[n - 1].batch_max;
}

static void test_units(void) {
  int batches[] = {16, 1, 4, 4}, want[] = {1, 4, 16};
  CHECK(at_units_from_kernels(&cg_target_cuda, &kernels, batches, 4, &units, &nunits) == RB_OK, "units");
  /* Each linear has as many units as distinct buckets serve 1, 4 and 16; the rmsnorm none. */
  int buckets = 1;
  for (int i = 1; i < 3; i++) buckets += bucket_of(&kernels.k[1].kernel.op, want[i]) != bucket_of(&kernels.k[1].kernel.op, want[i - 1]);
  CHECK(nunits == 2 * buckets && nunits >= 2, "%d units, want %d (two linears at %d buckets; the rmsnorm has no knobs)",
        nunits, 2 * buckets, buckets);
  for (int i = 0; i < nunits; i++) {
    const AtUnit *u = &units[i];
    CHECK(u->kernel.op.kind == CG_LINEAR, "unit %d is not a linear", i);
    int expect[3], ne = 0;
    for (int j = 0; j < 3; j++)
      if (bucket_of(&u->kernel.op, want[j]) == u->kernel.sched.batch_max) expect[ne++] = want[j];
    int same = u->nbatch == ne;
    for (int j = 0; same && j < ne; j++) same = u->batch[j] == expect[j];
    CHECK(same && ne > 0, "unit %d (b<=%d): %d batches, want the %d of 1, 4, 16 it serves, ascending, once each", i,
          u->kernel.sched.batch_max, u->nbatch, ne);
  }
  /* The floor's bytes: the layout's bits, g (paths x Ntot) and h (segments x paths x K), then x, y and res per row. */
  const AtUnit *add = &units[0];
  uint64_t w = cg_target_cuda.layout_bytes(&add->kernel.op) + 2 * 2 * 512 + 2 * 1 * 2 * 1024;
  CHECK(add->weight_bytes == w, "weight bytes %llu, want %llu", (unsigned long long)add->weight_bytes,
        (unsigned long long)w);
  CHECK(at_unit_floor_bytes(add, 4) == w + 4 * 2 * (1024 + 512 + 512), "floor bytes at batch 4");
  const AtUnit *swiglu = &units[nunits / 2]; /* the second linear's first unit */
  CHECK(swiglu->row_bytes == 2 * (512 + 256), "swiglu row bytes %llu", (unsigned long long)swiglu->row_bytes);
}

/* ---- the check against the reference ---- */

static void test_check(void) {
  const CgOp op = {.kind = CG_LINEAR, .K = 300, .nseg = 3, .N = {64, 32, 32}, .paths = 3};
  int batches[] = {1, 5};
  AtLinearData d;
  CHECK(at_linear_data_make(&d, &op, 5, batches, 2, 7) == RB_OK, "data");
  CHECK(d.nrows == 5 && d.nout == 128, "rows %d, width %d", d.nrows, d.nout);
  double sq = 0;
  for (int i = 0; i < d.nrows * d.nout; i++) sq += d.ref[i] * d.ref[i];
  CHECK(sq > 0.1 * d.nrows * d.nout && sq < 10.0 * d.nrows * d.nout, "reference rows are O(1): mean square %g",
        sq / (d.nrows * d.nout));
  uint16_t y[5 * 128];
  for (int i = 0; i < 5 * 128; i++) y[i] = rb_f16_from_f32((float)d.ref[i]);
  CgSchedule xor = {.strategy = CG_STRAT_XOR, .batch_max = 1}, mma = {.strategy = CG_STRAT_MMA, .batch_max = 16};
  RbBuf why = {0};
  double err = 1;
  CHECK(at_linear_data_check(&d, &xor, y, 5, &err, &why) == 1 && err < 1e-3, "the reference itself fails: %g %s",
        err, why.data ? why.data : "");
  y[3 * 128 + 7] = rb_f16_from_f32(rb_f32_from_f16(y[3 * 128 + 7]) + 2.0f); /* row 3, one output off by 2 */
  CHECK(at_linear_data_check(&d, &mma, y, 1, NULL, &why) == 1, "batch 1 does not read row 3");
  CHECK(at_linear_data_check(&d, &xor, y, 5, &err, &why) == 0 && why.data && strstr(why.data, "relative L2 error"),
        "one wrong output at xor's tolerance passed (err %g): %s", err, why.data ? why.data : "");
  rb_buf_free(&why);
  y[4 * 128] = 0x7E00;
  CHECK(at_linear_data_check(&d, &mma, y, 5, NULL, &why) == 0 && why.data && strstr(why.data, "1 of 640 outputs are NaN"),
        "a NaN passed: %s", why.data ? why.data : "");
  rb_buf_free(&why);
  at_linear_data_free(&d);

  /* A large op: a spread of rows holding each batch's first and last. */
  const CgOp big = {.kind = CG_LINEAR, .K = 4096, .nseg = 1, .N = {4096}, .paths = 2};
  int bb[] = {4, 16};
  CHECK(at_linear_data_make(&d, &big, 16, bb, 2, 9) == RB_OK, "big data");
  int has[16] = {0};
  for (int i = 0; i < d.nrows; i++) has[d.rows[i]] = 1;
  CHECK(d.nrows < 16 && has[0] && has[3] && has[15], "big: %d rows (0: %d, 3: %d, 15: %d)", d.nrows, has[0], has[3],
        has[15]);
  at_linear_data_free(&d);
}

/* ---- the loop ---- */

static int tune(Fake *f, const AtTuneOptions *o, AtTuning *tu) {
  f->unit = -1;
  AtBackend b = backend(f);
  RbBuf err = {0};
  int rc = at_tune(&b, &cg_target_cuda, NULL, units, nunits, o, tu, &err);
  if (rc) printf("at_tune: %s\n", err.data ? err.data : "?");
  rb_buf_free(&err);
  return rc;
}

typedef struct {
  int calls, done, compiles, last_unit, last_cand, ordered;
} Seen;

static void on_progress(void *ctx, const AtProgress *p) {
  Seen *s = ctx;
  s->calls++;
  if (p->done) {
    s->done++;
    return;
  }
  if (p->compiling) {
    s->compiles++;
    if (p->cand % 5 || p->compile_to - p->cand > 5) s->ordered = 0; /* chunks of 5 in this test */
    return;
  }
  if (p->unit == s->last_unit && p->cand <= s->last_cand) s->ordered = 0;
  if (p->unit < s->last_unit) s->ordered = 0;
  s->last_unit = p->unit, s->last_cand = p->cand;
}

static void test_order_and_choice(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = scattered;
  Seen seen = {0, 0, 0, -1, -1, 1};
  AtTuneOptions o = {.break_candidate = -1, .chunk = 5, .progress = on_progress, .progress_ctx = &seen};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  CHECK(f->begins == nunits && f->ends == nunits, "begin %d, end %d of %d units", f->begins, f->ends, nunits);
  for (int u = 0; u < nunits; u++) {
    const AtUnitResult *r = &tu.r[u];
    AtSpace s;
    RbBuf e = {0};
    at_space_build(&cg_target_cuda, &units[u].kernel, NULL, &s, &e);
    CHECK(r->space.n == s.n && r->space.n > 8, "unit %d: %d candidates, the space has %d", u, r->space.n, s.n);
    int same = 1;
    for (int i = 0; i < s.n && i < r->space.n; i++) same &= !memcmp(&s.c[i].sched, &r->space.c[i].sched, sizeof s.c[i].sched);
    CHECK(same, "unit %d: the candidates are not the space's, in its order", u);
    at_space_free(&s);
    rb_buf_free(&e);
    /* Every candidate once, in the space's order, each compiled once. */
    int inorder = f->norder[u] == r->space.n;
    for (int i = 0; i < f->norder[u]; i++) inorder &= f->order[u][i] == i && f->compiled[u][i] == 1;
    CHECK(inorder && r->visited == r->space.n, "unit %d: visited %d of %d, not in order", u, f->norder[u], r->space.n);
    /* The choice is the 3% rule's over the same timings. */
    CHECK(r->choice == at_choose(r->t, r->space.n, NULL), "unit %d: choice %d", u, r->choice);
    /* Within 3% of the fastest. */
    double best = INFINITY;
    for (int i = 0; i < r->space.n; i++) best = fmin(best, r->t[i].us);
    CHECK(r->choice >= 0 && r->t[r->choice].us * (1 - AT_MARGIN) <= best, "unit %d: %g us chosen, fastest %g", u,
          r->choice >= 0 ? r->t[r->choice].us : NAN, best);
    /* A unit's time is the mean over its batches. */
    double mean = 0;
    for (int j = 0; j < units[u].nbatch; j++) mean += r->us[(size_t)r->choice * units[u].nbatch + j];
    CHECK(fabs(mean / units[u].nbatch - r->t[r->choice].us) < 1e-9, "unit %d: not the mean", u);
  }
  int chunks = 0;
  for (int u = 0; u < nunits; u++) chunks += (tu.r[u].space.n + 4) / 5;
  CHECK(seen.ordered && seen.done == nunits && seen.compiles == chunks && seen.calls > nunits,
        "progress: %d calls, %d done, %d compiles (want %d), ordered %d", seen.calls, seen.done, seen.compiles, chunks,
        seen.ordered);
  CHECK(!tu.log.len, "a clean tuning logged: %s", tu.log.data);
  at_tuning_free(&tu);
  free(f);
}

/* The rule on the loop's own measurements: 2% faster stays out, 5% gets in,
 * one 4% under the default but 1% under the incumbent stays out. */
static double margins(int unit, int cand) {
  (void)unit;
  return cand == 2 ? 0.98 : cand == 5 ? 0.95 : cand == 7 ? 0.94 : 1.0 + 0.001 * cand;
}

static void test_margin(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = margins;
  AtTuneOptions o = {.break_candidate = -1};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++) CHECK(tu.r[u].choice == 5, "unit %d chose %d, want 5", u, tu.r[u].choice);
  at_tuning_free(&tu);
  free(f);
}

/* The fastest candidate run broken through the hook, a wrong one (NaN out)
 * and one that does not build: none is chosen, each is logged. */
static double broken_fast(int unit, int cand) {
  (void)unit;
  return cand == 3 ? 0.2 : cand == 4 ? 0.3 : cand == 6 ? 0.25 : cand == 8 ? 0.9 : 1.0;
}

static void test_broken(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = broken_fast;
  f->wrong[4] = 1;
  f->nobuild[6] = 1;
  AtTuneOptions o = {.break_candidate = 3};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++) {
    const AtUnitResult *r = &tu.r[u];
    CHECK(r->choice == 8, "unit %d chose %d, want 8 (3 broken, 4 wrong, 6 unbuilt)", u, r->choice);
    CHECK(!r->valid[3] && !r->valid[4] && !r->built[6] && r->valid[8], "unit %d: valid 3 %d, 4 %d; built 6 %d", u,
          r->valid[3], r->valid[4], r->built[6]);
    CHECK(r->ninvalid == 2 && r->nfailed == 1, "unit %d: %d invalid, %d failed", u, r->ninvalid, r->nfailed);
    CHECK(!isfinite(r->t[3].us) && !isfinite(r->t[4].us), "unit %d: a wrong candidate was timed", u);
  }
  const char *log = tu.log.data ? tu.log.data : "";
  CHECK(strstr(log, "candidate 3 (") && strstr(log, "failed validation against the reference, never chosen") &&
            strstr(log, "(the deliberately broken candidate)") && strstr(log, "relative L2 error"),
        "the broken candidate's line: %s", log);
  CHECK(strstr(log, "candidate 4 (") && strstr(log, "outputs are NaN"), "the wrong candidate's line: %s", log);
  CHECK(strstr(log, "candidate 6 did not build"), "the unbuilt candidate's line: %s", log);
  CHECK(!strncmp(log, "linear+add bmma N=512 K=1024 k=2 b<=", 36), "log lines name their kernel: %.80s", log);
  /* Without the hook, candidate 3 is right and wins. */
  at_tuning_free(&tu);
  memset(f->order, 0, sizeof f->order);
  memset(f->norder, 0, sizeof f->norder);
  f->begins = f->ends = 0;
  o.break_candidate = -1;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++) CHECK(tu.r[u].choice == 3, "unit %d without the hook chose %d", u, tu.r[u].choice);
  at_tuning_free(&tu);
  free(f);
}

/* The budget: shared over the units left; a unit stops when its share is
 * spent, with the default measured and the best so far kept. */
static double faster_later(int unit, int cand) {
  (void)unit;
  return 1.0 - 0.04 * cand;
}

static void test_budget(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = faster_later;
  f->per_visit = 1.0;
  AtTuneOptions o = {.break_candidate = -1, .budget_s = 3.0 * nunits, .chunk = 4};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  /* 3 s a unit, one fake second a candidate: 3 visited each. */
  for (int u = 0; u < nunits; u++) {
    const AtUnitResult *r = &tu.r[u];
    CHECK(r->budget_stopped && r->visited == 3 && r->choice == 2, "unit %d: stopped %d, visited %d, chose %d", u,
          r->budget_stopped, r->visited, r->choice);
    CHECK(f->compiled[u][3] == 1 && f->compiled[u][4] == 0, "unit %d: compiled past its chunk", u);
  }
  CHECK(tu.log.data && strstr(tu.log.data, "the budget stopped the search after 3 of") &&
            strstr(tu.log.data, "the best so far is kept"), "log: %s", tu.log.data ? tu.log.data : "");
  AtTuning again;
  memset(f->norder, 0, sizeof f->norder);
  f->begins = 0;
  o.budget_s = 0.5; /* spent at once: the defaults alone */
  CHECK(tune(f, &o, &again) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++)
    CHECK(again.r[u].visited == 1 && again.r[u].choice == 0, "tiny budget, unit %d: visited %d", u, again.r[u].visited);
  at_tuning_free(&tu);
  at_tuning_free(&again);
  free(f);
}

/* Two tunings with different noise (1%) agree: the same choices, or flips within 3%. */
static void test_agree(void) {
  Fake *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
  a->factor = b->factor = scattered;
  a->noise = b->noise = 0.01;
  a->seed = 1, b->seed = 2;
  AtTuneOptions o = {.break_candidate = -1};
  AtTuning ta, tb;
  CHECK(tune(a, &o, &ta) == RB_OK && tune(b, &o, &tb) == RB_OK, "tune twice");
  AtPick pa[8], pb[8];
  at_tuning_picks(&ta, pa);
  at_tuning_picks(&tb, pb);
  RbBuf why = {0};
  CHECK(at_picks_disagree(pa, pb, nunits, &why) == 0, "two tunings disagree: %s", why.data ? why.data : "");
  rb_buf_free(&why);
  /* Without noise, the very same choices. */
  Fake *c = calloc(1, sizeof *c);
  c->factor = scattered;
  AtTuning tc, td;
  CHECK(tune(c, &o, &tc) == RB_OK, "tune");
  memset(c, 0, sizeof *c);
  c->factor = scattered;
  CHECK(tune(c, &o, &td) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++) CHECK(tc.r[u].choice == td.r[u].choice, "unit %d: %d then %d", u, tc.r[u].choice, td.r[u].choice);
  at_tuning_free(&ta);
  at_tuning_free(&tb);
  at_tuning_free(&tc);
  at_tuning_free(&td);
  free(a);
  free(b);
  free(c);
}

/* The records, the table and the SVG of one tuning. */
/* A default the backend cannot time (the dequant prefill's: a kernel, a GEMM and an
 * epilogue) is kept: faster candidates are measured against nothing, so none is chosen
 * and no record is written. */
static double untimed_default(int unit, int cand) {
  (void)unit;
  return cand == 0 ? NAN : 0.5;
}

static void test_untimed_default(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = untimed_default;
  AtTuneOptions o = {.break_candidate = -1};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  for (int u = 0; u < nunits; u++) CHECK(tu.r[u].choice == 0, "unit %d chose %d over an untimed default", u, tu.r[u].choice);
  AtDevice dev = {"NVIDIA Fake", "sm_90", "nvrtc test"};
  AtDb db = {0};
  CHECK(at_tuning_records(&tu, &dev, "2026-12-02T01:30:00Z", &db) == RB_OK && db.n == 0, "%d records", db.n);
  at_db_free(&db);
  at_tuning_free(&tu);
  free(f);
}

static void test_outputs(void) {
  Fake *f = calloc(1, sizeof *f);
  f->factor = margins;
  AtTuneOptions o = {.break_candidate = -1};
  AtTuning tu;
  CHECK(tune(f, &o, &tu) == RB_OK, "tune");
  AtDevice dev = {"NVIDIA Fake", "sm_90", "nvrtc test"};
  AtDb db = {0};
  CHECK(at_tuning_records(&tu, &dev, "2026-12-01T19:00:00Z", &db) == RB_OK && db.n == nunits, "%d records", db.n);
  for (int i = 0; i < db.n; i++) {
    const AtRecord *r = &db.r[i];
    CHECK(r->sched.tile[0] == tu.r[0].space.c[5].sched.tile[0] || r->sched.tile[0] > 0, "record %d: schedule", i);
    CHECK(fabs(r->us / r->default_us - 0.95) < 1e-9, "record %d: us %g, default %g", i, r->us, r->default_us);
    int bucket = 0;
    for (int u = 0; u < nunits; u++) bucket |= r->batch == units[u].kernel.sched.batch_max;
    CHECK(!strcmp(r->date, "2026-12-01T19:00:00Z") && bucket, "record %d: %s b %d", i, r->date, r->batch);
  }
  RbBuf text = {0}, err = {0};
  at_db_format(&db, &text);
  AtDb back = {0};
  CHECK(at_db_parse(&back, text.data, text.len, "tuned.json", &err) == RB_OK && back.n == db.n,
        "the records do not read back: %s", err.data ? err.data : "");
  at_db_free(&back);
  at_db_free(&db);
  rb_buf_free(&text);
  rb_buf_free(&err);

  RbBuf t = {0};
  at_tuning_table(&tu, 4.0e12, "nominal (test)", &t);
  const char *s = t.data ? t.data : "";
  int rows = 0;
  for (const char *p = s; (p = strstr(p, "linear")); p++) rows++;
  int want_rows = 0;
  for (int u = 0; u < nunits; u++) want_rows += units[u].nbatch;
  CHECK(rows == want_rows && rows == 6, "%d table rows, want %d (a row per unit and batch):\n%s", rows, want_rows, s);
  CHECK(strstr(s, "default us") && strstr(s, "tuned us") && strstr(s, "speed-up") && strstr(s, "of floor") &&
            strstr(s, "1.05x") && strstr(s, "at 4.000 TB/s, nominal (test)"),
        "table:\n%s", s);
  printf("%s", s);
  rb_buf_free(&t);

  RbBuf svg = {0};
  at_tuning_svg(&tu, 4.0e12, "nominal (test)", &svg);
  s = svg.data ? svg.data : "";
  int tuned = 0, def = 0, floors = 0;
  for (const char *p = s; (p = strstr(p, "class=\"tuned\"")); p++) tuned++;
  for (const char *p = s; (p = strstr(p, "class=\"default\"")); p++) def++;
  for (const char *p = s; (p = strstr(p, "class=\"floor\"")); p++) floors++;
  CHECK(!strncmp(s, "<svg ", 5) && strstr(s, "</svg>\n") && tuned == 6 && def == 6 && floors == 6,
        "svg: %d tuned, %d default, %d floor marks", tuned, def, floors);
  CHECK(strstr(s, "512x1024 k=2 +add b=1") && strstr(s, "256+256x512 k=2 swiglu b=16"), "svg labels");
  const char *keep = getenv("TEST_TUNE_SVG"); /* a file to look at */
  if (keep) {
    FILE *fp = fopen(keep, "w");
    if (fp) fputs(s, fp), fclose(fp);
  }
  rb_buf_free(&svg);
  at_tuning_free(&tu);
  free(f);
}

/* The harness's rotation: 512 MB between two reads of one copy, 3 at least, max at most. */
static void test_rotation(void) {
  CHECK(rt_time_rotation((size_t)4 << 20, 64) == 64, "4 MiB, 64 at most: %d", rt_time_rotation((size_t)4 << 20, 64));
  CHECK(rt_time_rotation((size_t)4 << 20, 4096) == 129, "4 MiB: %d", rt_time_rotation((size_t)4 << 20, 4096));
  CHECK(rt_time_rotation((size_t)1 << 30, 4096) == 3, "1 GiB: %d", rt_time_rotation((size_t)1 << 30, 4096));
  CHECK(rt_time_rotation(1000, 4096) == 4096, "1000 bytes: %d", rt_time_rotation(1000, 4096));
}

int main(void) {
  test_rotation();
  make_model();
  test_units();
  test_check();
  test_order_and_choice();
  test_margin();
  test_broken();
  test_budget();
  test_agree();
  test_outputs();
  test_untimed_default();
  rb_free(units);
  free(kernels.k);
  return CHECK_SUMMARY();
}
