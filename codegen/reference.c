/* reference.c: the CPU reference of the quantized linear, float64, straight
 * from y = sum_p g_p .* (B_p (h_p .* x)) (DESIGN.md), with the fused
 * epilogues (segments, + res, swiglu), the canonical sign packer and the
 * relative L2 error. It shares nothing with the emitters but the packed
 * format: the kernel tests and the tuner's validation both check against it. */
#include <math.h>
#include <string.h>

#include "codegen/codegen.h"

/* The sign of column j of row (p, n): bit set means -1. */
static int sign_of(const uint32_t *bits, int p, int n, int j, int N, int K) {
  size_t words = (size_t)cg_packed_words(K);
  uint32_t w = bits[((size_t)p * N + n) * words + (size_t)j / 32];
  return (w >> (j % 32)) & 1u ? -1 : 1;
}

void cg_ref_linear(double *y, const float *x, const uint32_t *bits, const float *g, const float *h, int batch, int N,
                   int K, int paths) {
  for (int b = 0; b < batch; b++) {
    for (int n = 0; n < N; n++) {
      double total = 0.0;
      for (int p = 0; p < paths; p++) {
        double dot = 0.0;
        for (int j = 0; j < K; j++)
          dot += sign_of(bits, p, n, j, N, K) * (double)h[(size_t)p * K + j] * (double)x[(size_t)b * K + j];
        total += (double)g[(size_t)p * N + n] * dot;
      }
      y[(size_t)b * N + n] = total;
    }
  }
}

void cg_ref_pack_signs(uint32_t *bits, const int8_t *signs, int paths, int N, int K) {
  size_t words = (size_t)cg_packed_words(K);
  memset(bits, 0, (size_t)paths * N * words * sizeof *bits);
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int j = 0; j < K; j++)
        if (signs[((size_t)p * N + n) * K + j] < 0) bits[((size_t)p * N + n) * words + (size_t)j / 32] |= 1u << (j % 32);
}

double cg_ref_silu(double v) { return v / (1.0 + exp(-v)); }

double cg_ref_rel_l2(const double *a, const double *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

int cg_ref_linear_width(const CgOp *op, int *ntot) {
  int t = 0;
  for (int i = 0; i < op->nseg; i++) t += op->N[i];
  if (ntot) *ntot = t;
  return op->epilogue == CG_EPI_SWIGLU ? op->N[0] : t;
}

void cg_ref_linear_row(const CgOp *op, double *y, const float *x, const uint32_t *const *bits, const float *const *g,
                       const float *h, const float *res, double *seg) {
  int K = op->K, P = op->paths;
  for (int s = 0, row0 = 0; s < op->nseg; row0 += op->N[s], s++)
    cg_ref_linear(seg + row0, x, bits[s], g[s], h + (size_t)s * P * K, 1, op->N[s], K, P);
  int ntot, nout = cg_ref_linear_width(op, &ntot);
  if (op->eps > 0) { /* a fused rmsnorm: its weight is in h, its scale applies to the sums */
    double ss = 0.0;
    for (int j = 0; j < K; j++) ss += (double)x[j] * x[j];
    double r = 1.0 / sqrt(ss / K + (double)op->eps);
    for (int n = 0; n < ntot; n++) seg[n] *= r;
  }
  if (op->epilogue == CG_EPI_SWIGLU) {
    for (int n = 0; n < nout; n++) y[n] = cg_ref_silu(seg[n]) * seg[op->N[0] + n];
    return;
  }
  for (int n = 0; n < ntot; n++) y[n] = seg[n] + (op->epilogue == CG_EPI_ADD && res ? res[n] : 0.0);
}

/* fp16 outputs of sums over K terms: the register design's xor decoding keeps
 * fp32 partial sums per lane, the mma paths sum fp16 products in fragments;
 * dequant rounds W_hat and the GEMM's output to fp16, the product exact (fp32 sums). */
double cg_ref_linear_tolerance(const CgSchedule *s) {
  return s->strategy == CG_STRAT_MMA ? 1e-2 : s->strategy == CG_STRAT_DEQUANT ? 5e-3 : 2e-3;
}
