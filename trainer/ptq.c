/* ptq.c: residual SVID, the PTQ baseline and RaBiT's initialization (DESIGN
 * "Initialization" (b), with the preconditioning of (a) as optional weights).
 *
 * The math. One path fits a residual R (N x K) by diag(g) B diag(h) with
 * B in {+-1}. Multiplying elementwise by B is an isometry (B o B = 1), so
 *     ||R - diag(g) B diag(h)||^2 = ||B o R - g h^T||^2.
 * Taking B = sign(R) turns B o R into |R|, and the best g h^T is the leading
 * singular pair of |R|: |R| = sigma u v^T + ..., with u, v >= 0 (Perron-
 * Frobenius: |R| is non-negative, so its leading singular vectors can be taken
 * non-negative; we take absolute values to remove rounding-level negatives).
 * Then g h^T = sigma u v^T and the squared error drops by exactly sigma^2, so
 * every path with R != 0 strictly lowers the error.
 *
 * Greedy (T = 0): R_0 = W; for p = 1..k: B_p = sign(R_{p-1}) (sign(0) = +1),
 * (g_p, h_p) from |R_{p-1}|, R_p = R_{p-1} - diag(g_p) B_p diag(h_p). This is
 * exactly the coupled forward of RaBiT QAT, so PTQ = RaBiT step 0.
 *
 * Refinement (T rounds, Gauss-Seidel over paths): for p = 1..k, rest = W minus
 * every other path's current contribution; B_p = sign(rest); (g_p, h_p) from
 * |rest|. The refined signs are not the coupled ones (B_1 becomes
 * sign(W - P_2 - ...) instead of sign(W)), and the trainer re-derives the
 * signs sequentially from W at every step. So the output is always the coupled
 * model: the signs re-derived sequentially from W with the candidate scales.
 * Candidates are the greedy scales and those after each round; the one with
 * the lowest coupled error is kept, which makes T > 0 never worse than T = 0.
 *
 * Power iteration on A = |R|: v_0 = 1/sqrt(K) (positive, so it cannot be
 * orthogonal to the Perron vector); u = A v / ||A v||, v = A^T u / sigma with
 * sigma = ||A^T u||; stop when ||v_new - v|| < 1e-9 or after 1000 steps. The
 * pair (u, v_new) satisfies u^T A v_new = sigma exactly, so the fit's gain is
 * sigma^2 even before full convergence. Later rounds start from the path's
 * previous v. Scale split: g = c u, h = (sigma / c) v with c chosen so that g
 * and h have equal RMS in the original domain, which keeps both far from f16's
 * overflow and underflow.
 *
 * Preconditioning: with weights r (rows) and c (cols), fitting runs on
 * W' = diag(r) W diag(c) and the scales map back as g = g'/r, h = h'/c; signs
 * are invariant. Accumulations are in double; residuals are float32. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "trainer/trainer.h"

#define PI_MAX_ITERS 1000
#define PI_TOL 1e-9

typedef struct {
  const float *W;          /* (N, K) the weight */
  const float *rw, *cw;    /* (N), (K) preconditioning or NULL */
  int N, K, k, words, f16;
  double w2, ww2;          /* ||W||^2 plain and weighted */
  float *R;                /* (N, K) the fitting residual, weighted domain */
  float *R2;               /* (N, K) scratch for the coupled re-derivation */
  uint32_t *gsbits;        /* (k, N, words) the fitting signs */
  float *gw, *hw;          /* (N), (K) current path's scales in the weighted domain */
  double *u, *tmp;         /* (N), (K) power iteration */
  double *v;               /* (k, K) each path's right singular vector (warm starts) */
  int iters;
} Ptq;

/* The leading singular pair of |A| (A: N x K float) by power iteration.
 * v (K) holds the start on entry when warm, else it is set to the uniform
 * start; on return u (N) and v (K) are unit and non-negative, *sigma >= 0
 * (0 and zero vectors when A = 0). */
static void rank1_abs(Ptq *q, const float *A, double *v, int warm, double *sigma) {
  int N = q->N, K = q->K;
  double *u = q->u, *t = q->tmp;
  if (!warm)
    for (int j = 0; j < K; j++) v[j] = 1.0 / sqrt((double)K);
  *sigma = 0.0;
  for (int it = 0; it < PI_MAX_ITERS; it++) {
    q->iters++;
    /* One sweep over the rows gives both A v and A^T (A v): the row is still
     * in cache for the second use, so the matrix is read once per step. */
    memset(t, 0, (size_t)K * sizeof *t);
    double un2 = 0.0;
    for (int n = 0; n < N; n++) {
      const float *row = A + (size_t)n * K;
      double d = 0.0;
      for (int j = 0; j < K; j++) d += fabs((double)row[j]) * v[j];
      u[n] = d;
      un2 += d * d;
      if (d != 0.0)
        for (int j = 0; j < K; j++) t[j] += fabs((double)row[j]) * d;
    }
    if (un2 == 0.0) { /* A v = 0 with v > 0 means A = 0 */
      memset(u, 0, (size_t)N * sizeof *u);
      memset(v, 0, (size_t)K * sizeof *v);
      *sigma = 0.0;
      return;
    }
    double un = sqrt(un2), s2 = 0.0;
    for (int n = 0; n < N; n++) u[n] /= un;
    for (int j = 0; j < K; j++) {
      t[j] /= un;
      s2 += t[j] * t[j];
    }
    *sigma = sqrt(s2);
    double diff2 = 0.0;
    for (int j = 0; j < K; j++) {
      double nv = t[j] / *sigma;
      diff2 += (nv - v[j]) * (nv - v[j]);
      v[j] = nv;
    }
    if (diff2 < PI_TOL * PI_TOL) break;
  }
  for (int n = 0; n < N; n++) u[n] = fabs(u[n]);
  for (int j = 0; j < K; j++) v[j] = fabs(v[j]);
}

/* Fit path p to the residual in q->R (weighted domain, it holds "rest"):
 * signs into q->gsbits, scales into g, h (original domain, f16-rounded when
 * asked) and q->gw, q->hw (weighted domain, as used for the update); then
 * R -= diag(gw) B diag(hw). *res2 gets ||R||^2 after the update. */
static int fit_path(Ptq *q, int p, int warm, float *g, float *h, double *res2, RbBuf *err) {
  int N = q->N, K = q->K;
  double *v = q->v + (size_t)p * K, sigma;
  rank1_abs(q, q->R, v, warm, &sigma);

  /* Back to the original domain, then balance the RMS of g and h there. */
  double rg = 0.0, rh = 0.0;
  for (int n = 0; n < N; n++) {
    double x = q->u[n] / (q->rw ? q->rw[n] : 1.0f);
    rg += x * x;
  }
  for (int j = 0; j < K; j++) {
    double x = sigma * v[j] / (q->cw ? q->cw[j] : 1.0f);
    rh += x * x;
  }
  double c = (rg > 0.0 && rh > 0.0) ? sqrt(sqrt((rh / K) / (rg / N))) : 1.0;
  for (int n = 0; n < N; n++) {
    float x = (float)(c * q->u[n] / (q->rw ? q->rw[n] : 1.0f));
    if (q->f16) x = rb_f32_from_f16(rb_f16_from_f32(x));
    if (!isfinite(x)) {
      rb_buf_printf(err, "path %d: row scale of row %d is out of %s range", p + 1, n, q->f16 ? "f16" : "f32");
      return RB_EUSER;
    }
    g[n] = x;
    q->gw[n] = q->rw ? x * q->rw[n] : x;
  }
  for (int j = 0; j < K; j++) {
    float x = (float)((sigma / c) * v[j] / (q->cw ? q->cw[j] : 1.0f));
    if (q->f16) x = rb_f32_from_f16(rb_f16_from_f32(x));
    if (!isfinite(x)) {
      rb_buf_printf(err, "path %d: column scale of column %d is out of %s range", p + 1, j, q->f16 ? "f16" : "f32");
      return RB_EUSER;
    }
    h[j] = x;
    q->hw[j] = q->cw ? x * q->cw[j] : x;
  }

  /* Signs of rest and the update in one pass. */
  uint32_t *bp = q->gsbits + (size_t)p * N * q->words;
  double e2 = 0.0;
  for (int n = 0; n < N; n++) {
    float *row = q->R + (size_t)n * K;
    uint32_t *wb = bp + (size_t)n * q->words;
    memset(wb, 0, (size_t)q->words * sizeof *wb);
    for (int j = 0; j < K; j++) {
      float gh = q->gw[n] * q->hw[j];
      if (row[j] >= 0.0f) row[j] = row[j] - gh;
      else {
        wb[j >> 5] |= 1u << (j & 31);
        row[j] = row[j] + gh;
      }
      e2 += (double)row[j] * row[j];
    }
  }
  *res2 = e2;
  return RB_OK;
}

/* Add path p's current contribution (q->gsbits, weighted scales from g, h)
 * back into q->R, turning the full residual into "rest" for path p. */
static void add_back(Ptq *q, int p, const float *g, const float *h) {
  int N = q->N, K = q->K;
  for (int n = 0; n < N; n++) q->gw[n] = q->rw ? g[n] * q->rw[n] : g[n];
  for (int j = 0; j < K; j++) q->hw[j] = q->cw ? h[j] * q->cw[j] : h[j];
  const uint32_t *bp = q->gsbits + (size_t)p * N * q->words;
  for (int n = 0; n < N; n++) {
    float *row = q->R + (size_t)n * K;
    const uint32_t *wb = bp + (size_t)n * q->words;
    for (int j = 0; j < K; j++) {
      float gh = q->gw[n] * q->hw[j];
      row[j] = (wb[j >> 5] >> (j & 31)) & 1u ? row[j] - gh : row[j] + gh;
    }
  }
}

/* The coupled forward from W with scales g (k, N), h (k, K), in the original
 * domain and the float recipe of the contract: writes the signs to bits and
 * the plain relative error after each path to rel[p]; returns the weighted
 * relative error of all k paths. */
static double coupled(Ptq *q, const float *g, const float *h, uint32_t *bits, double *rel) {
  int N = q->N, K = q->K;
  memcpy(q->R2, q->W, (size_t)N * K * sizeof *q->R2);
  double ew2 = 0.0;
  for (int p = 0; p < q->k; p++) {
    const float *gp = g + (size_t)p * N, *hp = h + (size_t)p * K;
    double e2 = 0.0;
    ew2 = 0.0;
    for (int n = 0; n < N; n++) {
      float *row = q->R2 + (size_t)n * K;
      double rw = q->rw ? q->rw[n] : 1.0, re2 = 0.0, rew2 = 0.0;
      /* The contract's rule, the same loop tr_derive_bits runs; the error
       * is summed in a second pass over the row, in the same order. */
      tr_derive_row(row, gp[n], hp, K, bits + ((size_t)p * N + n) * q->words);
      for (int j = 0; j < K; j++) {
        double x = row[j];
        re2 += x * x;
        if (q->cw) x *= q->cw[j];
        rew2 += x * x;
      }
      e2 += re2;
      ew2 += rew2 * rw * rw;
    }
    rel[p] = q->w2 > 0.0 ? sqrt(e2 / q->w2) : 0.0;
  }
  return q->ww2 > 0.0 ? sqrt(ew2 / q->ww2) : 0.0;
}

/* See trainer.h. The one loop of TRAINING.md's rule on the CPU. */
void tr_derive_row(float *row, float gn, const float *hp, int K, uint32_t *wb) {
  memset(wb, 0, (size_t)cg_packed_words(K) * sizeof *wb);
  for (int j = 0; j < K; j++) {
    float gh = gn * hp[j];
    if (row[j] >= 0.0f) row[j] = row[j] - gh;
    else {
      wb[j >> 5] |= 1u << (j & 31);
      row[j] = row[j] + gh;
    }
  }
}

/* See trainer.h. */
int tr_derive_bits(const float *W, int N, int K, int k, const float *g, const float *h, uint32_t *bits, float *R,
                   RbBuf *err) {
  if (N <= 0 || K <= 0 || k < 1 || k > TR_MAX_PATHS) {
    rb_buf_printf(err, "bad arguments: N = %d, K = %d, paths = %d (want N, K > 0, paths 1..%d)", N, K, k,
                  TR_MAX_PATHS);
    return RB_EUSER;
  }
  size_t nk = (size_t)N * K, words = (size_t)cg_packed_words(K);
  float *own = R ? NULL : rb_malloc(nk * sizeof *own);
  if (!R && !(R = own)) {
    rb_buf_printf(err, "out of memory deriving the signs of a %d x %d weight", N, K);
    return RB_EINTERNAL;
  }
  memcpy(R, W, nk * sizeof *R);
  for (int p = 0; p < k; p++)
    for (int n = 0; n < N; n++)
      tr_derive_row(R + (size_t)n * K, g[(size_t)p * N + n], h + (size_t)p * K, K, bits + ((size_t)p * N + n) * words);
  rb_free(own);
  return RB_OK;
}

/* Frees the work buffers; NULL members are fine. */
static void ptq_free(Ptq *q) {
  rb_free(q->R);
  rb_free(q->R2);
  rb_free(q->gsbits);
  rb_free(q->gw);
  rb_free(q->hw);
  rb_free(q->u);
  rb_free(q->tmp);
  rb_free(q->v);
}

/* See trainer.h. */
int tr_ptq_linear(const float *W, int N, int K, int k, const TrPtqOptions *opt, uint32_t *bits,
                  float *g, float *h, TrPtqStats *stats, RbBuf *err) {
  static const TrPtqOptions defaults = {0};
  if (!opt) opt = &defaults;
  if (N <= 0 || K <= 0 || k < 1 || k > TR_MAX_PATHS || opt->rounds < 0) {
    rb_buf_printf(err, "bad arguments: N = %d, K = %d, paths = %d, rounds = %d (want N, K > 0, paths 1..%d, rounds >= 0)",
                  N, K, k, opt->rounds, TR_MAX_PATHS);
    return RB_EUSER;
  }
  Ptq q = {.W = W, .rw = opt->row_weight, .cw = opt->col_weight, .N = N, .K = K, .k = k,
           .words = (int)cg_packed_words(K), .f16 = opt->f16_scales};
  size_t nk = (size_t)N * K;
  for (size_t i = 0; i < nk; i++)
    if (!isfinite(W[i])) {
      rb_buf_printf(err, "weight (%zu, %zu) is not finite", i / (size_t)K, i % (size_t)K);
      return RB_EUSER;
    }
  for (int n = 0; q.rw && n < N; n++)
    if (!(q.rw[n] > 0.0f) || !isfinite(q.rw[n])) {
      rb_buf_printf(err, "row weight %d is not a positive finite number", n);
      return RB_EUSER;
    }
  for (int j = 0; q.cw && j < K; j++)
    if (!(q.cw[j] > 0.0f) || !isfinite(q.cw[j])) {
      rb_buf_printf(err, "column weight %d is not a positive finite number", j);
      return RB_EUSER;
    }

  int rc = RB_EINTERNAL;
  uint32_t *cand = NULL;
  float *cg = NULL, *ch = NULL;
  q.R = rb_malloc(nk * sizeof *q.R);
  q.R2 = rb_malloc(nk * sizeof *q.R2);
  q.gsbits = rb_malloc((size_t)k * N * q.words * sizeof *q.gsbits);
  q.gw = rb_malloc((size_t)N * sizeof *q.gw);
  q.hw = rb_malloc((size_t)K * sizeof *q.hw);
  q.u = rb_malloc((size_t)N * sizeof *q.u);
  q.tmp = rb_malloc((size_t)K * sizeof *q.tmp);
  q.v = rb_malloc((size_t)k * K * sizeof *q.v);
  cg = rb_malloc((size_t)k * N * sizeof *cg);
  ch = rb_malloc((size_t)k * K * sizeof *ch);
  if (opt->rounds > 0) cand = rb_malloc((size_t)k * N * q.words * sizeof *cand);
  if (!q.R || !q.R2 || !q.gsbits || !q.gw || !q.hw || !q.u || !q.tmp || !q.v || !cg || !ch ||
      (opt->rounds > 0 && !cand)) {
    rb_buf_printf(err, "out of memory quantizing a %d x %d weight", N, K);
    goto done;
  }

  /* R = W' = diag(r) W diag(c). */
  for (int n = 0; n < N; n++)
    for (int j = 0; j < K; j++) {
      size_t i = (size_t)n * K + j;
      float x = W[i];
      q.w2 += (double)x * x;
      if (q.rw) x *= q.rw[n];
      if (q.cw) x *= q.cw[j];
      q.R[i] = x;
      q.ww2 += (double)x * x;
    }

  /* Greedy pass; with weights its signs are re-derived in the original domain
   * below, so the output obeys the float recipe of the contract either way. */
  double res2 = 0.0;
  for (int p = 0; p < k; p++)
    if ((rc = fit_path(&q, p, 0, cg + (size_t)p * N, ch + (size_t)p * K, &res2, err))) goto done;
  double greedy = q.ww2 > 0.0 ? sqrt(res2 / q.ww2) : 0.0;
  double rel[TR_MAX_PATHS] = {0}, crel[TR_MAX_PATHS];
  double best = coupled(&q, cg, ch, bits, rel);
  memcpy(g, cg, (size_t)k * N * sizeof *g);
  memcpy(h, ch, (size_t)k * K * sizeof *h);
  int kept = 0;
  double gs = greedy;

  for (int t = 1; t <= opt->rounds; t++) {
    for (int p = 0; p < k; p++) {
      float *gp = cg + (size_t)p * N, *hp = ch + (size_t)p * K;
      add_back(&q, p, gp, hp);
      if ((rc = fit_path(&q, p, 1, gp, hp, &res2, err))) goto done;
    }
    gs = q.ww2 > 0.0 ? sqrt(res2 / q.ww2) : 0.0;
    double e = coupled(&q, cg, ch, cand, crel);
    if (e < best) {
      best = e;
      kept = t;
      memcpy(bits, cand, (size_t)k * N * q.words * sizeof *bits);
      memcpy(g, cg, (size_t)k * N * sizeof *g);
      memcpy(h, ch, (size_t)k * K * sizeof *h);
      memcpy(rel, crel, sizeof rel);
    }
  }

  if (stats) {
    memset(stats, 0, sizeof *stats);
    stats->rel_err = rel[k - 1];
    stats->rel_err_weighted = best;
    for (int p = 0; p < k; p++) stats->rel_err_path[p] = rel[p];
    stats->rel_err_greedy = greedy;
    stats->rel_err_gs = gs;
    stats->round_kept = kept;
    stats->power_iters = q.iters;
  }
  rc = RB_OK;
done:
  ptq_free(&q);
  rb_free(cand);
  rb_free(cg);
  rb_free(ch);
  return rc;
}
