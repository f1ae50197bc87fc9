/* test_train_optim.c: GPU test of the optimizer-family kernels
 * (codegen/cuda/train_optim.c) against CPU transcriptions of TRAINING.md.
 * Exits 77 ("SKIP: ...") when there is no GPU.
 *
 *   derive         bits equal trainer/ptq.c's tr_ptq_linear bits for the scales it
 *                  returns (its bits are the coupled signs of its scales), and bits
 *                  and W_hat equal a plain-C transcription of the contract's loop on
 *                  random W, g, h: k = 1..4, K = 576, 160 and 70 (pad bits); W_hat
 *                  bitwise equal to bf16 of the CPU sum. Tolerance: 0 differing words/values.
 *   derive_grad_g/h  against a float64 reference on random dwhat and bits: rel L2 <= 1e-5.
 *   adamw          one and five steps, clamp on and off, clip scalar 0.37, and a launch
 *                  extent short of n (the kernel strides): rel <= 1e-6 (each operation is
 *                  rounded on its own on both sides, so 0 is expected; the count of
 *                  differing values is printed).
 *   muon_momentum  three steps; muon_normalize both orientations (and a zero matrix);
 *                  muon_apply both orientations: as adamw.
 *   batch_sumsq    against float64: rel <= 1e-5.   clip_coef: rel <= 1e-6.
 *   determinism    derive_grad_g, derive_grad_h and batch_sumsq twice: bitwise equal.
 * Outputs are poisoned with 0xFF bytes first (NaN, or set pad bits), so an element
 * a kernel skips shows. One line per case (max error, tolerance), a summary, and a
 * nonzero exit on any failure; a few informational timings at the end. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "runtime/cuda/gpu.h"
#include "runtime/jit/jit.h"
#include "tests/common/launch.h"
#include "trainer/trainer.h"

static int npass, nfail;
static RtGpu *gpu;

/* ==== host helpers ==== */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1), xorshift64*. */
static double urand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 52) - 1.0;
}

static void *xmalloc(size_t n) {
  void *p = calloc(n ? n : 1, 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(2);
  }
  return p;
}

static void die(const char *what) {
  fprintf(stderr, "%s failed: %s\n", what, rt_gpu_error(gpu));
  exit(2);
}

static RtDevPtr dalloc(size_t bytes) {
  RtDevPtr p = 0;
  if (rt_mem_alloc(gpu, &p, bytes ? bytes : 4)) die("rt_mem_alloc");
  return p;
}

static RtDevPtr dupload(const void *h, size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memcpy_htod(gpu, p, h, bytes)) die("rt_memcpy_htod");
  return p;
}

static void dput(RtDevPtr p, const void *h, size_t bytes) {
  if (rt_memcpy_htod(gpu, p, h, bytes)) die("rt_memcpy_htod");
}

/* Every byte 0xFF until written: NaN floats, NaN bf16, all bits set. */
static RtDevPtr dpoison(size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memset8(gpu, p, 0xFF, bytes)) die("rt_memset8");
  return p;
}

static void dget(void *h, RtDevPtr p, size_t bytes) {
  if (rt_memcpy_dtoh(gpu, h, p, bytes)) die("rt_memcpy_dtoh");
}

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

/* Record one comparison and print its line. */
static void report(const char *what, double err, double tol, const char *extra) {
  int ok = err <= tol && !isnan(err);
  if (ok)
    npass++;
  else
    nfail++;
  printf("%s %-60s err %.2e (tol %.0e)%s%s\n", ok ? "ok  " : "FAIL", what, err, tol, extra && *extra ? "  " : "",
         extra ? extra : "");
}

static double rel_l2(const double *a, const double *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Max relative difference of float arrays (|a - b| / max(|b|, 1e-30)), NaN if any
 * a is NaN; *ndiff gets the count of values whose bits differ. */
static double max_rel_f(const float *a, const float *b, size_t n, size_t *ndiff) {
  double m = 0.0;
  *ndiff = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i]) && !isnan(b[i])) return NAN;
    if (memcmp(&a[i], &b[i], 4)) ++*ndiff;
    double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), 1e-30);
    if (d > m) m = d;
  }
  return m;
}

/* ==== kernels ==== */

typedef struct {
  CgKernel spec;
  RtModule *mod;
  RtFunction fn;
  char entry[CG_ENTRY_MAX];
} Kernel;

static CgKernel spec(CgKind kind, int N, int K, int paths) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = kind;
  s.op.nseg = 1;
  s.op.N[0] = N;
  s.op.K = K;
  s.op.paths = paths;
  return s;
}

/* Emit, compile for this GPU and load. Exits on failure: a kernel that does not
 * build fails every case after it anyway. */
static Kernel kload(CgKernel s) {
  Kernel k;
  memset(&k, 0, sizeof k);
  k.spec = s;
  if (test_build_load(gpu, rt_gpu_arch(gpu), &s, &k.mod, &k.fn, k.entry)) exit(1);
  return k;
}

/* Launch with the marshalled arguments for extent n (1 for the fixed grids); sync. */
static void krun(Kernel *k, int n, CgArgv *a) {
  CgLaunch L = test_launch(&k->spec, n);
  if (!L.grid[0]) {
    fprintf(stderr, "no launch geometry for %s\n", k->entry);
    exit(1);
  }
  if (rt_launch(gpu, k->fn, L.grid, L.block, L.smem, NULL, a->v) || rt_sync(gpu)) {
    fprintf(stderr, "launch of %s failed: %s\n", k->entry, rt_gpu_error(gpu));
    exit(1);
  }
}

static void kfree(Kernel *k) { rt_module_unload(k->mod); }

/* ==== CPU transcriptions of TRAINING.md ==== */

/* The coupled derivation, the contract's loop word for word (this file is
 * built with -ffp-contract=off). */
static void cpu_derive(const float *W, const float *g, const float *h, int N, int K, int k, uint32_t *bits,
                       uint16_t *what) {
  int64_t words = cg_packed_words(K);
  memset(bits, 0, (size_t)k * N * words * 4);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < K; c++) {
      float R = W[(size_t)n * K + c], acc = 0.0f;
      for (int p = 0; p < k; p++) {
        float gh = g[(size_t)p * N + n] * h[(size_t)p * K + c];
        float B;
        if (R >= 0.0f) {
          B = 1.0f;
          R = R - gh;
        } else {
          B = -1.0f;
          R = R + gh;
          bits[((size_t)p * N + n) * words + c / 32] |= 1u << (c % 32);
        }
        acc = acc + B * gh;
      }
      what[(size_t)n * K + c] = rb_bf16_from_f32(acc);
    }
}

/* Random canonical bits, pad bits 0. */
static void rand_bits(uint32_t *bits, int k, int N, int K) {
  int64_t words = cg_packed_words(K);
  for (int64_t i = 0; i < (int64_t)k * N; i++)
    for (int64_t w = 0; w < words; w++) {
      uint32_t v = (uint32_t)((urand() + 1.0) * 2147483648.0);
      if (w == words - 1) v &= cg_packed_pad_mask(K);
      bits[i * words + w] = v;
    }
}

static int bit_of(const uint32_t *bits, int64_t words, int N, int p, int n, int c) {
  return (bits[((int64_t)p * N + n) * words + c / 32] >> (c % 32)) & 1u;
}

/* ==== derive ==== */

/* Run derive on W, g, h; compare with want_bits (and want_what when given). */
static void derive_check(Kernel *kd, const char *what, const float *W, const float *g, const float *h, int N, int K,
                         int k, const uint32_t *want_bits, const uint16_t *want_what) {
  int64_t words = cg_packed_words(K);
  size_t nb = (size_t)k * N * words, nw = (size_t)N * K;
  RtDevPtr dW = dupload(W, nw * 4), dg = dupload(g, (size_t)k * N * 4), dh = dupload(h, (size_t)k * K * 4);
  RtDevPtr dbits = dpoison(nb * 4), dwhat = dpoison(nw * 2);
  CgDeriveArgs a = {dwhat, dbits, dW, dg, dh};
  CgArgv av;
  cg_derive_argv(&a, &av);
  krun(kd, 1, &av);
  uint32_t *bits = xmalloc(nb * 4);
  uint16_t *wh = xmalloc(nw * 2);
  dget(bits, dbits, nb * 4);
  dget(wh, dwhat, nw * 2);
  size_t bad = 0, pad = 0, badw = 0;
  uint32_t mask = cg_packed_pad_mask(K);
  for (size_t i = 0; i < nb; i++) {
    bad += bits[i] != want_bits[i];
    if ((int64_t)(i % words) == words - 1) pad += (bits[i] & ~mask) != 0;
  }
  char extra[96], line[160];
  snprintf(extra, sizeof extra, "(%zu words, %zu with pad bits set)", nb, pad);
  snprintf(line, sizeof line, "derive %s bits: words differing", what);
  report(line, (double)(bad + pad), 0, extra);
  if (want_what) {
    for (size_t i = 0; i < nw; i++) badw += wh[i] != want_what[i];
    snprintf(extra, sizeof extra, "(%zu values)", nw);
    snprintf(line, sizeof line, "derive %s W_hat: bf16 values differing", what);
    report(line, (double)badw, 0, extra);
  }
  free(bits), free(wh);
  rt_mem_free(gpu, dW), rt_mem_free(gpu, dg), rt_mem_free(gpu, dh), rt_mem_free(gpu, dbits), rt_mem_free(gpu, dwhat);
}

static void test_derive(int N, int K, int k) {
  Kernel kd = kload(spec(CG_DERIVE, N, K, k));
  int64_t words = cg_packed_words(K);
  size_t nw = (size_t)N * K, nb = (size_t)k * N * words;
  float *W = xmalloc(nw * 4), *g = xmalloc((size_t)k * N * 4), *h = xmalloc((size_t)k * K * 4);
  uint32_t *bits = xmalloc(nb * 4), *cbits = xmalloc(nb * 4);
  uint16_t *cwhat = xmalloc(nw * 2);
  char what[96];

  /* 1. PTQ's scales: the kernel's bits are tr_ptq_linear's, and the transcription agrees. */
  for (size_t i = 0; i < nw; i++) W[i] = (float)(0.05 * urand());
  W[0] = 0.0f; /* sign(0) = +1 */
  RbBuf err = {0};
  if (tr_ptq_linear(W, N, K, k, NULL, bits, g, h, NULL, &err) != RB_OK) {
    fprintf(stderr, "tr_ptq_linear: %s\n", err.data ? err.data : "?");
    exit(1);
  }
  rb_buf_free(&err);
  cpu_derive(W, g, h, N, K, k, cbits, cwhat);
  snprintf(what, sizeof what, "N=%d K=%d k=%d ptq scales, CPU transcription vs tr_ptq_linear", N, K, k);
  report(what, same_bits(bits, cbits, nb * 4) ? 0.0 : 1.0, 0, "(1 = differ)");
  snprintf(what, sizeof what, "N=%d K=%d k=%d vs tr_ptq_linear", N, K, k);
  derive_check(&kd, what, W, g, h, N, K, k, bits, cwhat);

  /* 2. Random W, g, h (g, h positive, a few exact zeros and ties), against the transcription. */
  for (size_t i = 0; i < nw; i++) W[i] = (float)(0.1 * urand());
  for (int i = 0; i < k * N; i++) g[i] = (float)(0.02 + 0.03 * (urand() + 1.0));
  for (int i = 0; i < k * K; i++) h[i] = (float)(0.5 + 0.5 * (urand() + 1.0));
  for (size_t i = 0; i < nw; i += 97) W[i] = 0.0f;
  W[nw - 1] = g[N - 1] * h[K - 1]; /* R hits 0 exactly after path 1 */
  cpu_derive(W, g, h, N, K, k, cbits, cwhat);
  snprintf(what, sizeof what, "N=%d K=%d k=%d random", N, K, k);
  derive_check(&kd, what, W, g, h, N, K, k, cbits, cwhat);

  free(W), free(g), free(h), free(bits), free(cbits), free(cwhat);
  kfree(&kd);
}

/* ==== derive_grad_g / derive_grad_h ==== */

static void test_derive_grad(int N, int K, int k) {
  Kernel kg = kload(spec(CG_DERIVE_GRAD_G, N, K, k)), kh = kload(spec(CG_DERIVE_GRAD_H, N, K, k));
  int64_t words = cg_packed_words(K);
  size_t nw = (size_t)N * K, nb = (size_t)k * N * words;
  float *dw = xmalloc(nw * 4), *g = xmalloc((size_t)k * N * 4), *h = xmalloc((size_t)k * K * 4);
  uint32_t *bits = xmalloc(nb * 4);
  for (size_t i = 0; i < nw; i++) dw[i] = (float)urand();
  for (int i = 0; i < k * N; i++) g[i] = (float)(0.01 + 0.05 * (urand() + 1.0));
  for (int i = 0; i < k * K; i++) h[i] = (float)(0.2 + (urand() + 1.0));
  rand_bits(bits, k, N, K);
  double *rg = xmalloc((size_t)k * N * 8), *rh = xmalloc((size_t)k * K * 8);
  for (int p = 0; p < k; p++) {
    for (int n = 0; n < N; n++) {
      double s = 0.0;
      for (int c = 0; c < K; c++)
        s += (double)dw[(size_t)n * K + c] * (bit_of(bits, words, N, p, n, c) ? -1.0 : 1.0) * h[(size_t)p * K + c];
      rg[(size_t)p * N + n] = s;
    }
    for (int c = 0; c < K; c++) {
      double s = 0.0;
      for (int n = 0; n < N; n++)
        s += (double)dw[(size_t)n * K + c] * (bit_of(bits, words, N, p, n, c) ? -1.0 : 1.0) * g[(size_t)p * N + n];
      rh[(size_t)p * K + c] = s;
    }
  }
  RtDevPtr ddw = dupload(dw, nw * 4), dg = dupload(g, (size_t)k * N * 4), dh = dupload(h, (size_t)k * K * 4);
  RtDevPtr dbits = dupload(bits, nb * 4);
  RtDevPtr odg = dpoison((size_t)k * N * 4), odh = dpoison((size_t)k * K * 4);
  uint64_t nparts = cg_derive_grad_h_parts(&kh.spec.op);
  RtDevPtr part = nparts ? dpoison(nparts * 4) : 0;
  CgDeriveGradGArgs ag = {odg, ddw, dbits, dh};
  CgDeriveGradHArgs ah = {odh, part, ddw, dbits, dg};
  CgArgv avg, avh;
  cg_derive_grad_g_argv(&ag, &avg);
  cg_derive_grad_h_argv(&ah, &avh);
  float *og[2], *oh[2];
  for (int r = 0; r < 2; r++) {
    og[r] = xmalloc((size_t)k * N * 4), oh[r] = xmalloc((size_t)k * K * 4);
    if (r) { /* re-poison: the second run must write everything again */
      if (rt_memset8(gpu, odg, 0xFF, (size_t)k * N * 4) || rt_memset8(gpu, odh, 0xFF, (size_t)k * K * 4)) die("memset");
    }
    krun(&kg, 1, &avg);
    krun(&kh, 1, &avh);
    dget(og[r], odg, (size_t)k * N * 4);
    dget(oh[r], odh, (size_t)k * K * 4);
  }
  double *got = xmalloc((size_t)k * (N > K ? N : K) * 8);
  char what[96];
  for (int i = 0; i < k * N; i++) got[i] = og[0][i];
  snprintf(what, sizeof what, "derive_grad_g N=%d K=%d k=%d vs float64 (rel L2)", N, K, k);
  report(what, rel_l2(got, rg, (size_t)k * N), 1e-5, NULL);
  for (int i = 0; i < k * K; i++) got[i] = oh[0][i];
  snprintf(what, sizeof what, "derive_grad_h N=%d K=%d k=%d vs float64 (rel L2)", N, K, k);
  report(what, rel_l2(got, rh, (size_t)k * K), 1e-5, NULL);
  snprintf(what, sizeof what, "determinism derive_grad_g/h N=%d K=%d k=%d (1 = runs differ)", N, K, k);
  report(what, same_bits(og[0], og[1], (size_t)k * N * 4) && same_bits(oh[0], oh[1], (size_t)k * K * 4) ? 0.0 : 1.0,
         0, NULL);
  for (int r = 0; r < 2; r++) free(og[r]), free(oh[r]);
  free(got), free(dw), free(g), free(h), free(bits), free(rg), free(rh);
  rt_mem_free(gpu, ddw), rt_mem_free(gpu, dg), rt_mem_free(gpu, dh), rt_mem_free(gpu, dbits);
  rt_mem_free(gpu, odg), rt_mem_free(gpu, odh);
  if (part) rt_mem_free(gpu, part);
  kfree(&kg), kfree(&kh);
}

/* ==== adamw ==== */

static void scalars_set(float *sc, float lr_w, float lr_s, int t, float clip) {
  memset(sc, 0, CG_NSCALARS * sizeof *sc);
  sc[CG_SC_LR_W] = lr_w;
  sc[CG_SC_LR_S] = lr_s;
  sc[CG_SC_BIAS1] = (float)(1.0 - pow(0.9, t));
  sc[CG_SC_BIAS2] = (float)(1.0 - pow(0.999, t));
  sc[CG_SC_CLIP] = clip;
}

static void cpu_adamw(float *p, float *m, float *v, const float *grad, const float *sc, long long n, float b1,
                      float b2, float eps, int clamp) {
  float lr = sc[CG_SC_LR_S], bc1 = sc[CG_SC_BIAS1], bc2 = sc[CG_SC_BIAS2], clip = sc[CG_SC_CLIP];
  float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
  for (long long i = 0; i < n; i++) {
    float gr = grad[i] * clip;
    float mi = b1 * m[i] + ob1 * gr;
    float vi = b2 * v[i] + ob2 * (gr * gr);
    float den = sqrtf(vi / bc2) + eps;
    float pi = p[i] - (lr * (mi / bc1)) / den;
    if (clamp && pi < 0.0f) pi = 0.0f;
    m[i] = mi, v[i] = vi, p[i] = pi;
  }
}

static void test_adamw(long long n, int steps, int clamp, int extent) {
  Kernel ka = kload(spec(CG_ADAMW, 0, 0, 0));
  float *p = xmalloc(n * 4), *m = xmalloc(n * 4), *v = xmalloc(n * 4), *gr = xmalloc(n * 4), sc[CG_NSCALARS];
  for (long long i = 0; i < n; i++) p[i] = (float)(0.005 * (urand() + 1.0)); /* near 0: the clamp bites */
  RtDevPtr dp = dupload(p, n * 4), dm = dupload(m, n * 4), dv = dupload(v, n * 4), dgr = dalloc(n * 4);
  RtDevPtr dsc = dalloc(sizeof sc);
  CgAdamwArgs a = {dp, dm, dv, dgr, dsc, n, 0.9f, 0.999f, 1e-8f, clamp};
  CgArgv av;
  cg_adamw_argv(&a, &av);
  for (int t = 1; t <= steps; t++) {
    for (long long i = 0; i < n; i++) gr[i] = (float)urand();
    scalars_set(sc, 0.0f, 1e-3f * (float)t, t, 0.37f);
    dput(dgr, gr, n * 4);
    dput(dsc, sc, sizeof sc);
    krun(&ka, extent, &av);
    cpu_adamw(p, m, v, gr, sc, n, 0.9f, 0.999f, 1e-8f, clamp);
  }
  float *gp = xmalloc(n * 4), *gm = xmalloc(n * 4), *gv = xmalloc(n * 4);
  dget(gp, dp, n * 4), dget(gm, dm, n * 4), dget(gv, dv, n * 4);
  size_t d1, d2, d3, zeros = 0;
  double e = fmax(fmax(max_rel_f(gp, p, n, &d1), max_rel_f(gm, m, n, &d2)), max_rel_f(gv, v, n, &d3));
  for (long long i = 0; i < n; i++) zeros += p[i] == 0.0f;
  char what[128], extra[128];
  snprintf(what, sizeof what, "adamw n=%lld steps=%d clamp=%d extent=%d clip 0.37 (p, m, v max rel)", n, steps, clamp,
           extent);
  snprintf(extra, sizeof extra, "(%zu/%zu/%zu values differ; %zu clamped)", d1, d2, d3, zeros);
  report(what, e, 1e-6, extra);
  free(p), free(m), free(v), free(gr), free(gp), free(gm), free(gv);
  rt_mem_free(gpu, dp), rt_mem_free(gpu, dm), rt_mem_free(gpu, dv), rt_mem_free(gpu, dgr), rt_mem_free(gpu, dsc);
  kfree(&ka);
}

/* ==== muon ==== */

static void test_muon_momentum(long long n, int steps) {
  Kernel km = kload(spec(CG_MUON_MOMENTUM, 0, 0, 0));
  float *buf = xmalloc(n * 4), *u = xmalloc(n * 4), *gr = xmalloc(n * 4), sc[CG_NSCALARS];
  RtDevPtr dbuf = dupload(buf, n * 4), du = dpoison(n * 4), dgr = dalloc(n * 4), dsc = dalloc(sizeof sc);
  float mu = 0.95f;
  CgMuonMomentumArgs a = {dbuf, du, dgr, dsc, n, mu};
  CgArgv av;
  cg_muon_momentum_argv(&a, &av);
  for (int t = 1; t <= steps; t++) {
    for (long long i = 0; i < n; i++) gr[i] = (float)urand();
    scalars_set(sc, 0.02f, 0.0f, t, 0.37f);
    dput(dgr, gr, n * 4);
    dput(dsc, sc, sizeof sc);
    krun(&km, (int)n, &av);
    float c = sc[CG_SC_CLIP], omu = 1.0f - mu;
    for (long long i = 0; i < n; i++) {
      float tt = omu * (c * gr[i]);
      buf[i] = mu * buf[i] + tt;
      u[i] = tt + mu * buf[i];
    }
  }
  float *gb = xmalloc(n * 4), *gu = xmalloc(n * 4);
  dget(gb, dbuf, n * 4), dget(gu, du, n * 4);
  size_t d1, d2;
  double e = fmax(max_rel_f(gb, buf, n, &d1), max_rel_f(gu, u, n, &d2));
  char what[128], extra[96];
  snprintf(what, sizeof what, "muon_momentum n=%lld steps=%d (buf, u max rel)", n, steps);
  snprintf(extra, sizeof extra, "(%zu/%zu values differ)", d1, d2);
  report(what, e, 1e-6, extra);
  free(buf), free(u), free(gr), free(gb), free(gu);
  rt_mem_free(gpu, dbuf), rt_mem_free(gpu, du), rt_mem_free(gpu, dgr), rt_mem_free(gpu, dsc);
  kfree(&km);
}

/* normalize, then apply, for batch matrices (rows, cols) in one orientation. */
static void test_muon_normalize_apply(int batch, int rows, int cols, int transpose, int zero_first) {
  Kernel kn = kload(spec(CG_MUON_NORMALIZE, 0, 0, 0)), ka = kload(spec(CG_MUON_APPLY, 0, 0, 0));
  size_t per = (size_t)rows * cols, n = (size_t)batch * per;
  float *u = xmalloc(n * 4), *ss = xmalloc(batch * 4), *w = xmalloc(n * 4), sc[CG_NSCALARS];
  uint16_t *x = xmalloc(n * 2);
  for (size_t i = 0; i < n; i++) u[i] = (float)urand(), w[i] = (float)(0.1 * urand());
  if (zero_first) memset(u, 0, per * 4); /* ||u|| = 0: divides by 1e-7, gives zeros */
  for (int b = 0; b < batch; b++) {
    double s = 0.0;
    for (size_t i = 0; i < per; i++) s += (double)u[b * per + i] * u[b * per + i];
    ss[b] = (float)s;
  }
  RtDevPtr du = dupload(u, n * 4), dss = dupload(ss, batch * 4), dx = dpoison(n * 2), dw = dupload(w, n * 4);
  RtDevPtr dsc = dalloc(sizeof sc);
  CgMuonNormalizeArgs an = {dx, du, dss, rows, cols, batch, transpose};
  CgArgv av;
  cg_muon_normalize_argv(&an, &av);
  krun(&kn, (int)n, &av);
  for (int b = 0; b < batch; b++) {
    float d = fmaxf(sqrtf(ss[b]), 1e-7f);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        size_t o = transpose ? (size_t)c * rows + r : (size_t)r * cols + c;
        x[b * per + o] = rb_bf16_from_f32(u[b * per + (size_t)r * cols + c] / d);
      }
  }
  uint16_t *gx = xmalloc(n * 2);
  dget(gx, dx, n * 2);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += gx[i] != x[i];
  char what[128], extra[96];
  snprintf(what, sizeof what, "muon_normalize %dx%dx%d transpose=%d%s: bf16 values differing", batch, rows, cols,
           transpose, zero_first ? " (zero matrix)" : "");
  snprintf(extra, sizeof extra, "(%zu values)", n);
  report(what, (double)bad, 0, extra);

  /* apply: w -= lr scale x, from the x just written (the CPU's, equal when the line above passed). */
  float scale = 0.2f * sqrtf((float)(rows > cols ? rows : cols));
  scalars_set(sc, 0.02f, 0.0f, 1, 1.0f);
  dput(dsc, sc, sizeof sc);
  dput(dx, x, n * 2);
  CgMuonApplyArgs aa = {dw, dx, dsc, rows, cols, batch, transpose, scale};
  cg_muon_apply_argv(&aa, &av);
  krun(&ka, (int)n, &av);
  float a = sc[CG_SC_LR_W] * scale;
  for (int b = 0; b < batch; b++)
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < cols; c++) {
        size_t o = transpose ? (size_t)c * rows + r : (size_t)r * cols + c, e = b * per + (size_t)r * cols + c;
        w[e] = w[e] - a * rb_f32_from_bf16(x[b * per + o]);
      }
  float *gw = xmalloc(n * 4);
  dget(gw, dw, n * 4);
  size_t d;
  double err = max_rel_f(gw, w, n, &d);
  snprintf(what, sizeof what, "muon_apply %dx%dx%d transpose=%d (w max rel)", batch, rows, cols, transpose);
  snprintf(extra, sizeof extra, "(%zu values differ)", d);
  report(what, err, 1e-6, extra);
  free(u), free(ss), free(w), free(x), free(gx), free(gw);
  rt_mem_free(gpu, du), rt_mem_free(gpu, dss), rt_mem_free(gpu, dx), rt_mem_free(gpu, dw), rt_mem_free(gpu, dsc);
  kfree(&kn), kfree(&ka);
}

/* ==== batch_sumsq, clip_coef ==== */

static void test_batch_sumsq(int batch, long long per) {
  Kernel kb = kload(spec(CG_BATCH_SUMSQ, 0, 0, 0));
  size_t n = (size_t)batch * per;
  float *x = xmalloc(n * 4), *o[2];
  for (size_t i = 0; i < n; i++) x[i] = (float)urand();
  double *ref = xmalloc(batch * 8), *got = xmalloc(batch * 8);
  for (int b = 0; b < batch; b++) {
    double s = 0.0;
    for (long long i = 0; i < per; i++) s += (double)x[b * per + i] * x[b * per + i];
    ref[b] = s;
  }
  RtDevPtr dx = dupload(x, n * 4), dout = dpoison(batch * 4);
  CgBatchSumsqArgs a = {dout, dx, per, batch};
  CgArgv av;
  cg_batch_sumsq_argv(&a, &av);
  for (int r = 0; r < 2; r++) {
    o[r] = xmalloc(batch * 4);
    if (r && rt_memset8(gpu, dout, 0xFF, batch * 4)) die("memset");
    krun(&kb, batch, &av);
    dget(o[r], dout, batch * 4);
  }
  for (int b = 0; b < batch; b++) got[b] = o[0][b];
  double e = 0.0;
  for (int b = 0; b < batch; b++) e = fmax(e, fabs(got[b] - ref[b]) / ref[b]);
  if (isnan(rel_l2(got, ref, batch))) e = NAN;
  char what[128];
  snprintf(what, sizeof what, "batch_sumsq batch=%d per=%lld vs float64 (max rel)", batch, per);
  report(what, e, 1e-5, NULL);
  snprintf(what, sizeof what, "determinism batch_sumsq batch=%d per=%lld (1 = runs differ)", batch, per);
  report(what, same_bits(o[0], o[1], batch * 4) ? 0.0 : 1.0, 0, NULL);
  free(x), free(o[0]), free(o[1]), free(ref), free(got);
  rt_mem_free(gpu, dx), rt_mem_free(gpu, dout);
  kfree(&kb);
}

static void test_clip_coef(float sumsq, float max_norm) {
  Kernel kc = kload(spec(CG_CLIP_COEF, 0, 0, 0));
  float sc[CG_NSCALARS];
  scalars_set(sc, 0.5f, 0.25f, 3, -1.0f);
  RtDevPtr dsc = dupload(sc, sizeof sc), dss = dupload(&sumsq, 4);
  CgClipCoefArgs a = {dsc, dss, max_norm};
  CgArgv av;
  cg_clip_coef_argv(&a, &av);
  krun(&kc, 1, &av);
  float got[CG_NSCALARS];
  dget(got, dsc, sizeof got);
  float norm = sqrtf(sumsq), clip = fminf(1.0f, max_norm / (norm + 1e-6f));
  double e = fmax(fabs(got[CG_SC_NORM] - norm) / fmax(norm, 1e-30), fabs(got[CG_SC_CLIP] - clip) / clip);
  int others = got[CG_SC_LR_W] == sc[CG_SC_LR_W] && got[CG_SC_LR_S] == sc[CG_SC_LR_S] &&
               got[CG_SC_BIAS1] == sc[CG_SC_BIAS1] && got[CG_SC_BIAS2] == sc[CG_SC_BIAS2];
  if (!others) e = NAN;
  char what[128], extra[96];
  snprintf(what, sizeof what, "clip_coef sumsq=%g max_norm=%g (norm, clip max rel)", sumsq, max_norm);
  snprintf(extra, sizeof extra, "(norm %.7g clip %.7g; other scalars %s)", got[CG_SC_NORM], got[CG_SC_CLIP],
           others ? "kept" : "CHANGED");
  report(what, e, 1e-6, extra);
  rt_mem_free(gpu, dsc), rt_mem_free(gpu, dss);
  kfree(&kc);
}

/* ==== timings (informational) ==== */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void time_derive(int N, int K, int k) {
  Kernel kd = kload(spec(CG_DERIVE, N, K, k)), kh = kload(spec(CG_DERIVE_GRAD_H, N, K, k)),
         kg = kload(spec(CG_DERIVE_GRAD_G, N, K, k));
  size_t nw = (size_t)N * K, nb = (size_t)k * N * cg_packed_words(K);
  RtDevPtr w = dalloc(nw * 4), what = dalloc(nw * 2), bits = dalloc(nb * 4), g = dalloc((size_t)k * N * 4),
           h = dalloc((size_t)k * K * 4), d = dalloc((size_t)k * (N > K ? N : K) * 4);
  if (rt_memset8(gpu, w, 0, nw * 4) || rt_memset8(gpu, g, 0, (size_t)k * N * 4) ||
      rt_memset8(gpu, h, 0, (size_t)k * K * 4) || rt_memset8(gpu, bits, 0, nb * 4))
    die("memset");
  CgDeriveArgs ad = {what, bits, w, g, h};
  CgDeriveGradHArgs ah = {d, 0, w, bits, g};
  CgDeriveGradGArgs ag = {d, w, bits, h};
  CgArgv av[3];
  cg_derive_argv(&ad, &av[0]);
  cg_derive_grad_h_argv(&ah, &av[1]);
  cg_derive_grad_g_argv(&ag, &av[2]);
  Kernel *ks[3] = {&kd, &kh, &kg};
  double us[3];
  for (int j = 0; j < 3; j++) {
    CgLaunch L = test_launch(&ks[j]->spec, 1);
    krun(ks[j], 1, &av[j]); /* warm */
    enum { REPS = 50 };
    double t0 = now_s();
    for (int r = 0; r < REPS; r++)
      if (rt_launch(gpu, ks[j]->fn, L.grid, L.block, L.smem, NULL, av[j].v)) die("launch");
    if (rt_sync(gpu)) die("sync");
    us[j] = (now_s() - t0) / REPS * 1e6;
  }
  printf("time N=%d K=%d k=%d: derive %.1f us (%.0f GB/s of W + W_hat), derive_grad_h %.1f us, derive_grad_g %.1f us "
         "(launch overhead included; informational)\n",
         N, K, k, us[0], nw * 6.0 / (us[0] * 1e3), us[1], us[2]);
  rt_mem_free(gpu, w), rt_mem_free(gpu, what), rt_mem_free(gpu, bits), rt_mem_free(gpu, g), rt_mem_free(gpu, h),
      rt_mem_free(gpu, d);
  kfree(&kd), kfree(&kh), kfree(&kg);
}

int main(void) {
  RbBuf err = {0};
  if (rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    while (err.len && err.data[err.len - 1] == '\n') err.data[--err.len] = 0;
    printf("SKIP: %s\n", err.data ? err.data : "no GPU");
    rb_buf_free(&err);
    return 77;
  }
  printf("device: %s (%s)\n", rt_gpu_name(gpu), rt_gpu_arch(gpu));

  static const int dshapes[][2] = {{96, 576}, {37, 160}, {29, 70}};
  for (int i = 0; i < 3; i++)
    for (int k = 1; k <= 4; k++) test_derive(dshapes[i][0], dshapes[i][1], k);

  static const int gshapes[][3] = {{576, 576, 2}, {192, 576, 3}, {1536, 576, 4}, {576, 1536, 1},
                                   {5, 160, 2},   {3, 70, 4},    {700, 70, 3}};
  for (size_t i = 0; i < sizeof gshapes / sizeof gshapes[0]; i++)
    test_derive_grad(gshapes[i][0], gshapes[i][1], gshapes[i][2]);

  test_adamw(100003, 1, 1, 100003);
  test_adamw(100003, 5, 1, 100003);
  test_adamw(100003, 5, 0, 100003);
  test_adamw(100003, 3, 1, 1000); /* a short extent: the kernel's grid stride covers n */

  test_muon_momentum(65537, 1);
  test_muon_momentum(65537, 3);

  test_muon_normalize_apply(1, 576, 576, 0, 0);
  test_muon_normalize_apply(2, 192, 576, 0, 0);
  test_muon_normalize_apply(2, 1536, 576, 1, 0); /* N > K: X is (K, N) */
  test_muon_normalize_apply(3, 70, 45, 1, 1);
  test_muon_normalize_apply(3, 45, 70, 0, 1);

  test_batch_sumsq(3, 1536LL * 576);
  test_batch_sumsq(5, 210);
  test_batch_sumsq(2, 1000);

  test_clip_coef(4.0f, 1.0f);
  test_clip_coef(0.25f, 1.0f);
  test_clip_coef(0.0f, 1.0f);
  test_clip_coef(123.5f, 2.5f);

  time_derive(1536, 576, 2);
  time_derive(576, 1536, 2);
  time_derive(576, 576, 4);

  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  rb_buf_free(&err);
  return nfail ? 1 : 0;
}
