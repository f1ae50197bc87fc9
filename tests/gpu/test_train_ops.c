/* test_train_ops.c: GPU test of the training-op kernels (codegen/cuda/train_ops.c)
 * against plain-C float64 references written here from TRAINING.md, at a tiny
 * shape and the SmolLM2-135M shape, on fresh random inputs. Every kernel is
 * launched through its cg_*_argv marshalling (the codegen.h ABI) and the
 * geometry of cg_target_cuda. Outputs are poisoned with 0xFF bytes first (NaN
 * in fp32 and bf16), so an element a kernel skips shows up as NaN.
 *
 * Also: rmsnorm_grad and swiglu_grad against central finite differences of
 * their forward references; heads split -> merge with RoPE as a round trip;
 * KL at V = 49152 in place (dlogits == logits); and a determinism check
 * (kl_loss, reduce, sumsq run twice: the bits must be equal).
 *
 * Errors, one line per case "kind shape  err E (tol X)  ok|FAIL":
 *   fp32 outputs: max |got - ref| / max |ref| (relative to the largest value),
 *     tolerance 1e-5 (1e-4 for KL, whose terms go through expf and logf of
 *     rows of 49152, and for finite differences);
 *   bf16 outputs: max |got - ref| / max(|ref|, 1e-2 max |ref|) (elementwise
 *     relative, down to 1% of the largest value), tolerance 1e-2 (one bf16
 *     rounding is 2^-9 = 2e-3);
 *   exact checks (cast_bf16 bits, embed_grad's row order, determinism): the
 *     count of differing elements, tolerance 0.
 * Exits 77 ("SKIP: ...") without a GPU, 1 on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "runtime/cuda/gpu.h"
#include "runtime/jit/jit.h"
#include "tests/common/launch.h"

#define TOL_F32 1e-5
#define TOL_KL 1e-4
#define TOL_FD 1e-4
#define TOL_BF16 1e-2

static int npass, nfail;
static RtGpu *gpu;

typedef struct {
  const char *name;
  int dim, ffn, vocab, heads, kv_heads, head_dim;
  float eps, theta;
  int B, S; /* the batch the row kernels run on: T = B S */
} Shape;

static const Shape shapes[] = {
    {"tiny", 64, 128, 256, 4, 2, 16, 1e-5f, 10000.0f, 2, 32},
    {"smollm2-135m", 576, 1536, 49152, 9, 3, 64, 1e-5f, 100000.0f, 2, 512},
};

/* ==== host helpers ==== */

static uint64_t rng = 0x2545F4914F6CDD1Dull;

/* Uniform in [-1, 1), xorshift64*. */
static double urand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 52) - 1.0;
}

static void *xmalloc(size_t n) {
  void *p = calloc(1, n ? n : 1); /* zeroed: no read of an unset byte, even where a case skips one */
  if (!p) {
    fprintf(stderr, "out of host memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

static float *frand(size_t n, double scale) {
  float *f = xmalloc(n * 4);
  for (size_t i = 0; i < n; i++) f[i] = (float)(urand() * scale);
  return f;
}

static uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}


static RtDevPtr dalloc(size_t bytes) {
  RtDevPtr p = 0;
  if (rt_mem_alloc(gpu, &p, bytes ? bytes : 4)) {
    fprintf(stderr, "rt_mem_alloc(%zu) failed: %s\n", bytes, rt_gpu_error(gpu));
    exit(2);
  }
  return p;
}

static RtDevPtr dupload(const void *h, size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memcpy_htod(gpu, p, h, bytes)) {
    fprintf(stderr, "upload failed: %s\n", rt_gpu_error(gpu));
    exit(2);
  }
  return p;
}

/* A poisoned device buffer: every fp32 and bf16 element NaN until written. */
static RtDevPtr dpoison(size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memset8(gpu, p, 0xFF, bytes)) exit(2);
  return p;
}

static void dl(void *h, RtDevPtr p, size_t bytes) {
  if (rt_memcpy_dtoh(gpu, h, p, bytes)) {
    fprintf(stderr, "download failed: %s\n", rt_gpu_error(gpu));
    exit(2);
  }
}

/* n fp32 values back as doubles; returns the count of NaN (unwritten) ones. */
static size_t dl_f32(double *out, RtDevPtr p, size_t n) {
  float *h = xmalloc(n * 4);
  dl(h, p, n * 4);
  size_t nan = 0;
  for (size_t i = 0; i < n; i++) {
    out[i] = h[i];
    nan += isnan(out[i]) != 0;
  }
  free(h);
  return nan;
}

static size_t dl_bf16(double *out, RtDevPtr p, size_t n) {
  uint16_t *h = xmalloc(n * 2);
  dl(h, p, n * 2);
  size_t nan = 0;
  for (size_t i = 0; i < n; i++) {
    out[i] = rb_f32_from_bf16(h[i]);
    nan += isnan(out[i]) != 0;
  }
  free(h);
  return nan;
}

static double max_abs(const double *r, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(r[i]));
  return m;
}

/* fp32 metric: max |got - ref| / max |ref|. */
static double err_f32(const double *got, const double *ref, size_t n) {
  double m = max_abs(ref, n), e = 0.0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs(got[i] - ref[i]));
  return m > 0.0 ? e / m : e;
}

/* bf16 metric: max |got - ref| / max(|ref|, 1e-2 max |ref|). */
static double err_bf16(const double *got, const double *ref, size_t n) {
  double fl = 1e-2 * max_abs(ref, n), e = 0.0;
  if (fl == 0.0) fl = 1.0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs(got[i] - ref[i]) / fmax(fabs(ref[i]), fl));
  return e;
}

/* Record one comparison and print its line. A NaN error fails. */
static void report(const char *what, size_t nan, double err, double tol) {
  int ok = nan == 0 && err <= tol && !isnan(err);
  if (ok)
    npass++;
  else
    nfail++;
  printf("%-62s err %.2e (tol %.0e)  %s", what, err, tol, ok ? "ok" : "FAIL");
  if (nan) printf("  (%zu elements unwritten: NaN)", nan);
  printf("\n");
  fflush(stdout);
}

/* ==== kernels ==== */

typedef struct {
  CgKernel spec;
  RtModule *mod;
  RtFunction fn;
  char entry[CG_ENTRY_MAX];
} Kernel;

static CgKernel spec_of(CgKind k, const Shape *m) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = k;
  s.op.dim = m->dim;
  s.op.vocab = m->vocab;
  s.op.heads = m->heads;
  s.op.kv_heads = m->kv_heads;
  s.op.head_dim = m->head_dim;
  s.op.eps = m->eps;
  s.op.rope_theta = m->theta;
  return s;
}

/* Emit, compile for this GPU and load. Exits on failure: a kernel that does
 * not build fails every case after it anyway. */
static Kernel kload(CgKernel s) {
  Kernel k;
  memset(&k, 0, sizeof k);
  k.spec = s;
  if (test_build_load(gpu, rt_gpu_arch(gpu), &s, &k.mod, &k.fn, k.entry)) exit(1);
  return k;
}

static Kernel kload_kind(CgKind kind, const Shape *m) { return kload(spec_of(kind, m)); }

/* Launch k for extent n with marshalled args, and wait. */
static void krun(Kernel *k, int n, CgArgv *av) {
  CgLaunch L = test_launch(&k->spec, n);
  if (rt_launch(gpu, k->fn, L.grid, L.block, L.smem, NULL, av->v) || rt_sync(gpu)) {
    fprintf(stderr, "launch of %s (n %d, grid %u,%u,%u block %u) failed: %s\n", k->entry, n, L.grid[0],
            L.grid[1], L.grid[2], L.block[0], rt_gpu_error(gpu));
    exit(1);
  }
}

static void kfree(Kernel *k) { rt_module_unload(k->mod); }

/* ==== references (float64, from TRAINING.md) ==== */

static double silu(double z) { return z / (1.0 + exp(-z)); }

static void ref_rmsnorm_fwd(double *y, const double *x, const float *w, int T, int D, double eps) {
  for (int t = 0; t < T; t++) {
    double ss = 0.0;
    for (int d = 0; d < D; d++) ss += x[(size_t)t * D + d] * x[(size_t)t * D + d];
    double r = 1.0 / sqrt(ss / D + eps);
    for (int d = 0; d < D; d++) y[(size_t)t * D + d] = x[(size_t)t * D + d] * r * w[d];
  }
}

/* cos and sin of a = p f_j as the contract has it: f_j = powf(theta, -2.0f * j / E) and a in fp32. */
static void rope_cs(int p, int j, int E, float theta, double *c, double *s) {
  float f = powf(theta, -2.0f * j / E);
  float a = (float)p * f;
  *c = cos((double)a);
  *s = sin((double)a);
}

/* ==== cases ==== */

static void test_cast(const Shape *m) {
  Kernel k = kload_kind(CG_CAST_BF16, m);
  int n = m->B * m->S * m->dim + 3;
  float *x = frand(n, 4.0);
  x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-40f; /* signed zeros, a denormal */
  x[3] = u2f(0x3f808000u);                  /* exactly halfway: rounds to even (down) */
  x[4] = u2f(0x3f818000u);                  /* halfway, odd below: rounds up */
  CgCastArgs a = {dpoison((size_t)n * 2), dupload(x, (size_t)n * 4), n};
  CgArgv av;
  cg_cast_argv(&a, &av);
  krun(&k, n, &av);
  uint16_t *h = xmalloc((size_t)n * 2);
  dl(h, a.y, (size_t)n * 2);
  size_t bad = 0;
  for (int i = 0; i < n; i++) bad += h[i] != rb_bf16_from_f32(x[i]);
  char what[128];
  snprintf(what, sizeof what, "cast_bf16 %s n=%d (bits, round to nearest even)", m->name, n);
  report(what, 0, (double)bad, 0);
  rt_mem_free(gpu, a.y), rt_mem_free(gpu, a.x);
  kfree(&k);
  free(x), free(h);
}

static void test_embed(const Shape *m) {
  int T = m->B * m->S, V = m->vocab, D = m->dim;
  size_t nt = (size_t)V * D, ny = (size_t)T * D;
  uint16_t *tab = xmalloc(nt * 2);
  for (size_t i = 0; i < nt; i++) tab[i] = rb_bf16_from_f32((float)urand());
  int *tok = xmalloc(T * sizeof(int));
  for (int t = 0; t < T; t++) tok[t] = (int)((urand() + 1.0) * 0.5 * V) % V;
  tok[0] = V - 1, tok[1] = -1, tok[2] = V; /* the last row; two ids outside: zero rows */
  RtDevPtr dtab = dupload(tab, nt * 2), dtok = dupload(tok, T * sizeof(int));

  /* Forward. */
  Kernel kf = kload_kind(CG_EMBED_FWD, m);
  CgEmbedFwdArgs fa = {dpoison(ny * 4), dtok, dtab, T};
  CgArgv av;
  cg_embed_fwd_argv(&fa, &av);
  krun(&kf, T, &av);
  double *got = xmalloc(ny * 8), *ref = xmalloc(ny * 8);
  size_t nan = dl_f32(got, fa.y, ny);
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++)
      ref[(size_t)t * D + d] = tok[t] >= 0 && tok[t] < V ? rb_f32_from_bf16(tab[(size_t)tok[t] * D + d]) : 0.0;
  char what[128];
  snprintf(what, sizeof what, "embed_fwd %s T=%d", m->name, T);
  report(what, nan, err_f32(got, ref, ny), TOL_F32);

  /* Gradient: repeated tokens (a small id range) into a nonzero table (+=). */
  for (int t = 3; t < T; t++) tok[t] = (int)((urand() + 1.0) * 0.5 * (V < 40 ? V : 40)) % V;
  if (rt_memcpy_htod(gpu, dtok, tok, T * sizeof(int))) exit(2);
  float *dt0 = frand(nt, 1.0), *dy = frand(ny, 1.0);
  Kernel kg = kload_kind(CG_EMBED_GRAD, m);
  CgEmbedGradArgs ga = {dupload(dt0, nt * 4), dtok, dupload(dy, ny * 4), T};
  cg_embed_grad_argv(&ga, &av);
  krun(&kg, 1, &av);
  float *gotf = xmalloc(nt * 4), *ordf = xmalloc(nt * 4);
  dl(gotf, ga.dtable, nt * 4);
  double *g2 = xmalloc(nt * 8), *r2 = xmalloc(nt * 8);
  memcpy(ordf, dt0, nt * 4);
  for (size_t i = 0; i < nt; i++) r2[i] = dt0[i];
  for (int t = 0; t < T; t++) /* rows in ascending t, in fp32 too: the kernel's order */
    if (tok[t] >= 0 && tok[t] < V)
      for (int d = 0; d < D; d++) {
        r2[(size_t)tok[t] * D + d] += dy[(size_t)t * D + d];
        ordf[(size_t)tok[t] * D + d] += dy[(size_t)t * D + d];
      }
  size_t bad = 0;
  nan = 0;
  for (size_t i = 0; i < nt; i++) {
    g2[i] = gotf[i];
    nan += isnan(g2[i]) != 0;
    bad += f2u(gotf[i]) != f2u(ordf[i]);
  }
  snprintf(what, sizeof what, "embed_grad %s T=%d", m->name, T);
  report(what, nan, err_f32(g2, r2, nt), TOL_F32);
  snprintf(what, sizeof what, "embed_grad %s T=%d (bits = fp32 sums in row order)", m->name, T);
  report(what, 0, (double)bad, 0);
  rt_mem_free(gpu, dtab), rt_mem_free(gpu, dtok), rt_mem_free(gpu, fa.y);
  rt_mem_free(gpu, ga.dtable), rt_mem_free(gpu, ga.dy);
  kfree(&kf), kfree(&kg);
  free(tab), free(tok), free(got), free(ref), free(dt0), free(dy), free(gotf), free(ordf), free(g2), free(r2);
}

/* rmsnorm forward (out of place and in place) and backward, the backward
 * also against finite differences of the forward reference. */
static void test_rmsnorm(const Shape *m) {
  int T = m->B * m->S, D = m->dim;
  size_t n = (size_t)T * D;
  float *x = frand(n, 3.0), *w = xmalloc(D * 4), *dy = frand(n, 1.0);
  for (int d = 0; d < D; d++) w[d] = (float)(1.0 + 0.5 * urand());
  double *xd = xmalloc(n * 8), *ref = xmalloc(n * 8), *got = xmalloc(n * 8);
  for (size_t i = 0; i < n; i++) xd[i] = x[i];
  ref_rmsnorm_fwd(ref, xd, w, T, D, m->eps);
  RtDevPtr dx = dupload(x, n * 4), dw = dupload(w, D * 4), dy_ = dupload(dy, n * 4), dout = dpoison(n * 4);
  Kernel kf = kload_kind(CG_RMSNORM_FWD, m);
  char what[128];
  CgArgv av;
  for (int inplace = 0; inplace < 2; inplace++) {
    RtDevPtr xin = inplace ? dupload(x, n * 4) : dx;
    CgRmsnormFwdArgs a = {inplace ? xin : dout, xin, dw, T};
    cg_rmsnorm_fwd_argv(&a, &av);
    krun(&kf, T, &av);
    size_t nan = dl_f32(got, a.y, n);
    snprintf(what, sizeof what, "rmsnorm_fwd %s T=%d D=%d%s", m->name, T, D, inplace ? " in place" : "");
    report(what, nan, err_f32(got, ref, n), TOL_F32);
    if (inplace) rt_mem_free(gpu, xin);
  }

  /* Backward: u = w dy, dx = r u - x r^3 (1/D) sum x u. */
  for (int t = 0; t < T; t++) {
    const double *xr = xd + (size_t)t * D;
    double ss = 0.0, sxu = 0.0;
    for (int d = 0; d < D; d++) ss += xr[d] * xr[d], sxu += xr[d] * w[d] * dy[(size_t)t * D + d];
    double r = 1.0 / sqrt(ss / D + m->eps);
    for (int d = 0; d < D; d++)
      ref[(size_t)t * D + d] = r * w[d] * dy[(size_t)t * D + d] - xr[d] * r * r * r * sxu / D;
  }
  Kernel kg = kload_kind(CG_RMSNORM_GRAD, m);
  RtDevPtr ddx = dpoison(n * 4);
  CgRmsnormGradArgs ga = {ddx, dy_, dx, dw, T};
  cg_rmsnorm_grad_argv(&ga, &av);
  krun(&kg, T, &av);
  size_t nan = dl_f32(got, ddx, n);
  snprintf(what, sizeof what, "rmsnorm_grad %s T=%d D=%d", m->name, T, D);
  report(what, nan, err_f32(got, ref, n), TOL_F32);

  /* Finite differences of L = sum dy . rmsnorm(x) over the first rows, every element. */
  int rows = T < 3 ? T : 3;
  double *fd = xmalloc((size_t)rows * D * 8), *yp = xmalloc(D * 8), *xr = xmalloc(D * 8);
  for (int t = 0; t < rows; t++)
    for (int d = 0; d < D; d++) {
      double h = 1e-4 * fmax(1.0, fabs(xd[(size_t)t * D + d])), l[2];
      for (int sgn = 0; sgn < 2; sgn++) {
        memcpy(xr, xd + (size_t)t * D, D * 8);
        xr[d] += sgn ? -h : h;
        ref_rmsnorm_fwd(yp, xr, w, 1, D, m->eps);
        l[sgn] = 0.0;
        for (int e = 0; e < D; e++) l[sgn] += dy[(size_t)t * D + e] * yp[e];
      }
      fd[(size_t)t * D + d] = (l[0] - l[1]) / (2 * h);
    }
  snprintf(what, sizeof what, "rmsnorm_grad %s vs finite differences (%d rows)", m->name, rows);
  report(what, 0, err_f32(got, fd, (size_t)rows * D), TOL_FD);
  rt_mem_free(gpu, dx), rt_mem_free(gpu, dw), rt_mem_free(gpu, dy_), rt_mem_free(gpu, dout);
  rt_mem_free(gpu, ddx);
  kfree(&kf), kfree(&kg);
  free(x), free(w), free(dy), free(xd), free(ref), free(got), free(fd), free(yp), free(xr);
}

/* heads_split of nh heads read at column offset col of rows of ld (the q or
 * k part of a fused qkv row), with and without RoPE; heads_merge back; and
 * merge(rotate) of split(rotate) against the input. */
static void test_heads(const Shape *m, int nh, int col) {
  int B = m->B, S = m->S, T = B * S, E = m->head_dim, half = E / 2;
  int ld = (m->heads + 2 * m->kv_heads) * E;
  size_t nx = (size_t)T * ld, nhd = (size_t)T * nh * E;
  float *x = frand(nx, 2.0);
  CgKernel ss = spec_of(CG_HEADS_SPLIT, m), sm = spec_of(CG_HEADS_MERGE, m);
  ss.op.heads = sm.op.heads = nh;
  Kernel ks = kload(ss), km = kload(sm);
  RtDevPtr dx = dupload(x, nx * 4), dy = dpoison(nhd * 2), dm = dpoison(nx * 4);
  double *ref = xmalloc(nhd * 8), *got = xmalloc(nhd * 8);
  char what[160];
  CgArgv av;
  for (int rot = 0; rot < 2; rot++) {
    /* Split: the head layout (B, nh, S, E). */
    CgHeadsSplitArgs a = {dy, dx + (RtDevPtr)col * 4, ld, T, S, rot};
    cg_heads_split_argv(&a, &av);
    krun(&ks, T, &av);
    for (int t = 0; t < T; t++)
      for (int h = 0; h < nh; h++)
        for (int j = 0; j < half; j++) {
          int b = t / S, p = t % S;
          double c = 1.0, s = 0.0;
          if (rot) rope_cs(p, j, E, m->theta, &c, &s);
          const float *xr = x + (size_t)t * ld + col + h * E;
          double *yr = ref + (((size_t)b * nh + h) * S + p) * E;
          yr[j] = xr[j] * c - xr[j + half] * s;
          yr[j + half] = xr[j + half] * c + xr[j] * s;
        }
    size_t nan = dl_bf16(got, dy, nhd);
    snprintf(what, sizeof what, "heads_split %s H=%d S=%d%s", m->name, nh, S, rot ? " rope" : "");
    report(what, nan, err_bf16(got, ref, nhd), TOL_BF16);

    /* Merge: fp32 heads in, the inverse rotation, rows of ld at column col. */
    float *hx = frand(nhd, 2.0);
    RtDevPtr dh = dupload(hx, nhd * 4);
    if (rt_memset8(gpu, dm, 0xFF, nx * 4)) exit(2);
    CgHeadsMergeArgs ma = {dm + (RtDevPtr)col * 4, dh, ld, T, S, rot};
    cg_heads_merge_argv(&ma, &av);
    krun(&km, T, &av);
    double *mg = xmalloc(nx * 8), *mr = xmalloc(nhd * 8), *mo = xmalloc(nhd * 8);
    dl_f32(mg, dm, nx);
    nan = 0;
    for (int t = 0; t < T; t++)
      for (int h = 0; h < nh; h++)
        for (int j = 0; j < half; j++) {
          int b = t / S, p = t % S;
          double c = 1.0, s = 0.0;
          if (rot) rope_cs(p, j, E, m->theta, &c, &s);
          const float *hr = hx + (((size_t)b * nh + h) * S + p) * E;
          size_t o = (size_t)t * nh * E + h * E;
          mr[o + j] = hr[j] * c + hr[j + half] * s;
          mr[o + j + half] = hr[j + half] * c - hr[j] * s;
          mo[o + j] = mg[(size_t)t * ld + col + h * E + j];
          mo[o + j + half] = mg[(size_t)t * ld + col + h * E + j + half];
          nan += isnan(mo[o + j]) + isnan(mo[o + j + half]);
        }
    snprintf(what, sizeof what, "heads_merge %s H=%d S=%d%s", m->name, nh, S, rot ? " rope" : "");
    report(what, nan, err_f32(mo, mr, nhd), TOL_F32);

    /* Round trip: merge(split(x)), the bf16 heads widened to fp32 on the host. */
    uint16_t *yb = xmalloc(nhd * 2);
    float *yf = xmalloc(nhd * 4);
    dl(yb, dy, nhd * 2);
    for (size_t i = 0; i < nhd; i++) yf[i] = rb_f32_from_bf16(yb[i]);
    if (rt_memcpy_htod(gpu, dh, yf, nhd * 4)) exit(2);
    krun(&km, T, &av);
    dl_f32(mg, dm, nx);
    nan = 0;
    for (int t = 0; t < T; t++)
      for (int e = 0; e < nh * E; e++) {
        size_t o = (size_t)t * nh * E + e;
        mo[o] = mg[(size_t)t * ld + col + e];
        mr[o] = x[(size_t)t * ld + col + e];
        nan += isnan(mo[o]);
      }
    snprintf(what, sizeof what, "heads merge(split(x)) %s H=%d S=%d%s", m->name, nh, S, rot ? " rope" : "");
    report(what, nan, err_f32(mo, mr, nhd), TOL_BF16);
    rt_mem_free(gpu, dh);
    free(hx), free(mg), free(mr), free(mo), free(yb), free(yf);
  }
  rt_mem_free(gpu, dx), rt_mem_free(gpu, dy), rt_mem_free(gpu, dm);
  kfree(&ks), kfree(&km);
  free(x), free(ref), free(got);
}

/* Causal softmax forward and backward over rows = B H S rows of S. */
static void test_softmax(const Shape *m, int B, int H, int S) {
  size_t rows = (size_t)B * H * S, n = rows * S;
  double scale = 1.0 / sqrt((double)m->head_dim);
  float *sc = frand(n, 3.0 / scale); /* scaled scores in [-3, 3) */
  double *ref = xmalloc(n * 8), *got = xmalloc(n * 8);
  for (size_t r = 0; r < rows; r++) {
    int i = (int)(r % S);
    const float *s = sc + r * S;
    double mx = -INFINITY, l = 0.0;
    for (int j = 0; j <= i; j++) mx = fmax(mx, s[j] * (double)(float)scale);
    for (int j = 0; j <= i; j++) l += exp(s[j] * (double)(float)scale - mx);
    for (int j = 0; j < S; j++) ref[r * S + j] = j <= i ? exp(s[j] * (double)(float)scale - mx) / l : 0.0;
  }
  Kernel kf = kload_kind(CG_SOFTMAX_FWD, m), kg = kload_kind(CG_SOFTMAX_GRAD, m);
  RtDevPtr ds_ = dupload(sc, n * 4), dp = dpoison(n * 2);
  CgSoftmaxFwdArgs a = {dp, ds_, (int)rows, S};
  CgArgv av;
  cg_softmax_fwd_argv(&a, &av);
  krun(&kf, (int)rows, &av);
  size_t nan = dl_bf16(got, dp, n);
  char what[128];
  snprintf(what, sizeof what, "softmax_fwd %s rows=%zu (B %d H %d) S=%d", m->name, rows, B, H, S);
  report(what, nan, err_bf16(got, ref, n), TOL_BF16);

  /* Backward on the kernel's own P (bf16, exact zeros above the diagonal) and
   * a dP with garbage above the diagonal, which must not count. */
  uint16_t *pb = xmalloc(n * 2);
  dl(pb, dp, n * 2);
  float *dpv = frand(n, 1.0);
  for (size_t r = 0; r < rows; r++) {
    int i = (int)(r % S);
    double acc = 0.0;
    for (int j = 0; j <= i; j++) acc += (double)rb_f32_from_bf16(pb[r * S + j]) * dpv[r * S + j];
    for (int j = 0; j < S; j++)
      ref[r * S + j] = j <= i ? rb_f32_from_bf16(pb[r * S + j]) * (dpv[r * S + j] - acc) * (double)(float)scale : 0.0;
  }
  RtDevPtr ddp = dupload(dpv, n * 4), dds = dpoison(n * 2);
  CgSoftmaxGradArgs ga = {dds, dp, ddp, (int)rows, S};
  cg_softmax_grad_argv(&ga, &av);
  krun(&kg, (int)rows, &av);
  nan = dl_bf16(got, dds, n);
  snprintf(what, sizeof what, "softmax_grad %s rows=%zu (B %d H %d) S=%d", m->name, rows, B, H, S);
  report(what, nan, err_bf16(got, ref, n), TOL_BF16);
  rt_mem_free(gpu, ds_), rt_mem_free(gpu, dp), rt_mem_free(gpu, ddp), rt_mem_free(gpu, dds);
  kfree(&kf), kfree(&kg);
  free(sc), free(ref), free(got), free(pb), free(dpv);
}

/* swiglu forward and backward (and its finite differences), add (and in place). */
static void test_elementwise(const Shape *m) {
  int T = m->B * m->S, n = T * m->ffn;
  float *g = frand(n, 6.0), *u = frand(n, 2.0), *dy = frand(n, 1.0);
  RtDevPtr dg = dupload(g, (size_t)n * 4), du = dupload(u, (size_t)n * 4), ddy = dupload(dy, (size_t)n * 4);
  double *ref = xmalloc((size_t)n * 8), *got = xmalloc((size_t)n * 8), *ref2 = xmalloc((size_t)n * 8),
         *got2 = xmalloc((size_t)n * 8);
  char what[128];
  CgArgv av;

  Kernel kf = kload_kind(CG_SWIGLU_FWD, m);
  CgSwigluFwdArgs fa = {dpoison((size_t)n * 4), dg, du, n};
  cg_swiglu_fwd_argv(&fa, &av);
  krun(&kf, n, &av);
  for (int i = 0; i < n; i++) ref[i] = silu(g[i]) * u[i];
  size_t nan = dl_f32(got, fa.y, n);
  snprintf(what, sizeof what, "swiglu_fwd %s n=%d", m->name, n);
  report(what, nan, err_f32(got, ref, n), TOL_F32);

  Kernel kg = kload_kind(CG_SWIGLU_GRAD, m);
  CgSwigluGradArgs ga = {dpoison((size_t)n * 4), dpoison((size_t)n * 4), ddy, dg, du, n};
  cg_swiglu_grad_argv(&ga, &av);
  krun(&kg, n, &av);
  for (int i = 0; i < n; i++) {
    double s = 1.0 / (1.0 + exp(-(double)g[i]));
    ref[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
    ref2[i] = dy[i] * g[i] * s;
  }
  nan = dl_f32(got, ga.dg, n) + dl_f32(got2, ga.du, n);
  snprintf(what, sizeof what, "swiglu_grad dg %s n=%d", m->name, n);
  report(what, nan, err_f32(got, ref, n), TOL_F32);
  snprintf(what, sizeof what, "swiglu_grad du %s n=%d", m->name, n);
  report(what, 0, err_f32(got2, ref2, n), TOL_F32);
  /* Finite differences of L = sum dy silu(g) u, element by element. */
  for (int i = 0; i < n; i++) {
    double h = 1e-5 * fmax(1.0, fabs(g[i]));
    ref[i] = dy[i] * (silu(g[i] + h) - silu(g[i] - h)) * u[i] / (2 * h);
    h = 1e-5 * fmax(1.0, fabs(u[i]));
    ref2[i] = dy[i] * silu(g[i]) * ((u[i] + h) - (u[i] - h)) / (2 * h);
  }
  snprintf(what, sizeof what, "swiglu_grad dg %s vs finite differences", m->name);
  report(what, 0, err_f32(got, ref, n), TOL_FD);
  snprintf(what, sizeof what, "swiglu_grad du %s vs finite differences", m->name);
  report(what, 0, err_f32(got2, ref2, n), TOL_FD);

  Kernel ka = kload_kind(CG_ADD_FWD, m);
  for (int inplace = 0; inplace < 2; inplace++) {
    RtDevPtr a0 = dupload(g, (size_t)n * 4), out = inplace ? a0 : dpoison((size_t)n * 4);
    CgAddFwdArgs aa = {out, a0, du, n};
    cg_add_fwd_argv(&aa, &av);
    krun(&ka, n, &av);
    for (int i = 0; i < n; i++) ref[i] = (double)g[i] + u[i];
    nan = dl_f32(got, out, n);
    snprintf(what, sizeof what, "add_fwd %s n=%d%s", m->name, n, inplace ? " in place (y == a)" : "");
    report(what, nan, err_f32(got, ref, n), TOL_F32);
    rt_mem_free(gpu, a0);
    if (!inplace) rt_mem_free(gpu, out);
  }
  rt_mem_free(gpu, dg), rt_mem_free(gpu, du), rt_mem_free(gpu, ddy), rt_mem_free(gpu, fa.y);
  rt_mem_free(gpu, ga.dg), rt_mem_free(gpu, ga.du);
  kfree(&kf), kfree(&kg), kfree(&ka);
  free(g), free(u), free(dy), free(ref), free(got), free(ref2), free(got2);
}

/* The KL loss over T rows of V, out of place and in place; out of place
 * twice for determinism. The teacher is the student plus noise, so p and q
 * are alike but not equal, as in distillation. */
static void test_kl(const Shape *m, int T) {
  int V = m->vocab;
  size_t n = (size_t)T * V;
  float *lg = frand(n, 4.0), *te = xmalloc(n * 4);
  for (size_t i = 0; i < n; i++) te[i] = lg[i] + (float)(0.7 * urand());
  float gs = 1.0f / (float)T;
  double *rl = xmalloc(T * 8), *rg = xmalloc(n * 8), *got = xmalloc(n * 8), *gl = xmalloc(T * 8);
  for (int t = 0; t < T; t++) {
    const float *l = lg + (size_t)t * V, *tt = te + (size_t)t * V;
    double ml = -INFINITY, mt = -INFINITY, zq = 0.0, zp = 0.0, kl = 0.0;
    for (int v = 0; v < V; v++) ml = fmax(ml, l[v]), mt = fmax(mt, tt[v]);
    for (int v = 0; v < V; v++) zq += exp(l[v] - ml), zp += exp(tt[v] - mt);
    for (int v = 0; v < V; v++) {
      double lq = l[v] - ml - log(zq), lp = tt[v] - mt - log(zp);
      kl += exp(lp) * (lp - lq);
      rg[(size_t)t * V + v] = (exp(lq) - exp(lp)) * (double)gs;
    }
    rl[t] = kl;
  }
  Kernel k = kload_kind(CG_KL_LOSS, m);
  RtDevPtr dl_ = dupload(lg, n * 4), dt = dupload(te, n * 4), dg = dpoison(n * 4), drl = dpoison(T * 4);
  CgKlLossArgs a = {dg, drl, dl_, dt, T, gs};
  CgArgv av;
  cg_kl_loss_argv(&a, &av);
  krun(&k, T, &av);
  size_t nan = dl_f32(gl, drl, T);
  char what[128];
  snprintf(what, sizeof what, "kl_loss row_loss %s T=%d V=%d", m->name, T, V);
  report(what, nan, err_f32(gl, rl, T), TOL_KL);
  nan = dl_f32(got, dg, n);
  snprintf(what, sizeof what, "kl_loss dlogits %s T=%d V=%d", m->name, T, V);
  report(what, nan, err_f32(got, rg, n), TOL_KL);

  /* Determinism: the same launch again, bit for bit. */
  float *b1 = xmalloc(n * 4), *b2 = xmalloc(n * 4), *l1 = xmalloc(T * 4), *l2 = xmalloc(T * 4);
  dl(b1, dg, n * 4), dl(l1, drl, T * 4);
  if (rt_memset8(gpu, dg, 0xFF, n * 4) || rt_memset8(gpu, drl, 0xFF, T * 4)) exit(2);
  krun(&k, T, &av);
  dl(b2, dg, n * 4), dl(l2, drl, T * 4);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) bad += f2u(b1[i]) != f2u(b2[i]);
  for (int t = 0; t < T; t++) bad += f2u(l1[t]) != f2u(l2[t]);
  snprintf(what, sizeof what, "kl_loss %s T=%d V=%d determinism (bits, 2 runs)", m->name, T, V);
  report(what, 0, (double)bad, 0);

  /* In place: dlogits == logits. */
  CgKlLossArgs ip = {dl_, drl, dl_, dt, T, gs};
  cg_kl_loss_argv(&ip, &av);
  krun(&k, T, &av);
  nan = dl_f32(got, dl_, n) + dl_f32(gl, drl, T);
  snprintf(what, sizeof what, "kl_loss %s T=%d V=%d in place (dlogits == logits)", m->name, T, V);
  report(what, nan, fmax(err_f32(got, rg, n), err_f32(gl, rl, T)), TOL_KL);
  rt_mem_free(gpu, dl_), rt_mem_free(gpu, dt), rt_mem_free(gpu, dg), rt_mem_free(gpu, drl);
  kfree(&k);
  free(lg), free(te), free(rl), free(rg), free(got), free(gl), free(b1), free(b2), free(l1), free(l2);
}

/* Hidden MSE: the row parts, reduced with reduce, then the gradient from the reduced sums. */
static void test_mse(const Shape *m) {
  int T = m->B * m->S, D = m->dim;
  size_t n = (size_t)T * D;
  float *x = frand(n, 2.0), *t = xmalloc(n * 4);
  for (size_t i = 0; i < n; i++) t[i] = x[i] + (float)(0.3 * urand());
  double *ref = xmalloc(n * 8), *got = xmalloc(n * 8);
  for (int r = 0; r < T; r++) {
    double se = 0.0, st = 0.0;
    for (int d = 0; d < D; d++) {
      double e = (double)x[(size_t)r * D + d] - t[(size_t)r * D + d];
      se += e * e, st += (double)t[(size_t)r * D + d] * t[(size_t)r * D + d];
    }
    ref[2 * r] = se, ref[2 * r + 1] = st;
  }
  Kernel kr = kload_kind(CG_MSE_ROWS, m), kred = kload_kind(CG_REDUCE, m), kg = kload_kind(CG_MSE_GRAD, m);
  RtDevPtr dx = dupload(x, n * 4), dt = dupload(t, n * 4), dparts = dpoison((size_t)T * 8), dsums = dpoison(8);
  CgMseRowsArgs a = {dparts, dx, dt, T};
  CgArgv av;
  cg_mse_rows_argv(&a, &av);
  krun(&kr, T, &av);
  size_t nan = dl_f32(got, dparts, 2 * (size_t)T);
  char what[128];
  snprintf(what, sizeof what, "mse_rows %s T=%d D=%d", m->name, T, D);
  report(what, nan, err_f32(got, ref, 2 * (size_t)T), TOL_F32);

  CgReduceArgs ra = {dsums, dparts, T, 2};
  cg_reduce_argv(&ra, &av);
  krun(&kred, 2, &av);
  double sums[2] = {0.0, 0.0}, gs[2];
  for (int r = 0; r < T; r++) sums[0] += ref[2 * r], sums[1] += ref[2 * r + 1];
  nan = dl_f32(gs, dsums, 2);
  snprintf(what, sizeof what, "reduce of mse_rows %s (T, 2) -> 2", m->name);
  report(what, nan, err_f32(gs, sums, 2), TOL_F32);

  float scale = 0.37f; /* gamma / L */
  float hs[2];
  dl(hs, dsums, 8);
  for (size_t i = 0; i < n; i++) ref[i] = scale * 2.0 * ((double)x[i] - t[i]) / hs[1];
  RtDevPtr ddx = dpoison(n * 4);
  CgMseGradArgs ga = {ddx, dx, dt, dsums, (int)n, scale};
  cg_mse_grad_argv(&ga, &av);
  krun(&kg, (int)n, &av);
  nan = dl_f32(got, ddx, n);
  snprintf(what, sizeof what, "mse_grad %s n=%zu", m->name, n);
  report(what, nan, err_f32(got, ref, n), TOL_F32);
  rt_mem_free(gpu, dx), rt_mem_free(gpu, dt), rt_mem_free(gpu, dparts), rt_mem_free(gpu, dsums);
  rt_mem_free(gpu, ddx);
  kfree(&kr), kfree(&kred), kfree(&kg);
  free(x), free(t), free(ref), free(got);
}

/* reduce (rows, m) -> m for a few shapes, the last one twice for determinism. */
static void test_reduce(const Shape *m) {
  static const int cases[][2] = {{CG_SUMSQ_PARTS, 1}, {7, 1000}, {5000, 3}, {100000, 1}};
  Kernel k = kload_kind(CG_REDUCE, m);
  char what[128];
  CgArgv av;
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int rows = cases[c][0], mm = cases[c][1];
    size_t n = (size_t)rows * mm;
    float *in = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) in[i] = (float)(0.5 * (urand() + 1.0)); /* sums of positive parts */
    double *ref = xmalloc(mm * 8), *got = xmalloc(mm * 8);
    for (int j = 0; j < mm; j++) ref[j] = 0.0;
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < mm; j++) ref[j] += in[(size_t)r * mm + j];
    CgReduceArgs a = {dpoison((size_t)mm * 4), dupload(in, n * 4), rows, mm};
    cg_reduce_argv(&a, &av);
    krun(&k, mm, &av);
    size_t nan = dl_f32(got, a.out, mm);
    snprintf(what, sizeof what, "reduce %s (%d, %d) -> %d", m->name, rows, mm, mm);
    report(what, nan, err_f32(got, ref, mm), TOL_F32);
    if (c == sizeof cases / sizeof cases[0] - 1 || c == 2) {
      float *o1 = xmalloc(mm * 4), *o2 = xmalloc(mm * 4);
      dl(o1, a.out, mm * 4);
      if (rt_memset8(gpu, a.out, 0xFF, mm * 4)) exit(2);
      krun(&k, mm, &av);
      dl(o2, a.out, mm * 4);
      size_t bad = 0;
      for (int j = 0; j < mm; j++) bad += f2u(o1[j]) != f2u(o2[j]);
      snprintf(what, sizeof what, "reduce %s (%d, %d) determinism (bits, 2 runs)", m->name, rows, mm);
      report(what, 0, (double)bad, 0);
      free(o1), free(o2);
    }
    rt_mem_free(gpu, a.out), rt_mem_free(gpu, a.in);
    free(in), free(ref), free(got);
  }
  kfree(&k);
}

/* sumsq over n elements: each of the CG_SUMSQ_PARTS partials against the
 * elements it owns, the reduced total, and the bits of a second run. */
static void test_sumsq(const Shape *m, long long n) {
  Kernel k = kload_kind(CG_SUMSQ, m), kr = kload_kind(CG_REDUCE, m);
  float *x = frand((size_t)n, 1.5);
  CgLaunch L = test_launch(&k.spec, 1);
  long long bt = L.block[0]; /* part c owns the blocks of bt elements c, c + PARTS, ... */
  double ref[CG_SUMSQ_PARTS] = {0}, got[CG_SUMSQ_PARTS], total = 0.0, gt;
  for (long long i = 0; i < n; i++) {
    ref[(i / bt) % CG_SUMSQ_PARTS] += (double)x[i] * x[i];
    total += (double)x[i] * x[i];
  }
  CgSumsqArgs a = {dpoison(CG_SUMSQ_PARTS * 4), dupload(x, (size_t)n * 4), n};
  CgArgv av;
  cg_sumsq_argv(&a, &av);
  krun(&k, 1, &av);
  size_t nan = dl_f32(got, a.parts, CG_SUMSQ_PARTS);
  char what[128];
  snprintf(what, sizeof what, "sumsq parts %s n=%lld", m->name, n);
  report(what, nan, err_f32(got, ref, CG_SUMSQ_PARTS), TOL_F32);
  CgReduceArgs ra = {dpoison(4), a.parts, CG_SUMSQ_PARTS, 1};
  CgArgv rv;
  cg_reduce_argv(&ra, &rv);
  krun(&kr, 1, &rv);
  nan = dl_f32(&gt, ra.out, 1);
  snprintf(what, sizeof what, "sumsq + reduce %s n=%lld", m->name, n);
  report(what, nan, err_f32(&gt, &total, 1), TOL_F32);

  float p1[CG_SUMSQ_PARTS], p2[CG_SUMSQ_PARTS], t1, t2;
  dl(p1, a.parts, sizeof p1), dl(&t1, ra.out, 4);
  if (rt_memset8(gpu, a.parts, 0xFF, sizeof p1) || rt_memset8(gpu, ra.out, 0xFF, 4)) exit(2);
  krun(&k, 1, &av);
  krun(&kr, 1, &rv);
  dl(p2, a.parts, sizeof p2), dl(&t2, ra.out, 4);
  size_t bad = f2u(t1) != f2u(t2);
  for (int i = 0; i < CG_SUMSQ_PARTS; i++) bad += f2u(p1[i]) != f2u(p2[i]);
  snprintf(what, sizeof what, "sumsq + reduce %s n=%lld determinism (bits, 2 runs)", m->name, n);
  report(what, 0, (double)bad, 0);
  rt_mem_free(gpu, a.parts), rt_mem_free(gpu, a.x), rt_mem_free(gpu, ra.out);
  kfree(&k), kfree(&kr);
  free(x);
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
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    const Shape *m = &shapes[i];
    int q0 = 0, k0 = m->heads * m->head_dim;
    printf("-- %s: D %d F %d V %d H %d/%d HD %d, B %d S %d (T %d)\n", m->name, m->dim, m->ffn, m->vocab,
           m->heads, m->kv_heads, m->head_dim, m->B, m->S, m->B * m->S);
    test_cast(m);
    test_embed(m);
    test_rmsnorm(m);
    test_heads(m, m->heads, q0);    /* q of a fused qkv row */
    test_heads(m, m->kv_heads, k0); /* k of it */
    test_softmax(m, m->B, m->heads, m->S);
    test_elementwise(m);
    test_kl(m, i == 0 ? m->B * m->S : 32);
    test_mse(m);
    test_reduce(m);
    test_sumsq(m, i == 0 ? 1000 : 20000003);
  }
  /* The edges: the longest softmax row, a sumsq smaller than one block. */
  test_softmax(&shapes[1], 1, 1, 4096);
  test_sumsq(&shapes[0], 3);
  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  rb_buf_free(&err);
  return nfail ? 1 : 0;
}
