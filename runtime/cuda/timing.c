/* timing.c: the graph harness. A kernel's steady-state time is many launches
 * over weights rotating past the L2, captured in one CUDA graph and replayed,
 * the median replay divided by the launches: a launch timed alone measures
 * launch overhead, and an L2 flush between launches leaves dirty lines whose
 * write-back lands in the timed kernel (DESIGN.md, performance references). */
#include "runtime/cuda/gpu.h"

int rt_time_rotation(size_t bytes, int max) {
  size_t n = bytes ? RT_TIME_ROTATE_BYTES / bytes + 1 : 3;
  if (n < 3) n = 3;
  if (max > 0 && n > (size_t)max) n = (size_t)max;
  return (int)n;
}

/* Time a sequence on a stream of its own: 3 warm-up steps, then `launches` steps captured in
 * one graph (step i launches the nk kernels in order, kernel j with its args[i % nargs]), the
 * graph replayed reps times; *us is the median replay over launches. overlap: programmatic
 * dependent launch where the GPU has it (rt_launch_ex). */
static int time_sequence(RtGpu *g, const RtTimedKernel *k, int nk, int overlap, int launches, int reps, double *us) {
  *us = 0;
  if (nk < 1 || launches < 1 || reps < 1) return RB_EINTERNAL;
  for (int j = 0; j < nk; j++)
    if (k[j].nargs < 1) return RB_EINTERNAL;
  RtStream s = NULL;
  RtGraph *gr = NULL;
  float ms = 0;
  int rc = rt_stream_create(g, &s), capturing = 0;
  for (int i = 0; i < 3 * nk && !rc; i++) {
    const RtTimedKernel *t = &k[i % nk];
    rc = rt_launch_ex(g, t->fn, t->grid, t->block, t->smem, s, t->args[i / nk % t->nargs], overlap);
  }
  if (!rc) rc = rt_sync(g);
  if (!rc) capturing = (rc = rt_capture_begin(g, s)) == RB_OK;
  for (int i = 0; i < launches * nk && !rc; i++) {
    const RtTimedKernel *t = &k[i % nk];
    rc = rt_launch_ex(g, t->fn, t->grid, t->block, t->smem, s, t->args[i / nk % t->nargs], overlap);
  }
  if (capturing) { /* ended even after a failed launch, so the stream is usable again */
    int end = rt_capture_end(g, s, &gr);
    if (!rc) rc = end;
  }
  if (!rc) rc = rt_time_graph(g, gr, s, reps, &ms);
  rt_graph_destroy(g, gr);
  if (s) rt_stream_destroy(g, s);
  if (!rc) *us = (double)ms * 1e3 / launches;
  return rc;
}

int rt_time_launches(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3], unsigned smem,
                     void **const *args, int nargs, int launches, int reps, double *us) {
  RtTimedKernel k = {fn, grid, block, smem, args, nargs};
  return time_sequence(g, &k, 1, 0, launches, reps, us);
}

int rt_time_sequence(RtGpu *g, const RtTimedKernel *k, int nk, int launches, int reps, double *us) {
  return time_sequence(g, k, nk, rt_gpu_overlap(g), launches, reps, us);
}

int rt_time_copy_bandwidth(RtGpu *g, size_t bytes, int reps, double *bytes_per_s) {
  enum { COPIES = 8 };
  *bytes_per_s = 0;
  RtDevPtr a = 0, b = 0;
  RtStream s = NULL;
  RtGraph *gr = NULL;
  float ms = 0;
  int rc = rt_mem_alloc(g, &a, bytes);
  if (!rc) rc = rt_mem_alloc(g, &b, bytes);
  if (!rc) rc = rt_memset8(g, a, 0x5A, bytes);
  if (!rc) rc = rt_stream_create(g, &s);
  if (!rc) rc = rt_capture_begin(g, s);
  for (int i = 0; i < COPIES && !rc; i++) rc = rt_memcpy_dtod(g, i & 1 ? a : b, i & 1 ? b : a, bytes, s);
  if (!rc) rc = rt_capture_end(g, s, &gr);
  if (!rc) rc = rt_time_graph(g, gr, s, reps, &ms);
  if (!rc && ms > 0) *bytes_per_s = 2.0 * (double)bytes * COPIES / ((double)ms * 1e-3);
  rt_graph_destroy(g, gr);
  if (s) rt_stream_destroy(g, s);
  if (a) rt_mem_free(g, a);
  if (b) rt_mem_free(g, b);
  return rc;
}
