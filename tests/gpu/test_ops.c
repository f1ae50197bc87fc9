/* test_ops.c: GPU test of the op kernels (embed, rmsnorm, rope_kv, attention,
 * swiglu, add) against the float64 references in tests/ref, for the
 * SmolLM2-135M and Llama-2-7B shapes, on fresh random fp16 inputs. Outputs are
 * poisoned with 0xFF bytes (fp16 NaN) first, so an element the kernel skips
 * shows up as NaN. Exits 77 when there is no GPU.
 *
 * Tolerances (relative L2 against float64): 2e-3 for the elementwise ops and
 * rmsnorm (one fp16 rounding of the output is ~3e-4), 5e-3 for attention (q
 * and k are stored rotated in fp16, then softmax and the fp16 output). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "tests/common/launch.h"
#include "runtime/jit/jit.h"
#include "runtime/cuda/gpu.h"
#include "tests/ref/ref.h"

#define TOL_EW 2e-3
#define TOL_ATT 5e-3

static int npass, nfail;
static RtGpu *gpu;

typedef struct {
  const char *name;
  int dim, ffn, vocab, heads, kv_heads, head_dim, max_ctx;
  float eps, theta;
} Shape;

/* max_ctx is the test's cache size, not the model's: enough for contexts up to 1024. */
static const Shape shapes[] = {
    {"smollm2-135m", 576, 1536, 49152, 9, 3, 64, 1040, 1e-5f, 100000.0f},
    {"llama-2-7b", 4096, 11008, 32000, 32, 32, 128, 1040, 1e-5f, 10000.0f},
};

static CgKernel op_spec(CgKind k, const Shape *m) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = k;
  s.op.dim = k == CG_SWIGLU ? m->ffn : m->dim;
  s.op.vocab = m->vocab;
  s.op.heads = m->heads;
  s.op.kv_heads = m->kv_heads;
  s.op.head_dim = m->head_dim;
  s.op.max_ctx = m->max_ctx;
  s.op.eps = m->eps;
  s.op.rope_theta = m->theta;
  return s;
}

/* ==== host helpers ==== */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* Uniform in [-1, 1), xorshift64*: fresh but reproducible inputs. */
static double urand(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / (double)(1ull << 52) - 1.0;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(2);
  }
  return p;
}

/* n random values times scale, rounded to fp16: f holds the exact fp16 values
 * the kernel sees, h their bits. */
static void rand_f16(float *f, uint16_t *h, size_t n, double scale) {
  for (size_t i = 0; i < n; i++) {
    h[i] = rb_f16_from_f32((float)(urand() * scale));
    f[i] = rb_f32_from_f16(h[i]);
  }
}

static RtDevPtr dalloc(size_t bytes) {
  RtDevPtr p = 0;
  if (rt_mem_alloc(gpu, &p, bytes ? bytes : 2)) {
    fprintf(stderr, "rt_mem_alloc(%zu) failed\n", bytes);
    exit(2);
  }
  return p;
}

static RtDevPtr dupload(const void *h, size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memcpy_htod(gpu, p, h, bytes)) exit(2);
  return p;
}

/* A poisoned device buffer: every fp16 element NaN until written. */
static RtDevPtr dpoison(size_t bytes) {
  RtDevPtr p = dalloc(bytes);
  if (rt_memset8(gpu, p, 0xFF, bytes)) exit(2);
  return p;
}

/* Copy n fp16 values back as doubles; returns the count of NaN (unwritten) ones. */
static size_t download(double *out, RtDevPtr p, size_t n) {
  uint16_t *h = xmalloc(n * 2);
  if (rt_memcpy_dtoh(gpu, h, p, n * 2)) exit(2);
  size_t nan = 0;
  for (size_t i = 0; i < n; i++) {
    out[i] = rb_f32_from_f16(h[i]);
    if (isnan(out[i])) nan++;
  }
  free(h);
  return nan;
}

/* ||a - b|| / ||b||, computed here so the test does not lean on another file. */
static double rel_l2(const double *a, const double *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Record one comparison and print its line. */
static void report(const char *what, size_t nan, double err, double tol) {
  int ok = nan == 0 && err <= tol && !isnan(err);
  if (ok)
    npass++;
  else
    nfail++;
  printf("%s %-52s rel_l2 %.2e (tol %.0e)%s", ok ? "ok  " : "FAIL", what, err, tol,
         nan ? "" : "\n");
  if (nan) printf("  %zu elements unwritten (NaN)\n", nan);
}

/* ==== kernels ==== */

typedef struct {
  CgKernel spec;
  RtModule *mod;
  RtFunction fn;
} Kernel;

/* Emit, compile for this GPU and load the kernel of spec s. Exits on failure:
 * a kernel that does not build fails every case after it anyway. */
static Kernel kernel_load(CgKernel s) {
  Kernel k = {s, NULL, NULL};
  RbBuf src = {0}, err = {0};
  char entry[64];
  void *cubin = NULL;
  size_t len = 0;
  if (test_emit(&s, &src, entry, &err) != RB_OK) {
    fprintf(stderr, "cg_emit: %s\n", err.data ? err.data : "?");
    exit(1);
  }
  if (rt_nvrtc_compile(src.data, entry, rt_gpu_arch(gpu), rt_nvrtc_default_opts,
                       rt_nvrtc_default_nopts, &cubin, &len, &err) != RB_OK) {
    fprintf(stderr, "NVRTC failed for %s:\n%s\n%s\n", entry, err.data ? err.data : "", src.data);
    exit(1);
  }
  if (rt_module_load(gpu, cubin, len, &k.mod) || rt_module_function(k.mod, entry, &k.fn)) exit(1);
  rb_free(cubin);
  rb_buf_free(&src);
  rb_buf_free(&err);
  return k;
}

static void kernel_run(Kernel *k, int n, void **args) {
  CgLaunch L = test_launch(&k->spec, n);
  if (rt_launch(gpu, k->fn, L.grid, L.block, L.smem, NULL, args) || rt_sync(gpu)) {
    fprintf(stderr, "launch of %s failed\n", cg_kind_name(k->spec.op.kind));
    exit(1);
  }
}

/* ==== cases ==== */

static void test_embed(const Shape *m, int T) {
  Kernel k = kernel_load(op_spec(CG_EMBED, m));
  size_t D = (size_t)m->dim, nt = (size_t)m->vocab * D;
  float *tf = xmalloc(nt * 4);
  uint16_t *th = xmalloc(nt * 2);
  rand_f16(tf, th, nt, 1.0);
  int *tok = xmalloc(T * sizeof(int));
  for (int t = 0; t < T; t++) tok[t] = (int)((urand() + 1.0) * 0.5 * m->vocab) % m->vocab;
  tok[0] = m->vocab - 1; /* the last row: catches an off-by-one in the row stride */
  RtDevPtr dt = dupload(th, nt * 2), dtok = dupload(tok, T * sizeof(int)), dy = dpoison(T * D * 2);
  int Ti = T;
  void *args[] = {&dy, &dtok, &dt, &Ti};
  kernel_run(&k, T, args);
  double *y = xmalloc(T * D * 8), *r = xmalloc(T * D * 8);
  size_t nan = download(y, dy, T * D);
  ref_embed(r, tok, tf, T, (int)D);
  char what[128];
  snprintf(what, sizeof what, "embed %s T=%d", m->name, T);
  report(what, nan, rel_l2(y, r, T * D), TOL_EW);
  rt_mem_free(gpu, dt);
  rt_mem_free(gpu, dtok);
  rt_mem_free(gpu, dy);
  rt_module_unload(k.mod);
  free(tf), free(th), free(tok), free(y), free(r);
}

/* RMSNorm out of place, then in place (y == x) on the same input. */
static void test_rmsnorm(const Shape *m, int T) {
  Kernel k = kernel_load(op_spec(CG_RMSNORM, m));
  size_t D = (size_t)m->dim, n = T * D;
  float *xf = xmalloc(n * 4), *wf = xmalloc(D * 4);
  uint16_t *xh = xmalloc(n * 2), *wh = xmalloc(D * 2);
  rand_f16(xf, xh, n, 3.0);
  for (size_t i = 0; i < D; i++) { /* weights around 1, as trained norms are */
    wh[i] = rb_f16_from_f32((float)(1.0 + 0.5 * urand()));
    wf[i] = rb_f32_from_f16(wh[i]);
  }
  RtDevPtr dx = dupload(xh, n * 2), dw = dupload(wh, D * 2), dy = dpoison(n * 2);
  int Ti = T;
  double *y = xmalloc(n * 8), *r = xmalloc(n * 8);
  ref_rmsnorm(r, xf, wf, T, (int)D, m->eps);
  char what[128];
  for (int inplace = 0; inplace < 2; inplace++) {
    RtDevPtr dst = inplace ? dx : dy;
    void *args[] = {&dst, &dx, &dw, &Ti};
    kernel_run(&k, T, args);
    size_t nan = download(y, dst, n);
    snprintf(what, sizeof what, "rmsnorm %s T=%d%s", m->name, T, inplace ? " in place" : "");
    report(what, nan, rel_l2(y, r, n), TOL_EW);
  }
  rt_mem_free(gpu, dx);
  rt_mem_free(gpu, dw);
  rt_mem_free(gpu, dy);
  rt_module_unload(k.mod);
  free(xf), free(wf), free(xh), free(wh), free(y), free(r);
}

static void test_swiglu(const Shape *m, int T) {
  Kernel k = kernel_load(op_spec(CG_SWIGLU, m));
  size_t F = (size_t)m->ffn, ld = 2 * F + 8; /* a padded row: ld is honoured */
  size_t n = T * ld;
  float *gf = xmalloc(n * 4);
  uint16_t *gh = xmalloc(n * 2);
  rand_f16(gf, gh, n, 6.0); /* wide enough to reach silu's saturated ends */
  RtDevPtr dg = dupload(gh, n * 2), dy = dpoison(T * F * 2);
  int Ti = T, ldi = (int)ld;
  void *args[] = {&dy, &dg, &ldi, &Ti};
  kernel_run(&k, T, args);
  double *y = xmalloc(T * F * 8), *r = xmalloc(T * F * 8);
  size_t nan = download(y, dy, T * F);
  for (int t = 0; t < T; t++)
    for (size_t i = 0; i < F; i++) {
      double g = gf[t * ld + i], u = gf[t * ld + F + i];
      r[t * F + i] = g / (1.0 + exp(-g)) * u;
    }
  char what[128];
  snprintf(what, sizeof what, "swiglu %s F=%zu T=%d", m->name, F, T);
  report(what, nan, rel_l2(y, r, T * F), TOL_EW);
  rt_mem_free(gpu, dg);
  rt_mem_free(gpu, dy);
  rt_module_unload(k.mod);
  free(gf), free(gh), free(y), free(r);
}

static void test_add(const Shape *m, int T) {
  Kernel k = kernel_load(op_spec(CG_ADD, m));
  size_t n = (size_t)T * m->dim;
  float *af = xmalloc(n * 4), *bf = xmalloc(n * 4);
  uint16_t *ah = xmalloc(n * 2), *bh = xmalloc(n * 2);
  rand_f16(af, ah, n, 4.0);
  rand_f16(bf, bh, n, 4.0);
  RtDevPtr da = dupload(ah, n * 2), db = dupload(bh, n * 2), dy = dpoison(n * 2);
  int ni = (int)n;
  void *args[] = {&dy, &da, &db, &ni};
  kernel_run(&k, ni, args);
  double *y = xmalloc(n * 8), *r = xmalloc(n * 8);
  size_t nan = download(y, dy, n);
  for (size_t i = 0; i < n; i++) r[i] = (double)af[i] + bf[i];
  char what[128];
  snprintf(what, sizeof what, "add %s n=%zu", m->name, n);
  report(what, nan, rel_l2(y, r, n), TOL_EW);
  rt_mem_free(gpu, da);
  rt_mem_free(gpu, db);
  rt_mem_free(gpu, dy);
  rt_module_unload(k.mod);
  free(af), free(bf), free(ah), free(bh), free(y), free(r);
}

/* RoPE alone at a far position: q rotated in place, k rotated and v copied
 * into the caches at pos0..pos0+T-1; every cached element compared. */
static void test_rope(const Shape *m, int T, int pos0) {
  Kernel k = kernel_load(op_spec(CG_ROPE_KV, m));
  int H = m->heads, HKV = m->kv_heads, HD = m->head_dim, C = m->max_ctx;
  size_t ldq = (size_t)H * HD, ldkv = (size_t)HKV * HD, ncache = (size_t)HKV * C * HD;
  float *qf = xmalloc(T * ldq * 4), *kf = xmalloc(T * ldkv * 4), *vf = xmalloc(T * ldkv * 4);
  uint16_t *qh = xmalloc(T * ldq * 2), *kh = xmalloc(T * ldkv * 2), *vh = xmalloc(T * ldkv * 2);
  rand_f16(qf, qh, T * ldq, 2.0);
  rand_f16(kf, kh, T * ldkv, 2.0);
  rand_f16(vf, vh, T * ldkv, 2.0);
  RtDevPtr dq = dupload(qh, T * ldq * 2), dk = dupload(kh, T * ldkv * 2), dv = dupload(vh, T * ldkv * 2);
  RtDevPtr kc = dpoison(ncache * 2), vc = dpoison(ncache * 2);
  int ldqi = (int)ldq, ldkvi = (int)ldkv, Ti = T;
  RtDevPtr p0 = dupload(&pos0, sizeof pos0); /* the kernels read pos0 on the device */
  void *args[] = {&dq, &ldqi, &dk, &ldkvi, &dv, &ldkvi, &kc, &vc, &p0, &Ti};
  kernel_run(&k, T, args);
  rt_mem_free(gpu, p0);

  double *gq = xmalloc(T * ldq * 8), *rq = xmalloc(T * ldq * 8);
  double *gk = xmalloc(T * ldkv * 8), *rk = xmalloc(T * ldkv * 8);
  double *gv = xmalloc(T * ldkv * 8), *rv = xmalloc(T * ldkv * 8);
  double *cache = xmalloc(ncache * 8);
  size_t nan = download(gq, dq, T * ldq);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) ref_rope(rq + t * ldq + h * HD, qf + t * ldq + h * HD, HD, pos0 + t, m->theta);
  /* Gather the cache rows pos0..pos0+T-1 into (T, HKV*HD) order. */
  size_t nk = download(cache, kc, ncache);
  for (int t = 0; t < T; t++)
    for (int g = 0; g < HKV; g++) {
      ref_rope(rk + t * ldkv + g * HD, kf + t * ldkv + g * HD, HD, pos0 + t, m->theta);
      memcpy(gk + t * ldkv + g * HD, cache + ((size_t)g * C + pos0 + t) * HD, HD * 8);
    }
  download(cache, vc, ncache);
  for (int t = 0; t < T; t++)
    for (int g = 0; g < HKV; g++)
      for (int d = 0; d < HD; d++) {
        rv[t * ldkv + g * HD + d] = vf[t * ldkv + g * HD + d];
        gv[t * ldkv + g * HD + d] = cache[((size_t)g * C + pos0 + t) * HD + d];
      }
  /* The rows written must be exactly T per head: everything else stays NaN. */
  size_t written = ncache - nk, nan_k = 0, nan_v = 0;
  for (size_t i = 0; i < T * ldkv; i++) nan_k += isnan(gk[i]), nan_v += isnan(gv[i]);
  char what[128];
  snprintf(what, sizeof what, "rope_kv q %s T=%d pos0=%d", m->name, T, pos0);
  report(what, nan, rel_l2(gq, rq, T * ldq), TOL_EW);
  snprintf(what, sizeof what, "rope_kv k cache %s T=%d pos0=%d", m->name, T, pos0);
  report(what, nan_k + (written != T * ldkv), rel_l2(gk, rk, T * ldkv), TOL_EW);
  snprintf(what, sizeof what, "rope_kv v cache %s T=%d pos0=%d", m->name, T, pos0);
  report(what, nan_v, rel_l2(gv, rv, T * ldkv), TOL_EW);
  rt_mem_free(gpu, dq), rt_mem_free(gpu, dk), rt_mem_free(gpu, dv);
  rt_mem_free(gpu, kc), rt_mem_free(gpu, vc);
  rt_module_unload(k.mod);
  free(qf), free(kf), free(vf), free(qh), free(kh), free(vh);
  free(gq), free(rq), free(gk), free(rk), free(gv), free(rv), free(cache);
}

/* Prefill T tokens at pos0 = 0 (rope_kv, then attention) and compare all T
 * rows with ref_attention; then decode `steps` tokens one at a time at pos0 =
 * T, T+1, ... and compare each step's row. ref_attention is causal, so its
 * row s over the whole sequence equals the last row over tokens 0..s: one
 * reference call covers every step. */
static void test_attention(const Shape *m, int T, int steps, int splits) {
  Kernel rope = kernel_load(op_spec(CG_ROPE_KV, m));
  CgKernel spec = op_spec(CG_ATTENTION, m);
  spec.sched.tile[0] = splits; /* the decode launches' context splits; 0: the default */
  Kernel att = kernel_load(spec);
  int H = m->heads, HKV = m->kv_heads, HD = m->head_dim, C = m->max_ctx, N = T + steps;
  size_t qw = (size_t)H * HD, kw = (size_t)HKV * HD, ncache = (size_t)HKV * C * HD;
  /* q and k with spread 2 give scores of a few units: a softmax that is
   * neither flat nor one-hot. */
  float *qf = xmalloc(N * qw * 4), *kf = xmalloc(N * kw * 4), *vf = xmalloc(N * kw * 4);
  uint16_t *qh = xmalloc(N * qw * 2), *kh = xmalloc(N * kw * 2), *vh = xmalloc(N * kw * 2);
  rand_f16(qf, qh, N * qw, 2.0);
  rand_f16(kf, kh, N * kw, 2.0);
  rand_f16(vf, vh, N * kw, 1.0);
  double *ref = xmalloc(N * qw * 8), *got = xmalloc(N * qw * 8);
  ref_attention(ref, qf, kf, vf, N, H, HKV, HD, m->theta);

  /* q, k, v rows live in one buffer per tensor; each launch points at its rows. */
  RtDevPtr dq = dupload(qh, N * qw * 2), dk = dupload(kh, N * kw * 2), dv = dupload(vh, N * kw * 2);
  RtDevPtr kc = dpoison(ncache * 2), vc = dpoison(ncache * 2), dout = dpoison(N * qw * 2);
  int ldq = (int)qw, ldkv = (int)kw;
  /* the decode launches split the context over blocks: their workspace, zeroed once (the kernel
   * leaves its counters zero, which every later step relies on) */
  size_t wsb = test_attention_ws_bytes(&att.spec);
  RtDevPtr ws = 0;
  if (wsb && (rt_mem_alloc(gpu, &ws, wsb) || rt_memset8(gpu, ws, 0, wsb))) {
    fprintf(stderr, "attention workspace of %zu bytes\n", wsb);
    exit(1);
  }
  char what[128];
  for (int s = 0; s <= steps; s++) {
    int pos0 = s == 0 ? 0 : T + s - 1, n = s == 0 ? T : 1;
    RtDevPtr q = dq + (RtDevPtr)pos0 * qw * 2, k = dk + (RtDevPtr)pos0 * kw * 2;
    RtDevPtr v = dv + (RtDevPtr)pos0 * kw * 2, out = dout + (RtDevPtr)pos0 * qw * 2;
    RtDevPtr p0 = dupload(&pos0, sizeof pos0); /* the kernels read pos0 on the device */
    void *rargs[] = {&q, &ldq, &k, &ldkv, &v, &ldkv, &kc, &vc, &p0, &n};
    kernel_run(&rope, n, rargs);
    CgAttentionArgs a = {out, q, ldq, kc, vc, p0, n, ws};
    CgArgv av;
    cg_attention_argv(&a, &av);
    kernel_run(&att, n, av.v);
    rt_mem_free(gpu, p0);
    size_t nan = download(got + (size_t)pos0 * qw, out, n * qw);
    if (s == 0)
      snprintf(what, sizeof what, "attention %s prefill T=%d", m->name, T);
    else
      snprintf(what, sizeof what, "attention %s decode pos=%d (ctx %d), %d splits launched", m->name, pos0, pos0 + 1,
               test_launch(&att.spec, 1).grid[0] / (unsigned)m->heads);
    /* Print every prefill and the first, last and every 8th decode step. */
    double err = rel_l2(got + (size_t)pos0 * qw, ref + (size_t)pos0 * qw, n * qw);
    if (s <= 1 || s == steps || s % 8 == 0 || nan || err > TOL_ATT) {
      report(what, nan, err, TOL_ATT);
    } else {
      npass++;
    }
  }
  rt_mem_free(gpu, dq), rt_mem_free(gpu, dk), rt_mem_free(gpu, dv);
  rt_mem_free(gpu, kc), rt_mem_free(gpu, vc), rt_mem_free(gpu, dout);
  if (ws) rt_mem_free(gpu, ws);
  rt_module_unload(rope.mod);
  rt_module_unload(att.mod);
  free(qf), free(kf), free(vf), free(qh), free(kh), free(vh), free(ref), free(got);
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
    int Ts[] = {1, 7, 100};
    for (int j = 0; j < 3; j++) {
      test_embed(m, Ts[j]);
      test_rmsnorm(m, Ts[j]);
      test_swiglu(m, Ts[j]);
      test_add(m, Ts[j]);
      test_rope(m, Ts[j], j == 2 ? 1000 - Ts[j] : 3 * j);
    }
    /* (prefill T, decode steps): odd prefills, long decode, and a context up to 1024. */
    test_attention(m, 1, 40, 0);
    test_attention(m, 7, 9, 0);
    test_attention(m, 100, 28, 0);
    test_attention(m, 333, 3, 0);
    test_attention(m, 990, 34, 0);
    test_attention(m, 990, 10, 1);  /* unsplit decode, as before the splits */
    test_attention(m, 3, 20, 32);   /* the most splits launched: one used at these contexts */
    test_attention(m, 990, 34, 32); /* and at a long context, where several of them are used */
  }
  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  rb_buf_free(&err);
  return nfail ? 1 : 0;
}
