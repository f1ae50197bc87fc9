/* target.c: the CUDA target: CUDA C for NVRTC, one emitter per kernel family,
 * dispatched on the op's kind. The only place that knows which family owns a kind. */
#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

static int cuda_emit(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  switch (k->op.kind) {
  case CG_LINEAR: return cg_emit_linear(k, src, entry, err);
  case CG_REPACK: return cg_emit_repack(k, src, entry, err);
  case CG_PLANES: return cg_emit_planes(k, src, entry, err);
  case CG_CAST_BF16: case CG_EMBED_FWD: case CG_EMBED_GRAD: case CG_RMSNORM_FWD: case CG_RMSNORM_GRAD:
  case CG_HEADS_SPLIT: case CG_HEADS_MERGE: case CG_SOFTMAX_FWD: case CG_SOFTMAX_GRAD: case CG_SWIGLU_FWD:
  case CG_SWIGLU_GRAD: case CG_ADD_FWD: case CG_KL_LOSS: case CG_CE_LOSS: case CG_COL_ABS: case CG_MSE_ROWS: case CG_MSE_GRAD: case CG_REDUCE:
  case CG_SUMSQ: return cg_emit_train_op(k, src, entry, err);
  case CG_DERIVE: case CG_DERIVE_STANDARD: case CG_DERIVE_GRAD_G: case CG_DERIVE_GRAD_H: case CG_ADAMW: case CG_MUON_MOMENTUM:
  case CG_BATCH_SUMSQ: case CG_MUON_NORMALIZE: case CG_MUON_APPLY: case CG_CLIP_COEF:
    return cg_emit_train_optim(k, src, entry, err);
  case CG_NKIND: break;
  default: return cg_emit_op(k, src, entry, err);
  }
  rb_buf_printf(err, "no CUDA emitter for kernel kind %d", (int)k->op.kind);
  return RB_EUSER;
}

static int cuda_geometry(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  switch (k->op.kind) {
  case CG_LINEAR:
  case CG_REPACK: return cg_geometry_linear(k, g, err);
  case CG_PLANES: return cg_geometry_planes(k, g, err);
  case CG_CAST_BF16: case CG_EMBED_FWD: case CG_EMBED_GRAD: case CG_RMSNORM_FWD: case CG_RMSNORM_GRAD:
  case CG_HEADS_SPLIT: case CG_HEADS_MERGE: case CG_SOFTMAX_FWD: case CG_SOFTMAX_GRAD: case CG_SWIGLU_FWD:
  case CG_SWIGLU_GRAD: case CG_ADD_FWD: case CG_KL_LOSS: case CG_CE_LOSS: case CG_COL_ABS: case CG_MSE_ROWS: case CG_MSE_GRAD: case CG_REDUCE:
  case CG_SUMSQ: return cg_geometry_train_op(k, g, err);
  case CG_DERIVE: case CG_DERIVE_STANDARD: case CG_DERIVE_GRAD_G: case CG_DERIVE_GRAD_H: case CG_ADAMW: case CG_MUON_MOMENTUM:
  case CG_BATCH_SUMSQ: case CG_MUON_NORMALIZE: case CG_MUON_APPLY: case CG_CLIP_COEF:
    return cg_geometry_train_optim(k, g, err);
  case CG_NKIND: break;
  default: return cg_geometry_op(k, g, err);
  }
  rb_buf_printf(err, "no CUDA geometry for kernel kind %d", (int)k->op.kind);
  return RB_EUSER;
}

const CgTarget cg_target_cuda = {
    .name = "cuda",
    .compiler = "nvrtc",
    .emit = cuda_emit,
    .geometry = cuda_geometry,
    .layout_bytes = cg_layout_bytes_linear,
    .linear_buckets = cg_linear_buckets,
    .linear_prenorm = cg_linear_prenorm,
    .arch_check = cg_cuda_arch_check,
};
