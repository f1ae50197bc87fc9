/* ref_model.c: a Llama-style decoder's forward pass in float64, straight from
 * the equations (Hugging Face LlamaForCausalLM semantics), for checking the
 * executor. Quantized linears go through ref_linear; dense ones through a
 * plain matrix product. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ref/ref.h"

/* y (T, N) = lin(x (T, K)). */
static void apply(const RefLinear *l, const double *x, int T, double *y) {
  if (l->paths) {
    float *xf = malloc((size_t)T * l->K * sizeof *xf);
    for (size_t i = 0; i < (size_t)T * l->K; i++) xf[i] = (float)x[i];
    ref_linear(y, xf, l->bits, l->g, l->h, T, l->N, l->K, l->paths);
    free(xf);
    return;
  }
  for (int t = 0; t < T; t++)
    for (int n = 0; n < l->N; n++) {
      double s = 0;
      for (int k = 0; k < l->K; k++) s += (double)l->dense[(size_t)n * l->K + k] * x[(size_t)t * l->K + k];
      y[(size_t)t * l->N + n] = s;
    }
}

static void rmsnorm(const double *x, const float *w, int T, int D, float eps, double *y) {
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int d = 0; d < D; d++) ss += x[(size_t)t * D + d] * x[(size_t)t * D + d];
    double r = 1.0 / sqrt(ss / D + eps);
    for (int d = 0; d < D; d++) y[(size_t)t * D + d] = x[(size_t)t * D + d] * r * w[d];
  }
}

static float *to_float(const double *x, size_t n) {
  float *f = malloc(n * sizeof *f);
  for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
  return f;
}

void ref_model_forward(const RefModel *m, const int *tokens, int T, double *logits) {
  int D = m->D, F = m->F, QW = m->H * m->HD, KW = m->HKV * m->HD;
  double *x = calloc((size_t)T * D, sizeof *x), *h = calloc((size_t)T * D, sizeof *h);
  double *q = malloc((size_t)T * QW * sizeof *q), *k = malloc((size_t)T * KW * sizeof *k);
  double *v = malloc((size_t)T * KW * sizeof *v), *a = malloc((size_t)T * QW * sizeof *a);
  double *o = malloc((size_t)T * D * sizeof *o), *g = malloc((size_t)T * F * sizeof *g);
  double *u = malloc((size_t)T * F * sizeof *u);
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++) x[(size_t)t * D + d] = m->embed[(size_t)tokens[t] * D + d];
  for (int l = 0; l < m->L; l++) {
    const RefLayer *ly = &m->layer[l];
    rmsnorm(x, ly->attn_norm, T, D, m->eps, h);
    apply(&ly->q, h, T, q);
    apply(&ly->k, h, T, k);
    apply(&ly->v, h, T, v);
    float *qf = to_float(q, (size_t)T * QW), *kf = to_float(k, (size_t)T * KW), *vf = to_float(v, (size_t)T * KW);
    ref_attention(a, qf, kf, vf, T, m->H, m->HKV, m->HD, m->theta);
    free(qf), free(kf), free(vf);
    apply(&ly->o, a, T, o);
    for (size_t i = 0; i < (size_t)T * D; i++) x[i] += o[i];
    rmsnorm(x, ly->ffn_norm, T, D, m->eps, h);
    apply(&ly->gate, h, T, g);
    apply(&ly->up, h, T, u);
    for (size_t i = 0; i < (size_t)T * F; i++) g[i] = ref_silu(g[i]) * u[i];
    apply(&ly->down, g, T, o);
    for (size_t i = 0; i < (size_t)T * D; i++) x[i] += o[i];
  }
  rmsnorm(x, m->final_norm, T, D, m->eps, h);
  RefLinear head = {m->V, D, 0, NULL, NULL, NULL, m->lm_head};
  apply(&head, h, T, logits);
  free(x), free(h), free(q), free(k), free(v), free(a), free(o), free(g), free(u);
}
