/* ir.c: the builder helpers the host emitters share: the entry's shape
 * (argv, begin, end), argument loads, loops and ifs over allocas (O3's SROA
 * makes them SSA), fp16 loads and stores, vector helpers and intrinsics. */
#include <stdio.h>
#include <string.h>

#include <llvm-c/Analysis.h>

#include "codegen/host/host.h"

void cg_host_begin(CgHostFn *h, const char *entry) {
  memset(h, 0, sizeof *h);
  h->ctx = LLVMContextCreate();
  h->mod = LLVMModuleCreateWithNameInContext(entry, h->ctx);
  h->b = LLVMCreateBuilderInContext(h->ctx);
  h->i1 = LLVMInt1TypeInContext(h->ctx);
  h->i8 = LLVMInt8TypeInContext(h->ctx);
  h->i16 = LLVMInt16TypeInContext(h->ctx);
  h->i32 = LLVMInt32TypeInContext(h->ctx);
  h->i64 = LLVMInt64TypeInContext(h->ctx);
  h->f16 = LLVMHalfTypeInContext(h->ctx);
  h->f32 = LLVMFloatTypeInContext(h->ctx);
  h->ptr = LLVMPointerTypeInContext(h->ctx, 0);
  h->vf = LLVMVectorType(h->f32, CG_HOST_LANES);
  h->vi = LLVMVectorType(h->i32, CG_HOST_LANES);
  h->vh = LLVMVectorType(h->f16, CG_HOST_LANES);
  LLVMTypeRef params[3] = {h->ptr, h->i64, h->i64};
  h->fn = LLVMAddFunction(h->mod, entry, LLVMFunctionType(LLVMVoidTypeInContext(h->ctx), params, 3, 0));
  unsigned nounwind = LLVMGetEnumAttributeKindForName("nounwind", 8);
  LLVMAddAttributeAtIndex(h->fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(h->ctx, nounwind, 0));
  h->argv = LLVMGetParam(h->fn, 0);
  h->begin = LLVMGetParam(h->fn, 1);
  h->end = LLVMGetParam(h->fn, 2);
  LLVMSetValueName2(h->argv, "argv", 4);
  LLVMSetValueName2(h->begin, "begin", 5);
  LLVMSetValueName2(h->end, "end", 3);
  h->entry_bb = LLVMAppendBasicBlockInContext(h->ctx, h->fn, "entry");
  LLVMPositionBuilderAtEnd(h->b, h->entry_bb);
}

static void dispose(CgHostFn *h) {
  LLVMDisposeBuilder(h->b);
  LLVMDisposeModule(h->mod);
  LLVMContextDispose(h->ctx);
  memset(h, 0, sizeof *h);
}

int cg_host_finish(CgHostFn *h, const CgKernel *k, const char *emitter, const char *what, RbBuf *src, RbBuf *err) {
  LLVMBuildRetVoid(h->b);
  char *msg = NULL;
  if (LLVMVerifyModule(h->mod, LLVMReturnStatusAction, &msg)) {
    rb_buf_printf(err, "%s: the emitted LLVM IR does not verify: %s", emitter, msg ? msg : "?");
    LLVMDisposeMessage(msg);
    dispose(h);
    return RB_EINTERNAL;
  }
  LLVMDisposeMessage(msg);
  RbBuf d = {0};
  cg_kernel_describe(k, &d);
  rb_buf_printf(src, "; rabit host kernel: %s\n; emitter: %s\n", d.data ? d.data : "?", emitter);
  /* what: lines of prose, each written as an IR comment */
  for (const char *l = what; l && *l;) {
    size_t n = strcspn(l, "\n");
    rb_buf_printf(src, "; %.*s\n", (int)n, l);
    l += n + (l[n] == '\n');
  }
  rb_buf_free(&d);
  char *text = LLVMPrintModuleToString(h->mod);
  rb_buf_puts(src, text);
  LLVMDisposeMessage(text);
  dispose(h);
  return src->oom ? RB_EINTERNAL : RB_OK;
}

void cg_host_entry(const CgKernel *k, const char *readable, char entry[CG_ENTRY_MAX]) {
  RbBuf d = {0};
  cg_kernel_describe(k, &d);
  uint32_t hash = 2166136261u;
  for (size_t i = 0; i < d.len; i++) hash = (hash ^ (unsigned char)d.data[i]) * 16777619u;
  rb_buf_free(&d);
  /* 8 + 1 + 8 + NUL for the prefix, the separator and the hash */
  snprintf(entry, CG_ENTRY_MAX, "rb_host_%.*s_%08x", CG_ENTRY_MAX - 18, readable, hash);
}

LLVMValueRef cg_host_i64(CgHostFn *h, long long v) { return LLVMConstInt(h->i64, (unsigned long long)v, 1); }
LLVMValueRef cg_host_i32(CgHostFn *h, int v) { return LLVMConstInt(h->i32, (unsigned long long)(long long)v, 1); }
LLVMValueRef cg_host_f32(CgHostFn *h, float v) { return LLVMConstReal(h->f32, v); }

int cg_host_lanes(const CgHostFn *h) { return (int)LLVMGetVectorSize(h->vf); }

void cg_host_set_lanes(CgHostFn *h, int lanes) {
  h->vf = LLVMVectorType(h->f32, (unsigned)lanes);
  h->vi = LLVMVectorType(h->i32, (unsigned)lanes);
  h->vh = LLVMVectorType(h->f16, (unsigned)lanes);
}

LLVMValueRef cg_host_splat(CgHostFn *h, LLVMValueRef s) {
  int n = cg_host_lanes(h);
  LLVMValueRef one = LLVMBuildInsertElement(h->b, LLVMGetUndef(h->vf), s, cg_host_i32(h, 0), "");
  LLVMValueRef zeros[CG_HOST_MAX_LANES];
  for (int i = 0; i < n; i++) zeros[i] = cg_host_i32(h, 0);
  return LLVMBuildShuffleVector(h->b, one, LLVMGetUndef(h->vf), LLVMConstVector(zeros, (unsigned)n), "splat");
}

/* argv[i]: the address of the field. */
static LLVMValueRef arg_slot(CgHostFn *h, int i) {
  LLVMValueRef p = cg_host_gep(h, h->ptr, h->argv, cg_host_i64(h, i));
  return LLVMBuildLoad2(h->b, h->ptr, p, "");
}

LLVMValueRef cg_host_arg_ptr(CgHostFn *h, int i, const char *name) {
  return LLVMBuildLoad2(h->b, h->ptr, arg_slot(h, i), name); /* CgDevPtr: a 64-bit host address */
}

LLVMValueRef cg_host_arg_int(CgHostFn *h, int i, const char *name) {
  return LLVMBuildSExt(h->b, LLVMBuildLoad2(h->b, h->i32, arg_slot(h, i), ""), h->i64, name);
}

LLVMValueRef cg_host_arg_f32(CgHostFn *h, int i, const char *name) {
  return LLVMBuildLoad2(h->b, h->f32, arg_slot(h, i), name);
}

LLVMValueRef cg_host_var(CgHostFn *h, LLVMTypeRef t, LLVMValueRef init, const char *name) {
  LLVMBasicBlockRef here = LLVMGetInsertBlock(h->b);
  LLVMValueRef first = LLVMGetFirstInstruction(h->entry_bb);
  if (first) LLVMPositionBuilderBefore(h->b, first);
  else LLVMPositionBuilderAtEnd(h->b, h->entry_bb);
  LLVMValueRef v = LLVMBuildAlloca(h->b, t, name);
  LLVMPositionBuilderAtEnd(h->b, here);
  if (init) LLVMBuildStore(h->b, init, v);
  return v;
}

LLVMValueRef cg_host_get(CgHostFn *h, LLVMTypeRef t, LLVMValueRef var, const char *name) {
  return LLVMBuildLoad2(h->b, t, var, name);
}

void cg_host_set(CgHostFn *h, LLVMValueRef var, LLVMValueRef v) { LLVMBuildStore(h->b, v, var); }

LLVMValueRef cg_host_loop_begin(CgHostFn *h, CgHostLoop *l, LLVMValueRef start, LLVMValueRef end, const char *name) {
  char nm[64];
  l->var = cg_host_var(h, h->i64, start, name);
  l->end = end;
  snprintf(nm, sizeof nm, "%s.cond", name);
  l->cond = LLVMAppendBasicBlockInContext(h->ctx, h->fn, nm);
  snprintf(nm, sizeof nm, "%s.body", name);
  l->body = LLVMAppendBasicBlockInContext(h->ctx, h->fn, nm);
  snprintf(nm, sizeof nm, "%s.exit", name);
  l->exit = LLVMAppendBasicBlockInContext(h->ctx, h->fn, nm);
  LLVMBuildBr(h->b, l->cond);
  LLVMPositionBuilderAtEnd(h->b, l->cond);
  LLVMValueRef i = LLVMBuildLoad2(h->b, h->i64, l->var, name);
  LLVMBuildCondBr(h->b, LLVMBuildICmp(h->b, LLVMIntSLT, i, end, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(h->b, l->body);
  return LLVMBuildLoad2(h->b, h->i64, l->var, name);
}

void cg_host_loop_end(CgHostFn *h, CgHostLoop *l) {
  LLVMValueRef i = LLVMBuildLoad2(h->b, h->i64, l->var, "");
  LLVMBuildStore(h->b, LLVMBuildNSWAdd(h->b, i, cg_host_i64(h, 1), ""), l->var);
  LLVMBuildBr(h->b, l->cond);
  LLVMPositionBuilderAtEnd(h->b, l->exit);
}

void cg_host_if_begin(CgHostFn *h, CgHostIf *f, LLVMValueRef cond, const char *name) {
  f->then = LLVMAppendBasicBlockInContext(h->ctx, h->fn, name);
  f->done = LLVMAppendBasicBlockInContext(h->ctx, h->fn, "endif");
  LLVMBuildCondBr(h->b, cond, f->then, f->done);
  LLVMPositionBuilderAtEnd(h->b, f->then);
}

void cg_host_if_end(CgHostFn *h, CgHostIf *f) {
  LLVMBuildBr(h->b, f->done);
  LLVMPositionBuilderAtEnd(h->b, f->done);
}

LLVMValueRef cg_host_gep(CgHostFn *h, LLVMTypeRef t, LLVMValueRef base, LLVMValueRef idx) {
  return LLVMBuildInBoundsGEP2(h->b, t, base, &idx, 1, "");
}

LLVMValueRef cg_host_load_h(CgHostFn *h, LLVMValueRef base, LLVMValueRef idx) {
  LLVMValueRef v = LLVMBuildLoad2(h->b, h->f16, cg_host_gep(h, h->f16, base, idx), "");
  return LLVMBuildFPExt(h->b, v, h->f32, "");
}

LLVMValueRef cg_host_load_h8(CgHostFn *h, LLVMValueRef base, LLVMValueRef idx, int count) {
  LLVMValueRef p = cg_host_gep(h, h->f16, base, idx);
  if (count >= cg_host_lanes(h)) {
    LLVMValueRef v = LLVMBuildLoad2(h->b, h->vh, p, "");
    LLVMSetAlignment(v, 2);
    return LLVMBuildFPExt(h->b, v, h->vf, "");
  }
  LLVMValueRef v = LLVMConstNull(h->vf);
  for (int i = 0; i < count; i++)
    v = LLVMBuildInsertElement(h->b, v, cg_host_load_h(h, p, cg_host_i64(h, i)), cg_host_i32(h, i), "");
  return v;
}

void cg_host_store_h(CgHostFn *h, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx) {
  LLVMBuildStore(h->b, LLVMBuildFPTrunc(h->b, v, h->f16, ""), cg_host_gep(h, h->f16, base, idx));
}

LLVMValueRef cg_host_hsum(CgHostFn *h, LLVMValueRef v) {
  int n = cg_host_lanes(h);
  LLVMValueRef l[CG_HOST_MAX_LANES];
  for (int i = 0; i < n; i++) l[i] = LLVMBuildExtractElement(h->b, v, cg_host_i32(h, i), "");
  for (int w = n / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; i++) l[i] = LLVMBuildFAdd(h->b, l[i], l[i + w], "");
  return l[0];
}

LLVMValueRef cg_host_intrinsic(CgHostFn *h, const char *name, LLVMValueRef *args, int nargs) {
  return cg_host_intrinsic_t(h, name, h->f32, args, nargs);
}

LLVMValueRef cg_host_intrinsic_t(CgHostFn *h, const char *name, LLVMTypeRef t, LLVMValueRef *args, int nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(h->mod, id, &t, 1);
  LLVMTypeRef ft = LLVMIntrinsicGetType(h->ctx, id, &t, 1);
  return LLVMBuildCall2(h->b, ft, fn, args, (unsigned)nargs, "");
}

LLVMValueRef cg_host_min64(CgHostFn *h, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(h->b, LLVMBuildICmp(h->b, LLVMIntSLT, a, b, ""), a, b, "");
}

LLVMValueRef cg_host_silu(CgHostFn *h, LLVMValueRef v) {
  LLVMValueRef neg = LLVMBuildFNeg(h->b, v, "");
  LLVMValueRef e = cg_host_intrinsic(h, "llvm.exp", &neg, 1);
  return LLVMBuildFDiv(h->b, v, LLVMBuildFAdd(h->b, cg_host_f32(h, 1.0f), e, ""), "silu");
}
