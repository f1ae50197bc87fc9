/* cuda.h: the CUDA target of codegen (prefix cg_): one emitter per kernel
 * family (linear.c: the binary linears and their repack; ops.c: the decoder
 * ops and nll, evaluation's loss), each with its launch geometry and argument
 * marshalling; prelude.c: what every emitted source shares (its first lines,
 * its entry-point name); target.c gathers them into cg_target_cuda. Included only inside codegen (and tests). */
#ifndef RABIT_CODEGEN_CUDA_H
#define RABIT_CODEGEN_CUDA_H

#include "codegen/codegen.h"

/* ==== prelude.c ==== */
/* The lines every kernel source starts with: a header comment naming k (its
 * cg_kernel_describe line) and the emitter file, the fp16 storage type rb_half
 * and the conversions rb_h2f / rb_f2h. */
void cg_cuda_prelude(RbBuf *b, const CgKernel *k, const char *emitter);
/* What a kernel with bf16 tensors adds right after cg_cuda_prelude: the bf16
 * storage type rb_bf16 and the conversions rb_bf2f / rb_f2bf (round to
 * nearest even). The training kernels (train_*.c) use it. */
void cg_cuda_prelude_bf16(RbBuf *b);
/* A C++ float literal that reads back as exactly the float v. */
void cg_cuda_lit_float(char out[48], float v);
/* k's entry-point name from its readable form (a C identifier saying what the
 * kernel is: "rb_linear_xor_n4096_k4096_p2"). hashed: the name leaves out
 * something of k's description (tiles, a float attribute), so "_" and 6 hex
 * digits of the FNV-1a hash of that description are appended. A name that
 * would not fit CG_ENTRY_MAX becomes a readable prefix plus the hash. */
void cg_cuda_entry(const CgKernel *k, const char *readable, int hashed, char entry[CG_ENTRY_MAX]);

/* ==== linear.c ==== */
int cg_emit_linear(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_emit_repack(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_linear(const CgKernel *k, CgGeometry *g, RbBuf *err); /* linear and repack */
int cg_cuda_arch_check(const CgKernel *k, const char *arch, RbBuf *err); /* archs.c */
uint64_t cg_layout_bytes_linear(const CgOp *op);
int cg_linear_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]);
int cg_linear_prenorm(const CgSchedule *s);

/* ==== bmma.c: the bmma strategy's pre-pass (its linear kernel is emitted through linear.c) ==== */
int cg_emit_planes(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_planes(const CgKernel *k, CgGeometry *g, RbBuf *err);

/* ==== lop3.c: the lop3 strategy's decode table ==== */
/* A register q (0..3) of k16 step s (0..3): (form(w) & mask) | con = C + bit, both halves. */
typedef struct {
  int form;      /* which form of the word (cg_lop3_form) */
  unsigned mask; /* the two mantissa bits the sign sits in, one per half */
  unsigned con;  /* C in both halves (fp16 bits) */
} CgLop3Reg;
CgLop3Reg cg_lop3_reg(int s, int q);
unsigned cg_lop3_form(int form, unsigned w); /* what lop3_forms computes on the GPU */
unsigned cg_lop3_fix(int q);                 /* F = -(C + 1/2) of register q in both halves */
void cg_lop3_emit_helpers(RbBuf *b);          /* lop3_forms, lop3_a<S> and LOP3_FIX */

/* ==== ops.c ==== */
int cg_emit_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_op(const CgKernel *k, CgGeometry *g, RbBuf *err);

/* ==== train_ops.c: the model's training kernels (TRAINING.md) ==== */
int cg_emit_train_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_train_op(const CgKernel *k, CgGeometry *g, RbBuf *err);

/* ==== train_optim.c: the derivation, its backward and the optimizers (TRAINING.md) ==== */
int cg_emit_train_optim(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_geometry_train_optim(const CgKernel *k, CgGeometry *g, RbBuf *err);

#endif
