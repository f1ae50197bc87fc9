/* test_plan_api.c: the public API end to end on a GPU. rabitc's pipeline
 * writes a plan for samples/tiny.ir and samples/smollm2-135m.ir; the plan is
 * loaded through rabit.h, opened on the GPU (all kernels from the cache), and
 * every quantized linear step is bound to fresh random weights in the
 * canonical format and run at several batches against the float64 reference
 * (a step folding in its rmsnorm at small batches: rmsnorm, then the linear).
 * Then the cache is emptied and the session reopened: every kernel is rebuilt
 * from its spec in the plan, and the results are checked again; the prefill batches
 * (40, 600) take the dequant buckets, with the scratch and cuBLAS the session makes
 * for them. Last, tiny.ir's plan under RABIT_PREFILL=mma: the staged mma kernels.
 * Exits 77 after "SKIP: <reason>" when there is no GPU or driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "runtime/rabit.h"
#include "runtime/runtime.h"
#include "runtime/jit/jit.h"
#include "tests/ref/ref.h"
#include "tests/common/gpu.h"
#include "tests/common/rng.h"

static int npass, nfail;

/* Compile path's IR into a plan file at out, as rabitc -o does. */
static int write_plan(const char *path, const char *out, const char *arch) {
  RbBuf err = {0};
  RtCompileOptions co = {.path = path, .stop = RT_STAGE_PLAN, .arch = arch, .max_ctx = 1024};
  RtCompiled c;
  int rc = rt_compile(&co, &c, &err);
  if (!rc) rc = rt_plan_write(out, c.plan, &err);
  if (rc) printf("plan for %s failed: %s%s\n", path, c.diag.data ? c.diag.data : "", err.data ? err.data : "");
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return rc;
}

/* Bind random weights to one linear step and check it at each batch. */
static void check_linear(RabitSession *s, const RabitPlan *plan, int step, const char *tag) {
  int nseg, N[4], K, k;
  rabit_plan_linear_shape(plan, step, &nseg, N, &K, &k);
  const char *op = rabit_plan_step_op(plan, step);
  int swiglu = strcmp(op, "linear_swiglu") == 0, add = strcmp(op, "linear_add") == 0;
  int W = (K + 31) / 32, ntot = 0;
  for (int i = 0; i < nseg; i++) ntot += N[i];
  int nout = swiglu ? N[0] : ntot;
  uint32_t *bits[4];
  uint16_t *gh[4], *hh[4];
  float *gf[4], *hf[4];
  for (int i = 0; i < nseg; i++) {
    int8_t *signs = malloc((size_t)k * N[i] * K);
    for (size_t j = 0; j < (size_t)k * N[i] * K; j++) signs[j] = (rnd() & 1) ? 1 : -1;
    bits[i] = calloc((size_t)k * N[i] * W, 4);
    ref_pack_signs(bits[i], signs, k, N[i], K);
    free(signs);
    gh[i] = malloc((size_t)k * N[i] * 2);
    gf[i] = malloc((size_t)k * N[i] * 4);
    hh[i] = malloc((size_t)k * K * 2);
    hf[i] = malloc((size_t)k * K * 4);
    for (int j = 0; j < k * N[i]; j++) gf[i][j] = rb_f32_from_f16(gh[i][j] = rb_f16_from_f32((float)(0.01 + 0.03 * unif())));
    for (int j = 0; j < k * K; j++) hf[i][j] = rb_f32_from_f16(hh[i][j] = rb_f16_from_f32((float)(0.5 + unif())));
  }
  RabitLinear *w = NULL;
  char err[512];
  if (rabit_linear_bind(s, step, (const uint32_t *const *)bits, (const uint16_t *const *)gh,
                        (const uint16_t *const *)hh, &w, err, sizeof err)) {
    printf("FAIL %s step %d: bind: %s\n", tag, step, err);
    nfail++;
    return;
  }
  /* A step folding in its rmsnorm: a random norm weight into it; its small batches are then
   * checked against rmsnorm (in double) then the linear. */
  int norm = rabit_plan_linear_norm(plan, step);
  uint16_t *nwh = NULL;
  if (norm >= 0) {
    nwh = malloc((size_t)K * 2);
    for (int j = 0; j < K; j++) nwh[j] = rb_f16_from_f32((float)(0.5 + unif()));
    if (rabit_linear_fold_norm(s, w, (const uint16_t *const *)hh, nwh, err, sizeof err)) {
      printf("FAIL %s step %d: fold the norm of step %d: %s\n", tag, step, norm, err);
      nfail++;
    }
  }
  static const int batches[] = {1, 3, 16, 40, 600};
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
    int B = batches[bi];
    int prenorm = rabit_plan_linear_prenorm(plan, step, B);
    float *x = malloc((size_t)B * K * 4), *res = malloc((size_t)B * nout * 4);
    uint16_t *xh = malloc((size_t)B * K * 2), *rh = malloc((size_t)B * nout * 2), *yh = malloc((size_t)B * nout * 2);
    for (int j = 0; j < B * K; j++) x[j] = rb_f32_from_f16(xh[j] = rb_f16_from_f32((float)(2 * unif() - 1)));
    for (int j = 0; j < B * nout; j++) res[j] = rb_f32_from_f16(rh[j] = rb_f16_from_f32((float)(2 * unif() - 1)));
    rabit_devptr dx, dy, dr;
    rabit_alloc(s, &dx, (size_t)B * K * 2);
    rabit_alloc(s, &dy, (size_t)B * nout * 2);
    rabit_alloc(s, &dr, (size_t)B * nout * 2);
    rabit_upload(s, dx, xh, (size_t)B * K * 2);
    rabit_upload(s, dr, rh, (size_t)B * nout * 2);
    memset(yh, 0xff, (size_t)B * nout * 2); /* NaN poison: every element must be written */
    rabit_upload(s, dy, yh, (size_t)B * nout * 2);
    if (B == 1 && K % 8 == 0) { /* an x off its 16-byte alignment is refused, not launched (it would trap) */
      int bad = rabit_linear_run(s, w, 1, dy, dx + 2, add ? dr : 0, NULL) != 0 && rabit_sync(s) == 0;
      bad ? npass++ : nfail++;
      if (!bad) printf("FAIL %s step %d: an unaligned x was launched (or broke the session)\n", tag, step);
    }
    int rc = rabit_linear_run(s, w, B, dy, dx, add ? dr : 0, NULL);
    rc |= rabit_sync(s);
    rabit_download(s, yh, dy, (size_t)B * nout * 2);
    if (prenorm) /* the reference's input: x * rsqrt(mean(x^2) + eps) * w, from here on */
      for (int b = 0; b < B; b++) {
        double ss = 0;
        for (int j = 0; j < K; j++) ss += (double)x[(size_t)b * K + j] * x[(size_t)b * K + j];
        double r = 1.0 / sqrt(ss / K + 1e-5); /* the samples' EPS */
        for (int j = 0; j < K; j++) x[(size_t)b * K + j] = (float)(x[(size_t)b * K + j] * r * rb_f32_from_f16(nwh[j]));
      }
    /* Reference: each segment, then the epilogue, in double. */
    double *want = calloc((size_t)B * nout, sizeof(double)), *got = malloc((size_t)B * nout * sizeof(double));
    double *seg[4];
    for (int i = 0, col = 0; i < nseg; col += N[i++]) {
      seg[i] = malloc((size_t)B * N[i] * sizeof(double));
      ref_linear(seg[i], x, bits[i], gf[i], hf[i], B, N[i], K, k);
      if (!swiglu)
        for (int b = 0; b < B; b++)
          for (int n = 0; n < N[i]; n++) want[(size_t)b * nout + col + n] = seg[i][(size_t)b * N[i] + n];
    }
    for (int b = 0; b < B; b++)
      for (int n = 0; n < nout; n++) {
        size_t o = (size_t)b * nout + n;
        if (swiglu) want[o] = ref_silu(seg[0][(size_t)b * N[0] + n]) * seg[1][(size_t)b * N[0] + n];
        if (add) want[o] += res[o];
      }
    int nan = 0;
    for (int j = 0; j < B * nout; j++) {
      got[j] = rb_f32_from_f16(yh[j]);
      nan += isnan(got[j]) != 0;
    }
    double e = ref_rel_l2(got, want, (size_t)B * nout);
    int ok = !rc && !nan && e < 1e-2;
    ok ? npass++ : nfail++;
    if (!ok || B == 1 || B == 600)
      printf("%s %s step %d %s%s N=%d K=%d k=%d batch %d: rel err %.2e%s\n", ok ? "ok  " : "FAIL", tag, step,
             prenorm ? "rmsnorm+" : "", op, ntot, K, k, B, e, nan ? " (unwritten outputs)" : "");
    for (int i = 0; i < nseg; i++) free(seg[i]);
    free(want), free(got), free(x), free(res), free(xh), free(rh), free(yh);
    rabit_free(s, dx), rabit_free(s, dy), rabit_free(s, dr);
  }
  rabit_linear_free(s, w);
  free(nwh);
  for (int i = 0; i < nseg; i++) free(bits[i]), free(gh[i]), free(gf[i]), free(hh[i]), free(hf[i]);
}

static void run_plan(const char *plan_path, const char *tag, int want_hits_all, int max_layers) {
  RabitPlan *plan = NULL;
  RabitSession *s = NULL;
  char err[2048];
  if (rabit_plan_load(plan_path, &plan, err, sizeof err) || rabit_session_open(plan, 0, &s, err, sizeof err)) {
    printf("FAIL %s: %s\n", tag, err);
    nfail++;
    rabit_plan_free(plan);
    return;
  }
  int kernels = 0;
  RbBuf e = {0};
  RtPlan *raw = NULL;
  if (rt_plan_load(plan_path, &raw, &e) == RB_OK) kernels = raw->nkernels;
  rt_plan_free(raw);
  rb_buf_free(&e);
  int hits = rabit_session_cache_hits(s);
  int ok = want_hits_all ? hits == kernels : hits == 0;
  ok ? npass++ : nfail++;
  printf("%s %s: session opened, %d of %d kernels from the cache (want %s)\n", ok ? "ok  " : "FAIL", tag, hits,
         kernels, want_hits_all ? "all" : "none");
  int linears = 0;
  for (int st = 0; st < rabit_plan_steps(plan); st++) {
    int nseg, N[4], K, k;
    if (!rabit_plan_linear_shape(plan, st, &nseg, N, &K, &k)) continue;
    if (linears++ >= max_layers) break;
    check_linear(s, plan, st, tag);
  }
  rabit_session_close(s);
  rabit_plan_free(plan);
}

int main(int argc, char **argv) {
  test_rng = 0x2545F4914F6CDD1Dull;
  const char *samples = argc > 1 ? argv[1] : "samples";
  char arch[16];
  gpu_arch_or_skip(arch);
  char dir[] = "/tmp/rabit-plan-api-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char cache[600], path[600], plan[600];
  snprintf(cache, sizeof cache, "%s/cache", dir);
  setenv("RABIT_CACHE_DIR", cache, 1);
  const char *models[][2] = {{"tiny.ir", "tiny"}, {"smollm2-135m.ir", "smollm2"}};
  for (int m = 0; m < 2; m++) {
    snprintf(path, sizeof path, "%s/%s", samples, models[m][0]);
    snprintf(plan, sizeof plan, "%s/%s.rplan", dir, models[m][1]);
    if (write_plan(path, plan, arch)) {
      nfail++;
      continue;
    }
    int layers = m == 0 ? 100 : 4; /* every linear of tiny; SmolLM2's first layer */
    run_plan(plan, models[m][1], 1, layers);
    /* Empty the cache: the session must rebuild every kernel from the plan's specs. */
    RtCache *c = NULL;
    RbBuf w = {0};
    RtCacheCleared done;
    if (rt_cache_open(&c, NULL, RT_CACHE_DEFAULT_MAX, &w) == RB_OK) rt_cache_clear(c, &done, NULL);
    rt_cache_close(c);
    rb_buf_free(&w);
    char tag[64];
    snprintf(tag, sizeof tag, "%s (rebuilt)", models[m][1]);
    run_plan(plan, tag, 0, m == 0 ? 100 : 1);
  }
  /* tiny.ir under RABIT_PREFILL=mma: batches 40 and 600 take the staged mma kernels. */
  snprintf(path, sizeof path, "%s/tiny.ir", samples);
  snprintf(plan, sizeof plan, "%s/tiny-mma.rplan", dir);
  setenv("RABIT_PREFILL", "mma", 1);
  int bad = write_plan(path, plan, arch);
  unsetenv("RABIT_PREFILL");
  if (bad)
    nfail++;
  else
    run_plan(plan, "tiny (mma prefill)", 1, 100);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("warning: could not remove %s\n", dir);
  printf("%d passed, %d failed\n", npass, nfail);
  return nfail != 0;
}
