/* bench_chain: the 32 layers of Llama-2-7B linears (fused qkv, o + residual,
 * gate/up + SwiGLU, down + residual; q/k/v and gate/up fold in the rmsnorm before
 * them at these batches, as in a decode step) through the runtime's API, captured as one
 * CUDA graph and timed by replays, at batch 1, 4 and 16. The peer is the
 * same chain of fp16 products on cuBLAS (rt_blas_linear: the same shapes,
 * dense fp16 weights of their own, one graph), measured in the same run on
 * the same GPU, so the ratio printed is of two measurements; where the peer
 * cannot run, no ratio is printed.
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
  int ndense;        /* the peer's output width: every segment (gate and up both) */
  RtDevPtr dense;    /* the peer's fp16 weight (ndense, K) */
  size_t bits_bytes; /* one layout's bits, plus g and h: what batch 1 streams */
} Layer;

/* The fp16 peer's weights, one (ndense, K) matrix per layer, filled from one
 * random host buffer (values do not change a GEMM's time). 0, or -1 with the
 * reason in why when they do not fit on the GPU. */
static int peer_weights(RtGpu *gpu, Layer *layers, int nl, size_t *bytes, char *why, size_t nwhy) {
  size_t most = 0;
  *bytes = 0;
  for (int i = 0; i < nl; i++) {
    size_t b = (size_t)layers[i].ndense * layers[i].K * 2;
    if (b > most) most = b;
  }
  uint16_t *h = malloc(most ? most : 2);
  if (!h) return snprintf(why, nwhy, "out of host memory"), -1;
  for (size_t j = 0; j < most / 2; j++) h[j] = rb_f16_from_f32((float)(rnd() % 2000) / 1000 - 1);
  int rc = 0;
  for (int i = 0; i < nl && !rc; i++) {
    size_t b = (size_t)layers[i].ndense * layers[i].K * 2;
    if (rt_mem_alloc(gpu, &layers[i].dense, b) || rt_memcpy_htod(gpu, layers[i].dense, h, b)) {
      snprintf(why, nwhy, "its %.1f GB of fp16 weights do not fit (%s)", (*bytes + b) / 1e9, rt_gpu_error(gpu));
      rc = -1;
    } else *bytes += b;
  }
  free(h);
  return rc;
}

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
    L->ndense = ntot;
    L->bits_bytes = 0;
    for (int i = 0; i < nseg; i++) L->bits_bytes += cg_packed_bytes(k, N[i], K);
    stream_bytes += L->bits_bytes;
    if (rt_linear_bind(s, st, (const uint32_t *const *)bits, (const uint16_t *const *)g,
                       (const uint16_t *const *)h, &L->w, &err)) {
      fprintf(stderr, "bench_chain: %s\n", err.data);
      return 1;
    }
    /* A layer whose decode kernels fold in the rmsnorm before it: a random norm weight
     * folded in, so that the chain runs the kernels a decode step runs. */
    int norm, rc = rt_linear_norm_step(plan, st, &norm, &err);
    if (!rc && norm >= 0) {
      uint16_t *nw = malloc((size_t)K * 2);
      for (int j = 0; j < K; j++) nw[j] = rb_f16_from_f32(0.5f + (float)(rnd() % 1000) / 1000);
      rc = rt_linear_fold_norm(s, L->w, (const uint16_t *const *)h, nw, &err);
      free(nw);
    }
    if (rc) {
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
  /* The peer: the same products in fp16 on cuBLAS, timed the same way. */
  RtBlas *blas = NULL;
  size_t dense_bytes = 0;
  int maxdense = 0;
  char why[256] = "";
  for (int i = 0; i < nl; i++)
    if (layers[i].ndense > maxdense) maxdense = layers[i].ndense;
  RbBuf berr = {0};
  if (rt_blas_open(gpu, stream, &blas, &berr)) {
    snprintf(why, sizeof why, "%s", berr.data ? berr.data : "cuBLAS did not open");
    blas = NULL;
  } else if (peer_weights(gpu, layers, nl, &dense_bytes, why, sizeof why)) {
    rt_blas_close(blas);
    blas = NULL;
  }
  rb_buf_free(&berr);
  if (blas) printf("bench_chain: fp16 peer: cuBLAS, %.2f GB of fp16 weights\n", dense_bytes / 1e9);
  else printf("bench_chain: fp16 peer not measured, so no ratio: %s\n", why);
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
    for (int i = 0; i < nl; i++) rt_linear_run(s, layers[i].w, B, y, x, layers[i].add ? res : 0, stream, NULL);
    rt_sync(gpu);
    RtGraph *graph = NULL;
    rt_capture_begin(gpu, stream);
    for (int i = 0; i < nl; i++) rt_linear_run(s, layers[i].w, B, y, x, layers[i].add ? res : 0, stream, NULL);
    rt_capture_end(gpu, stream, &graph);
    float ms = 0;
    if (!graph || rt_time_graph(gpu, graph, stream, 20, &ms)) {
      fprintf(stderr, "bench_chain: timing failed\n");
      return 1;
    }
    rt_graph_destroy(gpu, graph);
    /* The peer's chain, captured and replayed the same way: x (B, K) W^T into its own y. */
    float peer_ms = 0;
    RtDevPtr py = 0;
    int peer_ok = blas && !rt_mem_alloc(gpu, &py, (size_t)B * maxdense * 2);
    if (peer_ok) {
      for (int i = 0; i < nl && peer_ok; i++)
        peer_ok = !rt_blas_linear(blas, B, layers[i].ndense, layers[i].K, x, layers[i].dense, py, layers[i].ndense, 0, 0);
      rt_sync(gpu);
      RtGraph *pg = NULL;
      rt_capture_begin(gpu, stream);
      for (int i = 0; i < nl && peer_ok; i++)
        peer_ok = !rt_blas_linear(blas, B, layers[i].ndense, layers[i].K, x, layers[i].dense, py, layers[i].ndense, 0, 0);
      rt_capture_end(gpu, stream, &pg);
      peer_ok = peer_ok && pg && !rt_time_graph(gpu, pg, stream, 20, &peer_ms) && peer_ms > 0;
      if (pg) rt_graph_destroy(gpu, pg);
    }
    if (py) rt_mem_free(gpu, py);
    if (peer_ok)
      printf("chain batch %2d: %.3f ms for %d linears, %.2f TB/s of packed weights; fp16 cuBLAS chain %.3f ms "
             "(%.2f TB/s), %.2fx\n",
             B, ms, nl, stream_bytes / (ms * 1e-3) / 1e12, peer_ms, dense_bytes / (peer_ms * 1e-3) / 1e12,
             peer_ms / ms);
    else
      printf("chain batch %2d: %.3f ms for %d linears, %.2f TB/s of packed weights%s\n", B, ms, nl,
             stream_bytes / (ms * 1e-3) / 1e12, blas ? "; the fp16 peer failed at this batch" : "");
    rt_mem_free(gpu, x), rt_mem_free(gpu, y), rt_mem_free(gpu, res);
  }
  for (int i = 0; i < nl; i++) {
    rt_linear_free(s, layers[i].w);
    if (layers[i].dense) rt_mem_free(gpu, layers[i].dense);
  }
  if (blas) rt_blas_close(blas);
  free(layers);
  rt_stream_destroy(gpu, stream);
  rt_program_close(s);
  rt_gpu_close(gpu);
  rt_plan_free(plan);
  rb_buf_free(&err);
  return 0;
}
