/* ops.c: the host target's decoder ops around the linears: embed, rmsnorm,
 * rope_kv, attention, swiglu, add, and nll (evaluation's loss). Each is one
 * entry over work items (a row t, a (t, head) pair, a chunk of elements),
 * specialized on the op's dims, fp16 in memory and fp32 math, the same
 * equations as codegen/cuda/ops.c. Reductions are written on 8 fp32 lanes
 * (O3 may not reassociate a scalar float sum); the elementwise loops are
 * left to LLVM's loop vectorizer. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/host/host.h"

#define ADD_CHUNK 4096 /* elements per work item of add */

/* cg_op_check, then the host's own limit: attention reads head_dim in vectors of
 * CG_HOST_LANES floats. */
static int op_check(const CgOp *s, RbBuf *err) {
  int rc = cg_op_check(s, err);
  if (rc == RB_OK && s->kind == CG_ATTENTION && (s->head_dim % CG_HOST_LANES || s->head_dim > 512)) {
    rb_buf_printf(err, "attention: head_dim (%d) must be a multiple of %d and at most 512", s->head_dim,
                  CG_HOST_LANES);
    rc = RB_EUSER;
  }
  return rc;
}

/* sum over i < n of f(i) on 8 lanes: full chunks, then the tail with its
 * missing lanes 0. load(ctx, base index) gives the 8 (or count) values. */
typedef LLVMValueRef (*Chunk)(CgHostFn *h, void *ctx, LLVMValueRef i, int count);
static LLVMValueRef lane_sum(CgHostFn *h, int n, Chunk f, void *ctx) {
  LLVMValueRef acc = cg_host_var(h, h->vf, LLVMConstNull(h->vf), "sum");
  CgHostLoop l;
  LLVMValueRef c = cg_host_loop_begin(h, &l, cg_host_i64(h, 0), cg_host_i64(h, n / CG_HOST_LANES), "c");
  LLVMValueRef v = f(h, ctx, LLVMBuildMul(h->b, c, cg_host_i64(h, CG_HOST_LANES), ""), CG_HOST_LANES);
  cg_host_set(h, acc, LLVMBuildFAdd(h->b, cg_host_get(h, h->vf, acc, ""), v, ""));
  cg_host_loop_end(h, &l);
  if (n % CG_HOST_LANES) {
    v = f(h, ctx, cg_host_i64(h, n / CG_HOST_LANES * CG_HOST_LANES), n % CG_HOST_LANES);
    cg_host_set(h, acc, LLVMBuildFAdd(h->b, cg_host_get(h, h->vf, acc, ""), v, ""));
  }
  return cg_host_hsum(h, cg_host_get(h, h->vf, acc, ""));
}

/* ==== embed: y (T, D) = table[tokens[t]], a zero row for an id outside the vocabulary ==== */

static void emit_embed(CgHostFn *h, const CgOp *s) {
  LLVMValueRef y = cg_host_arg_ptr(h, 0, "y"), tok = cg_host_arg_ptr(h, 1, "tokens"), tab = cg_host_arg_ptr(h, 2, "table");
  CgHostLoop lt, ld;
  LLVMValueRef t = cg_host_loop_begin(h, &lt, h->begin, h->end, "t");
  LLVMValueRef id = LLVMBuildSExt(h->b, LLVMBuildLoad2(h->b, h->i32, cg_host_gep(h, h->i32, tok, t), ""), h->i64, "id");
  LLVMValueRef ok = LLVMBuildAnd(h->b, LLVMBuildICmp(h->b, LLVMIntSGE, id, cg_host_i64(h, 0), ""),
                                 LLVMBuildICmp(h->b, LLVMIntSLT, id, cg_host_i64(h, s->vocab), ""), "ok");
  LLVMValueRef src = LLVMBuildMul(h->b, LLVMBuildSelect(h->b, ok, id, cg_host_i64(h, 0), ""), cg_host_i64(h, s->dim), "");
  LLVMValueRef dst = LLVMBuildMul(h->b, t, cg_host_i64(h, s->dim), "");
  LLVMValueRef d = cg_host_loop_begin(h, &ld, cg_host_i64(h, 0), cg_host_i64(h, s->dim), "d");
  LLVMValueRef v = LLVMBuildLoad2(h->b, h->i16, cg_host_gep(h, h->i16, tab, LLVMBuildAdd(h->b, src, d, "")), "");
  v = LLVMBuildSelect(h->b, ok, v, LLVMConstInt(h->i16, 0, 0), "");
  LLVMBuildStore(h->b, v, cg_host_gep(h, h->i16, y, LLVMBuildAdd(h->b, dst, d, "")));
  cg_host_loop_end(h, &ld);
  cg_host_loop_end(h, &lt);
}

/* ==== rmsnorm: y = x * rsqrt(mean(x^2) + eps) * w per row; y may alias x ==== */

typedef struct { LLVMValueRef x, row; } Sq;
static LLVMValueRef sq_chunk(CgHostFn *h, void *ctx, LLVMValueRef i, int count) {
  Sq *q = ctx;
  LLVMValueRef v = cg_host_load_h8(h, q->x, LLVMBuildAdd(h->b, q->row, i, ""), count);
  return LLVMBuildFMul(h->b, v, v, "");
}

static void emit_rmsnorm(CgHostFn *h, const CgOp *s) {
  LLVMValueRef y = cg_host_arg_ptr(h, 0, "y"), x = cg_host_arg_ptr(h, 1, "x"), w = cg_host_arg_ptr(h, 2, "w");
  CgHostLoop lt, ld;
  LLVMValueRef t = cg_host_loop_begin(h, &lt, h->begin, h->end, "t");
  LLVMValueRef row = LLVMBuildMul(h->b, t, cg_host_i64(h, s->dim), "row");
  Sq q = {x, row};
  LLVMValueRef ss = lane_sum(h, s->dim, sq_chunk, &q);
  LLVMValueRef ms = LLVMBuildFAdd(h->b, LLVMBuildFMul(h->b, ss, cg_host_f32(h, (float)(1.0 / s->dim)), ""),
                                  cg_host_f32(h, s->eps), "");
  LLVMValueRef r = LLVMBuildFDiv(h->b, cg_host_f32(h, 1.0f), cg_host_intrinsic(h, "llvm.sqrt", &ms, 1), "r");
  LLVMValueRef d = cg_host_loop_begin(h, &ld, cg_host_i64(h, 0), cg_host_i64(h, s->dim), "d");
  LLVMValueRef i = LLVMBuildAdd(h->b, row, d, "");
  LLVMValueRef v = LLVMBuildFMul(h->b, LLVMBuildFMul(h->b, cg_host_load_h(h, x, i), r, ""), cg_host_load_h(h, w, d), "");
  cg_host_store_h(h, v, y, i);
  cg_host_loop_end(h, &ld);
  cg_host_loop_end(h, &lt);
}

/* ==== rope_kv: rotate-half RoPE of q in place and of k into the cache; v copied ==== */

static void emit_rope_kv(CgHostFn *h, const CgOp *s) {
  LLVMValueRef q = cg_host_arg_ptr(h, 0, "q"), ldq = cg_host_arg_int(h, 1, "ldq");
  LLVMValueRef k = cg_host_arg_ptr(h, 2, "k"), ldk = cg_host_arg_int(h, 3, "ldk");
  LLVMValueRef v = cg_host_arg_ptr(h, 4, "v"), ldv = cg_host_arg_int(h, 5, "ldv");
  LLVMValueRef kc = cg_host_arg_ptr(h, 6, "kcache"), vc = cg_host_arg_ptr(h, 7, "vcache");
  LLVMValueRef pos0 = LLVMBuildSExt(h->b, LLVMBuildLoad2(h->b, h->i32, cg_host_arg_ptr(h, 8, "pos0p"), ""), h->i64, "pos0");
  const int HD = s->head_dim, HALF = HD / 2, H = s->heads, HKV = s->kv_heads;
  LLVMTypeRef f64 = LLVMDoubleTypeInContext(h->ctx);
  double nl2 = -2.0 * log2((double)s->rope_theta) / HD;
  CgHostLoop lt, lh, lj;
  LLVMValueRef t = cg_host_loop_begin(h, &lt, h->begin, h->end, "t");
  LLVMValueRef pos = LLVMBuildAdd(h->b, pos0, t, "pos");
  /* head < H: a query head, else key/value head head - H */
  LLVMValueRef hd = cg_host_loop_begin(h, &lh, cg_host_i64(h, 0), cg_host_i64(h, H + HKV), "head");
  LLVMValueRef isq = LLVMBuildICmp(h->b, LLVMIntSLT, hd, cg_host_i64(h, H), "isq");
  LLVMValueRef gk = LLVMBuildSub(h->b, hd, cg_host_i64(h, H), "g");
  LLVMValueRef store = LLVMBuildOr(h->b, isq, LLVMBuildICmp(h->b, LLVMIntSLT, pos, cg_host_i64(h, s->max_ctx), ""), "");
  CgHostIf f;
  cg_host_if_begin(h, &f, store, "rotate");
  LLVMValueRef qoff = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, ldq, ""), LLVMBuildMul(h->b, hd, cg_host_i64(h, HD), ""), "");
  LLVMValueRef koff = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, ldk, ""), LLVMBuildMul(h->b, gk, cg_host_i64(h, HD), ""), "");
  LLVMValueRef voff = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, ldv, ""), LLVMBuildMul(h->b, gk, cg_host_i64(h, HD), ""), "");
  LLVMValueRef crow = LLVMBuildMul(h->b, LLVMBuildAdd(h->b, LLVMBuildMul(h->b, gk, cg_host_i64(h, s->max_ctx), ""), pos, ""),
                                   cg_host_i64(h, HD), "crow");
  /* from: q's row (in place) or k's; to: q's row or the k cache's */
  LLVMValueRef fromp = LLVMBuildSelect(h->b, isq, cg_host_gep(h, h->f16, q, qoff), cg_host_gep(h, h->f16, k, koff), "");
  LLVMValueRef top = LLVMBuildSelect(h->b, isq, cg_host_gep(h, h->f16, q, qoff), cg_host_gep(h, h->f16, kc, crow), "");
  LLVMValueRef j = cg_host_loop_begin(h, &lj, cg_host_i64(h, 0), cg_host_i64(h, HALF), "j");
  /* the angle pos * theta^(-2j/HD) in double, reduced to [-pi, pi], then cos and sin in fp32 */
  LLVMValueRef e = LLVMBuildFMul(h->b, LLVMBuildSIToFP(h->b, j, f64, ""), LLVMConstReal(f64, nl2), "");
  LLVMValueRef a = LLVMBuildFMul(h->b, LLVMBuildSIToFP(h->b, pos, f64, ""), cg_host_intrinsic_t(h, "llvm.exp2", f64, &e, 1), "");
  LLVMValueRef turns = LLVMBuildFMul(h->b, a, LLVMConstReal(f64, 0.15915494309189535), "");
  turns = cg_host_intrinsic_t(h, "llvm.rint", f64, &turns, 1);
  a = LLVMBuildFSub(h->b, a, LLVMBuildFMul(h->b, turns, LLVMConstReal(f64, 6.283185307179586), ""), "");
  LLVMValueRef af = LLVMBuildFPTrunc(h->b, a, h->f32, "angle");
  LLVMValueRef c = cg_host_intrinsic(h, "llvm.cos", &af, 1), sn = cg_host_intrinsic(h, "llvm.sin", &af, 1);
  LLVMValueRef j2 = LLVMBuildAdd(h->b, j, cg_host_i64(h, HALF), "");
  LLVMValueRef x1 = cg_host_load_h(h, fromp, j), x2 = cg_host_load_h(h, fromp, j2);
  cg_host_store_h(h, LLVMBuildFSub(h->b, LLVMBuildFMul(h->b, x1, c, ""), LLVMBuildFMul(h->b, x2, sn, ""), ""), top, j);
  cg_host_store_h(h, LLVMBuildFAdd(h->b, LLVMBuildFMul(h->b, x2, c, ""), LLVMBuildFMul(h->b, x1, sn, ""), ""), top, j2);
  cg_host_loop_end(h, &lj);
  /* a key head also copies its value head into the v cache */
  CgHostIf fv;
  cg_host_if_begin(h, &fv, LLVMBuildNot(h->b, isq, ""), "copy_v");
  CgHostLoop ld;
  LLVMValueRef d = cg_host_loop_begin(h, &ld, cg_host_i64(h, 0), cg_host_i64(h, HD), "d");
  LLVMValueRef vv = LLVMBuildLoad2(h->b, h->i16, cg_host_gep(h, h->i16, v, LLVMBuildAdd(h->b, voff, d, "")), "");
  LLVMBuildStore(h->b, vv, cg_host_gep(h, h->i16, vc, LLVMBuildAdd(h->b, crow, d, "")));
  cg_host_loop_end(h, &ld);
  cg_host_if_end(h, &fv);
  cg_host_if_end(h, &f);
  cg_host_loop_end(h, &lh);
  cg_host_loop_end(h, &lt);
}

/* ==== attention: causal GQA over the caches, online softmax, one item per (t, head) ==== */

typedef struct { LLVMValueRef q, k; } Dot;
static LLVMValueRef dot_chunk(CgHostFn *h, void *ctx, LLVMValueRef i, int count) {
  Dot *d = ctx;
  return LLVMBuildFMul(h->b, cg_host_load_h8(h, d->q, i, count), cg_host_load_h8(h, d->k, i, count), "");
}

static void emit_attention(CgHostFn *h, const CgOp *s) {
  LLVMValueRef out = cg_host_arg_ptr(h, 0, "out"), q = cg_host_arg_ptr(h, 1, "q"), ldq = cg_host_arg_int(h, 2, "ldq");
  LLVMValueRef kc = cg_host_arg_ptr(h, 3, "kcache"), vc = cg_host_arg_ptr(h, 4, "vcache");
  LLVMValueRef pos0 = LLVMBuildSExt(h->b, LLVMBuildLoad2(h->b, h->i32, cg_host_arg_ptr(h, 5, "pos0p"), ""), h->i64, "pos0");
  const int HD = s->head_dim, H = s->heads, GROUP = s->heads / s->kv_heads, CTX = s->max_ctx;
  LLVMTypeRef acc_t = LLVMArrayType(h->f32, (unsigned)HD);
  LLVMValueRef acc = cg_host_var(h, acc_t, NULL, "o");
  LLVMValueRef mv = cg_host_var(h, h->f32, NULL, "m"), lv = cg_host_var(h, h->f32, NULL, "l");
  LLVMValueRef cv = cg_host_var(h, h->f32, NULL, "corr");
  CgHostLoop li, lj, ld, ld2, ld3;
  LLVMValueRef it = cg_host_loop_begin(h, &li, h->begin, h->end, "item");
  LLVMValueRef t = LLVMBuildSDiv(h->b, it, cg_host_i64(h, H), "t"), hd = LLVMBuildSRem(h->b, it, cg_host_i64(h, H), "head");
  LLVMValueRef nkeys = cg_host_min64(h, LLVMBuildAdd(h->b, LLVMBuildAdd(h->b, pos0, t, ""), cg_host_i64(h, 1), ""), cg_host_i64(h, CTX));
  LLVMValueRef kvbase = LLVMBuildMul(h->b, LLVMBuildSDiv(h->b, hd, cg_host_i64(h, GROUP), ""), cg_host_i64(h, (long long)CTX * HD), "kv");
  LLVMValueRef qrow = cg_host_gep(h, h->f16, q, LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, ldq, ""), LLVMBuildMul(h->b, hd, cg_host_i64(h, HD), ""), ""));
  cg_host_set(h, mv, cg_host_f32(h, -INFINITY));
  cg_host_set(h, lv, cg_host_f32(h, 0.0f));
  LLVMValueRef d = cg_host_loop_begin(h, &ld, cg_host_i64(h, 0), cg_host_i64(h, HD), "d");
  LLVMValueRef zi[2] = {cg_host_i64(h, 0), d};
  LLVMBuildStore(h->b, cg_host_f32(h, 0.0f), LLVMBuildInBoundsGEP2(h->b, acc_t, acc, zi, 2, ""));
  cg_host_loop_end(h, &ld);
  LLVMValueRef j = cg_host_loop_begin(h, &lj, cg_host_i64(h, 0), nkeys, "key");
  LLVMValueRef krow = LLVMBuildAdd(h->b, kvbase, LLVMBuildMul(h->b, j, cg_host_i64(h, HD), ""), "krow");
  Dot dt = {qrow, cg_host_gep(h, h->f16, kc, krow)};
  LLVMValueRef sc = LLVMBuildFMul(h->b, lane_sum(h, HD, dot_chunk, &dt), cg_host_f32(h, (float)(1.0 / sqrt((double)HD))), "score");
  /* The running max moves on few keys (a new maximum): only then is the rescale's exp
   * paid; on the others corr is 1. exp(-inf) = 0 on the first key. */
  LLVMValueRef m = cg_host_get(h, h->f32, mv, "");
  cg_host_set(h, cv, cg_host_f32(h, 1.0f));
  CgHostIf up;
  cg_host_if_begin(h, &up, LLVMBuildFCmp(h->b, LLVMRealOGT, sc, m, ""), "newmax");
  LLVMValueRef dm = LLVMBuildFSub(h->b, m, sc, "");
  cg_host_set(h, cv, cg_host_intrinsic(h, "llvm.exp", &dm, 1));
  cg_host_set(h, mv, sc);
  cg_host_if_end(h, &up);
  LLVMValueRef corr = cg_host_get(h, h->f32, cv, "corr"), mn = cg_host_get(h, h->f32, mv, "");
  LLVMValueRef ds = LLVMBuildFSub(h->b, sc, mn, "");
  LLVMValueRef pj = cg_host_intrinsic(h, "llvm.exp", &ds, 1);
  cg_host_set(h, lv, LLVMBuildFAdd(h->b, LLVMBuildFMul(h->b, cg_host_get(h, h->f32, lv, ""), corr, ""), pj, ""));
  LLVMValueRef d2 = cg_host_loop_begin(h, &ld2, cg_host_i64(h, 0), cg_host_i64(h, HD), "d");
  LLVMValueRef zi2[2] = {cg_host_i64(h, 0), d2};
  LLVMValueRef ap = LLVMBuildInBoundsGEP2(h->b, acc_t, acc, zi2, 2, "");
  LLVMValueRef vj = cg_host_load_h(h, vc, LLVMBuildAdd(h->b, krow, d2, ""));
  LLVMBuildStore(h->b, LLVMBuildFAdd(h->b, LLVMBuildFMul(h->b, LLVMBuildLoad2(h->b, h->f32, ap, ""), corr, ""),
                                     LLVMBuildFMul(h->b, pj, vj, ""), ""), ap);
  cg_host_loop_end(h, &ld2);
  cg_host_loop_end(h, &lj);
  LLVMValueRef inv = LLVMBuildFDiv(h->b, cg_host_f32(h, 1.0f), cg_host_get(h, h->f32, lv, ""), "inv_l");
  LLVMValueRef orow = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, cg_host_i64(h, (long long)H * HD), ""),
                                   LLVMBuildMul(h->b, hd, cg_host_i64(h, HD), ""), "orow");
  LLVMValueRef d3 = cg_host_loop_begin(h, &ld3, cg_host_i64(h, 0), cg_host_i64(h, HD), "d");
  LLVMValueRef zi3[2] = {cg_host_i64(h, 0), d3};
  LLVMValueRef o = LLVMBuildLoad2(h->b, h->f32, LLVMBuildInBoundsGEP2(h->b, acc_t, acc, zi3, 2, ""), "");
  cg_host_store_h(h, LLVMBuildFMul(h->b, o, inv, ""), out, LLVMBuildAdd(h->b, orow, d3, ""));
  cg_host_loop_end(h, &ld3);
  cg_host_loop_end(h, &li);
}

/* ==== swiglu: y (T, D) = silu(gu[:, :D]) * gu[:, D:2D] ==== */

static void emit_swiglu(CgHostFn *h, const CgOp *s) {
  LLVMValueRef y = cg_host_arg_ptr(h, 0, "y"), gu = cg_host_arg_ptr(h, 1, "gu"), ld = cg_host_arg_int(h, 2, "ld");
  CgHostLoop lt, li;
  LLVMValueRef t = cg_host_loop_begin(h, &lt, h->begin, h->end, "t");
  LLVMValueRef row = LLVMBuildMul(h->b, t, ld, "row");
  LLVMValueRef i = cg_host_loop_begin(h, &li, cg_host_i64(h, 0), cg_host_i64(h, s->dim), "i");
  LLVMValueRef gi = LLVMBuildAdd(h->b, row, i, "");
  LLVMValueRef g = cg_host_load_h(h, gu, gi), u = cg_host_load_h(h, gu, LLVMBuildAdd(h->b, gi, cg_host_i64(h, s->dim), ""));
  cg_host_store_h(h, LLVMBuildFMul(h->b, cg_host_silu(h, g), u, ""), y,
                  LLVMBuildAdd(h->b, LLVMBuildMul(h->b, t, cg_host_i64(h, s->dim), ""), i, ""));
  cg_host_loop_end(h, &li);
  cg_host_loop_end(h, &lt);
}

/* ==== add: y = a + b over n elements, items of ADD_CHUNK; y may alias a or b ==== */

static void emit_add(CgHostFn *h, const CgOp *s) {
  (void)s;
  LLVMValueRef y = cg_host_arg_ptr(h, 0, "y"), a = cg_host_arg_ptr(h, 1, "a"), b = cg_host_arg_ptr(h, 2, "b");
  LLVMValueRef n = cg_host_arg_int(h, 3, "n");
  LLVMValueRef i0 = LLVMBuildMul(h->b, h->begin, cg_host_i64(h, ADD_CHUNK), "");
  LLVMValueRef i1 = cg_host_min64(h, LLVMBuildMul(h->b, h->end, cg_host_i64(h, ADD_CHUNK), ""), n);
  CgHostLoop l;
  LLVMValueRef i = cg_host_loop_begin(h, &l, i0, i1, "i");
  cg_host_store_h(h, LLVMBuildFAdd(h->b, cg_host_load_h(h, a, i), cg_host_load_h(h, b, i), ""), y, i);
  cg_host_loop_end(h, &l);
}

/* ==== nll: nll[t] = logsumexp(logits[t, :V]) - logits[t, targets[t]]; NaN for a bad target ==== */

static void emit_nll(CgHostFn *h, const CgOp *s) {
  LLVMValueRef nll = cg_host_arg_ptr(h, 0, "nll"), lg = cg_host_arg_ptr(h, 1, "logits");
  LLVMValueRef tg = cg_host_arg_ptr(h, 2, "targets"), ld = cg_host_arg_int(h, 3, "ld");
  LLVMValueRef mv = cg_host_var(h, h->f32, NULL, "m"), sv = cg_host_var(h, h->f32, NULL, "sum");
  CgHostLoop lt, l1, l2;
  LLVMValueRef t = cg_host_loop_begin(h, &lt, h->begin, h->end, "t");
  LLVMValueRef row = cg_host_gep(h, h->f32, lg, LLVMBuildMul(h->b, t, ld, ""));
  cg_host_set(h, mv, cg_host_f32(h, -3.402823466e38f));
  cg_host_set(h, sv, cg_host_f32(h, 0.0f));
  LLVMValueRef i = cg_host_loop_begin(h, &l1, cg_host_i64(h, 0), cg_host_i64(h, s->vocab), "i");
  LLVMValueRef mm[2] = {cg_host_get(h, h->f32, mv, ""), LLVMBuildLoad2(h->b, h->f32, cg_host_gep(h, h->f32, row, i), "")};
  cg_host_set(h, mv, cg_host_intrinsic(h, "llvm.maxnum", mm, 2));
  cg_host_loop_end(h, &l1);
  LLVMValueRef m = cg_host_get(h, h->f32, mv, "max");
  LLVMValueRef i2 = cg_host_loop_begin(h, &l2, cg_host_i64(h, 0), cg_host_i64(h, s->vocab), "i");
  LLVMValueRef e = LLVMBuildFSub(h->b, LLVMBuildLoad2(h->b, h->f32, cg_host_gep(h, h->f32, row, i2), ""), m, "");
  cg_host_set(h, sv, LLVMBuildFAdd(h->b, cg_host_get(h, h->f32, sv, ""), cg_host_intrinsic(h, "llvm.exp", &e, 1), ""));
  cg_host_loop_end(h, &l2);
  LLVMValueRef id = LLVMBuildSExt(h->b, LLVMBuildLoad2(h->b, h->i32, cg_host_gep(h, h->i32, tg, t), ""), h->i64, "target");
  LLVMValueRef ok = LLVMBuildAnd(h->b, LLVMBuildICmp(h->b, LLVMIntSGE, id, cg_host_i64(h, 0), ""),
                                 LLVMBuildICmp(h->b, LLVMIntSLT, id, cg_host_i64(h, s->vocab), ""), "ok");
  LLVMValueRef safe = LLVMBuildSelect(h->b, ok, id, cg_host_i64(h, 0), "");
  LLVMValueRef sum = cg_host_get(h, h->f32, sv, "");
  LLVMValueRef v = LLVMBuildFSub(h->b, LLVMBuildFAdd(h->b, cg_host_intrinsic(h, "llvm.log", &sum, 1), m, ""),
                                 LLVMBuildLoad2(h->b, h->f32, cg_host_gep(h, h->f32, row, safe), ""), "");
  v = LLVMBuildSelect(h->b, ok, v, LLVMConstReal(h->f32, NAN), "");
  LLVMBuildStore(h->b, v, cg_host_gep(h, h->f32, nll, t));
  cg_host_loop_end(h, &lt);
}

/* ==== entry points ==== */

static const char *op_what(CgKind k) {
  switch (k) {
  case CG_EMBED: return "y (T, D) = table[tokens[t]] (a zero row for an id outside the vocabulary); work item: a row t.";
  case CG_RMSNORM: return "y = x * rsqrt(mean(x^2) + eps) * w per row of D (fp32 math); work item: a row t.";
  case CG_ROPE_KV: return "rotate-half RoPE of q in place and k into the k cache at pos0 + t, v copied; work item: a row t.";
  case CG_ATTENTION: return "causal GQA attention over the caches, online softmax, scale 1/sqrt(HD); work item: (t, head), t * H + head.";
  case CG_SWIGLU: return "y (T, D) = silu(gu[:, :D]) * gu[:, D:2D]; work item: a row t.";
  case CG_ADD: return "y = a + b over n elements; work item: 4096 elements.";
  case CG_NLL: return "nll[t] = logsumexp(logits[t]) - logits[t, targets[t]], NaN for a bad target; work item: a row t.";
  default: return "";
  }
}

int cg_host_emit_op(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  int rc = op_check(s, err);
  if (rc) return rc;
  char readable[96];
  switch (s->kind) {
  case CG_EMBED: snprintf(readable, sizeof readable, "embed_v%d_d%d", s->vocab, s->dim); break;
  case CG_ROPE_KV:
  case CG_ATTENTION:
    snprintf(readable, sizeof readable, "%s_h%d_kv%d_hd%d_c%d", cg_kind_name(s->kind), s->heads, s->kv_heads,
             s->head_dim, s->max_ctx);
    break;
  case CG_NLL: snprintf(readable, sizeof readable, "nll_v%d", s->vocab); break;
  default: snprintf(readable, sizeof readable, "%s_d%d", cg_kind_name(s->kind), s->dim); break;
  }
  cg_host_entry(k, readable, entry);
  CgHostFn h;
  cg_host_begin(&h, entry);
  switch (s->kind) {
  case CG_EMBED: emit_embed(&h, s); break;
  case CG_RMSNORM: emit_rmsnorm(&h, s); break;
  case CG_ROPE_KV: emit_rope_kv(&h, s); break;
  case CG_ATTENTION: emit_attention(&h, s); break;
  case CG_SWIGLU: emit_swiglu(&h, s); break;
  case CG_ADD: emit_add(&h, s); break;
  default: emit_nll(&h, s); break;
  }
  return cg_host_finish(&h, k, "codegen/host/ops.c", op_what(s->kind), src, err);
}

/* Work items as a function of the extent n: T rows (T * H for attention), or
 * n / 4096 chunks of add. */
int cg_host_geometry_op(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  int rc = op_check(&k->op, err);
  if (rc) return rc;
  memset(g, 0, sizeof *g);
  g->grid[0] = k->op.kind == CG_ATTENTION ? (unsigned)k->op.heads : 1;
  g->grid[1] = g->grid[2] = 1;
  g->block[0] = g->block[1] = g->block[2] = 1;
  g->grow_axis = 0;
  g->n_per_block = k->op.kind == CG_ADD ? ADD_CHUNK : 1;
  return RB_OK;
}
