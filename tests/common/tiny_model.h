/* tiny_model.h: the model tests of both targets (tests/gpu/test_model.c and
 * tests/host/test_model.c) share one random model of samples/tiny.ir's shape:
 * its float64 reference (tests/ref/ref.h) in two forms of one function, the
 * 2-bit linears and every linear as its dense W_hat, and the safetensors file
 * of each form, with Hugging Face names, as the runtime loads them.
 * tiny.ir: q, k, o, gate, up have 2 paths; v 3; down 1; tied embeddings. */
#ifndef RABIT_TEST_TINY_MODEL_H
#define RABIT_TEST_TINY_MODEL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/formats/formats.h"
#include "runtime/runtime.h"
#include "tests/common/rng.h"
#include "tests/ref/ref.h"

enum { V = 256, D = 64, F = 160, L = 2, H = 4, HKV = 2, HD = 16 };

static inline float tiny_fp16(float v) { return rb_f32_from_f16(rb_f16_from_f32(v)); }

/* A random linear, packed and as its dense W_hat (what the fp16 file holds). */
typedef struct {
  RefLinear r;
  float *what;
} TinyLinear;

typedef struct {
  float *embed, *fnorm, *norms[L][2];
  TinyLinear lin[L][7]; /* q, k, v, o, gate, up, down */
  RefLayer layers[L], dense_layers[L];
  RefModel model; /* the 2-bit linears */
  RefModel dense; /* the same function with every linear dense: the fp16 file's */
} TinyModel;

static inline void tiny_linear(TinyLinear *l, int N, int K, int paths) {
  int8_t *signs = malloc((size_t)paths * N * K);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) signs[i] = (rnd() & 1) ? 1 : -1;
  uint32_t *bits = calloc((size_t)paths * N * cg_packed_words(K), 4);
  ref_pack_signs(bits, signs, paths, N, K);
  float *g = malloc((size_t)paths * N * 4), *h = malloc((size_t)paths * K * 4);
  for (int i = 0; i < paths * N; i++) g[i] = tiny_fp16((float)(0.5 + unif()) / sqrtf((float)K * paths));
  for (int i = 0; i < paths * K; i++) h[i] = tiny_fp16((float)(0.5 + unif()));
  l->what = calloc((size_t)N * K, 4);
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++)
        l->what[(size_t)n * K + k] += g[p * N + n] * signs[((size_t)p * N + n) * K + k] * h[p * K + k];
  for (size_t i = 0; i < (size_t)N * K; i++) l->what[i] = tiny_fp16(l->what[i]);
  free(signs);
  l->r = (RefLinear){N, K, paths, bits, g, h, NULL};
}

/* Fresh random weights from test_rng. t must stay where it is: its models point into it. */
static inline void tiny_make(TinyModel *t) {
  static const int shape[7][3] = {{D, D, 2}, {HKV * HD, D, 2}, {HKV * HD, D, 3}, {D, D, 2},
                                  {F, D, 2}, {F, D, 2},        {D, F, 1}};
  t->embed = malloc((size_t)V * D * 4), t->fnorm = malloc(D * 4);
  for (int i = 0; i < V * D; i++) t->embed[i] = tiny_fp16((float)(2 * unif() - 1));
  for (int i = 0; i < D; i++) t->fnorm[i] = tiny_fp16((float)(0.5 + unif()));
  for (int l = 0; l < L; l++) {
    TinyLinear *li = t->lin[l];
    for (int j = 0; j < 7; j++) tiny_linear(&li[j], shape[j][0], shape[j][1], shape[j][2]);
    for (int j = 0; j < 2; j++) {
      t->norms[l][j] = malloc(D * 4);
      for (int i = 0; i < D; i++) t->norms[l][j][i] = tiny_fp16((float)(0.5 + unif()));
    }
    t->layers[l] = (RefLayer){t->norms[l][0], t->norms[l][1], li[0].r, li[1].r, li[2].r, li[3].r,
                              li[4].r, li[5].r, li[6].r};
    t->dense_layers[l] = t->layers[l];
    RefLayer *dl = &t->dense_layers[l];
    RefLinear *rs[7] = {&dl->q, &dl->k, &dl->v, &dl->o, &dl->gate, &dl->up, &dl->down};
    for (int j = 0; j < 7; j++) rs[j]->paths = 0, rs[j]->dense = li[j].what;
  }
  t->model = (RefModel){V, D, F, L, H, HKV, HD, 1e-5f, 10000.0f, t->embed, t->fnorm, t->embed, t->layers};
  t->dense = t->model;
  t->dense.layer = t->dense_layers;
}

static inline void tiny_add_f16(RtStWriter *w, const char *name, const float *x, int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; i++) n *= (size_t)shape[i];
  uint16_t *h = malloc(n * 2);
  for (size_t i = 0; i < n; i++) h[i] = rb_f16_from_f32(x[i]);
  rt_st_writer_add(w, name, RT_F16, rank, shape, h);
  free(h);
}

static inline void tiny_add_linear(RtStWriter *w, const char *base, const TinyLinear *l, int dense) {
  char name[256];
  const RefLinear *r = &l->r;
  if (dense) {
    int64_t s[2] = {r->N, r->K};
    cg_dense_name(name, sizeof name, base);
    tiny_add_f16(w, name, l->what, 2, s);
    return;
  }
  int64_t sb[3], sg[3], sh[3];
  cg_packed_shape(CG_PACKED_BITS, r->paths, r->N, r->K, sb);
  cg_packed_shape(CG_PACKED_G, r->paths, r->N, r->K, sg);
  cg_packed_shape(CG_PACKED_H, r->paths, r->N, r->K, sh);
  cg_packed_name(name, sizeof name, base, CG_PACKED_BITS);
  rt_st_writer_add(w, name, RT_I32, 3, sb, r->bits);
  cg_packed_name(name, sizeof name, base, CG_PACKED_G);
  tiny_add_f16(w, name, r->g, 2, sg);
  cg_packed_name(name, sizeof name, base, CG_PACKED_H);
  tiny_add_f16(w, name, r->h, 2, sh);
}

/* The 2-bit (dense = 0) or the fp16 (dense = 1) form as a safetensors file. */
static inline int tiny_write(const TinyModel *t, int dense, const char *file, RbBuf *err) {
  static const char *const names[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
  RtStWriter *w = NULL;
  if (rt_st_writer_new(&w)) return rb_buf_printf(err, "out of memory"), RB_EINTERNAL;
  int64_t se[2] = {V, D}, sn[1] = {D};
  tiny_add_f16(w, "model.embed_tokens.weight", t->embed, 2, se);
  rt_st_writer_add(w, "model.norm.weight", RT_F32, 1, sn, t->fnorm);
  for (int l = 0; l < L; l++) {
    char base[128];
    snprintf(base, sizeof base, "model.layers.%d.input_layernorm.weight", l);
    rt_st_writer_add(w, base, RT_F32, 1, sn, t->norms[l][0]);
    snprintf(base, sizeof base, "model.layers.%d.post_attention_layernorm.weight", l);
    rt_st_writer_add(w, base, RT_F32, 1, sn, t->norms[l][1]);
    for (int j = 0; j < 7; j++) {
      snprintf(base, sizeof base, "model.layers.%d.%s", l, names[j]);
      tiny_add_linear(w, base, &t->lin[l][j], dense);
    }
  }
  return rt_st_writer_finish(w, file, err);
}

/* Rows row0 .. row0 + n - 1 of the model's logits as doubles; NaN (a failed check)
 * when the runtime cannot give them. */
static inline void tiny_logits(RtModel *m, int row0, int n, double *out) {
  float *f = malloc((size_t)n * V * 4);
  if (rt_model_logits(m, row0, n, f)) memset(f, 0xff, (size_t)n * V * 4);
  for (size_t i = 0; i < (size_t)n * V; i++) out[i] = f[i];
  free(f);
}

static inline void tiny_free(TinyModel *t) {
  for (int l = 0; l < L; l++) {
    for (int j = 0; j < 7; j++) {
      const RefLinear *r = &t->lin[l][j].r;
      free((void *)r->bits), free((void *)r->g), free((void *)r->h), free(t->lin[l][j].what);
    }
    free(t->norms[l][0]), free(t->norms[l][1]);
  }
  free(t->embed), free(t->fnorm);
}

#endif
