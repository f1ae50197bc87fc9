/* test_ref_model: the float64 reference decoder that the executor is checked
 * against, checked itself on the tiny model's shapes with random weights:
 *  - causality: the logits of a prefix are the first rows of a longer run;
 *  - a residual binary linear equals the dense product with its
 *    reconstruction W_hat = sum_p diag(g_p) B_p diag(h_p) (two code paths);
 *  - the logits depend on every layer (zeroing one layer's o/down changes them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/ref/ref.h"
#include "tests/common/rng.h"

enum { V = 96, D = 32, F = 48, L = 2, H = 4, HKV = 2, HD = 8, T = 9 };
static int pass, fail;

static void check(int ok, const char *what, double v) {
  ok ? pass++ : fail++;
  printf("%s %-58s %.3e\n", ok ? "ok  " : "FAIL", what, v);
}

/* Every allocation of the model, freed at the end (the sanitizer build checks). */
static void *owned[256];
static int nowned;
static void *own(void *p) { return owned[nowned++] = p; }

static float *randf(size_t n, double lo, double hi) {
  float *p = own(malloc(n * sizeof *p));
  for (size_t i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * unif());
  return p;
}

/* A residual binary linear and, in `dense`, its reconstruction. */
static RefLinear quant(int N, int K, int paths, RefLinear *dense) {
  int8_t *s = malloc((size_t)paths * N * K);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) s[i] = unif() < 0.5 ? -1 : 1;
  uint32_t *bits = own(calloc((size_t)paths * N * ((K + 31) / 32), 4));
  ref_pack_signs(bits, s, paths, N, K);
  float *g = randf((size_t)paths * N, 0.5 / sqrt(K), 1.5 / sqrt(K)), *h = randf((size_t)paths * K, 0.5, 1.5);
  float *w = own(calloc((size_t)N * K, sizeof *w));
  for (int p = 0; p < paths; p++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) w[(size_t)n * K + k] += g[p * N + n] * s[((size_t)p * N + n) * K + k] * h[p * K + k];
  free(s);
  *dense = (RefLinear){N, K, 0, NULL, NULL, NULL, w};
  return (RefLinear){N, K, paths, bits, g, h, NULL};
}

int main(void) {
  test_rng = 0x853C49E6748FEA9Bull;
  RefLayer q[L], d[L];
  for (int l = 0; l < L; l++) {
    float *n1 = randf(D, 0.5, 1.5), *n2 = randf(D, 0.5, 1.5);
    q[l].attn_norm = d[l].attn_norm = n1;
    q[l].ffn_norm = d[l].ffn_norm = n2;
    q[l].q = quant(H * HD, D, 2, &d[l].q);
    q[l].k = quant(HKV * HD, D, 2, &d[l].k);
    q[l].v = quant(HKV * HD, D, 3, &d[l].v);
    q[l].o = quant(D, H * HD, 2, &d[l].o);
    q[l].gate = quant(F, D, 1, &d[l].gate);
    q[l].up = quant(F, D, 4, &d[l].up);
    q[l].down = quant(D, F, 2, &d[l].down);
  }
  float *emb = randf((size_t)V * D, -1, 1), *fn = randf(D, 0.5, 1.5);
  RefModel mq = {V, D, F, L, H, HKV, HD, 1e-5f, 10000.0f, emb, fn, emb, q}, md = mq;
  md.layer = d;
  int tok[T];
  for (int i = 0; i < T; i++) tok[i] = (int)(unif() * V);
  double *full = malloc(sizeof(double) * T * V), *pre = malloc(sizeof(double) * 5 * V),
         *dense = malloc(sizeof(double) * T * V);
  ref_model_forward(&mq, tok, T, full);
  ref_model_forward(&mq, tok, 5, pre);
  double e = ref_rel_l2(full, pre, 5 * V);
  check(e < 1e-12, "causal: a 5-token prefix gives the first 5 rows", e);
  ref_model_forward(&md, tok, T, dense);
  e = ref_rel_l2(full, dense, (size_t)T * V);
  check(e < 1e-6, "binary paths equal the dense reconstruction W_hat", e);
  float *keep = (float *)q[1].o.g;
  float *zero = own(calloc((size_t)q[1].o.paths * q[1].o.N, sizeof *zero));
  q[1].o.g = zero;
  ref_model_forward(&mq, tok, T, dense); /* reuse the buffer: dense is no longer needed */
  q[1].o.g = keep;
  e = ref_rel_l2(dense, full, (size_t)T * V);
  check(e > 1e-3, "the last layer's attention output matters", e);
  double mx = 0;
  for (int i = 0; i < T * V; i++) mx = fmax(mx, fabs(full[i]));
  check(isfinite(mx) && mx > 0, "logits are finite and not all zero", mx);
  free(full), free(pre), free(dense);
  while (nowned) free(owned[--nowned]);
  printf("%d passed, %d failed\n", pass, fail);
  return fail != 0;
}
