/* gpu.h: the CUDA driver API loaded with dlopen (prefix rt_), and cuBLAS for
 * dense linears. Nothing links libcuda: the tools start on machines with no
 * GPU and say plainly when running needs one. */
#ifndef RABIT_RUNTIME_CUDA_GPU_H
#define RABIT_RUNTIME_CUDA_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "ir/base.h"

/* ==== driver.c: the driver API, through dlopen("libcuda.so.1") + cuGetProcAddress ==== */

typedef struct RtGpu RtGpu;
typedef struct RtModule RtModule;
typedef void *RtFunction; /* CUfunction */
typedef void *RtStream;   /* CUstream; NULL is the default stream */
typedef uint64_t RtDevPtr;/* CUdeviceptr */

/* Open device ordinal on its primary context. With no driver or no device it
 * returns RB_EUSER and appends to err a message that says running needs an
 * NVIDIA GPU and driver, with the loader's reason. */
int rt_gpu_open(RtGpu **out, int ordinal, RbBuf *err);
void rt_gpu_close(RtGpu *g);
const char *rt_gpu_name(const RtGpu *g);
const char *rt_gpu_arch(const RtGpu *g); /* "sm_90" */
int rt_gpu_sm_count(const RtGpu *g);
/* Device attributes the autotuner reads (its limits, the nominal bandwidth). */
typedef enum {
  RT_GPU_REGS_PER_BLOCK,   /* 32-bit registers a block may hold */
  RT_GPU_SMEM_PER_BLOCK,   /* shared memory bytes a block may opt in to (rt_launch_ex does above 48 KiB) */
  RT_GPU_THREADS_PER_BLOCK,
  RT_GPU_MEM_CLOCK_KHZ,    /* peak memory clock */
  RT_GPU_MEM_BUS_BITS,     /* global memory bus width */
  RT_GPU_L2_BYTES,
  RT_GPU_NATTR
} RtGpuAttr;
int rt_gpu_attribute(RtGpu *g, RtGpuAttr a, int *value);
/* A loaded kernel's registers a thread and its local memory a thread (spills, local arrays). */
int rt_function_usage(RtGpu *g, RtFunction fn, int *regs, int *local_bytes);

/* A failing driver call returns RB_EINTERNAL and records
 * "file:line: CUDA error NAME (code) in `statement` on device N (name)" on the
 * GPU; rt_gpu_error gives the last one (thread-local before a GPU is open,
 * with g NULL), for the caller to show. Nothing here prints. */
const char *rt_gpu_error(const RtGpu *g);
void rt_gpu_set_error(RtGpu *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int rt_module_load(RtGpu *g, const void *cubin, size_t len, RtModule **out);
int rt_module_function(RtModule *m, const char *name, RtFunction *fn);
void rt_module_unload(RtModule *m);

int rt_mem_alloc(RtGpu *g, RtDevPtr *p, size_t bytes);
void rt_mem_free(RtGpu *g, RtDevPtr p);
int rt_memcpy_htod(RtGpu *g, RtDevPtr dst, const void *src, size_t bytes);
int rt_memcpy_dtoh(RtGpu *g, void *dst, RtDevPtr src, size_t bytes);
int rt_memset8(RtGpu *g, RtDevPtr dst, unsigned char v, size_t bytes);
/* Ordered on stream s (capturable). */
int rt_memcpy_dtod(RtGpu *g, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s);

/* args: an array of pointers to each kernel argument, as cuLaunchKernel wants. */
int rt_launch(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3],
              unsigned smem, RtStream stream, void **args);
/* rt_launch, with overlap: programmatic dependent launch where the GPU has it
 * (rt_gpu_overlap): the kernel may start before the previous one on the stream
 * ends, so it must begin with rb_grid_enter (every kernel of a plan does). */
int rt_launch_ex(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3], unsigned smem,
                 RtStream stream, void **args, int overlap);
/* Whether launches may overlap: sm_90 or later, and RABIT_PDL is not "0". */
int rt_gpu_overlap(const RtGpu *g);
int rt_sync(RtGpu *g);

int rt_stream_create(RtGpu *g, RtStream *s);
void rt_stream_destroy(RtGpu *g, RtStream s);

/* Timing: capture a sequence of launches on stream s into a graph, replay it,
 * and time the replays with events. */
typedef struct RtGraph RtGraph;
int rt_capture_begin(RtGpu *g, RtStream s);
int rt_capture_end(RtGpu *g, RtStream s, RtGraph **out);
int rt_graph_launch(RtGpu *g, RtGraph *gr, RtStream s);
void rt_graph_destroy(RtGpu *g, RtGraph *gr);
int rt_time_graph(RtGpu *g, RtGraph *gr, RtStream s, int reps, float *median_ms);

/* ==== timing.c: the graph harness, as ../shared/peers/graph_bench.py times kernels ==== */

/* Bytes of weights the launches of one replay rotate through: over 8x the
 * H200's 60 MB L2, so no launch finds its weights left in L2 by another. */
#define RT_TIME_ROTATE_BYTES ((size_t)512 << 20)
/* Copies of `bytes` of weights to rotate so that RT_TIME_ROTATE_BYTES lie
 * between two reads of one copy: at least 3, at most max. */
int rt_time_rotation(size_t bytes, int max);
/* Steady-state time of one launch of fn: 3 warm-up launches, then `launches`
 * launches captured in one CUDA graph on a stream of its own, launch i with
 * the argument list args[i % nargs] (its rotating buffers); the graph is
 * replayed reps times and *us is the median replay divided by launches. */
int rt_time_launches(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3], unsigned smem,
                     void **const *args, int nargs, int launches, int reps, double *us);
/* One kernel of a timed sequence: its launch (grid and block point at 3 sizes each, which
 * outlive the timing), and its argument lists (rotating). */
typedef struct {
  RtFunction fn;
  const unsigned *grid, *block;
  unsigned smem;
  void **const *args;
  int nargs;
} RtTimedKernel;
/* rt_time_launches for a sequence: each of the `launches` steps launches the nk kernels in
 * order (kernel j with args[i % nargs]), with programmatic overlap where rt_gpu_overlap says,
 * as a plan's steps run; *us is the median replay divided by launches (one sequence). */
int rt_time_sequence(RtGpu *g, const RtTimedKernel *k, int nk, int launches, int reps, double *us);
/* The device's copy bandwidth: a device-to-device copy of `bytes`, 8 to a
 * graph, replayed reps times; bytes read plus written per second (median). */
int rt_time_copy_bandwidth(RtGpu *g, size_t bytes, int reps, double *bytes_per_s);

/* ==== blas.c: cuBLAS through dlopen, for dense (unquantized, fp16) linears ==== */

typedef struct RtBlas RtBlas;

/* Load libcublas on g's primary context, bound to stream s, with a fixed
 * workspace so that GEMMs can be captured in a graph. */
int rt_blas_open(RtGpu *g, RtStream s, RtBlas **out, RbBuf *err);
void rt_blas_close(RtBlas *b);
/* y (M, ldy) = x (M, K) W^T [+ y when accumulate], W (N, K) row-major fp16;
 * fp32 accumulation; y fp16, or fp32 when y_f32. */
int rt_blas_linear(RtBlas *b, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy,
                   int y_f32, int accumulate);

/* The general product, row-major: C (M, N) = alpha op(A) op(B) + beta C, for
 * batch matrices `stride_*` elements apart; op(X) is X^T when t* is set.
 * A and B share one type (bf16 for training, fp16), C is fp32, bf16 or fp16;
 * fp32 accumulation. ld* are row strides in elements. */
typedef enum { RT_BLAS_F32, RT_BLAS_F16, RT_BLAS_BF16 } RtBlasType;
typedef struct {
  int ta, tb;
  int M, N, K;
  float alpha, beta;
  RtDevPtr a, b, c;
  int lda, ldb, ldc;
  long long stride_a, stride_b, stride_c;
  int batch; /* 0 or 1: one product */
  RtBlasType ab_type, c_type;
} RtGemm;
int rt_blas_gemm(RtBlas *b, const RtGemm *g);

#endif
