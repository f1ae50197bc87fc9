/* test_gpu_smoke.c: the whole driver path on a real GPU: open, compile for its
 * arch, launch a kernel that writes a pattern, check it on the host, then time
 * a captured graph of 64 launches. Without a GPU or driver: "SKIP: <reason>",
 * exit 77, which ctest shows as skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/jit/jit.h"
#include "runtime/cuda/gpu.h"

#define SKIP 77
#define N (1u << 20)
#define LAUNCHES 64

static const char *src =
    "extern \"C\" __global__ void fill(unsigned *out, unsigned n, unsigned seed) {\n"
    "  unsigned i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) out[i] = i * 2654435761u ^ seed;\n"
    "}\n"
    "extern \"C\" __global__ void big_smem(unsigned *out, unsigned words) {\n"
    "  extern __shared__ unsigned sm[];\n"
    "  for (unsigned i = threadIdx.x; i < words; i += blockDim.x) sm[i] = 3u * i + 1u;\n"
    "  __syncthreads();\n"
    "  if (threadIdx.x == 0) out[0] = sm[words - 1];\n"
    "}\n";

static unsigned expect_at(unsigned i, unsigned seed) { return i * 2654435761u ^ seed; }

/* Copy back and compare with the pattern for seed; prints the first mismatch. */
static int check(RtGpu *g, RtDevPtr d, unsigned *host, unsigned seed) {
  memset(host, 0, N * sizeof *host);
  if (rt_memcpy_dtoh(g, host, d, N * sizeof *host) != RB_OK)
    return 1;
  for (unsigned i = 0; i < N; i++)
    if (host[i] != expect_at(i, seed)) {
      fprintf(stderr, "FAIL: out[%u] = %08x, expected %08x (seed %08x)\n", i, host[i],
              expect_at(i, seed), seed);
      return 1;
    }
  return 0;
}

int main(void) {
  RtGpu *g = NULL;
  RbBuf err = {0};
  int rc = rt_gpu_open(&g, 0, &err);
  if (rc == RB_EUSER) {
    printf("SKIP: %s", err.data ? err.data : "no GPU\n");
    rb_buf_free(&err);
    return SKIP;
  }
  if (rc != RB_OK) {
    fprintf(stderr, "FAIL: rt_gpu_open: %s", err.data ? err.data : "?\n");
    return 1;
  }
  printf("device: %s, %s, %d SMs\n", rt_gpu_name(g), rt_gpu_arch(g), rt_gpu_sm_count(g));

  void *bin = NULL;
  size_t len = 0;
  RbBuf log = {0};
  if (rt_nvrtc_compile(src, "fill.cu", rt_gpu_arch(g), NULL, 0, &bin, &len, &log) != RB_OK) {
    fprintf(stderr, "FAIL: compile for %s:\n%s", rt_gpu_arch(g), log.data ? log.data : "");
    return 1;
  }
  RtModule *m = NULL;
  RtFunction fn = NULL;
  RtDevPtr d = 0;
  unsigned *host = malloc(N * sizeof *host);
  if (!host || rt_module_load(g, bin, len, &m) != RB_OK ||
      rt_module_function(m, "fill", &fn) != RB_OK || rt_mem_alloc(g, &d, N * sizeof(unsigned)) != RB_OK) {
    fprintf(stderr, "FAIL: setup\n");
    return 1;
  }

  /* Plain launch on the default stream, over memory memset to a non-pattern. */
  unsigned n = N, seed = 0x12345678u;
  void *args[] = {&d, &n, &seed};
  const unsigned grid[3] = {N / 256, 1, 1}, block[3] = {256, 1, 1};
  if (rt_memset8(g, d, 0xAB, N * sizeof(unsigned)) != RB_OK ||
      rt_launch(g, fn, grid, block, 0, NULL, args) != RB_OK || rt_sync(g) != RB_OK ||
      check(g, d, host, seed) != 0) {
    fprintf(stderr, "FAIL: launch\n");
    return 1;
  }

  /* Dynamic shared memory above 48 KiB needs the per-function opt-in that
   * rt_launch does. */
  RtFunction big = NULL;
  unsigned words = 96 * 1024 / 4, got = 0;
  void *bargs[] = {&d, &words};
  const unsigned one[3] = {1, 1, 1};
  if (rt_module_function(m, "big_smem", &big) != RB_OK ||
      rt_launch(g, big, one, block, words * 4, NULL, bargs) != RB_OK || rt_sync(g) != RB_OK ||
      rt_memcpy_dtoh(g, &got, d, sizeof got) != RB_OK || got != 3u * (words - 1) + 1u) {
    fprintf(stderr, "FAIL: 96 KiB dynamic shared memory launch (got %u)\n", got);
    return 1;
  }

  /* A graph of 64 launches; each bakes its own seed in at capture, so after a
   * replay the buffer holds the last launch's pattern. */
  RtStream s = NULL;
  RtGraph *gr = NULL;
  unsigned seeds[LAUNCHES];
  if (rt_stream_create(g, &s) != RB_OK || rt_capture_begin(g, s) != RB_OK) {
    fprintf(stderr, "FAIL: capture begin\n");
    return 1;
  }
  for (int i = 0; i < LAUNCHES; i++) {
    seeds[i] = 0x9E3779B9u * (unsigned)(i + 1);
    void *a[] = {&d, &n, &seeds[i]};
    if (rt_launch(g, fn, grid, block, 0, s, a) != RB_OK) {
      fprintf(stderr, "FAIL: launch %d under capture\n", i);
      return 1;
    }
  }
  if (rt_capture_end(g, s, &gr) != RB_OK) {
    fprintf(stderr, "FAIL: capture end\n");
    return 1;
  }
  if (rt_memset8(g, d, 0, N * sizeof(unsigned)) != RB_OK || rt_graph_launch(g, gr, s) != RB_OK ||
      rt_sync(g) != RB_OK || check(g, d, host, seeds[LAUNCHES - 1]) != 0) {
    fprintf(stderr, "FAIL: graph replay\n");
    return 1;
  }
  float ms = 0;
  if (rt_time_graph(g, gr, s, 20, &ms) != RB_OK || !(ms > 0)) {
    fprintf(stderr, "FAIL: rt_time_graph (median %g ms)\n", ms);
    return 1;
  }
  printf("graph of %d launches (%u words each): median %.4f ms, %.2f us per launch, %.1f GB/s\n",
         LAUNCHES, N, ms, 1000.0 * ms / LAUNCHES,
         (double)N * sizeof(unsigned) * LAUNCHES / (ms * 1e-3) / 1e9);

  rt_graph_destroy(g, gr);
  rt_stream_destroy(g, s);
  rt_mem_free(g, d);
  rt_module_unload(m);
  rt_gpu_close(g);
  free(host);
  rb_free(bin);
  rb_buf_free(&log);
  rb_buf_free(&err);
  printf("ok\n");
  return 0;
}
