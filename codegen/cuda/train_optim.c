/* train_optim.c: placeholder until the training kernels land (TRAINING.md). */
#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

int cg_emit_train_optim(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  (void)src; (void)entry;
  rb_buf_printf(err, "no CUDA emitter yet for %s", cg_kind_name(k->op.kind));
  return RB_EUSER;
}

int cg_geometry_train_optim(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  (void)g;
  rb_buf_printf(err, "no CUDA geometry yet for %s", cg_kind_name(k->op.kind));
  return RB_EUSER;
}
