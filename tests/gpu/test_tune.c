/* test_tune.c: the tuner on the GPU (autotune/measure.c under tune.c): the
 * 4096 x 4096 k = 2 linear tuned twice at batches 1 and 16 gives the same
 * choices (or flips within the 3% margin), each choice no slower than the
 * default; SmolLM2-135M's fused linears (q/k/v, + res, gate/up swiglu) tuned
 * with the test hook breaking candidate 1 of every kernel: that candidate is
 * rejected by the check against the CPU reference and never chosen, the
 * defaults pass it. Exits 77 after "SKIP: <reason>" without a GPU or driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/autotune.h"
#include "runtime/runtime.h"
#include "tests/common/check.h"

static RtGpu *gpu;
static RtCache *cache;
static AtLimits lim;

/* The model's units at batches, from its selected kernels. */
static int units_of(const char *path, const int *batches, int nb, AtUnit **u, int *n) {
  RtCompileOptions co = {.path = path, .stop = RT_STAGE_SELECT};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&co, &c, &err);
  if (rc) printf("compile %s: %s%s\n", path, err.data ? err.data : "", c.diag.data ? c.diag.data : "");
  if (!rc) rc = at_units_from_kernels(&cg_target_cuda, &c.kernels, batches, nb, u, n);
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return rc;
}

static int tune(const AtUnit *u, int n, int broken, AtTuning *tu) {
  AtGpu *m = NULL;
  RbBuf err = {0};
  int rc = at_gpu_open(gpu, cache, &cg_target_cuda, 0, &m);
  AtBackend b = at_gpu_backend(m);
  AtTuneOptions o = {.break_candidate = broken};
  double t0 = rb_now_ms();
  if (!rc) rc = at_tune(&b, &cg_target_cuda, &lim, u, n, &o, tu, &err);
  printf("tuned %d units in %.1f s%s%s\n", n, (rb_now_ms() - t0) / 1e3, rc ? ": " : "", rc && err.data ? err.data : "");
  if (tu->log.data) printf("%s", tu->log.data);
  at_gpu_close(m);
  rb_buf_free(&err);
  return rc;
}

static void print_table(const AtTuning *tu, double bw, const char *how) {
  RbBuf t = {0};
  at_tuning_table(tu, bw, how, &t);
  printf("%s", t.data ? t.data : "");
  rb_buf_free(&t);
}

/* Two tunings of one kernel agree, and no choice is slower than its default. */
static void test_twice(const char *samples, double bw, const char *how) {
  char path[4096];
  snprintf(path, sizeof path, "%s/linear-4096x4096-k2.ir", samples);
  int batches[] = {1, 16}, n = 0;
  AtUnit *u = NULL;
  CHECK(units_of(path, batches, 2, &u, &n) == RB_OK && n == 2, "%s: %d units, want 2", path, n);
  AtTuning a, b;
  int ra = tune(u, n, -1, &a), rb = tune(u, n, -1, &b);
  CHECK(ra == RB_OK && rb == RB_OK, "tuning twice failed");
  if (ra == RB_OK && rb == RB_OK) {
    print_table(&a, bw, how);
    print_table(&b, bw, how);
    AtPick pa[2], pb[2];
    at_tuning_picks(&a, pa);
    at_tuning_picks(&b, pb);
    RbBuf why = {0};
    CHECK(at_picks_disagree(pa, pb, n, &why) == 0, "the two tunings disagree:\n%s", why.data ? why.data : "");
    rb_buf_free(&why);
    for (int i = 0; i < n; i++) {
      printf("unit %d: candidates %d and %d of %d (%.2f and %.2f us)\n", i, pa[i].choice, pb[i].choice,
             a.r[i].space.n, pa[i].us, pb[i].us);
      CHECK(a.r[i].valid[0] && b.r[i].valid[0], "unit %d: the default failed validation", i);
      CHECK(pa[i].choice >= 0 && pa[i].us <= a.r[i].t[0].us, "unit %d: the choice is slower than the default", i);
      CHECK(a.r[i].visited == a.r[i].space.n, "unit %d: visited %d of %d without a budget", i, a.r[i].visited,
            a.r[i].space.n);
    }
  }
  at_tuning_free(&a);
  at_tuning_free(&b);
  rb_free(u);
}

/* The broken candidate is rejected and never chosen, on every fused shape. */
static void test_broken(const char *samples) {
  char path[4096];
  snprintf(path, sizeof path, "%s/smollm2-135m.ir", samples);
  int batches[] = {1, 4}, n = 0;
  AtUnit *u = NULL;
  CHECK(units_of(path, batches, 2, &u, &n) == RB_OK && n >= 4, "%s: %d units", path, n);
  AtTuning tu;
  CHECK(tune(u, n, 1, &tu) == RB_OK, "tuning with the broken candidate failed");
  for (int i = 0; i < tu.n; i++) {
    const AtUnitResult *r = &tu.r[i];
    CHECK(r->valid[0], "unit %d: the default failed validation", i);
    if (r->space.n < 2) continue;
    CHECK(r->built[1] && !r->valid[1], "unit %d: the broken candidate passed validation (built %d)", i, r->built[1]);
    CHECK(r->choice != 1 && r->choice >= 0, "unit %d: chose %d", i, r->choice);
    CHECK(!isfinite(r->t[1].us), "unit %d: the broken candidate was timed", i);
    if (r->ninvalid > 1) printf("note: unit %d has %d wrong candidates besides the broken one\n", i, r->ninvalid - 1);
  }
  CHECK(tu.log.data && strstr(tu.log.data, "(the deliberately broken candidate)"), "the log does not name it");
  at_tuning_free(&tu);
  rb_free(u);
}

int main(int argc, char **argv) {
  const char *samples = argc > 1 ? argv[1] : "samples";
  RbBuf err = {0};
  if (rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    printf("SKIP: %s\n", err.data ? err.data : "no GPU");
    rb_buf_free(&err);
    return 77;
  }
  printf("device: %s (%s)\n", rt_gpu_name(gpu), rt_gpu_arch(gpu));
  rt_cache_open(&cache, NULL, RT_CACHE_DEFAULT_MAX, &err);
  CHECK(at_gpu_limits(gpu, &lim) == RB_OK && lim.regs_per_block > 0 && lim.smem_per_block > 0 && lim.sm_count > 0,
        "limits: %s", rt_gpu_error(gpu));
  double bw = 0;
  char how[160] = "";
  CHECK(at_gpu_bandwidth(gpu, &bw, how, sizeof how) == RB_OK && bw > 1e11, "bandwidth %g: %s", bw, how);
  printf("limits: %d regs a block, %d B shared, %d threads, %d SMs; bandwidth %.3f TB/s, %s\n", lim.regs_per_block,
         lim.smem_per_block, lim.threads_per_block, lim.sm_count, bw / 1e12, how);
  test_twice(samples, bw, how);
  test_broken(samples);
  rt_cache_close(cache);
  rt_gpu_close(gpu);
  rb_buf_free(&err);
  return CHECK_SUMMARY();
}
