/* blas.c: cuBLAS loaded with dlopen, for the dense fp16 linears (the lm_head,
 * and every linear of the --fp16 baseline). Loading it lazily keeps rabitc
 * free of it and lets a missing library be a clear error rather than a
 * loader failure. cuBLAS uses the current (primary) context, which ours is. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <cublas_api.h>

#include "runtime/cuda/gpu.h"

#define BLAS_WORKSPACE (32u << 20) /* a fixed workspace: GEMMs captured in graphs cannot allocate */

typedef cublasStatus_t (*PfnCreate)(cublasHandle_t *);
typedef cublasStatus_t (*PfnDestroy)(cublasHandle_t);
typedef cublasStatus_t (*PfnSetStream)(cublasHandle_t, cudaStream_t);
typedef cublasStatus_t (*PfnSetWorkspace)(cublasHandle_t, void *, size_t);
typedef cublasStatus_t (*PfnGemmEx)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                    const void *, const void *, cudaDataType, int, const void *, cudaDataType,
                                    int, const void *, void *, cudaDataType, int, cublasComputeType_t,
                                    cublasGemmAlgo_t);

typedef cublasStatus_t (*PfnGemmBatched)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                         const void *, const void *, cudaDataType, int, long long, const void *,
                                         cudaDataType, int, long long, const void *, void *, cudaDataType, int,
                                         long long, int, cublasComputeType_t, cublasGemmAlgo_t);

struct RtBlas {
  RtGpu *gpu;
  cublasHandle_t h;
  RtDevPtr workspace;
  PfnDestroy destroy;
  PfnGemmEx gemm;
  PfnGemmBatched gemm_batched;
};

int rt_blas_open(RtGpu *g, RtStream s, RtBlas **out, RbBuf *err) {
  void *lib = dlopen("libcublas.so.13", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcublas.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    rb_buf_printf(err, "the fp16 linears need cuBLAS: %s", dlerror());
    return RB_EUSER;
  }
  PfnCreate create = (PfnCreate)dlsym(lib, "cublasCreate_v2");
  PfnSetStream set_stream = (PfnSetStream)dlsym(lib, "cublasSetStream_v2");
  PfnSetWorkspace set_ws = (PfnSetWorkspace)dlsym(lib, "cublasSetWorkspace_v2");
  RtBlas *b = rb_calloc(1, sizeof *b);
  if (!b) return RB_EINTERNAL;
  b->gpu = g;
  b->destroy = (PfnDestroy)dlsym(lib, "cublasDestroy_v2");
  b->gemm = (PfnGemmEx)dlsym(lib, "cublasGemmEx");
  b->gemm_batched = (PfnGemmBatched)dlsym(lib, "cublasGemmStridedBatchedEx");
  if (!create || !set_stream || !set_ws || !b->destroy || !b->gemm || !b->gemm_batched) {
    rb_buf_printf(err, "libcublas lacks an entry point rabit needs");
    rb_free(b);
    return RB_EUSER;
  }
  cublasStatus_t st = create(&b->h);
  if (st != CUBLAS_STATUS_SUCCESS) {
    rb_buf_printf(err, "cublasCreate failed (status %d)", (int)st);
    rb_free(b);
    return RB_EINTERNAL;
  }
  if (rt_mem_alloc(g, &b->workspace, BLAS_WORKSPACE) || set_stream(b->h, (cudaStream_t)s) ||
      set_ws(b->h, (void *)(uintptr_t)b->workspace, BLAS_WORKSPACE)) {
    rb_buf_printf(err, "cannot set up cuBLAS's stream and workspace");
    rt_blas_close(b);
    return RB_EINTERNAL;
  }
  *out = b;
  return RB_OK;
}

void rt_blas_close(RtBlas *b) {
  if (!b) return;
  if (b->h) b->destroy(b->h);
  if (b->workspace) rt_mem_free(b->gpu, b->workspace);
  rb_free(b);
}

/* Row-major y = x W^T is column-major y^T = W x^T: W is stored (N, K) row-major,
 * i.e. K x N column-major, so it enters transposed. */
int rt_blas_linear(RtBlas *b, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int y_f32,
                   int accumulate) {
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  cublasStatus_t st = b->gemm(b->h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, (const void *)(uintptr_t)w, CUDA_R_16F,
                              K, (const void *)(uintptr_t)x, CUDA_R_16F, K, &beta, (void *)(uintptr_t)y,
                              y_f32 ? CUDA_R_32F : CUDA_R_16F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) {
    rt_gpu_set_error(b->gpu, "cublasGemmEx failed (status %d) for %dx%dx%d", (int)st, M, N, K);
    return RB_EINTERNAL;
  }
  return RB_OK;
}

static cudaDataType blas_type(RtBlasType t) {
  switch (t) {
  case RT_BLAS_F16: return CUDA_R_16F;
  case RT_BLAS_BF16: return CUDA_R_16BF;
  default: return CUDA_R_32F;
  }
}

/* Row-major C = A B is column-major C^T = B^T A^T: the operands swap places
 * and keep their own transposes, so no data moves. */
int rt_blas_gemm(RtBlas *b, const RtGemm *g) {
  const float alpha = g->alpha, beta = g->beta;
  int batch = g->batch > 0 ? g->batch : 1;
  cublasStatus_t st = b->gemm_batched(
      b->h, g->tb ? CUBLAS_OP_T : CUBLAS_OP_N, g->ta ? CUBLAS_OP_T : CUBLAS_OP_N, g->N, g->M, g->K, &alpha,
      (const void *)(uintptr_t)g->b, blas_type(g->ab_type), g->ldb, g->stride_b, (const void *)(uintptr_t)g->a,
      blas_type(g->ab_type), g->lda, g->stride_a, &beta, (void *)(uintptr_t)g->c, blas_type(g->c_type), g->ldc,
      g->stride_c, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) {
    rt_gpu_set_error(b->gpu, "cublasGemmStridedBatchedEx failed (status %d) for %dx%dx%d, batch %d", (int)st,
                     g->M, g->N, g->K, batch);
    return RB_EINTERNAL;
  }
  return RB_OK;
}
