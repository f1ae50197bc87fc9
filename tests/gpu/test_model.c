/* test_model.c: the executor on a GPU against the float64 reference decoder
 * (tests/ref/ref_model.c), on samples/tiny.ir with fresh random weights:
 *  - 2-bit: packed weights written with the safetensors writer, prefill of 7
 *    tokens (in one call, and in chunks of 4), then decode steps replayed
 *    from one captured graph at successive positions;
 *  - the 2-bit model's prefill of 40 tokens under each prefill strategy (RABIT_PREFILL=dequant,
 *    the default, and mma);
 *  - fp16: the same model with every linear dense (cuBLAS).
 * Logits are compared by relative L2 error (activations are fp16 on the GPU).
 * Exits 77 after "SKIP: <reason>" when there is no GPU or driver. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "runtime/rabit.h"
#include "runtime/runtime.h"
#include "runtime/formats/formats.h"
#include "tests/ref/ref.h"
#include "tests/common/gpu.h"
#include "tests/common/rng.h"
#include "tests/common/tiny_model.h"

static const double TOL = 2e-2; /* fp16 activations through 2 layers vs float64 */
static int npass, nfail;
static char arch[16]; /* the GPU's, found once in main */
static RtGpu *gpu;     /* opened once in main */

static void check(const char *what, const double *got, const double *want, size_t n) {
  double e = ref_rel_l2(got, want, n);
  int ok = e <= TOL;
  ok ? npass++ : nfail++;
  printf("%s %-40s rel err %.2e\n", ok ? "ok  " : "FAIL", what, e);
}

/* The IR compiled in process and loaded on the GPU, as `rabit run` does. */
static int open_model(const char *ir_path, int dense, const char *weights, int max_tokens, RtPlan **plan,
                      RtProgram **s, RtModel **m) {
  RbBuf err = {0};
  RtCompileOptions co = {.path = ir_path, .fe = {0, dense}, .stop = RT_STAGE_PLAN, .arch = arch, .max_ctx = 64};
  RtCompiled c;
  int rc = rt_compile(&co, &c, &err);
  *plan = rt_compiled_take_plan(&c);
  if (!rc) rc = rt_program_open(*plan, gpu, s, &err);
  RtModelOptions mo = {max_tokens, 0, 0};
  if (!rc) rc = rt_model_open(*s, weights, &mo, m, &err);
  if (rc) printf("open failed: %s%s\n", c.diag.data ? c.diag.data : "", err.data ? err.data : "");
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return rc;
}

static void run_case(const char *samples, const char *file, int dense, const RefModel *ref, const char *tag) {
  char ir[512];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  enum { T = 7, STEPS = 4 };
  int tokens[T + STEPS];
  for (int i = 0; i < T + STEPS; i++) tokens[i] = (int)(rnd() % V);
  double *want = malloc((size_t)(T + STEPS) * V * sizeof *want), *got = malloc((size_t)T * V * sizeof *got);
  ref_model_forward(ref, tokens, T + STEPS, want); /* causal: row t depends on tokens 0..t only */
  for (int chunked = 0; chunked < 2; chunked++) {
    RtPlan *plan = NULL;
    RtProgram *s = NULL;
    RtModel *m = NULL;
    char what[96];
    if (open_model(ir, dense, file, chunked ? 4 : 16, &plan, &s, &m)) {
      nfail++;
      goto next;
    }
    int32_t t32[T + STEPS];
    for (int i = 0; i < T + STEPS; i++) t32[i] = tokens[i];
    if (!chunked) {
      int rc = rt_model_forward(m, t32, T, 0);
      tiny_logits(m, 0, T, got);
      snprintf(what, sizeof what, "%s prefill T=%d", tag, T);
      if (rc) memset(got, 0xff, (size_t)T * V * sizeof *got);
      check(what, got, want, (size_t)T * V);
    } else {
      int rc = rt_model_forward(m, t32, 4, 0) || rt_model_forward(m, t32 + 4, 3, 4);
      tiny_logits(m, 0, 3, got);
      snprintf(what, sizeof what, "%s prefill in chunks 4+3", tag);
      if (rc) memset(got, 0xff, 3 * V * sizeof *got);
      check(what, got, want + (size_t)4 * V, 3 * V);
    }
    for (int st = 0; st < STEPS; st++) { /* one graph, replayed at each position */
      int rc = rt_model_decode(m, t32[T + st], T + st);
      tiny_logits(m, 0, 1, got);
      if (rc) memset(got, 0xff, V * sizeof *got);
      snprintf(what, sizeof what, "%s%s decode pos %d", tag, chunked ? " (after chunks)" : "", T + st);
      check(what, got, want + (size_t)(T + st) * V, V);
    }
  next:
    rt_model_close(m);
    rt_program_close(s);
    rt_plan_free(plan);
  }
  free(want), free(got);
}

/* RABIT_PREFILL=strategy: prefill above batch 16 through the dequant strategy (the
 * executor's scratch, cuBLAS, the swiglu product kernel) or the staged mma kernels, in
 * one call and in chunks that cross the bucket edge (24 tokens: the prefill bucket, then
 * 16: the register kernels' bucket). */
static void run_prefill(const char *samples, const char *file, const RefModel *ref, const char *strategy) {
  char ir[512];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  enum { T = 40 };
  int tokens[T];
  int32_t t32[T];
  for (int i = 0; i < T; i++) t32[i] = tokens[i] = (int)(rnd() % V);
  double *want = malloc((size_t)T * V * sizeof *want), *got = malloc((size_t)T * V * sizeof *got);
  ref_model_forward(ref, tokens, T, want);
  setenv("RABIT_PREFILL", strategy, 1);
  for (int chunked = 0; chunked < 2; chunked++) {
    RtPlan *plan = NULL;
    RtProgram *s = NULL;
    RtModel *m = NULL;
    if (open_model(ir, 0, file, 48, &plan, &s, &m)) {
      nfail++;
    } else {
      int rc = chunked ? rt_model_forward(m, t32, 24, 0) || rt_model_forward(m, t32 + 24, 16, 24)
                       : rt_model_forward(m, t32, T, 0);
      if (rc) printf("forward failed: %s\n", rt_model_error(m));
      int row0 = chunked ? 24 : 0, n = chunked ? 16 : T;
      tiny_logits(m, 0, n, got);
      if (rc) memset(got, 0xff, (size_t)n * V * sizeof *got);
      char what[64];
      snprintf(what, sizeof what, chunked ? "2-bit %s prefill in chunks 24+16" : "2-bit %s prefill T=40", strategy);
      check(what, got, want + (size_t)row0 * V, (size_t)n * V);
    }
    rt_model_close(m);
    rt_program_close(s);
    rt_plan_free(plan);
  }
  unsetenv("RABIT_PREFILL");
  free(want), free(got);
}

int main(int argc, char **argv) {
  test_rng = 0xD1B54A32D192ED03ull;
  const char *samples = argc > 1 ? argv[1] : "samples";
  RbBuf err = {0};
  gpu = gpu_open_or_skip(arch);
  char dir[] = "/tmp/rabit-model-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char cache[600];
  snprintf(cache, sizeof cache, "%s/cache", dir);
  setenv("RABIT_CACHE_DIR", cache, 1);

  TinyModel t;
  tiny_make(&t);
  for (int dense = 0; dense < 2; dense++) {
    char file[600];
    snprintf(file, sizeof file, "%s/tiny-%s.safetensors", dir, dense ? "fp16" : "k");
    if (tiny_write(&t, dense, file, &err)) {
      printf("FAIL writing %s: %s\n", file, err.data ? err.data : "");
      nfail++;
      continue;
    }
    const RefModel *rm = dense ? &t.dense : &t.model; /* the fp16 file holds the dense reconstructions */
    run_case(samples, file, dense, rm, dense ? "fp16" : "2-bit");
    if (!dense) run_prefill(samples, file, rm, "dequant"), run_prefill(samples, file, rm, "mma");
  }
  tiny_free(&t);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("warning: could not remove %s\n", dir);
  rb_buf_free(&err);
  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  return nfail != 0;
}
