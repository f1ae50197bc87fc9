/* target.c: the host target: LLVM IR for the host CPU, one emitter per
 * kernel family, dispatched on the op's kind. The training kinds are not
 * lowered for the host yet: they are refused with a reason. */
#include "codegen/codegen.h"
#include "codegen/host/host.h"

static int is_forward(CgKind k) {
  switch (k) {
  case CG_LINEAR: case CG_REPACK: case CG_EMBED: case CG_RMSNORM: case CG_ROPE_KV: case CG_ATTENTION:
  case CG_SWIGLU: case CG_ADD: case CG_NLL: return 1;
  default: return 0;
  }
}

static int refuse(const CgKernel *k, RbBuf *err) {
  rb_buf_printf(err, "the host target does not lower kernel kind %s (the training kinds are CUDA's alone today)",
                cg_kind_name(k->op.kind));
  return RB_EUSER;
}

static int host_emit(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  if (!is_forward(k->op.kind)) return refuse(k, err);
  if (k->op.kind == CG_LINEAR) return cg_host_emit_linear(k, src, entry, err);
  if (k->op.kind == CG_REPACK) return cg_host_emit_repack(k, src, entry, err);
  return cg_host_emit_op(k, src, entry, err);
}

static int host_geometry(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  if (!is_forward(k->op.kind)) return refuse(k, err);
  if (k->op.kind == CG_LINEAR || k->op.kind == CG_REPACK) return cg_host_geometry_linear(k, g, err);
  return cg_host_geometry_op(k, g, err);
}

const CgTarget cg_target_host = {
    .name = "host",
    .compiler = "llvm",
    .emit = host_emit,
    .geometry = host_geometry,
    .layout_bytes = cg_host_layout_bytes,
    .linear_buckets = cg_host_linear_buckets,
};

int cg_host_available(RbBuf *err) {
  (void)err;
  return RB_OK;
}
