/* test_model.c: the executor on a GPU against the float64 reference decoder
 * (tests/ref/ref_model.c), on samples/tiny.ir with fresh random weights:
 *  - 2-bit: packed weights written with the safetensors writer, prefill of 7
 *    tokens (in one call, and in chunks of 4), then decode steps replayed
 *    from one captured graph at successive positions;
 *  - the 2-bit model's prefill of 40 tokens under RABIT_PREFILL=dequant;
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

enum { V = 256, D = 64, F = 160, L = 2, H = 4, HKV = 2, HD = 16 };
static const double TOL = 2e-2; /* fp16 activations through 2 layers vs float64 */
static int npass, nfail;
static char arch[16]; /* the GPU's, found once in main */
static RtGpu *gpu;     /* opened once in main */
static float fp16(float v) { return rb_f32_from_f16(rb_f16_from_f32(v)); }

static void check(const char *what, const double *got, const double *want, size_t n) {
  double e = ref_rel_l2(got, want, n);
  int ok = e <= TOL;
  ok ? npass++ : nfail++;
  printf("%s %-40s rel err %.2e\n", ok ? "ok  " : "FAIL", what, e);
}

/* A random linear of the tiny model, stored both packed and as its dense W_hat. */
typedef struct {
  RefLinear r;
  int8_t *signs;
  float *what; /* dense reconstruction, for the fp16 file */
} Lin;

static void make_linear(Lin *l, int N, int K, int paths) {
  int W = (K + 31) / 32;
  l->signs = malloc((size_t)paths * N * K);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) l->signs[i] = (rnd() & 1) ? 1 : -1;
  uint32_t *bits = calloc((size_t)paths * N * W, 4);
  ref_pack_signs(bits, l->signs, paths, N, K);
  float *g = malloc((size_t)paths * N * 4), *h = malloc((size_t)paths * K * 4);
  for (int i = 0; i < paths * N; i++) g[i] = fp16((0.5f + unif()) / sqrtf((float)K * paths));
  for (int i = 0; i < paths * K; i++) h[i] = fp16(0.5f + unif());
  l->what = calloc((size_t)N * K, 4);
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++)
        l->what[(size_t)n * K + k] += g[p * N + n] * l->signs[((size_t)p * N + n) * K + k] * h[p * K + k];
  for (size_t i = 0; i < (size_t)N * K; i++) l->what[i] = fp16(l->what[i]);
  l->r = (RefLinear){N, K, paths, bits, g, h, NULL};
}

static void add_f16(RtStWriter *w, const char *name, const float *x, int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = rb_f16_from_f32(x[i]);
  rt_st_writer_add(w, name, RT_F16, rank, shape, h);
  free(h);
}

static void add_linear(RtStWriter *w, const char *base, const Lin *l, int dense) {
  char name[256];
  const RefLinear *r = &l->r;
  if (dense) {
    int64_t s[2] = {r->N, r->K};
    snprintf(name, sizeof name, "%s.weight", base);
    add_f16(w, name, l->what, 2, s);
    return;
  }
  int64_t sb[3] = {r->paths, r->N, (r->K + 31) / 32}, sg[2] = {r->paths, r->N}, sh[2] = {r->paths, r->K};
  snprintf(name, sizeof name, "%s.bits", base);
  rt_st_writer_add(w, name, RT_I32, 3, sb, r->bits);
  snprintf(name, sizeof name, "%s.g", base);
  add_f16(w, name, r->g, 2, sg);
  snprintf(name, sizeof name, "%s.h", base);
  add_f16(w, name, r->h, 2, sh);
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

static void logits_of(RtModel *m, int row0, int n, double *out) {
  float *f = malloc((size_t)n * V * 4);
  if (rt_model_logits(m, row0, n, f)) memset(f, 0xff, (size_t)n * V * 4);
  for (size_t i = 0; i < (size_t)n * V; i++) out[i] = f[i];
  free(f);
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
      logits_of(m, 0, T, got);
      snprintf(what, sizeof what, "%s prefill T=%d", tag, T);
      if (rc) memset(got, 0xff, (size_t)T * V * sizeof *got);
      check(what, got, want, (size_t)T * V);
    } else {
      int rc = rt_model_forward(m, t32, 4, 0) || rt_model_forward(m, t32 + 4, 3, 4);
      logits_of(m, 0, 3, got);
      snprintf(what, sizeof what, "%s prefill in chunks 4+3", tag);
      if (rc) memset(got, 0xff, 3 * V * sizeof *got);
      check(what, got, want + (size_t)4 * V, 3 * V);
    }
    for (int st = 0; st < STEPS; st++) { /* one graph, replayed at each position */
      int rc = rt_model_decode(m, t32[T + st], T + st);
      logits_of(m, 0, 1, got);
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

/* RABIT_PREFILL=dequant: prefill above batch 16 through the dequant strategy (the
 * executor's scratch, cuBLAS, the swiglu product kernel), in one call and in chunks
 * that cross the bucket edge (24 tokens: dequant, then 16: the mma bucket). */
static void run_dequant_prefill(const char *samples, const char *file, const RefModel *ref) {
  char ir[512];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  enum { T = 40 };
  int tokens[T];
  int32_t t32[T];
  for (int i = 0; i < T; i++) t32[i] = tokens[i] = (int)(rnd() % V);
  double *want = malloc((size_t)T * V * sizeof *want), *got = malloc((size_t)T * V * sizeof *got);
  ref_model_forward(ref, tokens, T, want);
  setenv("RABIT_PREFILL", "dequant", 1);
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
      logits_of(m, 0, n, got);
      if (rc) memset(got, 0xff, (size_t)n * V * sizeof *got);
      check(chunked ? "2-bit dequant prefill in chunks 24+16" : "2-bit dequant prefill T=40", got,
            want + (size_t)row0 * V, (size_t)n * V);
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

  /* tiny.ir: q, k, o, gate, up have 2 paths; v 3; down 1; tied embeddings. */
  float *embed = malloc((size_t)V * D * 4), *fnorm = malloc(D * 4);
  for (int i = 0; i < V * D; i++) embed[i] = fp16(2 * unif() - 1);
  for (int i = 0; i < D; i++) fnorm[i] = fp16(0.5f + unif());
  RefLayer layers[L];
  Lin lin[L][7];
  float *norms[L][2];
  for (int l = 0; l < L; l++) {
    static const int shape[7][3] = {{D, D, 2}, {HKV * HD, D, 2}, {HKV * HD, D, 3}, {D, D, 2}, {F, D, 2}, {F, D, 2}, {D, F, 1}};
    for (int j = 0; j < 7; j++) make_linear(&lin[l][j], shape[j][0], shape[j][1], shape[j][2]);
    for (int j = 0; j < 2; j++) {
      norms[l][j] = malloc(D * 4);
      for (int i = 0; i < D; i++) norms[l][j][i] = fp16(0.5f + unif());
    }
    layers[l] = (RefLayer){norms[l][0], norms[l][1], lin[l][0].r, lin[l][1].r, lin[l][2].r, lin[l][3].r,
                           lin[l][4].r, lin[l][5].r, lin[l][6].r};
  }
  RefModel ref = {V, D, F, L, H, HKV, HD, 1e-5f, 10000.0f, embed, fnorm, embed, layers};
  static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
  for (int dense = 0; dense < 2; dense++) {
    RtStWriter *w = NULL;
    rt_st_writer_new(&w);
    int64_t se[2] = {V, D}, sn[1] = {D};
    add_f16(w, "model.embed_tokens.weight", embed, 2, se);
    rt_st_writer_add(w, "model.norm.weight", RT_F32, 1, sn, fnorm);
    for (int l = 0; l < L; l++) {
      char base[128];
      snprintf(base, sizeof base, "model.layers.%d.input_layernorm.weight", l);
      rt_st_writer_add(w, base, RT_F32, 1, sn, norms[l][0]);
      snprintf(base, sizeof base, "model.layers.%d.post_attention_layernorm.weight", l);
      rt_st_writer_add(w, base, RT_F32, 1, sn, norms[l][1]);
      for (int j = 0; j < 7; j++) {
        snprintf(base, sizeof base, "model.layers.%d.%s", l, names[j]);
        add_linear(w, base, &lin[l][j], dense);
      }
    }
    char file[600];
    snprintf(file, sizeof file, "%s/tiny-%s.safetensors", dir, dense ? "fp16" : "k");
    if (rt_st_writer_finish(w, file, &err)) {
      printf("FAIL writing %s: %s\n", file, err.data ? err.data : "");
      nfail++;
      continue;
    }
    /* The fp16 run uses the dense reconstructions: the same function. */
    RefLayer dl[L];
    for (int l = 0; l < L && dense; l++) {
      dl[l] = layers[l];
      RefLinear *rs[7] = {&dl[l].q, &dl[l].k, &dl[l].v, &dl[l].o, &dl[l].gate, &dl[l].up, &dl[l].down};
      for (int j = 0; j < 7; j++) rs[j]->paths = 0, rs[j]->dense = lin[l][j].what;
    }
    RefModel rm = ref;
    if (dense) rm.layer = dl;
    run_case(samples, file, dense, &rm, dense ? "fp16" : "2-bit");
    if (!dense) run_dequant_prefill(samples, file, &rm);
  }
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd)) printf("warning: could not remove %s\n", dir);
  rb_buf_free(&err);
  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  return nfail != 0;
}
