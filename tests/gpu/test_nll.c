/* test_nll.c: evaluation's loss on the GPU. The CG_NLL kernel (codegen/cuda/
 * ops.c) against a float64 log-softmax on fresh random logits, V = 49152 and
 * 256, rows ld apart, run twice for bitwise determinism, a target outside the
 * vocabulary giving NaN; then rt_model_nll on samples/tiny.ir with random
 * weights (2-bit and fp16, windows longer than a prefill chunk) against the old
 * host path: the logits copied back and log-softmaxed on the CPU, 1e-5 relative.
 * Exits 77 after "SKIP: <reason>" when there is no GPU or driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "tests/common/gpu.h"
#include "tests/common/launch.h"
#include "tests/common/rng.h"

static int npass, nfail;
static RtGpu *gpu;
static char arch[16];

static void report(int ok, const char *what, double err) {
  ok ? npass++ : nfail++;
  printf("%s %-52s %.2e\n", ok ? "ok  " : "FAIL", what, err);
}

static double gauss(void) {
  double u = unif() + 1e-300, v = unif();
  return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* -log softmax(row)[target] in double: the reference. */
static double ref_nll(const float *row, int V, int target) {
  double mx = row[0], sum = 0;
  for (int i = 1; i < V; i++) mx = row[i] > mx ? row[i] : mx;
  for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
  return log(sum) + mx - row[target];
}

static void nll_kernel(int V, int T, int ld, double scale) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_NLL;
  k.op.vocab = V;
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  void *cubin = NULL;
  size_t len = 0;
  RtModule *mod = NULL;
  RtFunction fn = NULL;
  if (test_emit(&k, &src, entry, &err) ||
      rt_nvrtc_compile(src.data, entry, arch, rt_nvrtc_default_opts, rt_nvrtc_default_nopts, &cubin, &len, &err) ||
      rt_module_load(gpu, cubin, len, &mod) || rt_module_function(mod, entry, &fn)) {
    printf("FAIL nll V=%d does not build: %s\n", V, err.data ? err.data : rt_gpu_error(gpu));
    nfail++;
    return;
  }
  float *logits = malloc((size_t)T * ld * 4), *got = malloc((size_t)T * 4), *again = malloc((size_t)T * 4);
  int *tg = malloc((size_t)T * 4);
  for (size_t i = 0; i < (size_t)T * ld; i++) logits[i] = (float)(scale * gauss());
  for (int t = 0; t < T; t++) tg[t] = (int)(rnd() % (uint64_t)V);
  tg[0] = V - 1, tg[1] = 0;          /* both ends of a row */
  logits[2 * (size_t)ld + 7] = 40.0f; /* a row with one dominant logit */
  tg[2] = 7;
  tg[T - 1] = V; /* outside the vocabulary: NaN */
  RtDevPtr dl, dt, dn;
  rt_mem_alloc(gpu, &dl, (size_t)T * ld * 4);
  rt_mem_alloc(gpu, &dt, (size_t)T * 4);
  rt_mem_alloc(gpu, &dn, (size_t)T * 4);
  rt_memcpy_htod(gpu, dl, logits, (size_t)T * ld * 4);
  rt_memcpy_htod(gpu, dt, tg, (size_t)T * 4);
  CgNllArgs a = {dn, dl, dt, ld, T};
  CgArgv v;
  cg_nll_argv(&a, &v);
  CgLaunch L = test_launch(&k, T);
  int rc = rt_launch(gpu, fn, L.grid, L.block, L.smem, NULL, v.v) || rt_sync(gpu) ||
           rt_memcpy_dtoh(gpu, got, dn, (size_t)T * 4);
  rc = rc || rt_launch(gpu, fn, L.grid, L.block, L.smem, NULL, v.v) || rt_sync(gpu) ||
       rt_memcpy_dtoh(gpu, again, dn, (size_t)T * 4);
  double worst = 0;
  for (int t = 0; !rc && t < T - 1; t++) {
    double want = ref_nll(logits + (size_t)t * ld, V, tg[t]), e = fabs(got[t] - want) / fmax(fabs(want), 1.0);
    worst = e > worst || isnan(e) ? e : worst;
  }
  char what[96];
  snprintf(what, sizeof what, "nll kernel V=%d T=%d ld=%d scale %.0f, max rel err", V, T, ld, scale);
  report(!rc && worst <= 1e-5, what, worst);
  snprintf(what, sizeof what, "nll kernel V=%d: bitwise the same twice, NaN off the vocabulary", V);
  report(!rc && !memcmp(got, again, (size_t)T * 4) && isnan(got[T - 1]), what, 0);
  rt_mem_free(gpu, dl), rt_mem_free(gpu, dt), rt_mem_free(gpu, dn);
  rt_module_unload(mod);
  rb_free(cubin);
  rb_buf_free(&src), rb_buf_free(&err);
  free(logits), free(got), free(again), free(tg);
}

/* rt_model_nll against the logits copied back and log-softmaxed here. */
static void model_nll(const char *samples, int dense) {
  char ir[512];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  RbBuf err = {0};
  RtCompileOptions co = {.path = ir, .fe = {0, dense}, .stop = RT_STAGE_PLAN, .arch = arch, .max_ctx = 64};
  RtCompiled c;
  RtProgram *pr = NULL;
  RtModel *m = NULL;
  int rc = rt_compile(&co, &c, &err);
  RtPlan *plan = rt_compiled_take_plan(&c);
  if (!rc) rc = rt_program_open(plan, gpu, &pr, &err);
  RtModelOptions mo = {8, 1, 7}; /* chunks of 8: a window of 29 takes four */
  if (!rc) rc = rt_model_open(pr, NULL, &mo, &m, &err);
  if (rc) {
    printf("FAIL open tiny.ir: %s%s\n", c.diag.data ? c.diag.data : "", err.data ? err.data : "");
    nfail++;
    goto done;
  }
  enum { T = 29 };
  int V = rt_model_vocab(m);
  int32_t tok[T];
  for (int i = 0; i < T; i++) tok[i] = (int32_t)(rnd() % (uint64_t)V);
  double want = 0, got = 0, worst_row = 0;
  float rows[T - 1], *logits = malloc((size_t)8 * V * 4);
  for (int at = 0; at < T; at += 8) {
    int n = T - at < 8 ? T - at : 8;
    if (rt_model_forward(m, tok + at, n, at) || rt_model_logits(m, 0, n, logits)) {
      printf("FAIL host path: %s\n", rt_model_error(m));
      nfail++;
      goto done;
    }
    for (int r = 0; r < n && at + r + 1 < T; r++) want += ref_nll(logits + (size_t)r * V, V, tok[at + r + 1]);
  }
  rc = rt_model_nll(m, tok, T, &got, rows);
  double e = rc ? INFINITY : fabs(got - want) / fabs(want);
  char what[96];
  snprintf(what, sizeof what, "rt_model_nll tiny %s T=%d: the window's sum vs host", dense ? "fp16" : "2-bit", T);
  report(!rc && e <= 1e-5, what, e);
  if (rc) printf("     %s\n", rt_model_error(m));
  /* Each row once more, one at a time through the host path of the same model. */
  double sum = 0;
  for (int r = 0; !rc && r < T - 1; r++) sum += rows[r];
  worst_row = rc ? INFINITY : fabs(sum - got) / fabs(got);
  snprintf(what, sizeof what, "rt_model_nll tiny %s: row_nll sums to the total", dense ? "fp16" : "2-bit");
  report(!rc && worst_row <= 1e-12, what, worst_row);
  /* The same window again: the same bits (the cache starts empty each time). */
  double again = 0;
  int rc2 = rt_model_nll(m, tok, T, &again, NULL);
  snprintf(what, sizeof what, "rt_model_nll tiny %s: deterministic", dense ? "fp16" : "2-bit");
  report(!rc && !rc2 && again == got, what, fabs(again - got));
  /* Refusals: an id outside the vocabulary, a window beyond the context. */
  tok[3] = V;
  rc2 = rt_model_nll(m, tok, T, &again, NULL);
  report(rc2 == RB_EUSER && strstr(rt_model_error(m), "outside the vocabulary"), "rt_model_nll refuses a bad id", 0);
  rc2 = rt_model_nll(m, tok, 65, &again, NULL);
  report(rc2 == RB_EUSER && strstr(rt_model_error(m), "outside 2..64"), "rt_model_nll refuses a long window", 0);
  free(logits);
done:
  rt_model_close(m);
  rt_program_close(pr);
  rt_plan_free(plan);
  rt_compiled_free(&c);
  rb_buf_free(&err);
}

int main(int argc, char **argv) {
  gpu = gpu_open_or_skip(arch);
  const char *samples = argc > 1 ? argv[1] : "samples";
  nll_kernel(49152, 37, 49152, 4.0);
  nll_kernel(49152, 5, 49152 + 64, 12.0);
  nll_kernel(256, 64, 256, 4.0);
  nll_kernel(256, 9, 300, 1.0);
  model_nll(samples, 0);
  model_nll(samples, 1);
  rt_gpu_close(gpu);
  printf("%d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
