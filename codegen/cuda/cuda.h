/* cuda.h: the CUDA target of codegen (prefix cg_): one emitter per kernel
 * family (linear.c: the binary linears and their repack; ops.c: the decoder
 * ops), each with its launch geometry and argument marshalling; target.c
 * gathers them into cg_target_cuda. Included only inside codegen (and tests). */
#ifndef RABIT_CODEGEN_CUDA_H
#define RABIT_CODEGEN_CUDA_H

#include "codegen/codegen.h"

/* ==== linear.c ==== */
int cg_emit_linear(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_emit_repack(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_linear(const CgKernel *k, CgGeometry *g, RbBuf *err); /* linear and repack */
uint64_t cg_layout_bytes_linear(const CgOp *op);
int cg_linear_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]);

/* ==== ops.c ==== */
int cg_emit_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_op(const CgKernel *k, CgGeometry *g, RbBuf *err);

#endif
