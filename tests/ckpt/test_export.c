/* test_export.c: trained weights to the packed file (trainer/export.c). A
 * random tiny model (samples/tiny.ir's shapes, written here as f16/f32) is
 * exported from random fp32 W, g, h: the file passes rt_weights_check against
 * tiny.ir's plan, its bits are this test's own re-derivation by TRAINING.md's
 * rule, its served W_hat is close to the fp32 one, the other tensors are the
 * input's bytes. Extreme scales are rebalanced or refused by name.
 * usage: test_export CASE SAMPLES_DIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "tests/common/check.h"
#include "tests/common/rng.h"
#include "trainer/trainer.h"

static const char *samples;
static char dir[64];

/* tiny.ir's tensors, written out by hand: name, N, K (K = 0: a norm of N), k. */
typedef struct {
  char name[96];
  int N, K, k;
  float *W, *g, *h; /* the trained state of a quantized one */
} Weight;

static Weight ws[32];
static int nws;

static void add(const char *name, int N, int K, int k) {
  Weight *w = &ws[nws++];
  snprintf(w->name, sizeof w->name, "%s", name);
  w->N = N, w->K = K, w->k = k;
}

static double gauss(void) { return sqrt(-2.0 * log(1.0 - unif())) * cos(6.283185307179586 * unif()); }

/* The tiny model's weights; gscale/hscale multiply every g and h. */
static void tiny_weights(double gscale, double hscale) {
  nws = 0;
  add("model.embed_tokens.weight", 256, 64, 0);
  for (int l = 0; l < 2; l++) {
    char b[96];
#define L(s, N, K, k) snprintf(b, sizeof b, "model.layers.%d." s, l), add(b, N, K, k)
    L("input_layernorm.weight", 64, 0, 0);
    L("self_attn.q_proj", 64, 64, 2);
    L("self_attn.k_proj", 32, 64, 2);
    L("self_attn.v_proj", 32, 64, 3);
    L("self_attn.o_proj", 64, 64, 2);
    L("post_attention_layernorm.weight", 64, 0, 0);
    L("mlp.gate_proj", 160, 64, 2);
    L("mlp.up_proj", 160, 64, 2);
    L("mlp.down_proj", 64, 160, 1);
#undef L
  }
  add("model.norm.weight", 64, 0, 0);
  for (int i = 0; i < nws; i++) {
    Weight *w = &ws[i];
    if (!w->k) continue;
    w->W = malloc(sizeof(float) * (size_t)w->N * w->K);
    w->g = malloc(sizeof(float) * (size_t)w->k * w->N);
    w->h = malloc(sizeof(float) * (size_t)w->k * w->K);
    for (int j = 0; j < w->N * w->K; j++) w->W[j] = (float)(0.05 * gauss());
    for (int p = 0; p < w->k; p++) {
      double decay = pow(0.4, p); /* later paths fit smaller residuals */
      for (int n = 0; n < w->N; n++) w->g[p * w->N + n] = (float)(gscale * (0.5 + unif()) * decay);
      for (int c = 0; c < w->K; c++) w->h[p * w->K + c] = (float)(hscale * 0.04 * (0.5 + unif()));
    }
  }
}

static void free_weights(void) {
  for (int i = 0; i < nws; i++) free(ws[i].W), free(ws[i].g), free(ws[i].h), ws[i].W = ws[i].g = ws[i].h = NULL;
}

/* The original file: matrices F16 (the quantized ones' values are never
 * read), norms F32. */
static void write_original(const char *path) {
  RtStWriter *w;
  rt_st_writer_new(&w);
  for (int i = 0; i < nws; i++) {
    char name[160];
    if (ws[i].k) cg_dense_name(name, sizeof name, ws[i].name);
    else memcpy(name, ws[i].name, sizeof ws[i].name);
    if (ws[i].K) {
      int64_t s[2] = {ws[i].N, ws[i].K};
      uint16_t *d = malloc(2 * (size_t)ws[i].N * ws[i].K);
      for (int j = 0; j < ws[i].N * ws[i].K; j++) d[j] = rb_f16_from_f32((float)(0.1 * gauss()));
      rt_st_writer_add(w, name, RT_F16, 2, s, d);
      free(d);
    } else {
      int64_t s[1] = {ws[i].N};
      float *d = malloc(4 * (size_t)ws[i].N);
      for (int j = 0; j < ws[i].N; j++) d[j] = (float)(1.0 + 0.1 * gauss());
      rt_st_writer_add(w, name, RT_F32, 1, s, d);
      free(d);
    }
  }
  rt_st_writer_meta(w, "model", "tiny-random");
  RbBuf err = {0};
  CHECK(rt_st_writer_finish(w, path, &err) == RB_OK, "cannot write the input: %s", err.data);
  rb_buf_free(&err);
}

static int get(void *ctx, const char *base, int N, int K, int k, TrExportWeight *out, RbBuf *err) {
  for (int i = 0; i < nws; i++)
    if (ws[i].k && !strcmp(ws[i].name, base)) {
      CHECK(ws[i].N == N && ws[i].K == K && ws[i].k == k, "'%s' asked as %d x %d k %d", base, N, K, k);
      out->W = ws[i].W, out->g = ws[i].g, out->h = ws[i].h, out->bits = NULL;
      return RB_OK;
    }
  rb_buf_printf(err, "no state for '%s'", base);
  return RB_EUSER;
}

/* The plan of tiny.ir for sm_90, with made-up kernel names (nothing is compiled). */
static RtPlan *tiny_plan(const char *ir) {
  RtCompileOptions co = {.path = ir, .stop = RT_STAGE_SELECT};
  RtCompiled c;
  RbBuf err = {0};
  RtPlan *p = NULL;
  if (rt_compile(&co, &c, &err) == RB_OK) {
    RtBuilt *built = rb_calloc((size_t)c.kernels.n, sizeof *built);
    for (int i = 0; i < c.kernels.n; i++) snprintf(built[i].entry, sizeof built[i].entry, "k%d", i);
    rt_plan_make(&p, c.graph, c.text.data, &cg_target_cuda, "sm_90", &c.kernels, built, &err);
    rb_free(built);
  }
  CHECK(p, "tiny.ir has no plan: %s", err.data ? err.data : "");
  rt_compiled_free(&c);
  rb_buf_free(&err);
  return p;
}

/* The test's own sign rule, written from TRAINING.md: R = W; per path,
 * gh = g h in fp32; R >= 0: +1, R -= gh; else -1 (bit set), R += gh. */
static int bit_of(const Weight *w, int p, int n, int c) {
  float r = w->W[n * w->K + c];
  int b = 0;
  for (int q = 0; q <= p; q++) {
    volatile float gh = w->g[q * w->N + n] * w->h[q * w->K + c];
    b = !(r >= 0.0f);
    r = b ? r + gh : r - gh;
  }
  return b;
}

/* Everything the exported file must be, for the weights in ws. */
static void check_export(const char *in, const char *out, uint64_t step) {
  char ir[1024];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  RtSafetensors *st = NULL, *orig = NULL;
  RbBuf err = {0};
  CHECK(rt_st_open(out, &st, &err) == RB_OK && rt_st_open(in, &orig, &err) == RB_OK, "open: %s", err.data);
  if (!st || !orig) return;
  RtPlan *plan = tiny_plan(ir);
  if (plan) {
    CHECK(rt_weights_check(plan, st, out, &err) == RB_OK, "rt_weights_check refused the export: %s", err.data);
    rt_plan_free(plan);
  }
  CHECK(rt_st_meta(st, "trained_by") && !strcmp(rt_st_meta(st, "trained_by"), "rabit train"), "trained_by");
  char num[32];
  snprintf(num, sizeof num, "%llu", (unsigned long long)step);
  CHECK(rt_st_meta(st, "step") && !strcmp(rt_st_meta(st, "step"), num), "step");
  CHECK(rt_st_meta(st, "rabit_ir_model") && !strcmp(rt_st_meta(st, "rabit_ir_model"), "tiny"), "rabit_ir_model");
  CHECK(rt_st_meta(st, "format") && !strcmp(rt_st_meta(st, "format"), "rabit-packed 1"), "format");
  double worst = 0.0;
  for (int i = 0; i < nws; i++) {
    const Weight *w = &ws[i];
    char name[160];
    if (!w->k) { /* copied byte for byte */
      const RtTensor *a = rt_st_find(orig, w->name), *b = rt_st_find(st, w->name);
      CHECK(a && b && a->dtype == b->dtype && a->nbytes == b->nbytes && !memcmp(a->data, b->data, a->nbytes),
            "'%s' is not the input's bytes", w->name);
      continue;
    }
    cg_dense_name(name, sizeof name, w->name);
    CHECK(!rt_st_find(st, name), "'%s' is still dense in the export", name);
    const RtTensor *tb, *tg, *th;
    char nb[128], ng[128], nh[128];
    cg_packed_name(nb, sizeof nb, w->name, CG_PACKED_BITS);
    cg_packed_name(ng, sizeof ng, w->name, CG_PACKED_G);
    cg_packed_name(nh, sizeof nh, w->name, CG_PACKED_H);
    tb = rt_st_find(st, nb), tg = rt_st_find(st, ng), th = rt_st_find(st, nh);
    CHECK(tb && tg && th, "'%s' has no packed tensors", w->name);
    if (!tb || !tg || !th) continue;
    int words = (int)cg_packed_words(w->K), bad_bits = 0;
    double e2 = 0.0, r2 = 0.0;
    for (int p = 0; p < w->k; p++)
      for (int n = 0; n < w->N; n++)
        for (int c = 0; c < w->K; c++) {
          uint32_t word;
          memcpy(&word, (const char *)tb->data + 4 * (((size_t)p * w->N + n) * words + c / 32), 4);
          int b = (int)(word >> (c % 32) & 1u);
          bad_bits += b != bit_of(w, p, n, c);
        }
    /* Served W_hat (f16 scales, the file's bits) against the fp32 one. */
    for (int n = 0; n < w->N; n++)
      for (int c = 0; c < w->K; c++) {
        double served = 0.0, fp = 0.0;
        for (int p = 0; p < w->k; p++) {
          uint32_t word;
          uint16_t g16, h16;
          memcpy(&word, (const char *)tb->data + 4 * (((size_t)p * w->N + n) * words + c / 32), 4);
          memcpy(&g16, (const char *)tg->data + 2 * ((size_t)p * w->N + n), 2);
          memcpy(&h16, (const char *)th->data + 2 * ((size_t)p * w->K + c), 2);
          double s = word >> (c % 32) & 1u ? -1.0 : 1.0;
          served += s * rb_f32_from_f16(g16) * rb_f32_from_f16(h16);
          fp += s * (double)w->g[p * w->N + n] * w->h[p * w->K + c];
        }
        e2 += (served - fp) * (served - fp), r2 += fp * fp;
      }
    CHECK(bad_bits == 0, "'%s': %d bits differ from the re-derivation", w->name, bad_bits);
    double rel = sqrt(e2 / r2);
    worst = fmax(worst, rel);
    CHECK(rel < 2e-3, "'%s': served W_hat is %.3g away from the fp32 one", w->name, rel);
  }
  printf("worst served-vs-fp32 W_hat relative error: %.3g\n", worst);
  rt_st_close(st);
  rt_st_close(orig);
  rb_buf_free(&err);
}

static int export_now(const char *in, const char *out, RbBuf *err) {
  char ir[1024];
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  TrExportOptions o = {.ir = ir, .weights = in, .out = out, .step = 123, .tokens = 4567, .get = get};
  return tr_export(&o, err);
}

static void run_scaled(double gscale, double hscale) {
  char in[128], out[128];
  snprintf(in, sizeof in, "%s/in.safetensors", dir);
  snprintf(out, sizeof out, "%s/out.safetensors", dir);
  tiny_weights(gscale, hscale);
  write_original(in);
  RbBuf err = {0};
  CHECK(export_now(in, out, &err) == RB_OK, "export failed: %s", err.data ? err.data : "");
  if (!err.len) check_export(in, out, 123);
  rb_buf_free(&err);
  free_weights();
}

static void test_tiny(void) { run_scaled(1.0, 1.0); }

/* g ~ 1e-6 and h ~ 1e5: h alone overflows f16, g alone is near its
 * subnormals; rebalanced, both are ~0.3. */
static void test_rebalance(void) { run_scaled(1e-6, 1e5 / 0.04); }

static void expect_refused(const char *what, const char *want) {
  char in[128], out[128];
  snprintf(in, sizeof in, "%s/in.safetensors", dir);
  snprintf(out, sizeof out, "%s/out.safetensors", dir);
  write_original(in);
  unlink(out);
  RbBuf err = {0};
  int rc = export_now(in, out, &err);
  CHECK(rc == RB_EUSER, "%s: export returned %d", what, rc);
  CHECK(err.data && strstr(err.data, want), "%s: '%s' lacks '%s'", what, err.data ? err.data : "", want);
  printf("%s: %s\n", what, err.data ? err.data : "");
  struct stat sb;
  CHECK(stat(out, &sb) != 0, "%s: a file was written", what);
  rb_buf_free(&err);
}

static void test_refused(void) {
  /* g = 1e-30, h = 1 on one weight: c = 1e15, both become 1e-15: below f16. */
  tiny_weights(1.0, 1.0);
  Weight *w = &ws[3]; /* model.layers.0.self_attn.k_proj */
  for (int i = 0; i < w->k * w->N; i++) w->g[i] = 1e-30f;
  for (int i = 0; i < w->k * w->K; i++) w->h[i] = 1.0f;
  expect_refused("g = 1e-30", "'model.layers.0.self_attn.k_proj.g' path 1 row 0 is 1e-30");
  free_weights();
  /* Scales spanning more than f16 can hold even rebalanced. */
  tiny_weights(1.0, 1.0);
  w = &ws[2]; /* q_proj */
  w->g[5] = 1e9f, w->h[8] = 1e5f; /* max|g| 1e9, max|h| 1e5: c = 1e-2, g c = 1e7 > 65504 */
  expect_refused("g = 1e9", "exceeds f16's 65504");
  free_weights();
  tiny_weights(1.0, 1.0);
  ws[4].h[3] = NAN; /* v_proj */
  expect_refused("NaN h", "'model.layers.0.self_attn.v_proj.h' path 1 column 3 is nan");
  free_weights();
}

/* A checkpoint holding the trained state, exported with tr_export_from_checkpoint. */
static void test_from_checkpoint(void) {
  char in[128], out[128], ck[128], ir[1024];
  snprintf(in, sizeof in, "%s/in.safetensors", dir);
  snprintf(out, sizeof out, "%s/out.safetensors", dir);
  snprintf(ck, sizeof ck, "%s/run.ckpt", dir);
  snprintf(ir, sizeof ir, "%s/tiny.ir", samples);
  tiny_weights(1.0, 1.0);
  write_original(in);
  TrCkptTensor t[64];
  char names[64][128];
  int n = 0;
  for (int i = 0; i < nws; i++) {
    Weight *w = &ws[i];
    if (!w->k) continue;
    TrCkptPart parts[3] = {TR_CKPT_W, TR_CKPT_G, TR_CKPT_H};
    const float *data[3] = {w->W, w->g, w->h};
    int64_t s0[3] = {w->N, w->k, w->k}, s1[3] = {w->K, w->N, w->K};
    for (int p = 0; p < 3; p++, n++) {
      tr_ckpt_name(names[n], sizeof names[n], w->name, parts[p]);
      t[n] = (TrCkptTensor){names[n], RT_F32, 2, {s0[p], s1[p]}, data[p]};
    }
  }
  TrCkpt c = {.step = 77, .tokens_seen = 999, .opt = {.ir = ir, .weights = in}, .model = "tiny", .tensors = t,
              .ntensors = n};
  RbBuf err = {0};
  CHECK(tr_ckpt_write(ck, &c, &err) == RB_OK, "ckpt: %s", err.data);
  CHECK(tr_export_from_checkpoint(NULL, NULL, ck, NULL, out, &err) == RB_OK, "export: %s", err.data ? err.data : "");
  if (!err.len) check_export(in, out, 77);
  /* The wrong model is refused. */
  c.model = "other";
  CHECK(tr_ckpt_write(ck, &c, &err) == RB_OK, "ckpt: %s", err.data);
  CHECK(tr_export_from_checkpoint(ir, NULL, ck, in, out, &err) == RB_EUSER && err.data &&
            strstr(err.data, "trains model 'other'"),
        "wrong model: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  free_weights();
}

/* tr_derive_bits is tr_ptq_linear's rule: the same bits for its scales. */
static void test_same_rule(void) {
  int N = 48, K = 100;
  for (int k = 1; k <= 4; k++) {
    float *W = malloc(sizeof(float) * N * K), *g = malloc(sizeof(float) * k * N), *h = malloc(sizeof(float) * k * K);
    size_t nb = (size_t)k * N * cg_packed_words(K);
    uint32_t *b1 = malloc(4 * nb), *b2 = malloc(4 * nb);
    for (int i = 0; i < N * K; i++) W[i] = (float)gauss();
    W[5] = 0.0f; /* sign(0) = +1 */
    RbBuf err = {0};
    TrPtqOptions opt = {.rounds = 2, .f16_scales = 1};
    CHECK(tr_ptq_linear(W, N, K, k, &opt, b1, g, h, NULL, &err) == RB_OK, "ptq: %s", err.data);
    memset(b2, 0xff, 4 * nb);
    CHECK(tr_derive_bits(W, N, K, k, g, h, b2, NULL, &err) == RB_OK, "derive: %s", err.data);
    CHECK(!memcmp(b1, b2, 4 * nb), "k = %d: tr_derive_bits and tr_ptq_linear disagree", k);
    CHECK(!(b2[0] & 1u << 5), "sign(0) is not +1");
    rb_buf_free(&err);
    free(W), free(g), free(h), free(b1), free(b2);
  }
}

int main(int argc, char **argv) {
  const char *c = argc > 1 ? argv[1] : "";
  samples = argc > 2 ? argv[2] : "samples";
  test_rng = 0xC0FFEEull + (uint64_t)strlen(c);
  snprintf(dir, sizeof dir, "/tmp/rabit_export_%s_%d", c, (int)getpid());
  mkdir(dir, 0700);
  if (!strcmp(c, "tiny")) test_tiny();
  else if (!strcmp(c, "rebalance")) test_rebalance();
  else if (!strcmp(c, "refused")) test_refused();
  else if (!strcmp(c, "from_checkpoint")) test_from_checkpoint();
  else if (!strcmp(c, "same_rule")) test_same_rule();
  else CHECK(0, "unknown case '%s'", c);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0, "cleanup");
  return CHECK_SUMMARY();
}
