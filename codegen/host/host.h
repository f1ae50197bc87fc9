/* host.h: the host target of codegen (prefix cg_): kernels as LLVM IR built
 * with LLVM 16's C API (ir.c: the builder helpers every emitter shares;
 * linear.c: the binary linears and their repack; ops.c: the decoder ops);
 * target.c gathers them into cg_target_host. Included only inside codegen (and tests). */
#ifndef RABIT_CODEGEN_HOST_H
#define RABIT_CODEGEN_HOST_H

#include <llvm-c/Core.h>

#include "codegen/codegen.h"

/* The vector width the kernels are written in: 8 fp32 lanes (one AVX
 * register; LLVM splits it for narrower units and the host's O3 may widen). */
#define CG_HOST_LANES 8
#define CG_HOST_MAX_LANES 16 /* what an emitter may ask for (cg_host_set_lanes): one AVX-512 register */

/* ==== ir.c ==== */

/* One kernel under construction: a module holding one entry
 * void entry(ptr argv, i64 begin, i64 end) and the types the emitters use. */
typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn, argv, begin, end;
  LLVMBasicBlockRef entry_bb;                /* allocas go here */
  LLVMTypeRef i1, i8, i16, i32, i64, f16, f32, ptr, vf, vi, vh; /* vf <8 x float>, vi <8 x i32>, vh <8 x half> (cg_host_set_lanes) */
} CgHostFn;

/* A counted loop i = start .. end - 1 (i64), its counter in an alloca that O3 promotes. */
typedef struct {
  LLVMValueRef var, end;
  LLVMBasicBlockRef cond, body, exit;
} CgHostLoop;

/* An if without else: code between begin and end runs when cond holds. */
typedef struct {
  LLVMBasicBlockRef then, done;
} CgHostIf;

void cg_host_begin(CgHostFn *h, const char *entry);
/* The vector width of vf, vi, vh (8 after cg_host_begin; 8 or 16), which the
 * helpers below follow. */
void cg_host_set_lanes(CgHostFn *h, int lanes);
int cg_host_lanes(const CgHostFn *h);
/* Finish the entry, verify the module and print it into src after a header
 * of comment lines naming the kernel (cg_kernel_describe), the emitter and
 * what the entry computes. RB_OK, or RB_EINTERNAL with LLVM's verifier
 * message in err (an emitter bug). Frees everything h holds. */
int cg_host_finish(CgHostFn *h, const CgKernel *k, const char *emitter, const char *what, RbBuf *src, RbBuf *err);
/* The entry's name for k: "rb_host_" + readable, then "_" and 8 hex digits of
 * the FNV-1a hash of k's description, so two kernels never share a name. */
void cg_host_entry(const CgKernel *k, const char *readable, char entry[CG_ENTRY_MAX]);

LLVMValueRef cg_host_i64(CgHostFn *h, long long v);
LLVMValueRef cg_host_i32(CgHostFn *h, int v);
LLVMValueRef cg_host_f32(CgHostFn *h, float v);
LLVMValueRef cg_host_splat(CgHostFn *h, LLVMValueRef scalar); /* <8 x float> of one float */
/* Argument i of argv: a pointer field (CgDevPtr), an int field sign-extended to i64, a float field. */
LLVMValueRef cg_host_arg_ptr(CgHostFn *h, int i, const char *name);
LLVMValueRef cg_host_arg_int(CgHostFn *h, int i, const char *name);
LLVMValueRef cg_host_arg_f32(CgHostFn *h, int i, const char *name);
/* A local of type t in the entry block, set to init (may be NULL) where the builder is. */
LLVMValueRef cg_host_var(CgHostFn *h, LLVMTypeRef t, LLVMValueRef init, const char *name);
LLVMValueRef cg_host_get(CgHostFn *h, LLVMTypeRef t, LLVMValueRef var, const char *name);
void cg_host_set(CgHostFn *h, LLVMValueRef var, LLVMValueRef v);

LLVMValueRef cg_host_loop_begin(CgHostFn *h, CgHostLoop *l, LLVMValueRef start, LLVMValueRef end, const char *name);
void cg_host_loop_end(CgHostFn *h, CgHostLoop *l);
void cg_host_if_begin(CgHostFn *h, CgHostIf *f, LLVMValueRef cond, const char *name);
void cg_host_if_end(CgHostFn *h, CgHostIf *f);

/* &base[idx] for elements of type t (idx i64). */
LLVMValueRef cg_host_gep(CgHostFn *h, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef idx);
/* fp16 memory, fp32 math: one half, or a vector of consecutive halves (the
 * first count of them when count < the lanes, the other lanes 0). Stores round to nearest even. */
LLVMValueRef cg_host_load_h(CgHostFn *h, LLVMValueRef base, LLVMValueRef idx);
LLVMValueRef cg_host_load_h8(CgHostFn *h, LLVMValueRef base, LLVMValueRef idx, int count);
void cg_host_store_h(CgHostFn *h, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx);
/* The sum of the lanes of v, in a fixed tree order. */
LLVMValueRef cg_host_hsum(CgHostFn *h, LLVMValueRef v);
/* An overloaded LLVM intrinsic on fp32 ("llvm.sqrt", "llvm.exp", "llvm.log", "llvm.maxnum", "llvm.cos", ...). */
LLVMValueRef cg_host_intrinsic(CgHostFn *h, const char *name, LLVMValueRef *args, int nargs);
LLVMValueRef cg_host_intrinsic_t(CgHostFn *h, const char *name, LLVMTypeRef t, LLVMValueRef *args, int nargs);
/* Smaller / larger of two i64 (signed). */
LLVMValueRef cg_host_min64(CgHostFn *h, LLVMValueRef a, LLVMValueRef b);
/* silu(v) = v / (1 + e^-v) in fp32. */
LLVMValueRef cg_host_silu(CgHostFn *h, LLVMValueRef v);

/* ==== linear.c ==== */
int cg_host_emit_linear(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_host_emit_repack(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_host_geometry_linear(const CgKernel *k, CgGeometry *g, RbBuf *err); /* linear and repack */
uint64_t cg_host_layout_bytes(const CgOp *op);
int cg_host_linear_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]);

/* ==== ops.c ==== */
int cg_host_emit_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
int cg_host_geometry_op(const CgKernel *k, CgGeometry *g, RbBuf *err);

#endif
