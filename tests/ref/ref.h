/* ref.h: CPU references for every kernel kind, written from the equations in
 * DESIGN.md and independent of the emitters. Everything is float64 or float32 on
 * unpacked inputs; the tests pack inputs into the canonical format themselves. */
#ifndef RABIT_REF_H
#define RABIT_REF_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"

/* The quantized linear's reference lives in the library (codegen/reference.c),
 * where the tuner validates candidates against it too; these are its names
 * in the tests. One segment: y (batch, N) = sum_p g[p, n] * sum_j s(p, n, j) *
 * h[p, j] * x[b, j], s = -1 where bit j of row (p, n) of the canonical bits is set. */
static inline void ref_linear(double *y, const float *x, const uint32_t *bits, const float *g, const float *h,
                              int batch, int N, int K, int paths) {
  cg_ref_linear(y, x, bits, g, h, batch, N, K, paths);
}
/* Pack signs (paths, N, K) of +1/-1 into canonical words; pad bits 0. */
static inline void ref_pack_signs(uint32_t *bits, const int8_t *signs, int paths, int N, int K) {
  cg_ref_pack_signs(bits, signs, paths, N, K);
}
static inline double ref_silu(double v) { return cg_ref_silu(v); }

/* Row-wise decoder ops, float64 out. */
void ref_rmsnorm(double *y, const float *x, const float *w, int T, int D, float eps);
void ref_embed(double *y, const int *tokens, const float *table, int T, int D);
/* Hugging Face rotate-half RoPE of one head vector v (head_dim) at position pos. */
void ref_rope(double *out, const float *v, int head_dim, int pos, float theta);
/* Causal GQA attention with RoPE, over a full sequence of T tokens starting at
 * position 0: q (T, heads*hd), k, v (T, kv_heads*hd), out (T, heads*hd). */
void ref_attention(double *out, const float *q, const float *k, const float *v, int T, int heads,
                   int kv_heads, int head_dim, float theta);

/* ---- a whole Llama-style decoder (ref_model.c) ---- */

/* One linear: residual binary (paths > 0: canonical bits, g, h) or dense (W, N x K). */
typedef struct {
  int N, K, paths;
  const uint32_t *bits;
  const float *g, *h, *dense;
} RefLinear;

typedef struct {
  const float *attn_norm, *ffn_norm; /* (D) */
  RefLinear q, k, v, o, gate, up, down;
} RefLayer;

typedef struct {
  int V, D, F, L, H, HKV, HD;
  float eps, theta;
  const float *embed;      /* (V, D) */
  const float *final_norm; /* (D) */
  const float *lm_head;    /* (V, D); the embedding when tied */
  const RefLayer *layer;   /* L of them */
} RefModel;

/* Logits (T, V) of tokens[0..T) at positions 0..T-1, all in float64 from the
 * equations: embedding, then per layer RMSNorm, q/k/v, RoPE + causal GQA,
 * o + residual, RMSNorm, SiLU(gate) * up, down + residual; final RMSNorm and
 * the lm_head. Independent of the IR, the plan and the kernels. */
void ref_model_forward(const RefModel *m, const int *tokens, int T, double *logits);

/* Relative L2 error ||a - b|| / ||b||. */
static inline double ref_rel_l2(const double *a, const double *b, size_t n) { return cg_ref_rel_l2(a, b, n); }

#endif
