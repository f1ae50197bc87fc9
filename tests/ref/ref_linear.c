/* ref_linear.c: float64 reference of the residual binary linear, straight from
 * y = sum_p g_p .* (B_p (h_p .* x)), plus the sign packer, SiLU and the
 * relative L2 error the numeric tests compare with. Shares nothing with codegen. */
#include <math.h>
#include <string.h>

#include "tests/ref/ref.h"

/* The sign of column j of row (p, n): bit set means -1. */
static int sign_of(const uint32_t *bits, int p, int n, int j, int N, int K) {
  size_t words = (size_t)(K + 31) / 32;
  uint32_t w = bits[((size_t)p * N + n) * words + (size_t)j / 32];
  return (w >> (j % 32)) & 1u ? -1 : 1;
}

/* y (batch, N) = sum_p g[p, n] * sum_j sign(p, n, j) * h[p, j] * x[b, j], in double. */
void ref_linear(double *y, const float *x, const uint32_t *bits, const float *g, const float *h,
                int batch, int N, int K, int paths) {
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

/* Canonical packing: bit j of word w is the sign of column 32 w + j, -1 -> 1; pad bits 0. */
void ref_pack_signs(uint32_t *bits, const int8_t *signs, int paths, int N, int K) {
  size_t words = (size_t)(K + 31) / 32;
  memset(bits, 0, (size_t)paths * N * words * sizeof *bits);
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int j = 0; j < K; j++)
        if (signs[((size_t)p * N + n) * K + j] < 0)
          bits[((size_t)p * N + n) * words + (size_t)j / 32] |= 1u << (j % 32);
}

/* silu(v) = v * sigmoid(v). */
double ref_silu(double v) { return v / (1.0 + exp(-v)); }

/* ||a - b|| / ||b||; when ||b|| is 0, ||a - b|| itself. A NaN anywhere gives NaN,
 * so callers must test !(err <= tol). */
double ref_rel_l2(const double *a, const double *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}
