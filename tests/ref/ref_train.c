/* ref_train.c: the whole RaBiT QAT step on the CPU, written by hand from trainer/TRAINING.md:
 * derivation, teacher and student forwards, KL + hidden MSE, backward, clip, Muon, AdamW.
 * Everything but the derivation's fp32 rule runs in double; test code, so out of memory aborts. */
#include "tests/ref/ref_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/base.h"

/* ---- small helpers ---- */

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p) abort();
  return p;
}

static size_t words_of(int K) { return (size_t)K / 32 + (K % 32 != 0); }

/* Round-to-nearest-even fp32 -> bf16 -> fp32 (ir/base.c's rule, the kernels'). */
static float bf16_round(float x) { return rb_f32_from_bf16(rb_bf16_from_f32(x)); }

/* +1 or -1 of path p, row n, column c of canonical bits (bit set: -1). */
static int sign_at(const uint32_t *bits, int p, int n, int c, int N, int K) {
  size_t w = words_of(K);
  return (bits[((size_t)p * N + n) * w + (size_t)c / 32] >> (c % 32)) & 1u ? -1 : 1;
}

/* splitmix64 and Box-Muller: the reference's own random numbers, seeded by the caller. */
static uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double gauss(uint64_t *s) {
  double u1 = ((double)(mix(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  double u2 = (double)(mix(s) >> 11) * (1.0 / 9007199254740992.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- dims, model, grads ---- */

RefTrainDims ref_train_dims_tiny(void) {
  RefTrainDims d = {256, 64, 160, 2, 4, 2, 16, 10000.0, 1e-5, {2, 2, 3, 2, 2, 2, 1}};
  return d;
}

void ref_train_linear_shape(RefTrainDims d, int which, int *N, int *K) {
  int QW = d.H * d.HD, KW = d.HKV * d.HD;
  switch (which) {
  case REF_Q: *N = QW, *K = d.D; break;
  case REF_K: case REF_V: *N = KW, *K = d.D; break;
  case REF_O: *N = d.D, *K = QW; break;
  case REF_GATE: case REF_UP: *N = d.F, *K = d.D; break;
  default: *N = d.D, *K = d.F; break; /* REF_DOWN */
  }
}

static int dims_ok(RefTrainDims d) {
  if (d.V <= 0 || d.D <= 0 || d.F <= 0 || d.L <= 0 || d.L > REF_MAX_L || d.H <= 0 || d.HKV <= 0 ||
      d.HD <= 0 || d.HD % 2 || d.H % d.HKV)
    return 0;
  for (int i = 0; i < REF_NLIN; i++)
    if (d.paths[i] < 1 || d.paths[i] > 4) return 0;
  return 1;
}

void ref_train_model_free(RefTrainModel *m) {
  free(m->embed), free(m->final_norm);
  for (int l = 0; l < REF_MAX_L; l++) {
    free(m->norm1[l]), free(m->norm2[l]);
    for (int i = 0; i < REF_NLIN; i++) {
      RefTrainLinear *q = &m->lin[l][i];
      free(q->W), free(q->g), free(q->h), free(q->dense), free(q->bits);
    }
  }
  memset(m, 0, sizeof *m);
}

/* Allocates every tensor of m for d, zeroed. */
static void model_alloc(RefTrainModel *m, RefTrainDims d) {
  memset(m, 0, sizeof *m);
  m->d = d;
  m->embed = xcalloc((size_t)d.V * d.D, sizeof(float));
  m->final_norm = xcalloc((size_t)d.D, sizeof(float));
  for (int l = 0; l < d.L; l++) {
    m->norm1[l] = xcalloc((size_t)d.D, sizeof(float));
    m->norm2[l] = xcalloc((size_t)d.D, sizeof(float));
    for (int i = 0; i < REF_NLIN; i++) {
      RefTrainLinear *q = &m->lin[l][i];
      ref_train_linear_shape(d, i, &q->N, &q->K);
      q->k = d.paths[i];
      q->W = xcalloc((size_t)q->N * q->K, sizeof(float));
      q->dense = xcalloc((size_t)q->N * q->K, sizeof(float));
      q->g = xcalloc((size_t)q->k * q->N, sizeof(float));
      q->h = xcalloc((size_t)q->k * q->K, sizeof(float));
      q->bits = xcalloc((size_t)q->k * q->N * words_of(q->K), sizeof(uint32_t));
    }
  }
}

/* The peer's greedy init: per path, A = |R|, u = row means, v = column means,
 * s = sum(u v^T) / sum(A), g = u / sqrt(s), h = v / sqrt(s), R -= g sign(R) h. */
static void greedy_scales(RefTrainLinear *q) {
  int N = q->N, K = q->K;
  double *R = xcalloc((size_t)N * K, sizeof *R), *u = xcalloc((size_t)N, sizeof *u), *v = xcalloc((size_t)K, sizeof *v);
  for (size_t i = 0; i < (size_t)N * K; i++) R[i] = q->W[i];
  for (int p = 0; p < q->k; p++) {
    double total = 0, su = 0, sv = 0;
    memset(v, 0, (size_t)K * sizeof *v);
    for (int n = 0; n < N; n++) {
      double rs = 0;
      for (int c = 0; c < K; c++) rs += fabs(R[(size_t)n * K + c]), v[c] += fabs(R[(size_t)n * K + c]);
      u[n] = rs / K, total += rs, su += u[n];
    }
    for (int c = 0; c < K; c++) v[c] /= N, sv += v[c];
    double s = sqrt(su * sv / (total + 1e-12));
    for (int n = 0; n < N; n++) q->g[(size_t)p * N + n] = (float)(u[n] / s);
    for (int c = 0; c < K; c++) q->h[(size_t)p * K + c] = (float)(v[c] / s);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < K; c++) {
        double *r = &R[(size_t)n * K + c];
        *r -= (*r >= 0 ? 1.0 : -1.0) * q->g[(size_t)p * N + n] * q->h[(size_t)p * K + c];
      }
  }
  free(R), free(u), free(v);
}

int ref_train_model_random_ex(RefTrainModel *m, RefTrainDims d, uint64_t seed, double noise) {
  memset(m, 0, sizeof *m);
  if (!dims_ok(d)) return -1;
  model_alloc(m, d);
  uint64_t s = seed;
  for (size_t i = 0; i < (size_t)d.V * d.D; i++) m->embed[i] = (float)(0.1 * gauss(&s));
  for (int j = 0; j < d.D; j++) m->final_norm[j] = (float)(1.0 + 0.1 * gauss(&s));
  for (int l = 0; l < d.L; l++) {
    for (int j = 0; j < d.D; j++) m->norm1[l][j] = (float)(1.0 + 0.1 * gauss(&s));
    for (int j = 0; j < d.D; j++) m->norm2[l][j] = (float)(1.0 + 0.1 * gauss(&s));
    for (int i = 0; i < REF_NLIN; i++) {
      RefTrainLinear *q = &m->lin[l][i];
      double sd = 1.0 / sqrt((double)q->K);
      for (size_t e = 0; e < (size_t)q->N * q->K; e++) {
        q->dense[e] = (float)(sd * gauss(&s));
        q->W[e] = noise > 0 ? (float)(q->dense[e] + noise * sd * gauss(&s)) : q->dense[e];
      }
      greedy_scales(q);
      ref_derive(q, NULL);
    }
  }
  return 0;
}

int ref_train_model_random(RefTrainModel *m, RefTrainDims d, uint64_t seed) {
  return ref_train_model_random_ex(m, d, seed, 0.0);
}

int ref_train_model_copy(RefTrainModel *dst, const RefTrainModel *src) {
  RefTrainDims d = src->d;
  if (!dims_ok(d)) return -1;
  model_alloc(dst, d);
  memcpy(dst->embed, src->embed, (size_t)d.V * d.D * sizeof(float));
  memcpy(dst->final_norm, src->final_norm, (size_t)d.D * sizeof(float));
  for (int l = 0; l < d.L; l++) {
    memcpy(dst->norm1[l], src->norm1[l], (size_t)d.D * sizeof(float));
    memcpy(dst->norm2[l], src->norm2[l], (size_t)d.D * sizeof(float));
    for (int i = 0; i < REF_NLIN; i++) {
      const RefTrainLinear *a = &src->lin[l][i];
      RefTrainLinear *b = &dst->lin[l][i];
      memcpy(b->W, a->W, (size_t)a->N * a->K * sizeof(float));
      memcpy(b->dense, a->dense, (size_t)a->N * a->K * sizeof(float));
      memcpy(b->g, a->g, (size_t)a->k * a->N * sizeof(float));
      memcpy(b->h, a->h, (size_t)a->k * a->K * sizeof(float));
      memcpy(b->bits, a->bits, (size_t)a->k * a->N * words_of(a->K) * sizeof(uint32_t));
    }
  }
  return 0;
}

int ref_train_grads_alloc(RefTrainGrads *g, RefTrainDims d) {
  memset(g, 0, sizeof *g);
  if (!dims_ok(d)) return -1;
  g->d = d;
  g->dembed = xcalloc((size_t)d.V * d.D, sizeof(double));
  g->dfinal_norm = xcalloc((size_t)d.D, sizeof(double));
  for (int l = 0; l < d.L; l++) {
    g->dnorm1[l] = xcalloc((size_t)d.D, sizeof(double));
    g->dnorm2[l] = xcalloc((size_t)d.D, sizeof(double));
    for (int i = 0; i < REF_NLIN; i++) {
      int N, K;
      ref_train_linear_shape(d, i, &N, &K);
      g->dW[l][i] = xcalloc((size_t)N * K, sizeof(double));
      g->dg[l][i] = xcalloc((size_t)d.paths[i] * N, sizeof(double));
      g->dh[l][i] = xcalloc((size_t)d.paths[i] * K, sizeof(double));
    }
  }
  return 0;
}

void ref_train_grads_free(RefTrainGrads *g) {
  free(g->dembed), free(g->dfinal_norm);
  for (int l = 0; l < REF_MAX_L; l++) {
    free(g->dnorm1[l]), free(g->dnorm2[l]);
    for (int i = 0; i < REF_NLIN; i++) free(g->dW[l][i]), free(g->dg[l][i]), free(g->dh[l][i]);
  }
  memset(g, 0, sizeof *g);
}

/* ---- the derivation ---- */

/* Each product and sum is its own fp32 operation: this file is built with -ffp-contract=off
 * (tests/ref/CMakeLists.txt), so no multiply-add is fused, as the contract requires. */
void ref_derive(RefTrainLinear *l, float *what) {
  int N = l->N, K = l->K;
  size_t w = words_of(K);
  memset(l->bits, 0, (size_t)l->k * N * w * sizeof *l->bits);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < K; c++) {
      float R = l->W[(size_t)n * K + c], acc = 0.0f;
      for (int p = 0; p < l->k; p++) {
        float gh = l->g[(size_t)p * N + n] * l->h[(size_t)p * K + c];
        if (R >= 0.0f) {
          R = R - gh;
          acc = acc + gh;
        } else {
          R = R + gh;
          acc = acc - gh;
          l->bits[((size_t)p * N + n) * w + (size_t)c / 32] |= 1u << (c % 32);
        }
      }
      if (what) what[(size_t)n * K + c] = acc;
    }
}

/* W_hat (N, K) in double of one student linear: signs from bits (the derived ones unless
 * frozen), values bf16(acc) or the exact double sum. */
static double *student_what(const RefTrainLinear *l, const RefTrainOptions *o, uint32_t *bits) {
  int N = l->N, K = l->K;
  size_t nk = (size_t)N * K;
  double *what = xcalloc(nk, sizeof *what);
  float *acc = xcalloc(nk, sizeof *acc);
  RefTrainLinear t = *l;
  t.bits = bits;
  if (o->frozen_signs) {
    memcpy(bits, l->bits, (size_t)l->k * N * words_of(K) * sizeof *bits);
    /* acc of the frozen signs, in the derivation's order, for bf16_what. */
    for (int n = 0; n < N; n++)
      for (int c = 0; c < K; c++) {
        float a = 0.0f;
        for (int p = 0; p < l->k; p++) {
          float gh = l->g[(size_t)p * N + n] * l->h[(size_t)p * K + c];
          a = sign_at(bits, p, n, c, N, K) > 0 ? a + gh : a - gh;
        }
        acc[(size_t)n * K + c] = a;
      }
  } else {
    ref_derive(&t, acc);
  }
  for (int n = 0; n < N; n++)
    for (int c = 0; c < K; c++) {
      size_t i = (size_t)n * K + c;
      if (o->bf16_what) {
        what[i] = bf16_round(acc[i]);
      } else {
        double s = 0;
        for (int p = 0; p < l->k; p++)
          s += sign_at(bits, p, n, c, N, K) * (double)l->g[(size_t)p * N + n] * (double)l->h[(size_t)p * K + c];
        what[i] = s;
      }
    }
  free(acc);
  return what;
}

/* ---- the forward, saving what the backward needs ---- */

typedef struct {
  const float *embed, *final_norm, *norm1[REF_MAX_L], *norm2[REF_MAX_L];
  double *W[REF_MAX_L][REF_NLIN]; /* (N, K) the weight each linear applies */
} Net;

typedef struct {
  double *x_in, *r1, *h1;    /* (T, D), (T), (T, D) */
  double *q, *k, *v;         /* (T, H E), (T, G E), (T, G E); q and k after RoPE */
  double *P;                 /* (T, H, S) softmax of query row t, head i over keys j of its sequence */
  double *att;               /* (T, H E) */
  double *x_mid, *r2, *h2;   /* (T, D), (T), (T, D) */
  double *gt, *ut, *sw;      /* (T, F) gate, up, swiglu */
  double *x_out;             /* (T, D) the residual stream after the block */
} LayerActs;

typedef struct {
  int B, S, T;
  LayerActs l[REF_MAX_L];
  double *rf, *hf; /* (T), (T, D) final norm */
  double *logits;  /* (T, V) */
} Acts;

static void acts_alloc(Acts *a, RefTrainDims d, int B, int S) {
  int T = B * S, QW = d.H * d.HD, KW = d.HKV * d.HD;
  memset(a, 0, sizeof *a);
  a->B = B, a->S = S, a->T = T;
  for (int l = 0; l < d.L; l++) {
    LayerActs *y = &a->l[l];
    y->x_in = xcalloc((size_t)T * d.D, 8), y->r1 = xcalloc((size_t)T, 8), y->h1 = xcalloc((size_t)T * d.D, 8);
    y->q = xcalloc((size_t)T * QW, 8), y->k = xcalloc((size_t)T * KW, 8), y->v = xcalloc((size_t)T * KW, 8);
    y->P = xcalloc((size_t)T * d.H * S, 8), y->att = xcalloc((size_t)T * QW, 8);
    y->x_mid = xcalloc((size_t)T * d.D, 8), y->r2 = xcalloc((size_t)T, 8), y->h2 = xcalloc((size_t)T * d.D, 8);
    y->gt = xcalloc((size_t)T * d.F, 8), y->ut = xcalloc((size_t)T * d.F, 8), y->sw = xcalloc((size_t)T * d.F, 8);
    y->x_out = xcalloc((size_t)T * d.D, 8);
  }
  a->rf = xcalloc((size_t)T, 8), a->hf = xcalloc((size_t)T * d.D, 8), a->logits = xcalloc((size_t)T * d.V, 8);
}

static void acts_free(Acts *a) {
  for (int l = 0; l < REF_MAX_L; l++) {
    LayerActs *y = &a->l[l];
    free(y->x_in), free(y->r1), free(y->h1), free(y->q), free(y->k), free(y->v), free(y->P), free(y->att);
    free(y->x_mid), free(y->r2), free(y->h2), free(y->gt), free(y->ut), free(y->sw), free(y->x_out);
  }
  free(a->rf), free(a->hf), free(a->logits);
}

/* y (T, N) = x (T, K) W^T. */
static void lin_fwd(const double *x, const double *W, int T, int N, int K, double *y) {
  for (int t = 0; t < T; t++)
    for (int n = 0; n < N; n++) {
      double s = 0;
      for (int c = 0; c < K; c++) s += x[(size_t)t * K + c] * W[(size_t)n * K + c];
      y[(size_t)t * N + n] = s;
    }
}

/* dx (T, K) += dy W (when dx); dW (N, K) += dy^T x. */
static void lin_bwd(const double *x, const double *W, const double *dy, int T, int N, int K, double *dx, double *dW) {
  for (int t = 0; t < T; t++)
    for (int n = 0; n < N; n++) {
      double e = dy[(size_t)t * N + n];
      for (int c = 0; c < K; c++) {
        if (dx) dx[(size_t)t * K + c] += e * W[(size_t)n * K + c];
        dW[(size_t)n * K + c] += e * x[(size_t)t * K + c];
      }
    }
}

/* y = x r w with r_t = 1 / sqrt(mean_d x^2 + eps); r (T) saved. */
static void rms_fwd(const double *x, const float *w, int T, int D, double eps, double *r, double *y) {
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int d = 0; d < D; d++) ss += x[(size_t)t * D + d] * x[(size_t)t * D + d];
    r[t] = 1.0 / sqrt(ss / D + eps);
    for (int d = 0; d < D; d++) y[(size_t)t * D + d] = x[(size_t)t * D + d] * r[t] * w[d];
  }
}

/* dx (T, D) += r u - x r^3 (1/D) sum_d x_d u_d with u = w dy; dw (D) += sum_t dy x r. */
static void rms_bwd(const double *x, const double *r, const float *w, const double *dy, int T, int D, double *dx,
                    double *dw) {
  for (int t = 0; t < T; t++) {
    const double *xr = x + (size_t)t * D, *dr = dy + (size_t)t * D;
    double xu = 0;
    for (int d = 0; d < D; d++) xu += xr[d] * w[d] * dr[d];
    for (int d = 0; d < D; d++) {
      dx[(size_t)t * D + d] += r[t] * w[d] * dr[d] - xr[d] * r[t] * r[t] * r[t] * xu / D;
      dw[d] += dr[d] * xr[d] * r[t];
    }
  }
}

/* RoPE of one head vector in place at position p, angle sign +1 (forward) or -1 (the backward).
 * f_j = powf(theta, -2j/E) in fp32 as the contract says; the angle and its cos/sin in double. */
static void rope(double *v, int E, int p, double theta, int dir) {
  int half = E / 2;
  for (int j = 0; j < half; j++) {
    double f = (double)powf((float)theta, -2.0f * j / E);
    double a = dir * (double)p * f, c = cos(a), s = sin(a);
    double x1 = v[j], x2 = v[j + half];
    v[j] = x1 * c - x2 * s;
    v[j + half] = x2 * c + x1 * s;
  }
}

/* The forward of net over tokens (B, S) into a. */
static void forward(const Net *net, RefTrainDims d, const int32_t *tok, Acts *a) {
  int T = a->T, S = a->S, D = d.D, F = d.F, H = d.H, G = d.HKV, E = d.HD, QW = H * E, KW = G * E;
  double scale = 1.0 / sqrt((double)E);
  double *x = xcalloc((size_t)T * D, 8);
  for (int t = 0; t < T; t++)
    for (int j = 0; j < D; j++)
      x[(size_t)t * D + j] = tok[t] >= 0 && tok[t] < d.V ? (double)net->embed[(size_t)tok[t] * D + j] : 0.0;
  for (int l = 0; l < d.L; l++) {
    LayerActs *y = &a->l[l];
    double *const *W = net->W[l];
    memcpy(y->x_in, x, (size_t)T * D * 8);
    rms_fwd(y->x_in, net->norm1[l], T, D, d.eps, y->r1, y->h1);
    lin_fwd(y->h1, W[REF_Q], T, QW, D, y->q);
    lin_fwd(y->h1, W[REF_K], T, KW, D, y->k);
    lin_fwd(y->h1, W[REF_V], T, KW, D, y->v);
    for (int t = 0; t < T; t++) {
      for (int i = 0; i < H; i++) rope(y->q + (size_t)t * QW + (size_t)i * E, E, t % S, d.theta, 1);
      for (int g = 0; g < G; g++) rope(y->k + (size_t)t * KW + (size_t)g * E, E, t % S, d.theta, 1);
    }
    for (int t = 0; t < T; t++) {
      int base = t - t % S; /* the sequence's first row */
      for (int i = 0; i < H; i++) {
        int g = i / (H / G);
        const double *qv = y->q + (size_t)t * QW + (size_t)i * E;
        double *P = y->P + ((size_t)t * H + i) * S, mx = -INFINITY, sum = 0;
        for (int j = 0; j <= t % S; j++) {
          const double *kv = y->k + (size_t)(base + j) * KW + (size_t)g * E;
          double s = 0;
          for (int e = 0; e < E; e++) s += qv[e] * kv[e];
          P[j] = s * scale;
          if (P[j] > mx) mx = P[j];
        }
        for (int j = 0; j <= t % S; j++) P[j] = exp(P[j] - mx), sum += P[j];
        double *o = y->att + (size_t)t * QW + (size_t)i * E;
        for (int e = 0; e < E; e++) o[e] = 0;
        for (int j = 0; j <= t % S; j++) {
          P[j] /= sum;
          for (int e = 0; e < E; e++) o[e] += P[j] * y->v[(size_t)(base + j) * KW + (size_t)g * E + e];
        }
      }
    }
    double *o = xcalloc((size_t)T * D, 8);
    lin_fwd(y->att, W[REF_O], T, D, QW, o);
    for (size_t i = 0; i < (size_t)T * D; i++) y->x_mid[i] = y->x_in[i] + o[i];
    rms_fwd(y->x_mid, net->norm2[l], T, D, d.eps, y->r2, y->h2);
    lin_fwd(y->h2, W[REF_GATE], T, F, D, y->gt);
    lin_fwd(y->h2, W[REF_UP], T, F, D, y->ut);
    for (size_t i = 0; i < (size_t)T * F; i++) y->sw[i] = y->gt[i] / (1.0 + exp(-y->gt[i])) * y->ut[i];
    lin_fwd(y->sw, W[REF_DOWN], T, D, F, o);
    for (size_t i = 0; i < (size_t)T * D; i++) y->x_out[i] = y->x_mid[i] + o[i];
    memcpy(x, y->x_out, (size_t)T * D * 8);
    free(o);
  }
  rms_fwd(x, net->final_norm, T, D, d.eps, a->rf, a->hf);
  for (int t = 0; t < T; t++)
    for (int v = 0; v < d.V; v++) {
      double s = 0;
      for (int j = 0; j < D; j++) s += a->hf[(size_t)t * D + j] * net->embed[(size_t)v * D + j];
      a->logits[(size_t)t * d.V + v] = s;
    }
  free(x);
}

/* The student's and the teacher's nets. bits[l][i] receive the student's signs. */
static void nets_build(const RefTrainModel *m, const RefTrainOptions *o, Net *st, Net *te, uint32_t *bits[REF_MAX_L][REF_NLIN]) {
  const RefTrainModel *tm = o->teacher ? o->teacher : m;
  RefTrainDims d = m->d;
  memset(st, 0, sizeof *st), memset(te, 0, sizeof *te);
  st->embed = m->embed, st->final_norm = m->final_norm;
  te->embed = tm->embed, te->final_norm = tm->final_norm;
  for (int l = 0; l < d.L; l++) {
    st->norm1[l] = m->norm1[l], st->norm2[l] = m->norm2[l];
    te->norm1[l] = tm->norm1[l], te->norm2[l] = tm->norm2[l];
    for (int i = 0; i < REF_NLIN; i++) {
      const RefTrainLinear *q = &m->lin[l][i];
      size_t nk = (size_t)q->N * q->K;
      bits[l][i] = xcalloc((size_t)q->k * q->N * words_of(q->K), sizeof(uint32_t));
      st->W[l][i] = student_what(q, o, bits[l][i]);
      if (o->nudge_delta != 0 && l == o->nudge_layer && i == o->nudge_lin && o->nudge_index < nk)
        st->W[l][i][o->nudge_index] += o->nudge_delta;
      te->W[l][i] = xcalloc(nk, 8);
      for (size_t e = 0; e < nk; e++) te->W[l][i][e] = tm->lin[l][i].dense[e];
    }
  }
}

static void nets_free(Net *st, Net *te, uint32_t *bits[REF_MAX_L][REF_NLIN], int L) {
  for (int l = 0; l < L; l++)
    for (int i = 0; i < REF_NLIN; i++) free(st->W[l][i]), free(te->W[l][i]), free(bits[l][i]);
}

void ref_train_logits(const RefTrainModel *m, const int32_t *tokens, int B, int S, const RefTrainOptions *o,
                      int teacher, double *logits) {
  Net st, te;
  uint32_t *bits[REF_MAX_L][REF_NLIN];
  Acts a;
  nets_build(m, o, &st, &te, bits);
  acts_alloc(&a, m->d, B, S);
  forward(teacher ? &te : &st, m->d, tokens, &a);
  memcpy(logits, a.logits, (size_t)B * S * m->d.V * 8);
  acts_free(&a);
  nets_free(&st, &te, bits, m->d.L);
}

/* ---- loss and backward ---- */

/* The backward of the student from dlogits (T, V) and the hidden-MSE gradients dxl[l] (T, D)
 * (NULL when gamma is 0) into g: dW is d loss / d W_hat, then dg, dh with the signs constant. */
static void backward(const RefTrainModel *m, const Net *net, const Acts *a, const int32_t *tok, double *dlogits,
                     double *const *dxl, uint32_t *bits[REF_MAX_L][REF_NLIN], RefTrainGrads *g) {
  RefTrainDims d = m->d;
  int T = a->T, S = a->S, D = d.D, F = d.F, H = d.H, G = d.HKV, E = d.HD, QW = H * E, KW = G * E;
  double scale = 1.0 / sqrt((double)E);
  double *dx = xcalloc((size_t)T * D, 8), *dh = xcalloc((size_t)T * D, 8);
  double *dsw = xcalloc((size_t)T * F, 8), *dgt = xcalloc((size_t)T * F, 8), *dut = xcalloc((size_t)T * F, 8);
  double *datt = xcalloc((size_t)T * QW, 8), *dq = xcalloc((size_t)T * QW, 8);
  double *dk = xcalloc((size_t)T * KW, 8), *dv = xcalloc((size_t)T * KW, 8), *dP = xcalloc((size_t)S, 8);
  /* logits = hf E^T (tied lm_head). */
  for (int t = 0; t < T; t++)
    for (int v = 0; v < d.V; v++) {
      double e = dlogits[(size_t)t * d.V + v];
      for (int j = 0; j < D; j++) {
        dh[(size_t)t * D + j] += e * net->embed[(size_t)v * D + j];
        g->dembed[(size_t)v * D + j] += e * a->hf[(size_t)t * D + j];
      }
    }
  rms_bwd(a->l[d.L - 1].x_out, a->rf, net->final_norm, dh, T, D, dx, g->dfinal_norm);
  for (int l = d.L - 1; l >= 0; l--) {
    const LayerActs *y = &a->l[l];
    double *const *W = net->W[l];
    double **dW = g->dW[l];
    if (dxl)
      for (size_t i = 0; i < (size_t)T * D; i++) dx[i] += dxl[l][i];
    /* x_out = x_mid + down(sw); dx flows through the residual unchanged. */
    memset(dsw, 0, (size_t)T * F * 8);
    lin_bwd(y->sw, W[REF_DOWN], dx, T, D, F, dsw, dW[REF_DOWN]);
    for (size_t i = 0; i < (size_t)T * F; i++) {
      double gv = y->gt[i], s = 1.0 / (1.0 + exp(-gv));
      dgt[i] = dsw[i] * y->ut[i] * s * (1.0 + gv * (1.0 - s));
      dut[i] = dsw[i] * gv * s;
    }
    memset(dh, 0, (size_t)T * D * 8);
    lin_bwd(y->h2, W[REF_GATE], dgt, T, F, D, dh, dW[REF_GATE]);
    lin_bwd(y->h2, W[REF_UP], dut, T, F, D, dh, dW[REF_UP]);
    rms_bwd(y->x_mid, y->r2, net->norm2[l], dh, T, D, dx, g->dnorm2[l]); /* dx is now d x_mid */
    /* x_mid = x_in + o(att). */
    memset(datt, 0, (size_t)T * QW * 8);
    lin_bwd(y->att, W[REF_O], dx, T, D, QW, datt, dW[REF_O]);
    memset(dq, 0, (size_t)T * QW * 8), memset(dk, 0, (size_t)T * KW * 8), memset(dv, 0, (size_t)T * KW * 8);
    for (int t = 0; t < T; t++) {
      int base = t - t % S, n = t % S + 1;
      for (int i = 0; i < H; i++) {
        int gi = i / (H / G);
        const double *P = y->P + ((size_t)t * H + i) * S, *dO = datt + (size_t)t * QW + (size_t)i * E;
        const double *qv = y->q + (size_t)t * QW + (size_t)i * E;
        double sum = 0;
        for (int j = 0; j < n; j++) {
          const double *vv = y->v + (size_t)(base + j) * KW + (size_t)gi * E;
          double *dvv = dv + (size_t)(base + j) * KW + (size_t)gi * E;
          double s = 0;
          for (int e = 0; e < E; e++) s += dO[e] * vv[e], dvv[e] += P[j] * dO[e];
          dP[j] = s, sum += P[j] * s;
        }
        for (int j = 0; j < n; j++) {
          double dS = P[j] * (dP[j] - sum) * scale;
          const double *kv = y->k + (size_t)(base + j) * KW + (size_t)gi * E;
          double *dkv = dk + (size_t)(base + j) * KW + (size_t)gi * E, *dqv = dq + (size_t)t * QW + (size_t)i * E;
          for (int e = 0; e < E; e++) dqv[e] += dS * kv[e], dkv[e] += dS * qv[e];
        }
      }
    }
    for (int t = 0; t < T; t++) { /* the inverse rotation */
      for (int i = 0; i < H; i++) rope(dq + (size_t)t * QW + (size_t)i * E, E, t % S, d.theta, -1);
      for (int gi = 0; gi < G; gi++) rope(dk + (size_t)t * KW + (size_t)gi * E, E, t % S, d.theta, -1);
    }
    memset(dh, 0, (size_t)T * D * 8);
    lin_bwd(y->h1, W[REF_Q], dq, T, QW, D, dh, dW[REF_Q]);
    lin_bwd(y->h1, W[REF_K], dk, T, KW, D, dh, dW[REF_K]);
    lin_bwd(y->h1, W[REF_V], dv, T, KW, D, dh, dW[REF_V]);
    rms_bwd(y->x_in, y->r1, net->norm1[l], dh, T, D, dx, g->dnorm1[l]); /* dx is now d x_in */
  }
  for (int t = 0; t < T; t++)
    if (tok[t] >= 0 && tok[t] < d.V)
      for (int j = 0; j < D; j++) g->dembed[(size_t)tok[t] * D + j] += dx[(size_t)t * D + j];
  /* The scales: dg_p[n] = sum_c dW[n,c] B h_p[c], dh_p[c] = sum_n dW[n,c] B g_p[n]. */
  for (int l = 0; l < d.L; l++)
    for (int i = 0; i < REF_NLIN; i++) {
      const RefTrainLinear *q = &m->lin[l][i];
      for (int p = 0; p < q->k; p++)
        for (int n = 0; n < q->N; n++)
          for (int c = 0; c < q->K; c++) {
            double e = g->dW[l][i][(size_t)n * q->K + c] * sign_at(bits[l][i], p, n, c, q->N, q->K);
            g->dg[l][i][(size_t)p * q->N + n] += e * q->h[(size_t)p * q->K + c];
            g->dh[l][i][(size_t)p * q->K + c] += e * q->g[(size_t)p * q->N + n];
          }
    }
  free(dx), free(dh), free(dsw), free(dgt), free(dut), free(datt), free(dq), free(dk), free(dv), free(dP);
}

static void grads_zero(RefTrainGrads *g, RefTrainDims d) {
  memset(g->dembed, 0, (size_t)d.V * d.D * 8);
  memset(g->dfinal_norm, 0, (size_t)d.D * 8);
  for (int l = 0; l < d.L; l++) {
    memset(g->dnorm1[l], 0, (size_t)d.D * 8), memset(g->dnorm2[l], 0, (size_t)d.D * 8);
    for (int i = 0; i < REF_NLIN; i++) {
      int N, K;
      ref_train_linear_shape(d, i, &N, &K);
      memset(g->dW[l][i], 0, (size_t)N * K * 8);
      memset(g->dg[l][i], 0, (size_t)d.paths[i] * N * 8);
      memset(g->dh[l][i], 0, (size_t)d.paths[i] * K * 8);
    }
  }
}

double ref_train_loss(const RefTrainModel *m, const int32_t *tokens, int B, int S, const RefTrainOptions *o,
                      RefTrainGrads *g, double *kl, double *mse) {
  RefTrainDims d = m->d;
  int T = B * S, V = d.V, D = d.D;
  Net st, te;
  uint32_t *bits[REF_MAX_L][REF_NLIN];
  Acts as, at;
  nets_build(m, o, &st, &te, bits);
  acts_alloc(&as, d, B, S), acts_alloc(&at, d, B, S);
  forward(&st, d, tokens, &as);
  forward(&te, d, tokens, &at);
  /* KL(p || q) per token, from log-softmaxes; d kl / d logits_t = (q_t - p_t) / T. */
  double *dlogits = xcalloc((size_t)T * V, 8), klsum = 0;
  for (int t = 0; t < T; t++) {
    const double *zs = as.logits + (size_t)t * V, *zt = at.logits + (size_t)t * V;
    double ms = -INFINITY, mt = -INFINITY, ss = 0, stt = 0;
    for (int v = 0; v < V; v++) ms = fmax(ms, zs[v]), mt = fmax(mt, zt[v]);
    for (int v = 0; v < V; v++) ss += exp(zs[v] - ms), stt += exp(zt[v] - mt);
    double ls = ms + log(ss), lt = mt + log(stt);
    for (int v = 0; v < V; v++) {
      double lq = zs[v] - ls, lp = zt[v] - lt, p = exp(lp);
      klsum += p * (lp - lq);
      dlogits[(size_t)t * V + v] = (exp(lq) - p) / T;
    }
  }
  double klv = klsum / T, loss = klv;
  /* Hidden MSE per layer against the teacher's stream, normalized by its sum of squares. */
  double *dxl[REF_MAX_L] = {0};
  for (int l = 0; l < d.L; l++) {
    const double *xs = as.l[l].x_out, *xt = at.l[l].x_out;
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)T * D; i++) num += (xs[i] - xt[i]) * (xs[i] - xt[i]), den += xt[i] * xt[i];
    if (mse) mse[l] = num / den;
    if (o->gamma > 0) {
      loss += o->gamma / d.L * num / den;
      dxl[l] = xcalloc((size_t)T * D, 8);
      for (size_t i = 0; i < (size_t)T * D; i++) dxl[l][i] = o->gamma / d.L * 2.0 * (xs[i] - xt[i]) / den;
    }
  }
  if (kl) *kl = klv;
  if (g) {
    grads_zero(g, d);
    backward(m, &st, &as, tokens, dlogits, o->gamma > 0 ? dxl : NULL, bits, g);
  }
  for (int l = 0; l < d.L; l++) free(dxl[l]);
  free(dlogits);
  acts_free(&as), acts_free(&at);
  nets_free(&st, &te, bits, d.L);
  return loss;
}

/* ---- the optimizer ---- */

void ref_newton_schulz(const double *u, int rows, int cols, double *out) {
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  int tr = rows > cols, r = tr ? cols : rows, k = tr ? rows : cols; /* X (r, k), r <= k */
  size_t n = (size_t)rows * cols;
  double nrm = 0;
  for (size_t i = 0; i < n; i++) nrm += u[i] * u[i];
  nrm = fmax(sqrt(nrm), 1e-7);
  double *X = xcalloc(n, 8), *Y = xcalloc(n, 8), *A = xcalloc((size_t)r * r, 8), *Bm = xcalloc((size_t)r * r, 8);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) X[tr ? (size_t)j * k + i : (size_t)i * k + j] = u[(size_t)i * cols + j] / nrm;
  for (int it = 0; it < 5; it++) {
    for (int i = 0; i < r; i++) /* A = X X^T */
      for (int j = 0; j < r; j++) {
        double s = 0;
        for (int e = 0; e < k; e++) s += X[(size_t)i * k + e] * X[(size_t)j * k + e];
        A[(size_t)i * r + j] = s;
      }
    for (int i = 0; i < r; i++) /* Bm = b A + c A A */
      for (int j = 0; j < r; j++) {
        double s = 0;
        for (int e = 0; e < r; e++) s += A[(size_t)i * r + e] * A[(size_t)e * r + j];
        Bm[(size_t)i * r + j] = b * A[(size_t)i * r + j] + c * s;
      }
    for (int i = 0; i < r; i++) /* X = a X + Bm X */
      for (int j = 0; j < k; j++) {
        double s = 0;
        for (int e = 0; e < r; e++) s += Bm[(size_t)i * r + e] * X[(size_t)e * k + j];
        Y[(size_t)i * k + j] = a * X[(size_t)i * k + j] + s;
      }
    memcpy(X, Y, n * 8);
  }
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) out[(size_t)i * cols + j] = X[tr ? (size_t)j * k + i : (size_t)i * k + j];
  free(X), free(Y), free(A), free(Bm);
}

int ref_optim_init(RefOptim *o, RefTrainDims d, double lr_w, double lr_s) {
  memset(o, 0, sizeof *o);
  if (!dims_ok(d)) return -1;
  o->d = d, o->lr_w = lr_w, o->lr_s = lr_s, o->max_norm = 1.0;
  for (int l = 0; l < d.L; l++)
    for (int i = 0; i < REF_NLIN; i++) {
      int N, K, k = d.paths[i];
      ref_train_linear_shape(d, i, &N, &K);
      o->buf[l][i] = xcalloc((size_t)N * K, 8);
      o->mg[l][i] = xcalloc((size_t)k * N, 8), o->vg[l][i] = xcalloc((size_t)k * N, 8);
      o->mh[l][i] = xcalloc((size_t)k * K, 8), o->vh[l][i] = xcalloc((size_t)k * K, 8);
    }
  return 0;
}

void ref_optim_free(RefOptim *o) {
  for (int l = 0; l < REF_MAX_L; l++)
    for (int i = 0; i < REF_NLIN; i++)
      free(o->buf[l][i]), free(o->mg[l][i]), free(o->vg[l][i]), free(o->mh[l][i]), free(o->vh[l][i]);
  memset(o, 0, sizeof *o);
}

/* AdamW of n fp32 parameters, then the clamp at 0. */
static void adamw(float *p, const double *grad, double coef, double *m, double *v, size_t n, double lr, int t) {
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double c1 = 1.0 - pow(b1, t), c2 = 1.0 - pow(b2, t);
  for (size_t i = 0; i < n; i++) {
    double gr = grad[i] * coef;
    m[i] = b1 * m[i] + (1 - b1) * gr;
    v[i] = b2 * v[i] + (1 - b2) * gr * gr;
    double x = (double)p[i] - lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps);
    p[i] = (float)fmax(x, 0.0);
  }
}

void ref_optim_step(RefTrainModel *m, const RefTrainGrads *g, RefOptim *o, double *grad_norm) {
  RefTrainDims d = m->d;
  const double mu = 0.95;
  double ss = 0;
  for (int l = 0; l < d.L; l++)
    for (int i = 0; i < REF_NLIN; i++) {
      const RefTrainLinear *q = &m->lin[l][i];
      for (size_t e = 0; e < (size_t)q->N * q->K; e++) ss += g->dW[l][i][e] * g->dW[l][i][e];
      for (size_t e = 0; e < (size_t)q->k * q->N; e++) ss += g->dg[l][i][e] * g->dg[l][i][e];
      for (size_t e = 0; e < (size_t)q->k * q->K; e++) ss += g->dh[l][i][e] * g->dh[l][i][e];
    }
  double norm = sqrt(ss), coef = fmin(1.0, o->max_norm / (norm + 1e-6));
  if (grad_norm) *grad_norm = norm;
  o->t++;
  for (int l = 0; l < d.L; l++)
    for (int i = 0; i < REF_NLIN; i++) {
      RefTrainLinear *q = &m->lin[l][i];
      size_t nk = (size_t)q->N * q->K;
      double *u = xcalloc(nk, 8), *X = xcalloc(nk, 8), *buf = o->buf[l][i];
      for (size_t e = 0; e < nk; e++) {
        double gr = g->dW[l][i][e] * coef;
        buf[e] = mu * buf[e] + (1 - mu) * gr;
        u[e] = (1 - mu) * gr + mu * buf[e];
      }
      ref_newton_schulz(u, q->N, q->K, X);
      double lr = o->lr_w * 0.2 * sqrt((double)(q->N > q->K ? q->N : q->K));
      for (size_t e = 0; e < nk; e++) q->W[e] = (float)((double)q->W[e] - lr * X[e]);
      free(u), free(X);
      adamw(q->g, g->dg[l][i], coef, o->mg[l][i], o->vg[l][i], (size_t)q->k * q->N, o->lr_s, o->t);
      adamw(q->h, g->dh[l][i], coef, o->mh[l][i], o->vh[l][i], (size_t)q->k * q->K, o->lr_s, o->t);
    }
}

double ref_train_lr_scale(int step, int steps, int warmup) {
  const double pi = 3.141592653589793;
  double w = fmin(1.0, (step + 1.0) / warmup);
  double c = 0.5 * (1.0 + cos(pi * fmin(1.0, (double)step / steps)));
  return fmax(w * c, 0.02);
}

/* ---- one linear in float64 (the peer's gradcheck) ---- */

void ref_qlinear_forward(const double *W, const double *g, const double *h, int N, int K, int k,
                         const double *x, int T, double *y, int8_t *signs, double *what) {
  for (int n = 0; n < N; n++)
    for (int c = 0; c < K; c++) {
      double R = W[(size_t)n * K + c], acc = 0;
      for (int p = 0; p < k; p++) {
        int s = R >= 0 ? 1 : -1;
        double part = s * (g[(size_t)p * N + n] * h[(size_t)p * K + c]);
        signs[((size_t)p * N + n) * K + c] = (int8_t)s;
        R -= part, acc += part;
      }
      what[(size_t)n * K + c] = acc;
    }
  lin_fwd(x, what, T, N, K, y);
}

void ref_qlinear_backward(const double *g, const double *h, const int8_t *signs, const double *what, int N,
                          int K, int k, const double *x, const double *dy, int T, double *dW, double *dg,
                          double *dh, double *dx) {
  memset(dW, 0, (size_t)N * K * 8);
  if (dx) memset(dx, 0, (size_t)T * K * 8);
  lin_bwd(x, what, dy, T, N, K, dx, dW);
  memset(dg, 0, (size_t)k * N * 8), memset(dh, 0, (size_t)k * K * 8);
  for (int p = 0; p < k; p++)
    for (int n = 0; n < N; n++)
      for (int c = 0; c < K; c++) {
        double e = dW[(size_t)n * K + c] * signs[((size_t)p * N + n) * K + c];
        dg[(size_t)p * N + n] += e * h[(size_t)p * K + c];
        dh[(size_t)p * K + c] += e * g[(size_t)p * N + n];
      }
}
