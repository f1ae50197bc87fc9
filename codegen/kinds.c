/* codegen.c: dispatch from a spec to its emitter, and the spec's stable description. */
#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"

static const char *const kind_names[] = {
#define X(e, s) s,
    CG_KINDS(X)
#undef X
};

const char *cg_kind_name(CgKind k) { return (unsigned)k < CG_NKIND ? kind_names[k] : "?"; }

int cg_emit(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err) {
  switch (s->kind) {
  case CG_LINEAR: return cg_emit_linear(s, src, entry, err);
  case CG_REPACK: return cg_emit_repack(s, src, entry, err);
  case CG_NKIND: break;
  default: return cg_emit_op(s, src, entry, err);
  }
  rb_buf_printf(err, "no emitter for kernel kind %d", (int)s->kind);
  return RB_EUSER;
}

CgLaunch cg_launch(const CgSpec *s, int n) {
  return s->kind == CG_LINEAR || s->kind == CG_REPACK ? cg_launch_linear(s, n) : cg_launch_op(s, n);
}

static const char *strategy_name(CgStrategy st) {
  switch (st) {
  case CG_STRAT_XOR: return "xor";
  case CG_STRAT_MMA: return "mma";
  default: return "-";
  }
}

static const char *epilogue_name(CgEpilogue e) {
  switch (e) {
  case CG_EPI_ADD: return "+add";
  case CG_EPI_SWIGLU: return "+swiglu";
  default: return "";
  }
}

void cg_spec_describe(const CgSpec *s, RbBuf *out) {
  rb_buf_printf(out, "%s", cg_kind_name(s->kind));
  switch (s->kind) {
  case CG_LINEAR:
  case CG_REPACK: /* a repack depends only on the layout: no batch, tile or epilogue */
    if (s->kind == CG_LINEAR) rb_buf_printf(out, "%s %s", epilogue_name(s->epilogue), strategy_name(s->strategy));
    rb_buf_puts(out, " N=");
    for (int i = 0; i < s->nseg; i++) rb_buf_printf(out, "%s%d", i ? "+" : "", s->N[i]);
    rb_buf_printf(out, " K=%d k=%d", s->K, s->paths);
    if (s->kind == CG_LINEAR)
      rb_buf_printf(out, " b<=%d tile=%d,%d,%d,%d", s->batch_max, s->tile[0], s->tile[1], s->tile[2],
                    s->tile[3]);
    break;
  case CG_EMBED: rb_buf_printf(out, " V=%d D=%d", s->vocab, s->dim); break;
  case CG_RMSNORM: rb_buf_printf(out, " D=%d eps=%g", s->dim, s->eps); break;
  case CG_ROPE_KV:
  case CG_ATTENTION:
    rb_buf_printf(out, " H=%d HKV=%d HD=%d ctx=%d theta=%g", s->heads, s->kv_heads, s->head_dim,
                  s->max_ctx, s->rope_theta);
    break;
  case CG_SWIGLU:
  case CG_ADD: rb_buf_printf(out, " D=%d", s->dim); break;
  default: break;
  }
}
