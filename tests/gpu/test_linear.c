/* test_linear.c: GPU test of the generated linear and repack kernels against
 * the float64 reference (tests/ref). Table-driven over strategy x paths 1..4 x
 * shapes (odd and real, fused qkv, gate/up swiglu, a fused rmsnorm) x batches x epilogues, on
 * fresh random inputs, with every output poisoned with NaN before the launch.
 * The dequant strategy (prefill buckets, batches 17..4096) runs as the runtime runs it: its
 * kernel into an fp16 W_hat that must equal the CPU's fmaf bit for bit, then cuBLAS and the
 * epilogue. With --bench (or --bench-only) it also times the Llama-2-7B shapes the way
 * graph_bench.py does, and the prefill layers at batch 512 beside cuBLAS fp16.
 * --compile-only compiles every source the table (and with --bench the bench) would
 * build, for sm_90, with no GPU: CI runs it. Otherwise it exits 77 after "SKIP:
 * <reason>" when there is no GPU or driver. Environment: RABIT_TABLE_PART="i/n" (every
 * n-th spec), RABIT_TABLE_ONLY=STRATEGY (its buckets alone), RABIT_BENCH_PATHS=P,
 * RABIT_TILE_XOR|MMA|LOP3|BMMA|XSMEM="a,b,c,d" (the bench's tiles), RABIT_DUMP_CUBINS=DIR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "tests/common/launch.h"
#include "runtime/jit/jit.h"
#include "runtime/cuda/gpu.h"
#include "codegen/cuda/cuda.h"
#include "tests/ref/ref.h"

static RtGpu *gpu;
static RbPool *cpus; /* the compiles' and the CPU references' threads (NULL: the caller alone) */
static RtBlas *blas; /* the dequant strategy's GEMM, on the legacy stream */
static int npass, nfail;

/* ---- random inputs (xorshift: fast enough for 67M signs) ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }

static double normal(void) {
  double u = unif(), v = unif();
  return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

/* Round v to fp16, returning the bits and the rounded value. */
static uint16_t to_half(double v, float *rounded) {
  uint16_t hb = rb_f16_from_f32((float)v);
  *rounded = rb_f32_from_f16(hb);
  return hb;
}

/* ---- a compiled kernel ---- */

typedef struct {
  RtModule *mod;
  RtFunction fn;
} Kernel;

/* ---- cubins compiled ahead, in parallel ----
 * One kernel after another, the table's compiles took 318 s of the H200 machine's
 * 16-core time (2026-12-01), nearly the whole test. NVRTC runs in parallel threads, so
 * every source a run will need is emitted first (ahead_add, from the same loops that
 * run the cases), compiled across the CPUs (ahead_compile), and kernel_build takes its
 * cubin from here; a source not found is compiled on the spot, as before. */
typedef struct {
  char *src, entry[64];
  void *cubin;
  size_t len;
  int st;
  char *log; /* NVRTC's messages when st != RB_OK */
} Ahead;

static Ahead *ahead;
static int nahead, capahead, collecting; /* collecting: the loops only call ahead_add */
static const char *arch;                 /* the GPU's, or sm_90 under --compile-only */

/* What kernel_build makes of a linear's spec: the linear, its repack, or its bmma pre-pass. */
enum { ROLE_LINEAR, ROLE_REPACK, ROLE_PLANES };

static int emit(const CgKernel *s, int role, RbBuf *src, char entry[64], RbBuf *err) {
  CgKernel pk;
  if (role == ROLE_PLANES)
    return cg_linear_planes_kernel(s, &pk) ? cg_emit_planes(&pk, src, entry, err) : RB_EUSER;
  return role == ROLE_REPACK ? cg_emit_repack(s, src, entry, err) : cg_emit_linear(s, src, entry, err);
}

static const Ahead *ahead_find(const char *src) {
  for (int i = 0; i < nahead; i++)
    if (strcmp(ahead[i].src, src) == 0) return &ahead[i];
  return NULL;
}

static void ahead_add(const CgKernel *s, int role) {
  RbBuf src = {0}, err = {0};
  char entry[64];
  if (emit(s, role, &src, entry, &err) == RB_OK && src.data && !ahead_find(src.data)) {
    if (nahead == capahead) {
      capahead = capahead ? 2 * capahead : 256;
      ahead = realloc(ahead, (size_t)capahead * sizeof *ahead);
    }
    Ahead *a = &ahead[nahead++];
    memset(a, 0, sizeof *a);
    a->src = src.data, src.data = NULL;
    snprintf(a->entry, sizeof a->entry, "%s", entry);
  }
  rb_buf_free(&src);
  rb_buf_free(&err);
}

static void compile_range(void *ctx, int64_t begin, int64_t end) {
  (void)ctx;
  for (int64_t i = begin; i < end; i++) {
    Ahead *a = &ahead[i];
    RbBuf log = {0};
    a->st = rt_nvrtc_compile(a->src, a->entry, arch, NULL, 0, &a->cubin, &a->len, &log);
    a->log = log.data, log.data = NULL;
    rb_buf_free(&log);
  }
}

/* RABIT_DUMP_CUBINS=DIR: every cubin compiled ahead as DIR/ENTRY.cubin, for cuobjdump. */
static void dump_cubins(const char *dir) {
  for (int i = 0; i < nahead; i++) {
    if (ahead[i].st != RB_OK) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.cubin", dir, ahead[i].entry);
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(ahead[i].cubin, 1, ahead[i].len, f) == ahead[i].len;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) printf("RABIT_DUMP_CUBINS: cannot write %s\n", path);
  }
}

/* Returns how many failed (each named). */
static int ahead_compile(void) {
  double t0 = rb_now_ms();
  rb_pool_run(cpus, nahead, 1, compile_range, NULL);
  int failed = 0;
  for (int i = 0; i < nahead; i++)
    if (ahead[i].st != RB_OK) printf("FAIL compile %s: %s\n", ahead[i].entry, ahead[i].log ? ahead[i].log : ""), failed++;
  const char *dump = getenv("RABIT_DUMP_CUBINS");
  if (dump && *dump) dump_cubins(dump);
  printf("compiled %d distinct kernels ahead for %s in %.1f s on %d threads, %d failed\n", nahead, arch,
         (rb_now_ms() - t0) / 1e3, rb_pool_threads(cpus), failed);
  return failed;
}

static void ahead_free(void) {
  for (int i = 0; i < nahead; i++) free(ahead[i].src), rb_free(ahead[i].cubin), free(ahead[i].log);
  free(ahead);
  ahead = NULL, nahead = capahead = 0;
}

/* Emit (a ROLE_) and compile for this GPU (or take the cubin compiled ahead).
 * Returns RB_OK or prints why not. */
static int kernel_build(const CgKernel *s, int role, Kernel *k) {
  RbBuf src = {0}, err = {0};
  char entry[64] = "(a kernel the emitter refused)";
  void *cubin = NULL;
  size_t len = 0;
  const Ahead *a = NULL;
  memset(k, 0, sizeof *k);
  int st = emit(s, role, &src, entry, &err);
  if (st == RB_OK && (a = ahead_find(src.data)) != NULL) {
    st = a->st, cubin = a->cubin, len = a->len;
    if (st != RB_OK) rb_buf_puts(&err, a->log ? a->log : "");
  } else if (st == RB_OK) {
    st = rt_nvrtc_compile(src.data, entry, arch, NULL, 0, &cubin, &len, &err);
  }
  if (st == RB_OK) st = rt_module_load(gpu, cubin, len, &k->mod);
  if (st == RB_OK) st = rt_module_function(k->mod, entry, &k->fn);
  if (st != RB_OK) printf("build of %s failed: %s\n", entry, err.data ? err.data : "");
  if (!a) rb_free(cubin);
  rb_buf_free(&src);
  rb_buf_free(&err);
  return st;
}

static void kernel_free(Kernel *k) {
  if (k->mod) rt_module_unload(k->mod);
  memset(k, 0, sizeof *k);
}

/* ---- one layer's weights on host and device ---- */

typedef struct {
  CgKernel s;
  int ntot, nout, W;
  uint32_t *bits[CG_MAX_SEG]; /* canonical, per segment (paths, N[s], W) */
  float *g[CG_MAX_SEG];       /* per segment (paths, N[s]), fp16-rounded */
  float *h;                   /* (nseg, paths, K), fp16-rounded */
  RtDevPtr d_bits, d_g, d_h;
} Layer;

/* Fresh random signs, g and h; canonical bits uploaded and repacked per segment. */
static int layer_make(Layer *L, const CgKernel *s, const Kernel *repack) {
  memset(L, 0, sizeof *L);
  L->s = *s;
  L->W = (s->op.K + 31) / 32;
  for (int i = 0; i < s->op.nseg; i++) L->ntot += s->op.N[i];
  L->nout = s->op.epilogue == CG_EPI_SWIGLU ? s->op.N[0] : L->ntot;
  int P = s->op.paths, K = s->op.K;
  uint16_t *gh = malloc((size_t)P * L->ntot * 2), *hh = malloc((size_t)s->op.nseg * P * K * 2);
  L->h = malloc((size_t)s->op.nseg * P * K * sizeof(float));
  /* g scaled so that y = W x is O(1): each path's dot has about sqrt(K) terms of size 0.02. */
  double gscale = 50.0 / sqrt((double)K);
  int rc = RB_OK;
  for (size_t i = 0; i < (size_t)s->op.nseg * P * K; i++) hh[i] = to_half((0.5 + unif()) * 0.02, &L->h[i]);
  for (int sg = 0, row0 = 0; sg < s->op.nseg; row0 += s->op.N[sg], sg++) {
    int N = s->op.N[sg];
    L->g[sg] = malloc((size_t)P * N * sizeof(float));
    for (int p = 0; p < P; p++)
      for (int n = 0; n < N; n++)
        gh[(size_t)p * L->ntot + row0 + n] = to_half((0.5 + unif()) * gscale, &L->g[sg][(size_t)p * N + n]);
    size_t nsign = (size_t)P * N * K;
    int8_t *signs = malloc(nsign);
    for (size_t i = 0; i < nsign; i += 64) {
      uint64_t r = rnd();
      for (size_t j = 0; j < 64 && i + j < nsign; j++) signs[i + j] = (r >> j) & 1 ? -1 : 1;
    }
    size_t words = (size_t)P * N * L->W;
    L->bits[sg] = malloc(words * 4);
    ref_pack_signs(L->bits[sg], signs, P, N, K);
    free(signs);
  }
  size_t kbytes = cg_target_cuda.layout_bytes(&s->op);
  if (rt_mem_alloc(gpu, &L->d_bits, kbytes) || rt_mem_alloc(gpu, &L->d_g, (size_t)P * L->ntot * 2) ||
      rt_mem_alloc(gpu, &L->d_h, (size_t)s->op.nseg * P * K * 2) ||
      rt_memcpy_htod(gpu, L->d_g, gh, (size_t)P * L->ntot * 2) ||
      rt_memcpy_htod(gpu, L->d_h, hh, (size_t)s->op.nseg * P * K * 2))
    rc = RB_EINTERNAL;
  /* Poison the kernel layout so that any word the repack misses shows up. */
  if (rc == RB_OK) rc = rt_memset8(gpu, L->d_bits, 0xA5, kbytes);
  CgKernel rs = *s;
  rs.op.kind = CG_REPACK;
  for (int sg = 0; sg < s->op.nseg && rc == RB_OK; sg++) {
    size_t bytes = (size_t)P * s->op.N[sg] * L->W * 4;
    RtDevPtr d_src = 0;
    rc = rt_mem_alloc(gpu, &d_src, bytes);
    if (rc == RB_OK) rc = rt_memcpy_htod(gpu, d_src, L->bits[sg], bytes);
    CgLaunch l = test_launch(&rs, 1);
    void *args[] = {&L->d_bits, &d_src, &sg};
    if (rc == RB_OK) rc = rt_launch(gpu, repack->fn, l.grid, l.block, l.smem, NULL, args);
    if (rc == RB_OK) rc = rt_sync(gpu);
    if (d_src) rt_mem_free(gpu, d_src);
  }
  free(gh);
  free(hh);
  return rc;
}

static void layer_free(Layer *L) {
  for (int i = 0; i < L->s.op.nseg; i++) {
    free(L->bits[i]);
    free(L->g[i]);
  }
  free(L->h);
  if (L->d_bits) rt_mem_free(gpu, L->d_bits);
  if (L->d_g) rt_mem_free(gpu, L->d_g);
  if (L->d_h) rt_mem_free(gpu, L->d_h);
}

/* Reference rows: checking every row of a 512 x 4096 x 4096 x 4 product in
 * double would take minutes, so big cases check a spread of rows that always
 * includes the first and the last (tile edges). NaN is checked on all rows. */
static int pick_rows(int batch, const Layer *L, int *rows) {
  double per_row = (double)L->ntot * L->s.op.K * L->s.op.paths;
  int n = (int)(1.5e8 / per_row);
  if (n < 2) n = 2;
  if (n >= batch) {
    for (int i = 0; i < batch; i++) rows[i] = i;
    return batch;
  }
  for (int i = 0; i < n; i++) rows[i] = (int)((long)i * (batch - 1) / (n - 1));
  return n;
}

/* ---- the dequant strategy, as runtime/linear.c runs it ---- */

/* The swiglu product kernel of width dim (the dequant strategy's epilogue), built once per width. */
static int product_kernel(int dim, RtFunction *fn, CgLaunch *l, int batch) {
  static struct { int dim; RtModule *mod; RtFunction fn; } cache[8];
  static int ncache;
  CgKernel pk;
  memset(&pk, 0, sizeof pk);
  pk.op.kind = CG_SWIGLU;
  pk.op.dim = dim;
  *l = test_launch(&pk, batch);
  for (int i = 0; i < ncache; i++)
    if (cache[i].dim == dim) return *fn = cache[i].fn, RB_OK;
  if (ncache == 8) return RB_EINTERNAL;
  int rc = test_build_load(gpu, rt_gpu_arch(gpu), &pk, &cache[ncache].mod, &cache[ncache].fn, NULL);
  if (rc) return rc;
  cache[ncache].dim = dim;
  *fn = cache[ncache++].fn;
  return RB_OK;
}

/* W_hat elements of the layer's segments that differ from the CPU's: each the fmaf
 * of +-g_p and h_p over the paths in order from 0, rounded to fp16 (codegen.h,
 * CgDequantArgs): the same bits, or a wrong sign, scale or column permutation. */
typedef struct {
  const Layer *L;
  const uint16_t *got;
  size_t *bad; /* per row of W_hat */
} WhatCheck;

static void what_rows(void *ctx, int64_t begin, int64_t end) {
  const WhatCheck *c = ctx;
  const Layer *L = c->L;
  const CgOp *op = &L->s.op;
  int P = op->paths, K = op->K;
  for (int64_t r = begin; r < end; r++) {
    int sg = 0, n = (int)r;
    while (n >= op->N[sg]) n -= op->N[sg++];
    size_t bad = 0;
    for (int j = 0; j < K; j++) {
      float acc = 0.0f;
      for (int p = 0; p < P; p++) {
        uint32_t w = L->bits[sg][((size_t)p * op->N[sg] + n) * L->W + (size_t)j / 32];
        float gv = L->g[sg][(size_t)p * op->N[sg] + n];
        acc = fmaf((w >> (j % 32)) & 1u ? -gv : gv, L->h[((size_t)sg * P + p) * K + j], acc);
      }
      bad += c->got[(size_t)r * K + j] != rb_f16_from_f32(acc);
    }
    c->bad[r] = bad;
  }
}

static size_t what_mismatches(const Layer *L, const uint16_t *got) {
  size_t *bad = calloc((size_t)L->ntot, sizeof *bad), total = 0;
  WhatCheck c = {L, got, bad};
  rb_pool_run(cpus, L->ntot, 16, what_rows, &c);
  for (int r = 0; r < L->ntot; r++) total += bad[r];
  free(bad);
  return total;
}

/* Dequantize into a NaN-poisoned W_hat (checked whole against the CPU), then the
 * GEMM and the epilogue into d_y. Returns the driver status; *bad the W_hat
 * elements that differ. */
static int dequant_run(const Layer *L, const Kernel *k, int batch, RtDevPtr d_y, RtDevPtr d_x, RtDevPtr d_res,
                       size_t *bad) {
  const CgOp *op = &L->s.op;
  size_t wbytes = (size_t)L->ntot * op->K * 2;
  RtDevPtr d_w = 0, d_gu = 0;
  uint16_t *w = malloc(wbytes);
  int rc = rt_mem_alloc(gpu, &d_w, wbytes) || rt_memset8(gpu, d_w, 0xFF, wbytes);
  CgLaunch l = test_launch(&L->s, batch);
  void *args[] = {&d_w, (void *)&L->d_bits, (void *)&L->d_g, (void *)&L->d_h};
  if (!rc) rc = rt_launch(gpu, k->fn, l.grid, l.block, l.smem, NULL, args);
  if (!rc) rc = rt_sync(gpu) || rt_memcpy_dtoh(gpu, w, d_w, wbytes);
  *bad = rc ? wbytes / 2 : what_mismatches(L, w);
  if (!rc && op->epilogue == CG_EPI_SWIGLU) {
    RtFunction fn;
    CgLaunch pl;
    rc = rt_mem_alloc(gpu, &d_gu, (size_t)batch * L->ntot * 2) ||
         rt_blas_linear(blas, batch, L->ntot, op->K, d_x, d_w, d_gu, L->ntot, 0, 0) ||
         product_kernel(op->N[0], &fn, &pl, batch);
    int ld = L->ntot;
    void *pargs[] = {&d_y, &d_gu, &ld, &batch};
    if (!rc) rc = rt_launch(gpu, fn, pl.grid, pl.block, pl.smem, NULL, pargs);
  } else if (!rc) {
    int add = op->epilogue == CG_EPI_ADD;
    if (add) rc = rt_memcpy_dtod(gpu, d_y, d_res, (size_t)batch * L->ntot * 2, NULL);
    if (!rc) rc = rt_blas_linear(blas, batch, L->ntot, op->K, d_x, d_w, d_y, L->ntot, 0, add);
  }
  if (!rc) rc = rt_sync(gpu);
  if (d_w) rt_mem_free(gpu, d_w);
  if (d_gu) rt_mem_free(gpu, d_gu);
  free(w);
  return rc;
}

/* The float64 reference of the picked rows, spread over the CPUs (it was most of the
 * table's time on the 16-core GPU machine). */
typedef struct {
  const Layer *L;
  const float *xf, *rf;
  const int *rows;
  const uint32_t *const *bs;
  const float *const *gs;
  double *want, *seg; /* nr x nout; nr x ntot scratch */
} RefRows;

static void ref_rows(void *ctx, int64_t begin, int64_t end) {
  const RefRows *r = ctx;
  const Layer *L = r->L;
  for (int64_t i = begin; i < end; i++) {
    int b = r->rows[i];
    cg_ref_linear_row(&L->s.op, r->want + (size_t)i * L->nout, r->xf + (size_t)b * L->s.op.K, r->bs, r->gs, L->h,
                      r->rf + (size_t)b * L->ntot, r->seg + (size_t)i * L->ntot);
  }
}

/* The bmma strategy as runtime/linear.c runs it: the pre-pass writes the planes (into a
 * buffer poisoned with 0xFF, so that planes it misses show, and the rows past the batch
 * hold NaN scales the kernel must keep out of the live rows), then the kernel reads them
 * in place of x. Returns the driver status. */
static int bmma_run(const Layer *L, const Kernel *k, const Kernel *planes, int batch, RtDevPtr d_y, RtDevPtr d_x,
                    RtDevPtr d_res) {
  CgKernel pk;
  cg_linear_planes_kernel(&L->s, &pk);
  size_t bytes = cg_planes_bytes(&L->s.op);
  RtDevPtr d_p = 0;
  int rc = rt_mem_alloc(gpu, &d_p, bytes) || rt_memset8(gpu, d_p, 0xFF, bytes);
  CgLaunch pl = test_launch(&pk, batch), l = test_launch(&L->s, batch);
  void *pargs[] = {&d_p, &d_x, (void *)&L->d_h, &batch};
  void *args[] = {&d_y, &d_p, (void *)&L->d_bits, (void *)&L->d_g, (void *)&L->d_h, &d_res, &batch};
  if (!rc) rc = rt_launch(gpu, planes->fn, pl.grid, pl.block, pl.smem, NULL, pargs);
  if (!rc) rc = rt_launch(gpu, k->fn, l.grid, l.block, l.smem, NULL, args);
  if (!rc) rc = rt_sync(gpu);
  if (d_p) rt_mem_free(gpu, d_p);
  return rc;
}

/* Run one batch through the kernel (and its pre-pass, planes: NULL when it has none) and
 * compare. Returns 1 on pass. */
static int run_case(const Layer *L, const Kernel *k, const Kernel *planes, int batch, const char *desc) {
  const CgKernel *s = &L->s;
  int K = s->op.K, ok = 1;
  size_t nx = (size_t)batch * K, ny = (size_t)batch * L->nout, nres = (size_t)batch * L->ntot;
  uint16_t *xh = malloc(nx * 2), *rh = malloc(nres * 2), *yh = malloc(ny * 2);
  float *xf = malloc(nx * sizeof(float)), *rf = malloc(nres * sizeof(float));
  /* A fused rmsnorm's rows at scales 0.1..10 apart, so that a wrong per-row scale shows. */
  for (size_t i = 0; i < nx; i++) {
    double scale = s->op.eps > 0 ? 0.1 + 9.9 * (double)((i / (size_t)K) * 7 % 10) / 9.0 : 1.0;
    xh[i] = to_half(normal() * scale, &xf[i]);
  }
  for (size_t i = 0; i < nres; i++) rh[i] = to_half(normal(), &rf[i]);

  RtDevPtr d_x = 0, d_y = 0, d_res = 0;
  int rc = rt_mem_alloc(gpu, &d_x, nx * 2) || rt_mem_alloc(gpu, &d_y, ny * 2) ||
           rt_mem_alloc(gpu, &d_res, nres * 2) || rt_memcpy_htod(gpu, d_x, xh, nx * 2) ||
           rt_memcpy_htod(gpu, d_res, rh, nres * 2) || rt_memset8(gpu, d_y, 0xFF, ny * 2);
  CgLaunch l = test_launch(s, batch);
  RtDevPtr d_resarg = s->op.epilogue == CG_EPI_ADD ? d_res : 0;
  void *args[] = {&d_y, &d_x, (void *)&L->d_bits, (void *)&L->d_g, (void *)&L->d_h, &d_resarg, &batch};
  size_t wbad = 0;
  int dequant = s->sched.strategy == CG_STRAT_DEQUANT;
  if (!rc && dequant) rc = dequant_run(L, k, batch, d_y, d_x, d_resarg, &wbad);
  else if (!rc && planes) rc = bmma_run(L, k, planes, batch, d_y, d_x, d_resarg);
  else if (!rc) rc = rt_launch(gpu, k->fn, l.grid, l.block, l.smem, NULL, args);
  if (!rc) rc = rt_sync(gpu);
  if (!rc) rc = rt_memcpy_dtoh(gpu, yh, d_y, ny * 2);
  if (rc) {
    printf("FAIL %-60s b=%-4d driver error\n", desc, batch);
    ok = 0;
  }

  int nnan = 0;
  for (size_t i = 0; ok && i < ny; i++) nnan += isnan(rb_f32_from_f16(yh[i])) != 0;

  double err = 0.0;
  if (ok) {
    int *rows = malloc((size_t)batch * sizeof *rows);
    int nr = pick_rows(batch, L, rows);
    double *got = malloc((size_t)nr * L->nout * sizeof(double));
    double *want = malloc((size_t)nr * L->nout * sizeof(double));
    const float *gs[CG_MAX_SEG];
    const uint32_t *bs[CG_MAX_SEG];
    for (int sg = 0; sg < s->op.nseg; sg++) gs[sg] = L->g[sg], bs[sg] = L->bits[sg];
    double *seg = malloc((size_t)nr * L->ntot * sizeof(double));
    RefRows rr = {L, xf, rf, rows, bs, gs, want, seg};
    rb_pool_run(cpus, nr, 1, ref_rows, &rr);
    for (int i = 0; i < nr; i++)
      for (int n = 0; n < L->nout; n++)
        got[(size_t)i * L->nout + n] = rb_f32_from_f16(yh[(size_t)rows[i] * L->nout + n]);
    err = ref_rel_l2(got, want, (size_t)nr * L->nout);
    free(seg);
    free(rows);
    free(got);
    free(want);
    double tol = cg_ref_linear_tolerance(&s->sched);
    ok = nnan == 0 && err <= tol && wbad == 0;
    printf("%s %-60s b=%-4d rel_l2=%.2e nan=%d (tol %.0e)", ok ? "ok  " : "FAIL", desc, batch, err, nnan, tol);
    if (dequant) printf(" W_hat: %zu of %zu elements differ from the CPU's", wbad, (size_t)L->ntot * K);
    printf("\n");
  }
  if (d_x) rt_mem_free(gpu, d_x);
  if (d_y) rt_mem_free(gpu, d_y);
  if (d_res) rt_mem_free(gpu, d_res);
  free(xh);
  free(rh);
  free(yh);
  free(xf);
  free(rf);
  return ok;
}

/* ---- the correctness table ---- */

typedef struct {
  const char *name;
  int nseg, N[3], K;
  CgEpilogue epi;
  float eps; /* > 0: a fused rmsnorm (the register design's buckets only) */
} Shape;

static const Shape shapes[] = {
    {"odd 100x70", 1, {100}, 70, CG_EPI_NONE, 0},
    {"odd 100x70 +res", 1, {100}, 70, CG_EPI_ADD, 0},
    {"odd 257x1000 +res", 1, {257}, 1000, CG_EPI_ADD, 0},
    {"4096x4096", 1, {4096}, 4096, CG_EPI_NONE, 0},
    {"qkv 576+192+192 x576", 3, {576, 192, 192}, 576, CG_EPI_NONE, 0},
    {"qkv 576+192+192 x576 +res", 3, {576, 192, 192}, 576, CG_EPI_ADD, 0},
    {"gate/up 1536+1536 x576 swiglu", 2, {1536, 1536}, 576, CG_EPI_SWIGLU, 0},
    {"rmsnorm qkv 576+192+192 x576", 3, {576, 192, 192}, 576, CG_EPI_NONE, 1e-5f},
    {"rmsnorm gate/up 1536+1536 x576 swiglu", 2, {1536, 1536}, 576, CG_EPI_SWIGLU, 1e-5f},
    {"rmsnorm 4096x4096 +res", 1, {4096}, 4096, CG_EPI_ADD, 1e-5f},
};

typedef struct {
  CgStrategy st;
  int batch_max, batches[4], nbatch;
  int tile2; /* tile[2]: the register design's bit ring stages, xsmem's row warps; 0: default */
} Bucket;

static const Bucket buckets[] = {
    {CG_STRAT_BMMA, 1, {1}, 1, 0},
    {CG_STRAT_BMMA, 4, {1, 2, 4}, 3, 0},
    {CG_STRAT_XOR, 16, {1, 3, 16}, 3, 0},
    {CG_STRAT_MMA, 16, {1, 3, 16}, 3, 0},
    {CG_STRAT_XOR, 8, {1, 5, 8}, 3, 4},  /* the bit ring, 4 stages */
    {CG_STRAT_MMA, 16, {1, 9, 16}, 3, 2}, /* the bit ring at its smallest */
    {CG_STRAT_LOP3, 8, {1, 5, 8}, 3, 0},  /* the lop3 decode, one n8 tile */
    {CG_STRAT_LOP3, 16, {1, 9, 16}, 3, 0}, /* and two */
    {CG_STRAT_XSMEM, 8, {1, 5, 8}, 3, 0},   /* x staged in shared memory, 4 row warps */
    {CG_STRAT_XSMEM, 16, {1, 9, 16}, 3, 1}, /* one row warp, two n8 tiles */
    {CG_STRAT_XSMEM, 32, {3, 20, 32}, 3, 0}, /* batch tiles of 16 over the grid: the second part-live */
    {CG_STRAT_MMA, 512, {64, 100, 512}, 3, 0},
    {CG_STRAT_DEQUANT, 512, {17, 100, 512}, 3, 0}, /* the prefill bucket's edge, odd, full */
    {CG_STRAT_DEQUANT, 4096, {1000, 4096}, 2, 0},  /* evaluation windows */
};

static void run_table(void) {
  /* RABIT_TABLE_PART="i/n" runs every n-th spec from the i-th (split a run across calls). */
  int part = 0, nparts = 1, idx = 0;
  const char *pe = getenv("RABIT_TABLE_PART");
  if (pe && sscanf(pe, "%d/%d", &part, &nparts) != 2) part = 0, nparts = 1;
  if (nparts < 1) nparts = 1;
  const char *only = getenv("RABIT_TABLE_ONLY"); /* a strategy's name: its buckets alone */
  for (size_t bi = 0; bi < sizeof buckets / sizeof buckets[0]; bi++) {
    if (only && *only && strcmp(only, cg_strategy_name(buckets[bi].st)) != 0) continue;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
      for (int paths = 1; paths <= 4; paths++) {
        if (idx++ % nparts != part) continue;
        const Shape *sh = &shapes[si];
        CgKernel s;
        memset(&s, 0, sizeof s);
        s.op.kind = CG_LINEAR;
        s.sched.strategy = buckets[bi].st;
        s.sched.batch_max = buckets[bi].batch_max;
        s.sched.tile[2] = buckets[bi].tile2;
        s.op.K = sh->K;
        s.op.nseg = sh->nseg;
        for (int i = 0; i < sh->nseg; i++) s.op.N[i] = sh->N[i];
        s.op.paths = paths;
        s.op.epilogue = sh->epi;
        s.op.eps = sh->eps;
        if (sh->eps > 0 && !cg_linear_prenorm(&s.sched)) continue; /* the staged and dequant designs do not fuse it */
        char desc[160], ring[16] = "";
        if (buckets[bi].tile2)
          snprintf(ring, sizeof ring, " %s %d", s.sched.strategy == CG_STRAT_XSMEM ? "wr" : "ring", buckets[bi].tile2);
        snprintf(desc, sizeof desc, "%s k=%d %s b<=%d%s", sh->name, paths, cg_strategy_name(s.sched.strategy),
                 s.sched.batch_max, ring);
        if (collecting) {
          ahead_add(&s, ROLE_LINEAR), ahead_add(&s, ROLE_REPACK);
          if (s.sched.strategy == CG_STRAT_BMMA) ahead_add(&s, ROLE_PLANES);
          continue;
        }
        Kernel lin, rep, pre = {0};
        const int bmma = s.sched.strategy == CG_STRAT_BMMA;
        if (kernel_build(&s, ROLE_LINEAR, &lin) || kernel_build(&s, ROLE_REPACK, &rep) ||
            (bmma && kernel_build(&s, ROLE_PLANES, &pre))) {
          printf("FAIL %s: build\n", desc);
          nfail += buckets[bi].nbatch;
          kernel_free(&lin);
          kernel_free(&rep);
          continue;
        }
        Layer L;
        if (layer_make(&L, &s, &rep)) {
          printf("FAIL %s: weights\n", desc);
          nfail += buckets[bi].nbatch;
        } else {
          for (int i = 0; i < buckets[bi].nbatch; i++) {
            if (run_case(&L, &lin, bmma ? &pre : NULL, buckets[bi].batches[i], desc))
              npass++;
            else
              nfail++;
          }
        }
        layer_free(&L);
        kernel_free(&lin);
        kernel_free(&rep);
        kernel_free(&pre);
      }
    }
  }
}

/* ---- --bench: steady-state time per launch, as graph_bench.py measures it ---- */

/* Times one kernel alone (plain launches, "us"), and as a plan runs it ("seq": with its
 * pre-pass under bmma, every launch with programmatic overlap where the GPU has it). */
static void bench_one(const CgKernel *s, int batch) {
  enum { R = 64 };
  const int bmma = s->sched.strategy == CG_STRAT_BMMA;
  if (collecting) {
    ahead_add(s, ROLE_LINEAR);
    if (bmma) ahead_add(s, ROLE_PLANES);
    return;
  }
  Kernel k, pre = {0};
  if (kernel_build(s, ROLE_LINEAR, &k)) return;
  if (bmma && kernel_build(s, ROLE_PLANES, &pre)) {
    kernel_free(&k);
    return;
  }
  size_t bytes = cg_target_cuda.layout_bytes(&s->op);
  int P = s->op.paths, K = s->op.K, N = s->op.N[0];
  /* Rotating weight buffers, so that the 64 launches read past the L2 (timing.c). */
  size_t nbuf = (size_t)rt_time_rotation(bytes, R);
  RtDevPtr bufs[R] = {0}, d_x = 0, d_y = 0, d_g = 0, d_h = 0;
  int rc = 0;
  uint32_t *host = malloc(bytes);
  for (size_t i = 0; i < bytes / 4; i++) host[i] = (uint32_t)rnd();
  for (size_t i = 0; i < nbuf && !rc; i++)
    rc = rt_mem_alloc(gpu, &bufs[i], bytes) || rt_memcpy_htod(gpu, bufs[i], host, bytes);
  free(host);
  uint16_t *hx = malloc((size_t)batch * K * 2), *hg = malloc((size_t)P * N * 2), *hhh = malloc((size_t)P * K * 2);
  float f;
  for (size_t i = 0; i < (size_t)batch * K; i++) hx[i] = to_half(normal(), &f);
  for (size_t i = 0; i < (size_t)P * N; i++) hg[i] = to_half(0.05, &f);
  for (size_t i = 0; i < (size_t)P * K; i++) hhh[i] = to_half(0.02, &f);
  if (!rc)
    rc = rt_mem_alloc(gpu, &d_x, (size_t)batch * K * 2) || rt_mem_alloc(gpu, &d_y, (size_t)batch * N * 2) ||
         rt_mem_alloc(gpu, &d_g, (size_t)P * N * 2) || rt_mem_alloc(gpu, &d_h, (size_t)P * K * 2) ||
         rt_memcpy_htod(gpu, d_x, hx, (size_t)batch * K * 2) || rt_memcpy_htod(gpu, d_g, hg, (size_t)P * N * 2) ||
         rt_memcpy_htod(gpu, d_h, hhh, (size_t)P * K * 2);
  free(hx);
  free(hg);
  free(hhh);
  double us = 0, seq = 0;
  CgLaunch l = test_launch(s, batch);
  RtDevPtr nores = 0, d_p = 0;
  CgKernel pk;
  if (bmma && !rc) {
    cg_linear_planes_kernel(s, &pk);
    rc = rt_mem_alloc(gpu, &d_p, cg_planes_bytes(&s->op)) || rt_memset8(gpu, d_p, 0, cg_planes_bytes(&s->op));
  }
  void *argv[R][7], **args[R], *pargv[4], **pargs[1] = {pargv};
  for (int i = 0; i < R; i++) {
    void *one[] = {&d_y, bmma ? &d_p : &d_x, &bufs[i % nbuf], &d_g, &d_h, &nores, &batch};
    memcpy(argv[i], one, sizeof one);
    args[i] = argv[i];
  }
  void *pone[] = {&d_p, &d_x, &d_h, &batch};
  memcpy(pargv, pone, sizeof pone);
  if (!rc) rc = rt_time_launches(gpu, k.fn, l.grid, l.block, l.smem, args, R, R, 20, &us);
  RtTimedKernel seqk[2];
  int nk = 0;
  CgLaunch pl = bmma ? test_launch(&pk, batch) : l;
  if (bmma) seqk[nk++] = (RtTimedKernel){pre.fn, pl.grid, pl.block, pl.smem, pargs, 1};
  seqk[nk++] = (RtTimedKernel){k.fn, l.grid, l.block, l.smem, args, R};
  if (!rc) rc = rt_time_sequence(gpu, seqk, nk, R, 20, &seq);
  if (!rc) {
    printf("bench %5dx%-5d k=%d b=%-2d %-4s %8.2f us  %7.1f GB/s of bits; seq %8.2f us%s\n", N, K, P, batch,
           cg_strategy_name(s->sched.strategy), us, (double)bytes / (us * 1e3), seq, bmma ? " (with its planes)" : "");
  } else {
    printf("bench %dx%d k=%d b=%d: driver error\n", N, K, P, batch);
  }
  for (size_t i = 0; i < nbuf; i++)
    if (bufs[i]) rt_mem_free(gpu, bufs[i]);
  RtDevPtr all[] = {d_x, d_y, d_g, d_h, d_p};
  for (int i = 0; i < 5; i++)
    if (all[i]) rt_mem_free(gpu, all[i]);
  kernel_free(&k);
  kernel_free(&pre);
}

static void run_bench(void) {
  static const int llama[4][2] = {{4096, 4096}, {12288, 4096}, {22016, 4096}, {4096, 11008}};
  static const int batches[3] = {1, 4, 16};
  static const CgStrategy strategies[] = {CG_STRAT_BMMA, CG_STRAT_XOR, CG_STRAT_MMA, CG_STRAT_LOP3, CG_STRAT_XSMEM};
  /* Exploration filters: RABIT_BENCH_PATHS="2" one path count, RABIT_BENCH_BATCH="1" one
   * batch, RABIT_BENCH_STRATEGY="xor,lop3" the strategies named. */
  const char *only = getenv("RABIT_BENCH_PATHS"), *only_b = getenv("RABIT_BENCH_BATCH");
  const char *only_st = getenv("RABIT_BENCH_STRATEGY");
  for (int si = 0; si < 4; si++)
    for (int paths = 1; paths <= 4; paths++)
      if (!only || atoi(only) == paths)
      for (int bi = 0; bi < 3; bi++)
        for (size_t sti = 0; sti < sizeof strategies / sizeof strategies[0]; sti++) {
          const CgStrategy st = strategies[sti];
          if (st == CG_STRAT_XOR && batches[bi] > 1) continue; /* xor is the batch-1 kernel */
          if (st == CG_STRAT_XSMEM && batches[bi] == 1) continue; /* xsmem is a batch-tile kernel */
          if (st == CG_STRAT_BMMA && batches[bi] > CG_BMMA_BATCH_MAX) continue;
          if ((only_b && atoi(only_b) != batches[bi]) || (only_st && !strstr(only_st, cg_strategy_name(st)))) continue;
          CgKernel s;
          memset(&s, 0, sizeof s);
          s.op.kind = CG_LINEAR;
          s.sched.strategy = st;
          s.sched.batch_max = batches[bi];
          s.op.K = llama[si][1];
          s.op.nseg = 1;
          s.op.N[0] = llama[si][0];
          s.op.paths = paths;
          /* RABIT_TILE_XOR / _MMA / _LOP3 / _XSMEM="a,b,c,d" override the default tiles (exploration). */
          const char *t = getenv(st == CG_STRAT_XOR     ? "RABIT_TILE_XOR"
                                 : st == CG_STRAT_MMA   ? "RABIT_TILE_MMA"
                                 : st == CG_STRAT_BMMA  ? "RABIT_TILE_BMMA"
                                 : st == CG_STRAT_XSMEM ? "RABIT_TILE_XSMEM"
                                                        : "RABIT_TILE_LOP3");
          if (t) sscanf(t, "%d,%d,%d,%d", &s.sched.tile[0], &s.sched.tile[1], &s.sched.tile[2], &s.sched.tile[3]);
          bench_one(&s, batches[bi]);
        }
}

/* ---- --bench: prefill (batch 512) under the dequant strategy beside cuBLAS fp16 ---- */

/* One 7B layer at batch 512, 64 times in one graph: the dequant kernel (bits rotating
 * through buffers over 10x the L2, W_hat in one scratch, as the executor has it), the
 * GEMM and the epilogue, beside the fp16 path's GEMM (and its epilogue: the residual
 * copy, the product kernel) over rotating fp16 weights, and the dequant kernel alone.
 * One line: the three times, the dequant's bytes per us, and cuBLAS / ours. */
static void bench_prefill(int nseg, int N, int K, int P, CgEpilogue epi, int batch) {
  enum { R = 64 };
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = CG_LINEAR;
  s.op.K = K;
  s.op.nseg = nseg;
  for (int i = 0; i < nseg; i++) s.op.N[i] = N;
  s.op.paths = P;
  s.op.epilogue = epi;
  s.sched.strategy = CG_STRAT_DEQUANT;
  s.sched.batch_max = 512;
  const char *t = getenv("RABIT_TILE_DEQUANT"); /* "a,0,0,0": warps per block (exploration) */
  if (t) sscanf(t, "%d,%d,%d,%d", &s.sched.tile[0], &s.sched.tile[1], &s.sched.tile[2], &s.sched.tile[3]);
  Kernel k;
  if (kernel_build(&s, 0, &k)) return;
  int ntot = nseg * N, swiglu = epi == CG_EPI_SWIGLU, add = epi == CG_EPI_ADD;
  size_t bytes = cg_target_cuda.layout_bytes(&s.op), wbytes = (size_t)ntot * K * 2;
  size_t nb = (size_t)(512e6 / (double)bytes) + 1, nw = (size_t)(512e6 / (double)wbytes) + 1;
  nb = nb < 3 ? 3 : nb > R ? R : nb;
  nw = nw < 3 ? 3 : nw > R ? R : nw;
  RtDevPtr bits[R] = {0}, dense[R] = {0}, d_w = 0, d_x = 0, d_y = 0, d_gu = 0, d_res = 0, d_g = 0, d_h = 0;
  int rc = 0;
  uint32_t *host = malloc(bytes > wbytes ? bytes : wbytes);
  for (size_t i = 0; i < (bytes > wbytes ? bytes : wbytes) / 4; i++) host[i] = (uint32_t)rnd() & 0x3bff3bffu; /* finite halves */
  for (size_t i = 0; i < nb && !rc; i++) rc = rt_mem_alloc(gpu, &bits[i], bytes) || rt_memcpy_htod(gpu, bits[i], host, bytes);
  for (size_t i = 0; i < nw && !rc; i++) rc = rt_mem_alloc(gpu, &dense[i], wbytes) || rt_memcpy_htod(gpu, dense[i], host, wbytes);
  free(host);
  uint16_t *hx = malloc((size_t)batch * K * 2), *hg = malloc((size_t)P * ntot * 2), *hh = malloc((size_t)nseg * P * K * 2);
  float f;
  for (size_t i = 0; i < (size_t)batch * K; i++) hx[i] = to_half(normal(), &f);
  for (size_t i = 0; i < (size_t)P * ntot; i++) hg[i] = to_half(0.05, &f);
  for (size_t i = 0; i < (size_t)nseg * P * K; i++) hh[i] = to_half(0.02, &f);
  if (!rc)
    rc = rt_mem_alloc(gpu, &d_w, wbytes) || rt_mem_alloc(gpu, &d_x, (size_t)batch * K * 2) ||
         rt_mem_alloc(gpu, &d_y, (size_t)batch * ntot * 2) || rt_mem_alloc(gpu, &d_gu, (size_t)batch * ntot * 2) ||
         rt_mem_alloc(gpu, &d_res, (size_t)batch * ntot * 2) || rt_mem_alloc(gpu, &d_g, (size_t)P * ntot * 2) ||
         rt_mem_alloc(gpu, &d_h, (size_t)nseg * P * K * 2) || rt_memcpy_htod(gpu, d_x, hx, (size_t)batch * K * 2) ||
         rt_memcpy_htod(gpu, d_g, hg, (size_t)P * ntot * 2) || rt_memcpy_htod(gpu, d_h, hh, (size_t)nseg * P * K * 2) ||
         rt_memset8(gpu, d_res, 0, (size_t)batch * ntot * 2);
  free(hx), free(hg), free(hh);
  RtFunction pfn = NULL;
  CgLaunch pl = {{0}, {0}, 0};
  if (!rc && swiglu) rc = product_kernel(N, &pfn, &pl, batch);
  RtStream st = NULL;
  RtBlas *sb = NULL;
  RbBuf err = {0};
  if (!rc) rc = rt_stream_create(gpu, &st) || rt_blas_open(gpu, st, &sb, &err);
  CgLaunch l = test_launch(&s, batch);
  float ms[3] = {0, 0, 0};
  /* 0: ours (dequant, GEMM, epilogue); 1: the fp16 path (GEMM, epilogue); 2: the dequant kernel alone */
  for (int mode = 0; mode < 3 && !rc; mode++) {
    RtGraph *gr = NULL;
    for (int pass = 0; pass < 2 && !rc; pass++) { /* a warm-up outside the graph, then the capture */
      if (pass) rc = rt_capture_begin(gpu, st);
      for (int i = 0; i < (pass ? R : 2) && !rc; i++) {
        RtDevPtr wsrc = mode == 1 ? dense[i % nw] : d_w;
        if (mode != 1) {
          void *args[] = {&d_w, &bits[i % nb], &d_g, &d_h};
          rc = rt_launch(gpu, k.fn, l.grid, l.block, l.smem, st, args);
        }
        if (mode == 2 || rc) continue;
        if (add) rc = rt_memcpy_dtod(gpu, d_y, d_res, (size_t)batch * ntot * 2, st);
        if (!rc) rc = rt_blas_linear(sb, batch, ntot, K, d_x, wsrc, swiglu ? d_gu : d_y, ntot, 0, add);
        if (!rc && swiglu) {
          int ld = ntot;
          void *pargs[] = {&d_y, &d_gu, &ld, &batch};
          rc = rt_launch(gpu, pfn, pl.grid, pl.block, pl.smem, st, pargs);
        }
      }
      if (!pass && !rc) rc = rt_sync(gpu);
    }
    if (!rc) rc = rt_capture_end(gpu, st, &gr);
    if (!rc) rc = rt_time_graph(gpu, gr, st, 20, &ms[mode]);
    if (gr) rt_graph_destroy(gpu, gr);
  }
  if (!rc) {
    double us = ms[0] * 1e3 / R, fp = ms[1] * 1e3 / R, dq = ms[2] * 1e3 / R;
    printf("bench prefill %s%5dx%-5d k=%d b=%d dequant+cublas %8.2f us (dequant %7.2f us, %6.0f GB/s written) "
           "cublas fp16 %8.2f us  fp16/ours %.2f  %.0f TFLOP/s\n",
           swiglu ? "2x" : nseg > 1 ? "3x" : "  ", N, K, P, batch, us, dq, (double)wbytes / (dq * 1e3), fp, fp / us,
           2.0 * batch * ntot * K / (us * 1e6));
  } else {
    printf("bench prefill %dx%d k=%d b=%d: driver error %s %s\n", ntot, K, P, batch, rt_gpu_error(gpu),
           err.data ? err.data : "");
  }
  rb_buf_free(&err);
  rt_blas_close(sb);
  if (st) rt_stream_destroy(gpu, st);
  for (int i = 0; i < R; i++) {
    if (bits[i]) rt_mem_free(gpu, bits[i]);
    if (dense[i]) rt_mem_free(gpu, dense[i]);
  }
  RtDevPtr all[] = {d_w, d_x, d_y, d_gu, d_res, d_g, d_h};
  for (int i = 0; i < 7; i++)
    if (all[i]) rt_mem_free(gpu, all[i]);
  kernel_free(&k);
}

/* The 7B layers as the model fuses them: qkv, o + residual, gate/up + swiglu, down + residual. */
static void run_bench_prefill(void) {
  const char *only = getenv("RABIT_BENCH_PATHS");
  for (int paths = 1; paths <= 4; paths++) {
    if (only ? atoi(only) != paths : paths != 2) continue; /* k = 2 unless asked */
    bench_prefill(1, 4096, 4096, paths, CG_EPI_NONE, 512);
    bench_prefill(3, 4096, 4096, paths, CG_EPI_NONE, 512);
    bench_prefill(1, 4096, 4096, paths, CG_EPI_ADD, 512);
    bench_prefill(2, 11008, 4096, paths, CG_EPI_SWIGLU, 512);
    bench_prefill(1, 11008, 4096, paths, CG_EPI_NONE, 512);
    bench_prefill(1, 4096, 11008, paths, CG_EPI_ADD, 512);
  }
}

/* Every source the table and the bench build, compiled for sm_90 with no GPU. */
static int compile_only(int table, int bench) {
  arch = "sm_90";
  collecting = 1;
  if (table) run_table();
  if (bench) run_bench();
  rb_pool_open(&cpus, -1);
  int failed = ahead_compile();
  rb_pool_close(cpus);
  ahead_free();
  return failed ? 1 : 0;
}

int main(int argc, char **argv) {
  /* --bench adds the timings; --bench-only skips the table; --compile-only compiles
   * what they would run, for sm_90, and needs no GPU */
  int bench = 0, table = 1, only_compile = 0;
  for (int i = 1; i < argc; i++) {
    bench |= strcmp(argv[i], "--bench") == 0 || strcmp(argv[i], "--bench-only") == 0;
    table &= strcmp(argv[i], "--bench-only") != 0;
    only_compile |= strcmp(argv[i], "--compile-only") == 0;
  }
  if (only_compile) return compile_only(table, bench);
  RbBuf err = {0};
  if (rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    printf("SKIP: %s\n", err.data ? err.data : "no GPU");
    rb_buf_free(&err);
    return 77;
  }
  rb_buf_free(&err);
  printf("device: %s (%s)\n", rt_gpu_name(gpu), rt_gpu_arch(gpu));
  arch = rt_gpu_arch(gpu);
  if (rt_blas_open(gpu, NULL, &blas, &err) != RB_OK) {
    printf("FAIL cuBLAS (the dequant strategy's GEMM): %s\n", err.data ? err.data : "?");
    rb_buf_free(&err);
    rt_gpu_close(gpu);
    return 1;
  }
  collecting = 1; /* the same loops, emitting only: every source, compiled at once */
  if (table) run_table();
  if (bench) run_bench();
  collecting = 0;
  rb_pool_open(&cpus, -1);
  if (ahead_compile()) nfail++; /* each failure is named; its cases fail again below */
  if (table) run_table();
  rb_pool_close(cpus);
  cpus = NULL;
  if (bench) run_bench();
  const char *only_b = getenv("RABIT_BENCH_BATCH");
  if (bench && (!only_b || atoi(only_b) == 512)) run_bench_prefill();
  printf("%d passed, %d failed\n", npass, nfail);
  ahead_free();
  rt_blas_close(blas);
  rt_gpu_close(gpu);
  return nfail ? 1 : 0;
}
