/* validate.c: a linear's fresh random data and its CPU reference, for the
 * tuner's check of each candidate before it is timed. The inputs are drawn
 * the way tests/gpu/test_linear.c draws them (random signs; g and h so that
 * y is O(1); normal x and res; fp16-rounded), and the expected rows come from
 * codegen/reference.c, float64, computed once per unit: the reference does
 * not depend on the schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/autotune.h"

typedef struct {
  uint64_t s;
} Rng;

static uint64_t rnd(Rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}
static double unif(Rng *r) { return (double)(rnd(r) >> 11) * (1.0 / 9007199254740992.0); }
static double normal(Rng *r) {
  double u = unif(r), v = unif(r);
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* v rounded to fp16: the bits, and the rounded value in *f. */
static uint16_t half(double v, float *f) {
  uint16_t b = rb_f16_from_f32((float)v);
  *f = rb_f32_from_f16(b);
  return b;
}

static int int_cmp(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* The rows to compute: all when cheap, else a spread with each batch's first and last row. */
static int pick_rows(AtLinearData *d, const int *batches, int nb) {
  double per_row = (double)d->ntot * d->op.K * d->op.paths;
  int n = (int)(1.5e8 / per_row), B = d->max_batch;
  if (n < 2) n = 2;
  d->rows = rb_malloc((size_t)(B + nb + 2) * sizeof *d->rows);
  if (!d->rows) return RB_EINTERNAL;
  int m = 0;
  if (n >= B) {
    for (int i = 0; i < B; i++) d->rows[m++] = i;
  } else {
    for (int i = 0; i < n; i++) d->rows[m++] = (int)((long)i * (B - 1) / (n - 1));
    for (int i = 0; i < nb; i++)
      if (batches[i] >= 1 && batches[i] <= B) d->rows[m++] = batches[i] - 1;
  }
  qsort(d->rows, (size_t)m, sizeof *d->rows, int_cmp);
  int u = 0;
  for (int i = 0; i < m; i++)
    if (!u || d->rows[u - 1] != d->rows[i]) d->rows[u++] = d->rows[i];
  d->nrows = u;
  return RB_OK;
}

int at_linear_data_make(AtLinearData *d, const CgOp *op, int max_batch, const int *batches, int nb, uint64_t seed) {
  memset(d, 0, sizeof *d);
  d->op = *op;
  d->max_batch = max_batch;
  d->nout = cg_ref_linear_width(op, &d->ntot);
  Rng r = {seed ? seed : 0x9E3779B97F4A7C15ull};
  int P = op->paths, K = op->K, S = op->nseg;
  size_t nx = (size_t)max_batch * K, nres = (size_t)max_batch * d->ntot, nh = (size_t)S * P * K;
  d->g16 = rb_malloc((size_t)P * d->ntot * 2);
  d->h16 = rb_malloc(nh * 2);
  d->h = rb_malloc(nh * sizeof(float));
  d->x16 = rb_malloc(nx * 2);
  d->x = rb_malloc(nx * sizeof(float));
  d->res16 = rb_malloc(nres * 2);
  d->res = rb_malloc(nres * sizeof(float));
  int8_t *signs = NULL;
  if (!d->g16 || !d->h16 || !d->h || !d->x16 || !d->x || !d->res16 || !d->res) goto oom;
  double gscale = 50.0 / sqrt((double)K); /* each path's dot has about sqrt(K) terms of size 0.02 */
  for (size_t i = 0; i < nh; i++) d->h16[i] = half((0.5 + unif(&r)) * 0.02, &d->h[i]);
  for (int s = 0, row0 = 0; s < S; row0 += op->N[s], s++) {
    int N = op->N[s];
    size_t nsign = (size_t)P * N * K;
    d->g[s] = rb_malloc((size_t)P * N * sizeof(float));
    d->bits[s] = rb_malloc((size_t)P * N * (size_t)cg_packed_words(K) * 4);
    signs = rb_malloc(nsign);
    if (!d->g[s] || !d->bits[s] || !signs) goto oom;
    for (int p = 0; p < P; p++)
      for (int n = 0; n < N; n++)
        d->g16[(size_t)p * d->ntot + row0 + n] = half((0.5 + unif(&r)) * gscale, &d->g[s][(size_t)p * N + n]);
    for (size_t i = 0; i < nsign; i += 64) {
      uint64_t w = rnd(&r);
      for (size_t j = 0; j < 64 && i + j < nsign; j++) signs[i + j] = (w >> j) & 1 ? -1 : 1;
    }
    cg_ref_pack_signs(d->bits[s], signs, P, N, K);
    rb_free(signs);
    signs = NULL;
  }
  for (size_t i = 0; i < nx; i++) d->x16[i] = half(normal(&r), &d->x[i]);
  for (size_t i = 0; i < nres; i++) d->res16[i] = half(normal(&r), &d->res[i]);
  if (pick_rows(d, batches, nb)) goto oom;
  d->ref = rb_malloc((size_t)d->nrows * d->nout * sizeof(double));
  double *seg = rb_malloc((size_t)d->ntot * sizeof(double));
  if (!d->ref || !seg) {
    rb_free(seg);
    goto oom;
  }
  const uint32_t *bs[CG_MAX_SEG];
  const float *gs[CG_MAX_SEG];
  for (int s = 0; s < S; s++) bs[s] = d->bits[s], gs[s] = d->g[s];
  for (int i = 0; i < d->nrows; i++) {
    int b = d->rows[i];
    cg_ref_linear_row(op, d->ref + (size_t)i * d->nout, d->x + (size_t)b * K, bs, gs, d->h,
                      d->res + (size_t)b * d->ntot, seg);
  }
  rb_free(seg);
  return RB_OK;
oom:
  rb_free(signs);
  at_linear_data_free(d);
  return RB_EINTERNAL;
}

void at_linear_data_free(AtLinearData *d) {
  for (int s = 0; s < CG_MAX_SEG; s++) {
    rb_free(d->bits[s]);
    rb_free(d->g[s]);
  }
  rb_free(d->g16);
  rb_free(d->h16);
  rb_free(d->h);
  rb_free(d->x16);
  rb_free(d->x);
  rb_free(d->res16);
  rb_free(d->res);
  rb_free(d->rows);
  rb_free(d->ref);
  memset(d, 0, sizeof *d);
}

int at_linear_data_check(const AtLinearData *d, const CgSchedule *s, const uint16_t *y, int batch, double *err,
                         RbBuf *why) {
  size_t ny = (size_t)batch * d->nout, nnan = 0;
  for (size_t i = 0; i < ny; i++) nnan += isnan(rb_f32_from_f16(y[i])) != 0;
  int nr = 0;
  while (nr < d->nrows && d->rows[nr] < batch) nr++;
  double *got = rb_malloc(((size_t)nr * d->nout + 1) * sizeof(double));
  double e = NAN;
  if (got) {
    for (int i = 0; i < nr; i++)
      for (int n = 0; n < d->nout; n++)
        got[(size_t)i * d->nout + n] = rb_f32_from_f16(y[(size_t)d->rows[i] * d->nout + n]);
    e = cg_ref_rel_l2(got, d->ref, (size_t)nr * d->nout);
    rb_free(got);
  }
  if (err) *err = e;
  double tol = cg_ref_linear_tolerance(s);
  if (nnan == 0 && e <= tol) return 1;
  if (nnan)
    rb_buf_printf(why, "batch %d: %zu of %zu outputs are NaN (an output left unwritten)", batch, nnan, ny);
  else
    rb_buf_printf(why, "batch %d: relative L2 error %.3g against the reference over %d rows, above %.0e", batch, e,
                  nr, tol);
  return 0;
}
