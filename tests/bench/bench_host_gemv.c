/* bench_host_gemv.c: the host target's k-path binary GEMV against this
 * machine's memory bandwidth (issue 13's target: >= 50% of it on 4096 x 4096
 * at k = 2, rotating over >= 128 MB of layers so that no layer sits in L3).
 * Usage: bench_host_gemv [N K paths layers threads decode lanes rows batch],
 * threads the pool's workers besides the caller (-1: one per other CPU),
 * decode the schedule's tile[1] (0 the table of lane masks, 1 lane
 * predicates, 2 the lut), lanes its tile[2] (8 or 16; 0 with decode 0, the
 * default: this CPU's decode and lanes), rows its tile[0] (0: the default).
 *
 * Each of 9 passes over the layers follows a copy by the same pool's threads
 * (bytes read + written), and the pass's ratio is to that copy: on a shared
 * machine whose bandwidth drifts by a third within minutes, a ratio of two
 * measurements taken milliseconds apart is the one to trust. The copy is
 * 256 MiB or twice the L3, whichever is larger: glibc's memcpy switches to
 * non-temporal stores only above a threshold scaled by the L3 (on a 480 MiB L3,
 * 128 MiB a thread copied at 27 GB/s with cached stores, 256 MiB at 46 GB/s:
 * RESULTS.md, 2026-12-04), and a copy below it understates the memory.
 * Prints the medians of the copy, the GEMV and the ratio, and the ratios'
 * range. Not run by ctest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "runtime/jit/jit.h"

/* The CPU seconds this process has had, every thread: on a shared machine
 * wall time / CPU time says how much of the cores the others took. */
static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A copy split over the pool, one slice a thread, each one memcpy as bench_host's copy is (so
 * that glibc takes the same path, non-temporal stores at these sizes). */
typedef struct { char *dst; const char *src; size_t slice; } Copy;
static void copy_slices(void *ctx, int64_t begin, int64_t end) {
  const Copy *c = ctx;
  memcpy(c->dst + begin * c->slice, c->src + begin * c->slice, (size_t)(end - begin) * c->slice);
}

/* GB/s of one copy of mib MiB from src to dst by the pool, read + written. */
static double copy_gbs(RbPool *pool, char *dst, const char *src, int mib) {
  const int n = rb_pool_threads(pool);
  Copy c = {dst, src, ((size_t)mib << 20) / (size_t)n};
  double t0 = rb_now_ms();
  rb_pool_run(pool, n, 1, copy_slices, &c);
  return 2.0 * (double)c.slice * n / ((rb_now_ms() - t0) / 1e3) / 1e9;
}

static void sort(double *v, int n) { /* insertion sort: for the medians */
  for (int i = 1; i < n; i++)
    for (int q = i; q > 0 && v[q] < v[q - 1]; q--) {
      double t = v[q];
      v[q] = v[q - 1], v[q - 1] = t;
    }
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--help"))
    return puts("usage: bench_host_gemv [N K paths layers threads decode lanes rows batch]  (see the source's header)"), 0;
  int N = argc > 1 ? atoi(argv[1]) : 4096, K = argc > 2 ? atoi(argv[2]) : 4096;
  int P = argc > 3 ? atoi(argv[3]) : 2, L = argc > 4 ? atoi(argv[4]) : 32, T = argc > 5 ? atoi(argv[5]) : -1;
  if (N < 1 || K < 1 || P < 1 || P > 4 || L < 1)
    return fprintf(stderr, "bench_host_gemv: N, K and layers must be positive and paths 1..4 (--help)\n"), 1;
  double t0;
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op.kind = CG_LINEAR, k.op.K = K, k.op.nseg = 1, k.op.N[0] = N, k.op.paths = P;
  cg_target_host.linear_buckets(&k.op, &k.sched);
  k.sched.tile[1] = argc > 6 ? atoi(argv[6]) : 0;
  k.sched.tile[2] = argc > 7 ? atoi(argv[7]) : 0;
  k.sched.tile[0] = argc > 8 ? atoi(argv[8]) : 0;
  int B = argc > 9 ? atoi(argv[9]) : 1;
  RtCache *c;
  RtHostJit *j;
  RbPool *pool;
  RbBuf err = {0};
  if (rt_cache_open(&c, NULL, RT_CACHE_DEFAULT_MAX, &err) || rt_host_jit_open(&j, &err) || rb_pool_open(&pool, T))
    return fprintf(stderr, "setup: %s\n", err.data ? err.data : "?"), 2;
  RtBuildOptions o = {.target = &cg_target_host, .arch = "host", .cache = c, .jobs = 1};
  RtBuilt built;
  CgHostEntry fn;
  if (rt_build_kernels(&k, 1, &o, &built) || rt_host_jit_load(j, &built, c, &fn, &err))
    return fprintf(stderr, "build: %s %s\n", built.log.data ? built.log.data : "", err.data ? err.data : ""), 2;
  CgGeometry g;
  cg_target_host.geometry(&k, &g, &err);
  size_t lb = cg_target_host.layout_bytes(&k.op);
  char *bits = malloc(lb * L);
  for (size_t i = 0; i < lb * L; i++) bits[i] = (char)(i * 2654435761u >> 13);
  uint16_t *gg = malloc(2 * (size_t)P * N), *hh = malloc(2 * (size_t)P * K), *x = malloc(2 * (size_t)K * B), *y = malloc(2 * (size_t)N * B);
  for (int i = 0; i < P * N; i++) gg[i] = rb_f16_from_f32(0.01f);
  for (int i = 0; i < P * K; i++) hh[i] = rb_f16_from_f32(1.0f);
  for (int i = 0; i < K * B; i++) x[i] = rb_f16_from_f32((float)(i % 7) - 3.0f);
  enum { PASSES = 9 };
  long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const int twice_l3_mib = l3 > 0 ? (int)(l3 >> 19) : 0, COPY_MIB = twice_l3_mib > 256 ? twice_l3_mib : 256;
  char *ca = malloc((size_t)COPY_MIB << 20), *cb = malloc((size_t)COPY_MIB << 20);
  if (!ca || !cb) return fprintf(stderr, "bench_host_gemv: out of memory for the copy\n"), 1;
  memset(ca, 1, (size_t)COPY_MIB << 20), memset(cb, 2, (size_t)COPY_MIB << 20);
  double pass_us[PASSES], pass_cpu[PASSES], copy[PASSES], ratio[PASSES];
  for (int pass = -1; pass < PASSES; pass++) { /* pass -1 warms up */
    double cg = copy_gbs(pool, pass & 1 ? ca : cb, pass & 1 ? cb : ca, COPY_MIB);
    t0 = rb_now_ms();
    double c0 = cpu_s();
    for (int r = 0; r < L; r++) {
      CgLinearArgs la = {(CgDevPtr)(uintptr_t)y, (CgDevPtr)(uintptr_t)x, (CgDevPtr)(uintptr_t)(bits + lb * r),
                         (CgDevPtr)(uintptr_t)gg, (CgDevPtr)(uintptr_t)hh, 0, B};
      CgArgv av;
      cg_linear_argv(&la, &av);
      rt_host_launch(pool, fn, &g, B, av.v);
    }
    if (pass < 0) continue;
    pass_us[pass] = (rb_now_ms() - t0) * 1e3 / L, pass_cpu[pass] = (cpu_s() - c0) * 1e6 / L;
    copy[pass] = cg, ratio[pass] = lb / (pass_us[pass] * 1e-6) / 1e9 / cg;
  }
  volatile char sink = ca[12345] + cb[54321]; /* the copies are used: not elided */
  (void)sink;
  free(ca), free(cb);
  sort(pass_us, PASSES), sort(pass_cpu, PASSES), sort(copy, PASSES), sort(ratio, PASSES);
  double us = pass_us[PASSES / 2], cpu_us = pass_cpu[PASSES / 2];
  double gbs = lb / (us * 1e-6) / 1e9;
  printf("copy %d MiB by %d threads: %.2f GB/s (read + written; median of %d, %.2f..%.2f)\n", COPY_MIB,
         rb_pool_threads(pool), copy[PASSES / 2], PASSES, copy[0], copy[PASSES - 1]);
  printf("gemv N=%d K=%d k=%d decode %d lanes %d rows %d batch %d, %d threads, %d layers (%.0f MB): %.1f us "
         "(median of %d; %.1f us of CPU, all threads), %.2f GB/s of bits, %.0f%% of the copy before it "
         "(median pass; %.0f..%.0f%%)\n",
         N, K, P, k.sched.tile[1], k.sched.tile[2], k.sched.tile[0], B, rb_pool_threads(pool), L, lb * (double)L / 1e6,
         us, PASSES, cpu_us, gbs, 100 * ratio[PASSES / 2], 100 * ratio[0], 100 * ratio[PASSES - 1]);
  rt_built_free(&built, 1);
  rt_host_jit_close(j);
  rt_cache_close(c);
  rb_pool_close(pool);
  return 0;
}
