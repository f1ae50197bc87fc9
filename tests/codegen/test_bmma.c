/* test_bmma.c: the bmma strategy's arithmetic on the CPU, from the layouts its comments
 * state (codegen/cuda/bmma.c, linear.c's kernel layout) and the b1 mma fragment layout
 * checked on the H200 (tests/bench/probe_mma.cu), independent of the emitted source: the
 * repacked bits as A = {w, w >> 1, w', w' >> 1}, the int16 planes as B, popc(A AND B),
 * the plane weights and the scales. On fresh random shapes it must equal, to rounding, the
 * same sum taken directly over the quantized activations, and come within the int16 error
 * of the float64 reference. Then the emitter's refusals. No GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include <time.h>

#include "tests/common/check.h"
#include "tests/common/layout.h"
#include "tests/common/rng.h"

/* popc(A_row AND B_col) of one m16n8k256 b1 mma over its fragments: lane (g, t) holds A rows
 * g (a0, a2) and g + 8 (a1, a3) at k = 32 t + i (a0, a1) and 128 + 32 t + i (a2, a3), B
 * column g at the same k (b0, b1). */
static void bmma_model(int d[16][8], unsigned a[32][4], unsigned bf[32][2]) {
  for (int row = 0; row < 16; row++)
    for (int col = 0; col < 8; col++) {
      int sum = 0;
      for (int t = 0; t < 4; t++) {
        int la = (row & 7) * 4 + t, lb = col * 4 + t;
        sum += __builtin_popcount(a[la][row >> 3] & bf[lb][0]);
        sum += __builtin_popcount(a[la][2 + (row >> 3)] & bf[lb][1]);
      }
      d[row][col] += sum;
    }
}

static int run_case(int N, int K, int paths, uint64_t seed) {
  test_rng = seed | 1;
  int C256 = (K + 255) / 256, tiles = (N + 15) / 16, bad = 0;
  uint8_t *b = malloc((size_t)paths * N * K);
  float *x = malloc((size_t)K * sizeof *x), *h = malloc((size_t)paths * K * sizeof *h), *g = malloc((size_t)paths * N * sizeof *g);
  for (size_t i = 0; i < (size_t)paths * N * K; i++) b[i] = rnd() & 1;
  for (int j = 0; j < K; j++) x[j] = (float)((unif() - 0.5) * (j % 97 == 0 ? 20.0 : 2.0)); /* a few outliers */
  for (int i = 0; i < paths * K; i++) h[i] = (float)(0.01 + 0.02 * unif());
  for (int i = 0; i < paths * N; i++) g[i] = (float)(0.5 + unif());
  double *y = calloc((size_t)N, sizeof *y), *yq = calloc((size_t)N, sizeof *yq), *yr = calloc((size_t)N, sizeof *yr);
  for (int p = 0; p < paths; p++)
    for (int c = 0; c < C256; c++) {
      /* The pre-pass: u in fp32, q = rint(u 32767 / max), sc = max / 32767. */
      float u[256], m = 0.0f;
      int q[256], U = 0;
      for (int j = 0; j < 256; j++) {
        int col = c * 256 + j;
        u[j] = col < K ? x[col] * h[p * K + col] : 0.0f;
        m = fmaxf(m, fabsf(u[j]));
      }
      float inv = m > 0 ? 32767.0f / m : 0.0f, sc = m * (1.0f / 32767.0f);
      for (int j = 0; j < 256; j++) q[j] = (int)rintf(u[j] * inv), U += q[j];
      /* Plane words: lane (gid, tig), tile t, word j: plane 8 t + gid of columns 64 j + 16 tig + c'
       * at bit 2 (c' >> 1) + 16 (c' & 1). */
      unsigned pw[2][32][4];
      for (int t = 0; t < 2; t++)
        for (int lane = 0; lane < 32; lane++)
          for (int j = 0; j < 4; j++) {
            unsigned w = 0;
            for (int cc = 0; cc < 16; cc++) {
              unsigned qb = (unsigned)q[64 * j + 16 * (lane & 3) + cc] & 0xffffu;
              w |= (qb >> (8 * t + (lane >> 2)) & 1u) << (2 * (cc >> 1) + 16 * (cc & 1));
            }
            pw[t][lane][j] = w;
          }
      for (int T = 0; T < tiles; T++) {
        unsigned wd[32][4], a0[32][4], a1[32][4], bf[2][2][32][2];
        for (int lane = 0; lane < 32; lane++)
          for (int j = 0; j < 4; j++) wd[lane][j] = layout_word(b, N, K, p, T, c, lane, j);
        for (int lane = 0; lane < 32; lane++) {
          unsigned *w = wd[lane];
          unsigned A0[4] = {w[0], w[0] >> 1, w[1], w[1] >> 1}, A1[4] = {w[2], w[2] >> 1, w[3], w[3] >> 1};
          memcpy(a0[lane], A0, sizeof A0), memcpy(a1[lane], A1, sizeof A1);
          for (int t = 0; t < 2; t++) {
            bf[t][0][lane][0] = pw[t][lane][0], bf[t][0][lane][1] = pw[t][lane][1];
            bf[t][1][lane][0] = pw[t][lane][2], bf[t][1][lane][1] = pw[t][lane][3];
          }
        }
        int d[2][16][8];
        memset(d, 0, sizeof d);
        for (int t = 0; t < 2; t++) {
          bmma_model(d[t], a0, bf[t][0]);
          bmma_model(d[t], a1, bf[t][1]);
        }
        for (int row = 0; row < 16 && T * 16 + row < N; row++) {
          long long v = 0; /* sum_k w_k D_k, the top plane -2^15 */
          for (int k = 0; k < 16; k++) v += (long long)(k == 15 ? -32768 : 1 << k) * d[k >> 3][row][k & 7];
          int n = T * 16 + row;
          y[n] += (double)g[p * N + n] * (double)sc * (double)(U - 2 * v);
          long long direct = 0; /* sum_j s_j q_j, straight from the signs */
          for (int j = 0; j < 256; j++) direct += (sign_bit(b, N, K, p, n, c * 256 + j) ? -1 : 1) * (long long)q[j];
          yq[n] += (double)g[p * N + n] * (double)sc * (double)direct;
        }
      }
    }
  for (int n = 0; n < N; n++)
    for (int p = 0; p < paths; p++)
      for (int j = 0; j < K; j++)
        yr[n] += (double)g[p * N + n] * (sign_bit(b, N, K, p, n, j) ? -1.0 : 1.0) * (double)x[j] * (double)h[p * K + j];
  double e_alg = 0, e_ref = 0, nq = 0, nr = 0;
  for (int n = 0; n < N; n++) {
    e_alg += (y[n] - yq[n]) * (y[n] - yq[n]), nq += yq[n] * yq[n];
    e_ref += (y[n] - yr[n]) * (y[n] - yr[n]), nr += yr[n] * yr[n];
  }
  e_alg = sqrt(e_alg / nq), e_ref = sqrt(e_ref / nr);
  char what[96];
  snprintf(what, sizeof what, "%dx%d k=%d", N, K, paths);
  /* The planes, popc and weights are exact: equal to the direct sum but for double rounding. */
  CHECK(e_alg < 1e-12, "%s: bmma's sum is %.3g (relative) from the direct sum over q", what, e_alg);
  /* int16 per 256 columns with outliers 10x the rest: ~1e-4 from the unquantized sum. */
  CHECK(e_ref < 1e-3, "%s: %.3g from the float64 reference", what, e_ref);
  bad += !(e_alg < 1e-12 && e_ref < 1e-3);
  printf("%s %s: %.2e from the direct sum, %.2e from the reference\n", bad ? "FAIL" : "ok  ", what, e_alg, e_ref);
  free(b), free(x), free(h), free(g), free(y), free(yq), free(yr);
  return bad;
}

int main(void) {
  int bad = 0;
  /* Odd shapes (partial tiles, partial groups, K not a multiple of 8), then real ones. */
  uint64_t seed = (uint64_t)time(NULL); /* fresh inputs each run, the seed printed to replay */
  printf("seed %llu\n", (unsigned long long)seed);
  bad += run_case(37, 300, 1, seed + 1);
  bad += run_case(100, 70, 3, seed + 2);
  bad += run_case(48, 576, 2, seed + 3);
  bad += run_case(32, 1000, 4, seed + 4);

  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR, k.op.K = 576, k.op.paths = 2, k.op.nseg = 1, k.op.N[0] = 576;
  k.sched.strategy = CG_STRAT_BMMA, k.sched.batch_max = 4;
  CgKernel pk;
  CHECK(cg_linear_planes_kernel(&k, &pk) && pk.op.kind == CG_PLANES && pk.op.K == 576 && pk.op.paths == 2,
        "a bmma kernel's pre-pass");
  CHECK(cg_planes_bytes(&k.op) == (uint64_t)CG_BMMA_BATCH_MAX * (2 * 3 * 1032 + 3 * 4), "planes bytes %llu",
        (unsigned long long)cg_planes_bytes(&k.op));
  CgKernel x = k;
  x.sched.strategy = CG_STRAT_XOR;
  CHECK(!cg_linear_planes_kernel(&x, &pk), "an xor kernel has no pre-pass");
  CgKernel m = k;
  m.sched.batch_max = CG_BMMA_BATCH_MAX + 1;
  bad += refused(m, "serves buckets up to batch", "bmma past its batch");
  m = k, m.op.eps = 1e-5f; /* a fused rmsnorm is its pre-pass's */
  CHECK(cg_linear_planes_kernel(&m, &pk) && pk.op.eps == 1e-5f, "a fused norm's pre-pass carries its eps");
  CHECK(cg_linear_prenorm(&m.sched) == CG_PRENORM_EXACT, "bmma normalizes exactly");
  pk.op.eps = -1.0f;
  bad += refused(pk, "eps >= 0", "a pre-pass with a negative eps");
  m = k, m.sched.tile[3] = 8;
  bad += refused(m, "bad tile", "bmma with a batch tile");
  pk.op.paths = 5;
  bad += refused(pk, "planes:", "planes with 5 paths");
  return CHECK_SUMMARY() || bad;
}
