/* test_ptq: tr_ptq_linear against the test's own recomputation of the method
 * (DESIGN "The method, exactly"): signs re-derived from W, the reconstruction
 * through ref_linear, monotone error in k, exact recovery of a rank-1
 * magnitude pattern, refinement never worse than greedy, preconditioning and
 * allocation failure. Fresh Gaussian inputs from a fixed seed, odd shapes.
 * usage: test_ptq CASE (signs | monotone | reconstruct | rank1 | refine |
 *        weights | errors | oom | gauss576) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/ref/ref.h"
#include "trainer/trainer.h"
#include "tests/common/check.h"


static const int shapes[][2] = {{37, 70}, {64, 33}, {256, 512}};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static uint64_t rng_state;

static uint64_t rng_next(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double rng_uniform(void) { return ((rng_next() >> 11) + 0.5) / 9007199254740992.0; }

static double rng_gauss(void) { /* Box-Muller */
  return sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform());
}

static float *gauss_matrix(int N, int K, uint64_t seed) {
  rng_state = seed;
  float *W = rb_malloc((size_t)N * K * sizeof *W);
  for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)rng_gauss();
  return W;
}

typedef struct {
  uint32_t *bits;
  float *g, *h;
  TrPtqStats st;
  int rc;
} Out;

static Out quantize(const float *W, int N, int K, int k, const TrPtqOptions *opt) {
  Out o;
  o.bits = rb_malloc((size_t)k * N * ((K + 31) / 32) * sizeof *o.bits);
  o.g = rb_malloc((size_t)k * N * sizeof *o.g);
  o.h = rb_malloc((size_t)k * K * sizeof *o.h);
  RbBuf err = {0};
  o.rc = tr_ptq_linear(W, N, K, k, opt, o.bits, o.g, o.h, &o.st, &err);
  if (o.rc) printf("tr_ptq_linear(%d x %d, k = %d): %s\n", N, K, k, err.data ? err.data : "?");
  rb_buf_free(&err);
  return o;
}

static void out_free(Out *o) {
  rb_free(o->bits);
  rb_free(o->g);
  rb_free(o->h);
}

static int bit_of(const uint32_t *bits, int p, int n, int j, int N, int K) {
  int words = (K + 31) / 32;
  return (bits[((size_t)p * N + n) * words + j / 32] >> (j % 32)) & 1u;
}

/* W_hat (N, K) in double, by the equation, from the unpacked output. */
static double *reconstruct(const Out *o, int N, int K, int k) {
  double *Wh = rb_calloc((size_t)N * K, sizeof *Wh);
  for (int p = 0; p < k; p++)
    for (int n = 0; n < N; n++)
      for (int j = 0; j < K; j++) {
        double s = bit_of(o->bits, p, n, j, N, K) ? -1.0 : 1.0;
        Wh[(size_t)n * K + j] += (double)o->g[(size_t)p * N + n] * s * (double)o->h[(size_t)p * K + j];
      }
  return Wh;
}

static double rel_err(const float *W, const double *Wh, size_t nk) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < nk; i++) {
    double d = (double)W[i] - Wh[i];
    num += d * d;
    den += (double)W[i] * W[i];
  }
  return sqrt(num / den);
}

/* (a) The bits are sign(R_{p-1}), R re-derived here from W with the output
 * scales by the float recipe of the contract; pad bits are 0; scales are
 * finite and non-negative. A double-precision re-derivation may disagree only
 * where the residual is within float rounding of 0. */
static void check_signs(const char *what, const float *W, int N, int K, int k, const Out *o) {
  size_t nk = (size_t)N * K;
  float *R = rb_malloc(nk * sizeof *R);
  double *Rd = rb_malloc(nk * sizeof *Rd);
  memcpy(R, W, nk * sizeof *R);
  for (size_t i = 0; i < nk; i++) Rd[i] = W[i];
  int words = (K + 31) / 32, bad = 0, bad_d = 0, pad = 0, neg = 0;
  for (int p = 0; p < k; p++) {
    for (int n = 0; n < N; n++) {
      float gn = o->g[(size_t)p * N + n];
      neg += !(gn >= 0.0f) || !isfinite(gn);
      for (int j = K; j < words * 32; j++) pad += bit_of(o->bits, p, n, j, N, words * 32);
      for (int j = 0; j < K; j++) {
        size_t i = (size_t)n * K + j;
        float hj = o->h[(size_t)p * K + j];
        int want = R[i] < 0.0f, got = bit_of(o->bits, p, n, j, N, K);
        bad += want != got;
        if ((Rd[i] < 0.0) != got && fabs(Rd[i]) > 1e-4) bad_d++;
        float s = want ? -1.0f : 1.0f, gh = gn * hj;
        R[i] = R[i] - s * gh;
        Rd[i] -= (double)s * gn * hj;
      }
    }
    for (int j = 0; j < K; j++) neg += !(o->h[(size_t)p * K + j] >= 0.0f) || !isfinite(o->h[(size_t)p * K + j]);
  }
  CHECK(!bad, "%s %dx%d k=%d: %d signs differ from sign(R_{p-1})", what, N, K, k, bad);
  CHECK(!bad_d, "%s %dx%d k=%d: %d signs differ from the double re-derivation away from 0", what, N, K, k, bad_d);
  CHECK(!pad, "%s %dx%d k=%d: %d pad bits set", what, N, K, k, pad);
  CHECK(!neg, "%s %dx%d k=%d: %d negative or non-finite scales", what, N, K, k, neg);
  rb_free(R);
  rb_free(Rd);
}

static void test_signs(void) {
  for (int s = 0; s < NSHAPES; s++) {
    int N = shapes[s][0], K = shapes[s][1];
    float *W = gauss_matrix(N, K, 100 + s);
    for (int k = 1; k <= 4; k++)
      for (int variant = 0; variant < 3; variant++) {
        /* greedy, greedy with f16 scales, two rounds with f16 scales */
        TrPtqOptions opt = {.rounds = variant == 2 ? 2 : 0, .f16_scales = variant > 0};
        Out o = quantize(W, N, K, k, &opt);
        CHECK(o.rc == RB_OK, "signs: rc %d", o.rc);
        if (!o.rc) check_signs(variant == 0 ? "greedy" : variant == 1 ? "greedy-f16" : "T=2-f16", W, N, K, k, &o);
        if (!o.rc && opt.f16_scales) {
          int off = 0;
          for (int i = 0; i < k * N; i++) off += rb_f32_from_f16(rb_f16_from_f32(o.g[i])) != o.g[i];
          for (int i = 0; i < k * K; i++) off += rb_f32_from_f16(rb_f16_from_f32(o.h[i])) != o.h[i];
          CHECK(!off, "signs: %d scales are not f16 values", off);
        }
        out_free(&o);
      }
    rb_free(W);
  }
}

/* (b) The error falls strictly with every path, and the stats agree. */
static void test_monotone(void) {
  for (int s = 0; s < NSHAPES; s++) {
    int N = shapes[s][0], K = shapes[s][1];
    float *W = gauss_matrix(N, K, 200 + s);
    double prev = 1.0;
    for (int k = 1; k <= 4; k++) {
      Out o = quantize(W, N, K, k, NULL);
      double *Wh = reconstruct(&o, N, K, k);
      double e = rel_err(W, Wh, (size_t)N * K);
      printf("%dx%d k=%d rel_err %.6f\n", N, K, k, e);
      CHECK(e < prev, "%dx%d: error %.6f at k = %d is not below %.6f at k = %d", N, K, e, k, prev, k - 1);
      CHECK(fabs(e - o.st.rel_err) <= 1e-5 * e, "%dx%d k=%d: stats say %.8f, recomputed %.8f", N, K, k,
            o.st.rel_err, e);
      for (int p = 1; p < k; p++)
        CHECK(o.st.rel_err_path[p] < o.st.rel_err_path[p - 1], "%dx%d k=%d: path errors not falling", N, K, k);
      prev = e;
      rb_free(Wh);
      out_free(&o);
    }
    rb_free(W);
  }
}

/* (c) ref_linear on the packed output equals the test's own W_hat, applied to
 * the identity (all of W_hat) and to a random batch. */
static void test_reconstruct(void) {
  for (int s = 0; s < NSHAPES; s++) {
    int N = shapes[s][0], K = shapes[s][1];
    float *W = gauss_matrix(N, K, 300 + s);
    for (int k = 1; k <= 4; k++) {
      TrPtqOptions opt = {.rounds = k == 3 ? 1 : 0, .f16_scales = k % 2};
      Out o = quantize(W, N, K, k, &opt);
      double *Wh = reconstruct(&o, N, K, k);
      float *eye = rb_calloc((size_t)K * K, sizeof *eye);
      for (int j = 0; j < K; j++) eye[(size_t)j * K + j] = 1.0f;
      double *yt = rb_malloc((size_t)K * N * sizeof *yt); /* (K, N) = W_hat^T */
      ref_linear(yt, eye, o.bits, o.g, o.h, K, N, K, k);
      double worst = 0.0, scale = 0.0;
      for (int n = 0; n < N; n++)
        for (int j = 0; j < K; j++) {
          worst = fmax(worst, fabs(yt[(size_t)j * N + n] - Wh[(size_t)n * K + j]));
          scale = fmax(scale, fabs(Wh[(size_t)n * K + j]));
        }
      CHECK(worst <= 1e-12 * scale, "%dx%d k=%d: ref_linear(I) differs from W_hat by %.3g", N, K, k, worst);

      enum { B = 3 };
      float *x = rb_malloc((size_t)B * K * sizeof *x);
      for (int i = 0; i < B * K; i++) x[i] = (float)rng_gauss();
      double *y = rb_malloc((size_t)B * N * sizeof *y), *y2 = rb_malloc((size_t)B * N * sizeof *y2);
      ref_linear(y, x, o.bits, o.g, o.h, B, N, K, k);
      for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
          double acc = 0.0;
          for (int j = 0; j < K; j++) acc += Wh[(size_t)n * K + j] * x[(size_t)b * K + j];
          y2[(size_t)b * N + n] = acc;
        }
      double r = ref_rel_l2(y, y2, (size_t)B * N);
      CHECK(r <= 1e-12, "%dx%d k=%d: W_hat x differs from ref_linear by %.3g", N, K, k, r);
      double e = rel_err(W, Wh, (size_t)N * K);
      CHECK(fabs(e - o.st.rel_err) <= 1e-5 * e, "%dx%d k=%d: reported %.8f, reconstructed %.8f", N, K, k,
            o.st.rel_err, e);
      rb_free(x);
      rb_free(y);
      rb_free(y2);
      rb_free(eye);
      rb_free(yt);
      rb_free(Wh);
      out_free(&o);
    }
    rb_free(W);
  }
}

/* (d) W = diag(g) S diag(h) with positive g, h and random signs S: one path
 * recovers it to float precision, with exactly S as its signs. */
static void test_rank1(void) {
  for (int s = 0; s < NSHAPES; s++) {
    int N = shapes[s][0], K = shapes[s][1];
    rng_state = 400 + s;
    float *g = rb_malloc((size_t)N * sizeof *g), *h = rb_malloc((size_t)K * sizeof *h);
    for (int n = 0; n < N; n++) g[n] = (float)(0.1 + 2.0 * rng_uniform());
    for (int j = 0; j < K; j++) h[j] = (float)(0.01 + 0.05 * rng_uniform());
    float *W = rb_malloc((size_t)N * K * sizeof *W);
    int8_t *S = rb_malloc((size_t)N * K);
    for (int n = 0; n < N; n++)
      for (int j = 0; j < K; j++) {
        S[(size_t)n * K + j] = rng_next() >> 63 ? -1 : 1;
        W[(size_t)n * K + j] = g[n] * h[j] * S[(size_t)n * K + j];
      }
    for (int k = 1; k <= 4; k += 3) {
      Out o = quantize(W, N, K, k, NULL);
      double *Wh = reconstruct(&o, N, K, k);
      double e = rel_err(W, Wh, (size_t)N * K);
      printf("rank-1 %dx%d k=%d rel_err %.3g\n", N, K, k, e);
      CHECK(e < 1e-5, "rank-1 %dx%d k=%d: rel_err %.3g", N, K, k, e);
      int bad = 0;
      for (int n = 0; n < N; n++)
        for (int j = 0; j < K; j++) bad += bit_of(o.bits, 0, n, j, N, K) != (S[(size_t)n * K + j] < 0);
      CHECK(!bad, "rank-1 %dx%d: %d signs of path 1 differ from the pattern", N, K, bad);
      rb_free(Wh);
      out_free(&o);
    }
    rb_free(g);
    rb_free(h);
    rb_free(W);
    rb_free(S);
  }
}

/* (e) T = 2 refinement rounds are never worse than greedy. */
static void test_refine(void) {
  for (int s = 0; s < NSHAPES; s++) {
    int N = shapes[s][0], K = shapes[s][1];
    float *W = gauss_matrix(N, K, 500 + s);
    for (int k = 1; k <= 4; k++) {
      TrPtqOptions t0 = {0}, t2 = {.rounds = 2};
      Out a = quantize(W, N, K, k, &t0), b = quantize(W, N, K, k, &t2);
      double *Wa = reconstruct(&a, N, K, k), *Wb = reconstruct(&b, N, K, k);
      double ea = rel_err(W, Wa, (size_t)N * K), eb = rel_err(W, Wb, (size_t)N * K);
      printf("%dx%d k=%d greedy %.6f  T=2 %.6f (kept round %d; decoupled GS fit %.6f)\n", N, K, k, ea, eb,
             b.st.round_kept, b.st.rel_err_gs);
      CHECK(eb <= ea * (1.0 + 1e-9), "%dx%d k=%d: T=2 error %.8f above greedy %.8f", N, K, k, eb, ea);
      rb_free(Wa);
      rb_free(Wb);
      out_free(&a);
      out_free(&b);
    }
    rb_free(W);
  }
}

/* Preconditioning: all-ones weights change nothing; real weights keep the
 * coupled signs (checked in the original domain) and lower the weighted error
 * relative to the unweighted fit on a strongly skewed weighting. */
static void test_weights(void) {
  int N = 64, K = 96, k = 2;
  float *W = gauss_matrix(N, K, 600);
  float *r = rb_malloc((size_t)N * sizeof *r), *c = rb_malloc((size_t)K * sizeof *c);
  for (int n = 0; n < N; n++) r[n] = 1.0f;
  for (int j = 0; j < K; j++) c[j] = 1.0f;
  TrPtqOptions ones = {.row_weight = r, .col_weight = c};
  Out a = quantize(W, N, K, k, NULL), b = quantize(W, N, K, k, &ones);
  CHECK(!memcmp(a.bits, b.bits, (size_t)k * N * 3 * 4) && !memcmp(a.g, b.g, (size_t)k * N * 4) &&
            !memcmp(a.h, b.h, (size_t)k * K * 4),
        "all-ones weights changed the result");
  out_free(&b);
  for (int n = 0; n < N; n++) r[n] = (float)exp(2.0 * rng_gauss());
  for (int j = 0; j < K; j++) c[j] = (float)exp(2.0 * rng_gauss());
  TrPtqOptions skew = {.row_weight = r, .col_weight = c, .f16_scales = 1};
  b = quantize(W, N, K, k, &skew);
  CHECK(b.rc == RB_OK, "weighted: rc %d", b.rc);
  check_signs("weighted", W, N, K, k, &b);
  double *Wa = reconstruct(&a, N, K, k), *Wb = reconstruct(&b, N, K, k);
  double wa = 0.0, wb = 0.0;
  for (int n = 0; n < N; n++)
    for (int j = 0; j < K; j++) {
      double x = (double)r[n] * c[j], w = W[(size_t)n * K + j];
      wa += pow(x * (w - Wa[(size_t)n * K + j]), 2);
      wb += pow(x * (w - Wb[(size_t)n * K + j]), 2);
    }
  printf("weighted error: unweighted fit %.4g, weighted fit %.4g\n", sqrt(wa), sqrt(wb));
  CHECK(wb < wa, "the weighted fit (%.4g) is not better in its own norm than the plain fit (%.4g)", sqrt(wb),
        sqrt(wa));
  rb_free(Wa);
  rb_free(Wb);
  out_free(&a);
  out_free(&b);
  rb_free(r);
  rb_free(c);
  rb_free(W);
}

/* Bad arguments and inputs are refused with a message, never a crash. */
static void test_errors(void) {
  float W[6] = {1, -2, 3, -4, 5, -6};
  uint32_t bits[8];
  float g[8], h[16];
  struct {
    int N, K, k;
    const char *want;
  } bad[] = {{2, 3, 0, "paths = 0"}, {2, 3, 5, "paths = 5"}, {0, 3, 1, "N = 0"}, {2, -1, 1, "K = -1"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    RbBuf err = {0};
    int rc = tr_ptq_linear(W, bad[i].N, bad[i].K, bad[i].k, NULL, bits, g, h, NULL, &err);
    CHECK(rc == RB_EUSER && err.data && strstr(err.data, bad[i].want), "case %zu: rc %d, '%s'", i, rc,
          err.data ? err.data : "");
    rb_buf_free(&err);
  }
  W[4] = NAN;
  RbBuf err = {0};
  int rc = tr_ptq_linear(W, 2, 3, 1, NULL, bits, g, h, NULL, &err);
  CHECK(rc == RB_EUSER && err.data && strstr(err.data, "weight (1, 1) is not finite"), "NaN: rc %d, '%s'", rc,
        err.data ? err.data : "");
  rb_buf_free(&err);
  /* A scale past f16's range is refused when the caller asks for f16 scales.
   * g and h split the magnitude evenly, so that takes |W| > 65504^2. */
  float big[4] = {1e10f, -1e10f, 1e10f, 1e10f};
  TrPtqOptions f16 = {.f16_scales = 1};
  rc = tr_ptq_linear(big, 2, 2, 1, &f16, bits, g, h, NULL, &err);
  CHECK(rc == RB_EUSER && err.data && strstr(err.data, "out of f16 range"), "f16 overflow: rc %d, '%s'", rc,
        err.data ? err.data : "");
  rb_buf_free(&err);
  /* All-zero W: zero scales, all signs +1, zero error. */
  float z[6] = {0};
  TrPtqStats st;
  rc = tr_ptq_linear(z, 2, 3, 2, NULL, bits, g, h, &st, &err);
  CHECK(rc == RB_OK && st.rel_err == 0.0 && bits[0] == 0 && bits[3] == 0 && g[0] == 0.0f && h[5] == 0.0f,
        "zero W: rc %d err %g", rc, st.rel_err);
  rb_buf_free(&err);
}

/* Every allocation failing in turn gives RB_EINTERNAL and leaks nothing
 * (the sanitizer build checks the leaks). */
static void test_oom(void) {
  float *W = gauss_matrix(37, 70, 700);
  uint32_t bits[3 * 37 * 3];
  float g[3 * 37], h[3 * 70];
  int n = 0, rc;
  do {
    RbBuf err = {0};
    rb_alloc_fail_after = n++;
    rc = tr_ptq_linear(W, 37, 70, 3, &(TrPtqOptions){.rounds = 1}, bits, g, h, NULL, &err);
    rb_alloc_fail_after = -1;
    /* Every later allocation fails too, so the message itself may be lost. */
    CHECK(rc == RB_OK || (rc == RB_EINTERNAL && (!err.data || strstr(err.data, "out of memory"))),
          "fail after %d: rc %d '%s'", n - 1, rc, err.data ? err.data : "");
    rb_buf_free(&err);
  } while (rc != RB_OK && n < 100);
  CHECK(rc == RB_OK && n > 1, "never succeeded or never failed (%d)", n);
  rb_free(W);
}

/* The report's numbers: a 576 x 576 standard Gaussian, k = 1..4, greedy and
 * T = 2. For k = 1 theory gives sqrt(1 - 2/pi) = 0.6028 plus a little. */
static void test_gauss576(void) {
  float *W = gauss_matrix(576, 576, 576);
  double prev = 1.0;
  for (int k = 1; k <= 4; k++) {
    TrPtqOptions t2 = {.rounds = 2, .f16_scales = 1};
    Out a = quantize(W, 576, 576, k, NULL), b = quantize(W, 576, 576, k, &t2);
    printf("576x576 k=%d: greedy %.6f (paths", k, a.st.rel_err);
    for (int p = 0; p < k; p++) printf(" %.4f", a.st.rel_err_path[p]);
    printf("), T=2 f16 %.6f (kept %d, decoupled GS %.6f), power iterations %d\n", b.st.rel_err, b.st.round_kept,
           b.st.rel_err_gs, a.st.power_iters);
    CHECK(a.st.rel_err < prev, "k=%d not below k-1", k);
    if (k == 1) CHECK(a.st.rel_err > 0.59 && a.st.rel_err < 0.62, "k=1: %.4f, expected about 0.603", a.st.rel_err);
    prev = a.st.rel_err;
    out_free(&a);
    out_free(&b);
  }
  rb_free(W);
}

int main(int argc, char **argv) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } cases[] = {{"signs", test_signs},   {"monotone", test_monotone}, {"reconstruct", test_reconstruct},
               {"rank1", test_rank1},   {"refine", test_refine},     {"weights", test_weights},
               {"errors", test_errors}, {"oom", test_oom},           {"gauss576", test_gauss576}};
  int ran = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (argc < 2 || !strcmp(argv[1], cases[i].name)) {
      cases[i].fn();
      ran++;
    }
  if (!ran) {
    printf("unknown case '%s'\n", argv[1]);
    return 2;
  }
  return CHECK_SUMMARY();
}
