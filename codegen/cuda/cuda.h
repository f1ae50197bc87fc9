/* cuda.h: the CUDA target of codegen (prefix cg_): one emitter per kernel
 * family (linear.c: the binary linears and their repack; ops.c: the decoder
 * ops), each with its launch geometry. Included only by codegen itself. */
#ifndef RABIT_CODEGEN_CUDA_H
#define RABIT_CODEGEN_CUDA_H

#include "codegen/codegen.h"

/* Emitters, one per file (linear.c, ops.c). Each returns RB_OK or RB_EUSER. */
int cg_emit_linear(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err);
int cg_emit_repack(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err);
int cg_emit_op(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err);
CgLaunch cg_launch_linear(const CgSpec *s, int n);
CgLaunch cg_launch_op(const CgSpec *s, int n);

#endif
