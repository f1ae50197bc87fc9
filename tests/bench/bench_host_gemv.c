/* bench_host_gemv.c: the host target's k-path binary GEMV against this
 * machine's memory bandwidth (issue 13's target: >= 50% of it on 4096 x 4096
 * at k = 2, rotating over >= 128 MB of layers so that no layer sits in L3).
 * Usage: bench_host_gemv [N K paths layers threads decode lanes rows batch],
 * threads the pool's workers besides the caller (-1: one per other CPU),
 * decode the schedule's tile[1] (0 the table of lane masks, 1 lane
 * predicates, 2 the lut), lanes its tile[2] (8 or 16; 0 with decode 0, the
 * default: this CPU's decode and lanes), rows its tile[0] (0: the default);
 * prints one
 * line each for the memcpy bandwidth (bytes read + written) and the GEMV, the
 * median of 9 passes over the layers. Not run by ctest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "runtime/jit/jit.h"

/* The CPU seconds this process has had, every thread: on a shared machine
 * wall time / CPU time says how much of the cores the others took. */
static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sort(double *v, int n) { /* insertion sort: for the medians */
  for (int i = 1; i < n; i++)
    for (int q = i; q > 0 && v[q] < v[q - 1]; q--) {
      double t = v[q];
      v[q] = v[q - 1], v[q - 1] = t;
    }
}

int main(int argc, char **argv) {
  int N = argc > 1 ? atoi(argv[1]) : 4096, K = argc > 2 ? atoi(argv[2]) : 4096;
  int P = argc > 3 ? atoi(argv[3]) : 2, L = argc > 4 ? atoi(argv[4]) : 32, T = argc > 5 ? atoi(argv[5]) : -1;
  /* memcpy bandwidth over 512 MB */
  size_t mb = 256u << 20;
  char *volatile a = malloc(mb), *volatile b = malloc(mb);
  memset(a, 1, mb), memset(b, 2, mb);
  double t0 = rb_now_ms();
  for (int r = 0; r < 4; r++) memcpy(r & 1 ? a : b, r & 1 ? b : a, mb);
  double bw = 4.0 * 2 * mb / ((rb_now_ms() - t0) / 1e3) / 1e9;
  volatile char sink = a[mb / 2] + b[mb / 3]; /* the copies are used: not elided */
  (void)sink;
  printf("memcpy: %.2f GB/s (read + written, one thread)\n", bw);
  free(a), free(b);

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
  double pass_us[PASSES], pass_cpu[PASSES];
  for (int pass = -1; pass < PASSES; pass++) { /* pass -1 warms up */
    t0 = rb_now_ms();
    double c0 = cpu_s();
    for (int r = 0; r < L; r++) {
      CgLinearArgs la = {(CgDevPtr)(uintptr_t)y, (CgDevPtr)(uintptr_t)x, (CgDevPtr)(uintptr_t)(bits + lb * r),
                         (CgDevPtr)(uintptr_t)gg, (CgDevPtr)(uintptr_t)hh, 0, B};
      CgArgv av;
      cg_linear_argv(&la, &av);
      rt_host_launch(pool, fn, &g, B, av.v);
    }
    if (pass >= 0) pass_us[pass] = (rb_now_ms() - t0) * 1e3 / L, pass_cpu[pass] = (cpu_s() - c0) * 1e6 / L;
  }
  sort(pass_us, PASSES), sort(pass_cpu, PASSES);
  double us = pass_us[PASSES / 2], cpu_us = pass_cpu[PASSES / 2];
  double gbs = lb / (us * 1e-6) / 1e9;
  printf("gemv N=%d K=%d k=%d decode %d lanes %d rows %d batch %d, %d threads, %d layers (%.0f MB): %.1f us "
         "(median of %d; %.1f us of CPU, all threads), %.2f GB/s of bits (%.0f%% of memcpy)\n",
         N, K, P, k.sched.tile[1], k.sched.tile[2], k.sched.tile[0], B, rb_pool_threads(pool), L, lb * (double)L / 1e6,
         us, PASSES, cpu_us, gbs, 100 * gbs / bw);
  rt_built_free(&built, 1);
  rt_host_jit_close(j);
  rt_cache_close(c);
  rb_pool_close(pool);
  return 0;
}
