/* bench_chain: the 32 layers of Llama-2-7B linears (fused qkv, o + residual,
 * gate/up + SwiGLU, down + residual) through the runtime's API, captured as one
 * CUDA graph and timed by replays, at batch 1, 4 and 16. The peer is the
 * same chain of cuBLAS fp16 GEMVs (baseline_device.py: 5.05 ms at batch 1).
 * usage: bench_chain PLAN   (a plan of samples/llama2-7b.ir from rabitc -o) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "runtime/cuda/gpu.h"
#include "tests/common/rng.h"


typedef struct {
  int step;
  RtLinear *w;
  int K, nout, add;
  size_t bits_bytes; /* one layout's bits, plus g and h: what batch 1 streams */
} Layer;

int main(int argc, char **argv) {
  test_rng = 0x9E3779B97F4A7C15ull;
  if (argc < 2) {
    fprintf(stderr, "usage: bench_chain PLAN\n");
    return 1;
  }
  RbBuf err = {0};
  RtPlan *plan = NULL;
  RtGpu *gpu = NULL;
  RtProgram *s = NULL;
  if (rt_plan_load(argv[1], &plan, &err)) {
    fprintf(stderr, "bench_chain: %s\n", err.data);
    return 1;
  }
  if (rt_gpu_open(&gpu, 0, &err) || rt_program_open(plan, gpu, &s, &err)) {
    printf("SKIP: %s\n", err.data);
    return 77;
  }
  double ms_build, ms_load;
  rt_program_times(s, &ms_build, &ms_load);
  printf("session open: %d of %d kernels from the cache; cubins in %.1f ms, modules loaded in %.1f ms\n",
         rt_program_cache_hits(s), plan->nkernels, ms_build, ms_load);
  Layer *layers = calloc((size_t)plan->nsteps, sizeof *layers);
  int nl = 0, maxk = 0, maxout = 0;
  size_t stream_bytes = 0;
  for (int st = 0; st < plan->nsteps; st++) {
    const CgOp *op = rt_linear_op(plan, st);
    if (!op) continue;
    int nseg = op->nseg, K = op->K, k = op->paths, ntot = 0;
    const int *N = op->N;
    uint32_t *bits[4];
    uint16_t *g[4], *h[4];
    for (int i = 0; i < nseg; i++) {
      ntot += N[i];
      size_t words = cg_packed_count(CG_PACKED_BITS, k, N[i], K);
      bits[i] = malloc(words * 4);
      for (size_t j = 0; j < words; j++) bits[i][j] = (uint32_t)rnd();
      g[i] = malloc((size_t)k * N[i] * 2);
      h[i] = malloc((size_t)k * K * 2);
      for (int j = 0; j < k * N[i]; j++) g[i][j] = rb_f16_from_f32(0.01f + 0.03f * (float)(rnd() % 1000) / 1000);
      for (int j = 0; j < k * K; j++) h[i][j] = rb_f16_from_f32(0.5f + (float)(rnd() % 1000) / 1000);
    }
    Layer *L = &layers[nl];
    L->step = st;
    L->K = K;
    L->add = op->epilogue == CG_EPI_ADD;
    L->nout = op->epilogue == CG_EPI_SWIGLU ? N[0] : ntot;
    L->bits_bytes = 0;
    for (int i = 0; i < nseg; i++) L->bits_bytes += cg_packed_bytes(k, N[i], K);
    stream_bytes += L->bits_bytes;
    if (rt_linear_bind(s, st, (const uint32_t *const *)bits, (const uint16_t *const *)g,
                       (const uint16_t *const *)h, &L->w, &err)) {
      fprintf(stderr, "bench_chain: %s\n", err.data);
      return 1;
    }
    for (int i = 0; i < nseg; i++) free(bits[i]), free(g[i]), free(h[i]);
    if (K > maxk) maxk = K;
    if (L->nout > maxout) maxout = L->nout;
    nl++;
  }
  printf("bench_chain: %d quantized linears bound, %.2f GB streamed per batch-1 pass\n", nl, stream_bytes / 1e9);
  RtStream stream;
  rt_stream_create(gpu, &stream);
  static const int batches[] = {1, 4, 16};
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
    int B = batches[bi];
    RtDevPtr x, y, res;
    rt_mem_alloc(gpu, &x, (size_t)B * maxk * 2);
    rt_mem_alloc(gpu, &y, (size_t)B * maxout * 2);
    rt_mem_alloc(gpu, &res, (size_t)B * maxout * 2);
    uint16_t *hx = malloc((size_t)B * maxk * 2);
    for (int j = 0; j < B * maxk; j++) hx[j] = rb_f16_from_f32((float)(rnd() % 2000) / 1000 - 1);
    rt_memcpy_htod(gpu, x, hx, (size_t)B * maxk * 2);
    rt_memcpy_htod(gpu, res, hx, (size_t)B * maxout * 2 < (size_t)B * maxk * 2 ? (size_t)B * maxout * 2 : (size_t)B * maxk * 2);
    free(hx);
    /* Warm up outside the capture, then capture the whole chain once. */
    for (int i = 0; i < nl; i++) rt_linear_run(s, layers[i].w, B, y, x, layers[i].add ? res : 0, stream);
    rt_sync(gpu);
    RtGraph *graph = NULL;
    rt_capture_begin(gpu, stream);
    for (int i = 0; i < nl; i++) rt_linear_run(s, layers[i].w, B, y, x, layers[i].add ? res : 0, stream);
    rt_capture_end(gpu, stream, &graph);
    float ms = 0;
    if (!graph || rt_time_graph(gpu, graph, stream, 20, &ms)) {
      fprintf(stderr, "bench_chain: timing failed\n");
      return 1;
    }
    printf("chain batch %2d: %.3f ms for %d linears, %.2f TB/s of packed weights, %.2fx vs fp16 peer 5.05 ms\n", B, ms,
           nl, stream_bytes / (ms * 1e-3) / 1e12, 5.05 / ms);
    rt_graph_destroy(gpu, graph);
    rt_mem_free(gpu, x), rt_mem_free(gpu, y), rt_mem_free(gpu, res);
  }
  for (int i = 0; i < nl; i++) rt_linear_free(s, layers[i].w);
  free(layers);
  rt_stream_destroy(gpu, stream);
  rt_program_close(s);
  rt_gpu_close(gpu);
  rt_plan_free(plan);
  rb_buf_free(&err);
  return 0;
}
