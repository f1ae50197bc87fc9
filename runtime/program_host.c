/* program_host.c: a plan of the host target loaded on this CPU: its kernels
 * built through the cache (the "llvm" compiler) and loaded into an ORC JIT of
 * the program's own, launched over the base library's thread pool, with host
 * memory behind every RtDevPtr. These are the device ops program.c's
 * interface dispatches to, so exec.c runs a host plan as it runs a GPU's; the
 * dense linear, which a GPU leaves to cuBLAS, is a plain C loop here (for now:
 * a generated kernel would take the same route as the others). A build
 * without LLVM has only the refusal at the bottom. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

#ifdef RABIT_HAVE_LLVM

typedef struct {
  const RtPlan *plan;
  RtHostJit *jit;
  CgHostEntry *fn; /* one per plan kernel */
  RbPool *pool;
  char error[512];
} Host;

static void host_fail(Host *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void host_fail(Host *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->error, sizeof h->error, fmt, ap);
  va_end(ap);
}

static void *ptr(RtDevPtr p) { return (void *)(uintptr_t)p; }

/* Zeroed and aligned for the kernels' vector loads; every buffer starts defined. */
static int host_alloc(void *impl, RtDevPtr *p, size_t bytes) {
  size_t n = (bytes + 63) / 64 * 64;
  void *m = aligned_alloc(64, n ? n : 64);
  if (!m) {
    host_fail(impl, "out of host memory (%zu bytes)", bytes);
    return RB_EINTERNAL;
  }
  memset(m, 0, n ? n : 64);
  *p = (RtDevPtr)(uintptr_t)m;
  return RB_OK;
}

static void host_free(void *impl, RtDevPtr p) {
  (void)impl;
  free(ptr(p));
}

static int host_upload(void *impl, RtDevPtr dst, const void *src, size_t bytes) {
  (void)impl;
  memcpy(ptr(dst), src, bytes);
  return RB_OK;
}

static int host_download(void *impl, void *dst, RtDevPtr src, size_t bytes) {
  (void)impl;
  memcpy(dst, ptr(src), bytes);
  return RB_OK;
}

static int host_copy(void *impl, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s) {
  (void)impl, (void)s;
  memmove(ptr(dst), ptr(src), bytes);
  return RB_OK;
}

static int host_fill(void *impl, RtDevPtr dst, unsigned char v, size_t bytes) {
  (void)impl;
  memset(ptr(dst), v, bytes);
  return RB_OK;
}

/* Launches return when their work is done: nothing is ever in flight. */
static int host_sync(void *impl) {
  (void)impl;
  return RB_OK;
}

static const char *host_error(const void *impl) {
  const Host *h = impl;
  return h->error[0] ? h->error : "no error recorded";
}

static int host_launch(void *impl, int kernel, int n, void **args, RtStream s) {
  Host *h = impl;
  (void)s;
  if (!rt_host_launch(h->pool, h->fn[kernel], &h->plan->kernels[kernel].geometry, n, args)) {
    host_fail(h, "kernel %s: no work items for extent %d", h->plan->kernels[kernel].entry, n);
    return RB_EUSER;
  }
  return RB_OK;
}

/* ---- the dense linear: y (M, ldy) = x (M, K) W^T [+ y], fp16 in, fp32 sums ---- */

static float f16_table[65536]; /* every fp16 bit pattern as a float: a load instead of a conversion */

static void f16_table_init(void) {
  for (uint32_t i = 0; i < 65536; i++) f16_table[i] = rb_f32_from_f16((uint16_t)i);
}

typedef struct {
  const uint16_t *w;
  const float *x; /* (M, K) converted once */
  void *y;
  int M, K, ldy, f32, acc;
  atomic_int oom; /* a range found no memory for its row */
} Dense;

/* Eight partial sums, so the loop vectorizes without reassociating one sum. */
static float dot(const float *a, const float *b, int K) {
  float s[8] = {0};
  int k = 0;
  for (; k + 8 <= K; k += 8)
    for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
  for (; k < K; k++) s[0] += a[k] * b[k];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_F16C_PATH 1
/* x . w with w still fp16: F16C converts 8 halves an instruction, where the table
 * costs a load each; two accumulators over 16 columns a step, the tail through the
 * table. Compiled for AVX2/F16C/FMA alone and taken only where the CPU has them. */
__attribute__((target("avx2,f16c,fma"))) static float dot_f16c(const float *x, const uint16_t *w, int K) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k))), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + k + 8))),
                         s1);
  }
  __m256 s = _mm256_add_ps(s0, s1);
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float v = _mm_cvtss_f32(h);
  for (; k < K; k++) v += x[k] * f16_table[w[k]];
  return v;
}

/* Four rows of x against one row of W already in fp32 (prefill and evaluation, M > 1:
 * the row is converted once for all of x's rows, and each W load serves four). */
__attribute__((target("avx2,fma"))) static void dot_x4(const float *x, size_t ldx, const float *w, int K,
                                                         float out[4]) {
  __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int k = 0;
  for (; k + 8 <= K; k += 8) {
    __m256 wv = _mm256_loadu_ps(w + k);
    for (int r = 0; r < 4; r++) s[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k), wv, s[r]);
  }
  for (int r = 0; r < 4; r++) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s[r]), _mm256_extractf128_ps(s[r], 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float v = _mm_cvtss_f32(h);
    for (int kk = k; kk < K; kk++) v += x[r * ldx + kk] * w[kk];
    out[r] = v;
  }
}

static int cpu_has_f16c(void) {
  static int has = -1;
  if (has < 0) has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
  return has;
}
#endif

static void dense_store(const Dense *d, int m, int64_t n, float v) {
  size_t at = (size_t)m * d->ldy + (size_t)n;
  if (d->f32) {
    float *y = d->y;
    y[at] = d->acc ? y[at] + v : v;
  } else {
    uint16_t *y = d->y;
    y[at] = rb_f16_from_f32(d->acc ? f16_table[y[at]] + v : v);
  }
}

/* Rows [begin, end) of W: each converted once, then against every row of x. */
static void dense_range(void *ctx, int64_t begin, int64_t end) {
  Dense *d = ctx;
#ifdef HAVE_F16C_PATH
  if (cpu_has_f16c() && d->M >= 4 && d->K <= 4096) {
    float wrow[4096];
    for (int64_t n = begin; n < end; n++) {
      const uint16_t *src = d->w + (size_t)n * d->K;
      for (int k = 0; k < d->K; k++) wrow[k] = f16_table[src[k]];
      int m = 0;
      for (; m + 4 <= d->M; m += 4) {
        float v[4];
        dot_x4(d->x + (size_t)m * d->K, (size_t)d->K, wrow, d->K, v);
        for (int r = 0; r < 4; r++) dense_store(d, m + r, n, v[r]);
      }
      for (; m < d->M; m++) dense_store(d, m, n, dot(d->x + (size_t)m * d->K, wrow, d->K));
    }
    return;
  }
  if (cpu_has_f16c()) {
    for (int64_t n = begin; n < end; n++)
      for (int m = 0; m < d->M; m++)
        dense_store(d, m, n, dot_f16c(d->x + (size_t)m * d->K, d->w + (size_t)n * d->K, d->K));
    return;
  }
#endif
  float wrow[4096], *w = d->K <= 4096 ? wrow : malloc((size_t)d->K * sizeof *w);
  if (!w) {
    atomic_store(&d->oom, 1);
    return;
  }
  for (int64_t n = begin; n < end; n++) {
    const uint16_t *src = d->w + (size_t)n * d->K;
    for (int k = 0; k < d->K; k++) w[k] = f16_table[src[k]];
    for (int m = 0; m < d->M; m++) dense_store(d, m, n, dot(d->x + (size_t)m * d->K, w, d->K));
  }
  if (w != wrow) free(w);
}

static int host_dense(void *impl, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int y_f32,
                      int accumulate) {
  Host *h = impl;
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, f16_table_init);
  float *xf = malloc((size_t)M * K * sizeof *xf);
  if (!xf) {
    host_fail(h, "out of host memory for a dense linear's input (%d x %d)", M, K);
    return RB_EINTERNAL;
  }
  const uint16_t *xs = ptr(x);
  for (size_t i = 0; i < (size_t)M * K; i++) xf[i] = f16_table[xs[i]];
  Dense d = {ptr(w), xf, ptr(y), M, K, ldy, y_f32, accumulate, 0};
  int64_t grain = N / (4 * (int64_t)rb_pool_threads(h->pool));
  rb_pool_run(h->pool, N, grain < 1 ? 1 : grain, dense_range, &d);
  free(xf);
  if (atomic_load(&d.oom)) {
    host_fail(h, "out of host memory for a dense linear's weight row (K = %d)", K);
    return RB_EINTERNAL;
  }
  return RB_OK;
}

static void host_close(void *impl) {
  Host *h = impl;
  if (!h) return;
  rt_host_jit_close(h->jit);
  rb_pool_close(h->pool);
  rb_free(h->fn);
  rb_free(h);
}

static const RtDeviceOps host_ops = {"host", host_alloc, host_free, host_upload, host_download, host_copy,
                                     host_fill, host_sync, host_launch, host_dense, host_error, host_close};

/* rt_program_build's load on the host: the object into this program's JIT (a cached
 * object it refuses is rebuilt there). */
static int load_entry(void *ctx, int i, RtBuilt *b, RtCache *cache, RbBuf *err) {
  Host *h = ctx;
  RbBuf why = {0};
  int rc = rt_host_jit_load(h->jit, b, cache, &h->fn[i], &why);
  if (rc) rb_buf_printf(err, "plan kernel %d (%s) failed to load: %s", i, b->entry, why.data ? why.data : "?");
  rb_buf_free(&why);
  return rc;
}

int rt_program_open_host(const RtPlan *p, int threads, RtProgram **out, RbBuf *err) {
  *out = NULL;
  if (rt_plan_target(p) != &cg_target_host) {
    rb_buf_printf(err, "the plan is for the %s target, not the host's", p->target);
    return RB_EUSER;
  }
  Host *h = rb_calloc(1, sizeof *h);
  int rc = RB_EINTERNAL, hits = 0;
  double ms_build = 0, ms_load = 0;
  if (h && (h->fn = rb_calloc((size_t)p->nkernels + 1, sizeof *h->fn))) {
    h->plan = p;
    if (!(rc = rb_pool_open(&h->pool, threads >= 1 ? threads - 1 : -1)) && !(rc = rt_host_jit_open(&h->jit, err)))
      rc = rt_program_build(p, &cg_target_host, "host", load_entry, h, &hits, &ms_build, &ms_load, err);
  }
  RtProgram *pr = rc == RB_OK ? rt_program_new(p, &host_ops, h, NULL) : NULL;
  if (!pr) {
    if (!err->len) rb_buf_puts(err, "out of memory");
    host_close(h);
    return rc ? rc : RB_EINTERNAL;
  }
  rt_program_set_stats(pr, hits, ms_build, ms_load, rb_pool_threads(h->pool));
  *out = pr;
  return RB_OK;
}

#else

int rt_program_open_host(const RtPlan *p, int threads, RtProgram **out, RbBuf *err) {
  (void)p, (void)threads;
  *out = NULL;
  cg_host_available(err);
  if (!err->len) rb_buf_puts(err, "this build has no host target (LLVM 16 is missing)");
  return RB_EUSER;
}

#endif
