/* test_linear.c: GPU test of the generated linear and repack kernels against
 * the float64 reference (tests/ref). Table-driven over strategy x paths 1..4 x
 * shapes (odd and real, fused qkv, gate/up swiglu) x batches x epilogues, on
 * fresh random inputs, with every output poisoned with NaN before the launch.
 * With --bench (or --bench-only) it also times the Llama-2-7B shapes the way graph_bench.py does.
 * Exits 77 after "SKIP: <reason>" when there is no GPU or driver. */
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

/* Emit (linear or repack) and compile for this GPU. Returns RB_OK or prints why not. */
static int kernel_build(const CgKernel *s, int repack, Kernel *k) {
  RbBuf src = {0}, err = {0};
  char entry[64];
  void *cubin = NULL;
  size_t len = 0;
  memset(k, 0, sizeof *k);
  int st = repack ? cg_emit_repack(s, &src, entry, &err) : cg_emit_linear(s, &src, entry, &err);
  if (st == RB_OK)
    st = rt_nvrtc_compile(src.data, entry, rt_gpu_arch(gpu), NULL, 0, &cubin, &len, &err);
  if (st == RB_OK) st = rt_module_load(gpu, cubin, len, &k->mod);
  if (st == RB_OK) st = rt_module_function(k->mod, entry, &k->fn);
  if (st != RB_OK) printf("build of %s failed: %s\n", entry, err.data ? err.data : "");
  rb_free(cubin);
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

/* Run one batch through the kernel and compare. Returns 1 on pass. */
static int run_case(const Layer *L, const Kernel *k, int batch, const char *desc) {
  const CgKernel *s = &L->s;
  int K = s->op.K, ok = 1;
  size_t nx = (size_t)batch * K, ny = (size_t)batch * L->nout, nres = (size_t)batch * L->ntot;
  uint16_t *xh = malloc(nx * 2), *rh = malloc(nres * 2), *yh = malloc(ny * 2);
  float *xf = malloc(nx * sizeof(float)), *rf = malloc(nres * sizeof(float));
  for (size_t i = 0; i < nx; i++) xh[i] = to_half(normal(), &xf[i]);
  for (size_t i = 0; i < nres; i++) rh[i] = to_half(normal(), &rf[i]);

  RtDevPtr d_x = 0, d_y = 0, d_res = 0;
  int rc = rt_mem_alloc(gpu, &d_x, nx * 2) || rt_mem_alloc(gpu, &d_y, ny * 2) ||
           rt_mem_alloc(gpu, &d_res, nres * 2) || rt_memcpy_htod(gpu, d_x, xh, nx * 2) ||
           rt_memcpy_htod(gpu, d_res, rh, nres * 2) || rt_memset8(gpu, d_y, 0xFF, ny * 2);
  CgLaunch l = test_launch(s, batch);
  RtDevPtr d_resarg = s->op.epilogue == CG_EPI_ADD ? d_res : 0;
  void *args[] = {&d_y, &d_x, (void *)&L->d_bits, (void *)&L->d_g, (void *)&L->d_h, &d_resarg, &batch};
  if (!rc) rc = rt_launch(gpu, k->fn, l.grid, l.block, l.smem, NULL, args);
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
    double *seg[CG_MAX_SEG];
    for (int sg = 0; sg < s->op.nseg; sg++) seg[sg] = malloc((size_t)s->op.N[sg] * sizeof(double));
    for (int i = 0; i < nr; i++) {
      int b = rows[i];
      for (int sg = 0; sg < s->op.nseg; sg++)
        ref_linear(seg[sg], xf + (size_t)b * K, L->bits[sg], L->g[sg], L->h + (size_t)sg * s->op.paths * K, 1,
                   s->op.N[sg], K, s->op.paths);
      double *w = want + (size_t)i * L->nout;
      if (s->op.epilogue == CG_EPI_SWIGLU) {
        for (int n = 0; n < s->op.N[0]; n++) w[n] = ref_silu(seg[0][n]) * seg[1][n];
      } else {
        for (int sg = 0, row0 = 0; sg < s->op.nseg; row0 += s->op.N[sg], sg++)
          for (int n = 0; n < s->op.N[sg]; n++)
            w[row0 + n] = seg[sg][n] + (s->op.epilogue == CG_EPI_ADD ? rf[(size_t)b * L->ntot + row0 + n] : 0.0);
      }
      for (int n = 0; n < L->nout; n++)
        got[(size_t)i * L->nout + n] = rb_f32_from_f16(yh[(size_t)b * L->nout + n]);
    }
    err = ref_rel_l2(got, want, (size_t)nr * L->nout);
    for (int sg = 0; sg < s->op.nseg; sg++) free(seg[sg]);
    free(rows);
    free(got);
    free(want);
    double tol = s->sched.strategy == CG_STRAT_MMA ? 1e-2 : 2e-3;
    ok = nnan == 0 && err <= tol;
    printf("%s %-60s b=%-4d rel_l2=%.2e nan=%d (tol %.0e)\n", ok ? "ok  " : "FAIL", desc, batch, err,
           nnan, tol);
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
} Shape;

static const Shape shapes[] = {
    {"odd 100x70", 1, {100}, 70, CG_EPI_NONE},
    {"odd 100x70 +res", 1, {100}, 70, CG_EPI_ADD},
    {"odd 257x1000 +res", 1, {257}, 1000, CG_EPI_ADD},
    {"4096x4096", 1, {4096}, 4096, CG_EPI_NONE},
    {"qkv 576+192+192 x576", 3, {576, 192, 192}, 576, CG_EPI_NONE},
    {"qkv 576+192+192 x576 +res", 3, {576, 192, 192}, 576, CG_EPI_ADD},
    {"gate/up 1536+1536 x576 swiglu", 2, {1536, 1536}, 576, CG_EPI_SWIGLU},
};

typedef struct {
  CgStrategy st;
  int batch_max, batches[4], nbatch;
} Bucket;

static const Bucket buckets[] = {
    {CG_STRAT_XOR, 16, {1, 3, 16}, 3},
    {CG_STRAT_MMA, 16, {1, 3, 16}, 3},
    {CG_STRAT_MMA, 512, {64, 100, 512}, 3},
};

static void run_table(void) {
  /* RABIT_TABLE_PART="i/n" runs every n-th spec from the i-th (split a run across calls). */
  int part = 0, nparts = 1, idx = 0;
  const char *pe = getenv("RABIT_TABLE_PART");
  if (pe && sscanf(pe, "%d/%d", &part, &nparts) != 2) part = 0, nparts = 1;
  if (nparts < 1) nparts = 1;
  for (size_t bi = 0; bi < sizeof buckets / sizeof buckets[0]; bi++) {
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
      for (int paths = 1; paths <= 4; paths++) {
        if (idx++ % nparts != part) continue;
        const Shape *sh = &shapes[si];
        CgKernel s;
        memset(&s, 0, sizeof s);
        s.op.kind = CG_LINEAR;
        s.sched.strategy = buckets[bi].st;
        s.sched.batch_max = buckets[bi].batch_max;
        s.op.K = sh->K;
        s.op.nseg = sh->nseg;
        for (int i = 0; i < sh->nseg; i++) s.op.N[i] = sh->N[i];
        s.op.paths = paths;
        s.op.epilogue = sh->epi;
        char desc[160];
        snprintf(desc, sizeof desc, "%s k=%d %s b<=%d", sh->name, paths,
                 s.sched.strategy == CG_STRAT_XOR ? "xor" : "mma", s.sched.batch_max);
        Kernel lin, rep;
        if (kernel_build(&s, 0, &lin) || kernel_build(&s, 1, &rep)) {
          printf("FAIL %s: build\n", desc);
          nfail += buckets[bi].nbatch;
          kernel_free(&lin);
          continue;
        }
        Layer L;
        if (layer_make(&L, &s, &rep)) {
          printf("FAIL %s: weights\n", desc);
          nfail += buckets[bi].nbatch;
        } else {
          for (int i = 0; i < buckets[bi].nbatch; i++) {
            if (run_case(&L, &lin, buckets[bi].batches[i], desc))
              npass++;
            else
              nfail++;
          }
        }
        layer_free(&L);
        kernel_free(&lin);
        kernel_free(&rep);
      }
    }
  }
}

/* ---- --bench: steady-state time per launch, as graph_bench.py measures it ---- */

static void bench_one(const CgKernel *s, int batch) {
  enum { R = 64 };
  Kernel k;
  if (kernel_build(s, 0, &k)) return;
  size_t bytes = cg_target_cuda.layout_bytes(&s->op);
  int P = s->op.paths, K = s->op.K, N = s->op.N[0];
  /* Enough rotating weight buffers that the 64 launches touch more than 10x the 50 MB L2. */
  size_t nbuf = (size_t)(512e6 / (double)bytes) + 1;
  if (nbuf < 3) nbuf = 3;
  if (nbuf > R) nbuf = R;
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
  RtStream st = NULL;
  RtGraph *gr = NULL;
  float ms = 0;
  CgLaunch l = test_launch(s, batch);
  RtDevPtr nores = 0;
  if (!rc) rc = rt_stream_create(gpu, &st);
  for (int i = 0; i < 3 && !rc; i++) { /* warm-up outside the graph */
    void *args[] = {&d_y, &d_x, &bufs[i % nbuf], &d_g, &d_h, &nores, &batch};
    rc = rt_launch(gpu, k.fn, l.grid, l.block, l.smem, st, args);
  }
  if (!rc) rc = rt_sync(gpu);
  if (!rc) rc = rt_capture_begin(gpu, st);
  for (int i = 0; i < R && !rc; i++) {
    void *args[] = {&d_y, &d_x, &bufs[i % nbuf], &d_g, &d_h, &nores, &batch};
    rc = rt_launch(gpu, k.fn, l.grid, l.block, l.smem, st, args);
  }
  if (!rc) rc = rt_capture_end(gpu, st, &gr);
  if (!rc) rc = rt_time_graph(gpu, gr, st, 20, &ms);
  if (!rc) {
    double us = ms * 1e3 / R;
    printf("bench %5dx%-5d k=%d b=%-2d %s  %8.2f us  %7.1f GB/s of bits\n", N, K, P, batch,
           s->sched.strategy == CG_STRAT_XOR ? "xor" : "mma", us, (double)bytes / (us * 1e3));
  } else {
    printf("bench %dx%d k=%d b=%d: driver error\n", N, K, P, batch);
  }
  if (gr) rt_graph_destroy(gpu, gr);
  if (st) rt_stream_destroy(gpu, st);
  for (size_t i = 0; i < nbuf; i++)
    if (bufs[i]) rt_mem_free(gpu, bufs[i]);
  RtDevPtr all[] = {d_x, d_y, d_g, d_h};
  for (int i = 0; i < 4; i++)
    if (all[i]) rt_mem_free(gpu, all[i]);
  kernel_free(&k);
}

static void run_bench(void) {
  static const int llama[4][2] = {{4096, 4096}, {12288, 4096}, {22016, 4096}, {4096, 11008}};
  static const int batches[3] = {1, 4, 16};
  const char *only = getenv("RABIT_BENCH_PATHS"); /* e.g. "2": one path count only */
  for (int si = 0; si < 4; si++)
    for (int paths = 1; paths <= 4; paths++)
      if (!only || atoi(only) == paths)
      for (int bi = 0; bi < 3; bi++)
        for (int st = CG_STRAT_XOR; st <= CG_STRAT_MMA; st++) {
          if (st == CG_STRAT_XOR && batches[bi] > 1) continue; /* xor is the batch-1 kernel */
          CgKernel s;
          memset(&s, 0, sizeof s);
          s.op.kind = CG_LINEAR;
          s.sched.strategy = (CgStrategy)st;
          s.sched.batch_max = batches[bi];
          s.op.K = llama[si][1];
          s.op.nseg = 1;
          s.op.N[0] = llama[si][0];
          s.op.paths = paths;
          /* RABIT_TILE_XOR / RABIT_TILE_MMA="a,b,c,d" override the default tiles (exploration). */
          const char *t = getenv(st == CG_STRAT_XOR ? "RABIT_TILE_XOR" : "RABIT_TILE_MMA");
          if (t) sscanf(t, "%d,%d,%d,%d", &s.sched.tile[0], &s.sched.tile[1], &s.sched.tile[2], &s.sched.tile[3]);
          bench_one(&s, batches[bi]);
        }
}

int main(int argc, char **argv) {
  int bench = 0, table = 1; /* --bench adds the timings; --bench-only skips the table */
  for (int i = 1; i < argc; i++) {
    bench |= strcmp(argv[i], "--bench") == 0 || strcmp(argv[i], "--bench-only") == 0;
    table &= strcmp(argv[i], "--bench-only") != 0;
  }
  RbBuf err = {0};
  if (rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    printf("SKIP: %s\n", err.data ? err.data : "no GPU");
    rb_buf_free(&err);
    return 77;
  }
  rb_buf_free(&err);
  printf("device: %s (%s)\n", rt_gpu_name(gpu), rt_gpu_arch(gpu));
  if (table) run_table();
  if (bench) run_bench();
  printf("%d passed, %d failed\n", npass, nfail);
  rt_gpu_close(gpu);
  return nfail ? 1 : 0;
}
