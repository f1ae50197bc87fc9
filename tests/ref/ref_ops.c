/* ref_ops.c: float64 references for the decoder ops (rmsnorm, embed, RoPE,
 * causal GQA attention), written as plain loops from the Hugging Face Llama
 * equations. They share nothing with codegen, so a wrong emitter cannot agree
 * with them by construction. */
#include <math.h>
#include <stdlib.h>

#include "tests/ref/ref.h"

/* y (T, D) = x * (mean(x^2) + eps)^-1/2 * w, all in double. */
void ref_rmsnorm(double *y, const float *x, const float *w, int T, int D, float eps) {
  for (int t = 0; t < T; t++) {
    const float *xr = x + (size_t)t * D;
    double ss = 0.0;
    for (int d = 0; d < D; d++) ss += (double)xr[d] * xr[d];
    double r = 1.0 / sqrt(ss / D + (double)eps);
    for (int d = 0; d < D; d++) y[(size_t)t * D + d] = (double)xr[d] * r * w[d];
  }
}

/* y (T, D) = table[tokens[t]]. The table's row count is not known here, so
 * callers pass only valid ids; a negative id gives a zero row, as the kernel does. */
void ref_embed(double *y, const int *tokens, const float *table, int T, int D) {
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++)
      y[(size_t)t * D + d] = tokens[t] < 0 ? 0.0 : (double)table[(size_t)tokens[t] * D + d];
}

/* Rotate-half RoPE of one head vector: for i < hd/2, angle = pos * theta^(-2i/hd),
 * out[i] = v[i] cos - v[i+hd/2] sin, out[i+hd/2] = v[i+hd/2] cos + v[i] sin. */
void ref_rope(double *out, const float *v, int head_dim, int pos, float theta) {
  int half = head_dim / 2;
  for (int i = 0; i < half; i++) {
    double freq = pow((double)theta, -2.0 * i / head_dim);
    double a = (double)pos * freq;
    double c = cos(a), s = sin(a);
    double x1 = v[i], x2 = v[i + half];
    out[i] = x1 * c - x2 * s;
    out[i + half] = x2 * c + x1 * s;
  }
}

/* Causal GQA attention of T tokens at positions 0..T-1: RoPE on q and k, then
 * for query t of head h, softmax over keys 0..t of kv head h / (heads/kv_heads)
 * with scale 1/sqrt(hd), applied to v. q (T, heads*hd), k, v (T, kv_heads*hd),
 * out (T, heads*hd). Exits on allocation failure (test code). */
void ref_attention(double *out, const float *q, const float *k, const float *v, int T, int heads,
                   int kv_heads, int head_dim, float theta) {
  int hd = head_dim, group = heads / kv_heads;
  size_t qw = (size_t)heads * hd, kw = (size_t)kv_heads * hd;
  double *qr = malloc(sizeof(double) * T * qw);
  double *kr = malloc(sizeof(double) * T * kw);
  double *p = malloc(sizeof(double) * (T > 0 ? T : 1));
  if (!qr || !kr || !p) abort();
  for (int t = 0; t < T; t++) {
    for (int h = 0; h < heads; h++) ref_rope(qr + t * qw + (size_t)h * hd, q + t * qw + (size_t)h * hd, hd, t, theta);
    for (int g = 0; g < kv_heads; g++) ref_rope(kr + t * kw + (size_t)g * hd, k + t * kw + (size_t)g * hd, hd, t, theta);
  }
  double scale = 1.0 / sqrt((double)hd);
  for (int t = 0; t < T; t++) {
    for (int h = 0; h < heads; h++) {
      const double *qv = qr + t * qw + (size_t)h * hd;
      int g = h / group;
      double mx = -INFINITY;
      for (int j = 0; j <= t; j++) {
        const double *kv = kr + j * kw + (size_t)g * hd;
        double dot = 0.0;
        for (int d = 0; d < hd; d++) dot += qv[d] * kv[d];
        p[j] = dot * scale;
        if (p[j] > mx) mx = p[j];
      }
      double sum = 0.0;
      for (int j = 0; j <= t; j++) {
        p[j] = exp(p[j] - mx);
        sum += p[j];
      }
      double *o = out + t * qw + (size_t)h * hd;
      for (int d = 0; d < hd; d++) o[d] = 0.0;
      for (int j = 0; j <= t; j++) /* rows of v in order: the long contexts stay cache-friendly */
        for (int d = 0; d < hd; d++) o[d] += p[j] * v[j * kw + (size_t)g * hd + d];
      for (int d = 0; d < hd; d++) o[d] /= sum;
    }
  }
  free(qr);
  free(kr);
  free(p);
}
