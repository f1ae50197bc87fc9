/* kinds.c: the kernel-kind table's names, a kernel's stable description, and
 * the launch a geometry gives for a run-time extent. Target-neutral. */
#include <math.h>
#include <string.h>

#include "codegen/codegen.h"

static const char *const kind_names[] = {
#define X(e, s) s,
    CG_KINDS(X)
#undef X
};

const char *cg_kind_name(CgKind k) { return (unsigned)k < CG_NKIND ? kind_names[k] : "?"; }

const char *cg_strategy_name(CgStrategy s) {
  switch (s) {
  case CG_STRAT_XOR: return "xor";
  case CG_STRAT_MMA: return "mma";
  case CG_STRAT_DEQUANT: return "dequant";
  case CG_STRAT_LOP3: return "lop3";
  case CG_STRAT_BMMA: return "bmma";
  case CG_STRAT_XSMEM: return "xsmem";
  default: return "none";
  }
}

const char *cg_epilogue_name(CgEpilogue e) {
  switch (e) {
  case CG_EPI_ADD: return "add";
  case CG_EPI_SWIGLU: return "swiglu";
  default: return "none";
  }
}

const char *cg_schedule_source_name(CgScheduleSource s) {
  switch (s) {
  case CG_FROM_SHIPPED: return "shipped";
  case CG_FROM_TUNED: return "tuned";
  default: return "default";
  }
}

/* What an op's fields must hold on every target; a target adds its own limits. */
int cg_op_check(const CgOp *s, RbBuf *err) {
  const char *kn = cg_kind_name(s->kind);
  switch (s->kind) {
  case CG_EMBED:
    if (s->vocab <= 0 || s->dim <= 0) goto dims;
    return RB_OK;
  case CG_RMSNORM:
    if (s->dim <= 0) goto dims;
    if (!(s->eps >= 0.0f) || isinf(s->eps)) {
      rb_buf_printf(err, "rmsnorm: eps must be finite and >= 0 (got %g)", (double)s->eps);
      return RB_EUSER;
    }
    return RB_OK;
  case CG_ROPE_KV:
  case CG_ATTENTION:
    if (s->heads <= 0 || s->kv_heads <= 0 || s->head_dim <= 0 || s->max_ctx <= 0) goto dims;
    if (s->heads % s->kv_heads) {
      rb_buf_printf(err, "%s: heads (%d) must be a multiple of kv_heads (%d)", kn, s->heads,
                    s->kv_heads);
      return RB_EUSER;
    }
    if (s->kind == CG_ROPE_KV) {
      if (s->head_dim % 2) {
        rb_buf_printf(err, "rope_kv: head_dim (%d) must be even for rotate-half RoPE", s->head_dim);
        return RB_EUSER;
      }
      if (!(s->rope_theta > 1.0f) || isinf(s->rope_theta)) {
        rb_buf_printf(err, "rope_kv: rope_theta must be finite and > 1 (got %g)",
                      (double)s->rope_theta);
        return RB_EUSER;
      }
    }
    return RB_OK;
  case CG_SWIGLU:
  case CG_ADD:
    if (s->dim <= 0) goto dims;
    return RB_OK;
  case CG_NLL:
    if (s->vocab <= 0) goto dims;
    return RB_OK;
  default:
    rb_buf_printf(err, "ops: kernel kind %s is not an op", kn);
    return RB_EUSER;
  }
dims:
  rb_buf_printf(err, "%s: dimensions must be positive (dim %d, vocab %d, heads %d, kv_heads %d, "
                "head_dim %d, max_ctx %d)",
                kn, s->dim, s->vocab, s->heads, s->kv_heads, s->head_dim, s->max_ctx);
  return RB_EUSER;
}

int cg_kernel_equal(const CgKernel *a, const CgKernel *b) {
  /* Kernels are built zeroed and filled field by field, so bytewise equality is
   * equality of every field, floats included. */
  return memcmp(a, b, sizeof *a) == 0;
}

void cg_kernel_describe(const CgKernel *k, RbBuf *out) {
  const CgOp *s = &k->op;
  if ((s->kind == CG_LINEAR || s->kind == CG_PLANES) && s->eps > 0) rb_buf_puts(out, "rmsnorm+");
  rb_buf_printf(out, "%s", cg_kind_name(s->kind));
  switch (s->kind) {
  case CG_LINEAR:
  case CG_REPACK: /* a repack depends only on the layout: no batch, tile or epilogue */
    if (s->kind == CG_LINEAR)
      rb_buf_printf(out, "%s%s %s", s->epilogue ? "+" : "", s->epilogue ? cg_epilogue_name(s->epilogue) : "",
                    cg_strategy_name(k->sched.strategy));
    rb_buf_puts(out, " N=");
    for (int i = 0; i < s->nseg; i++) rb_buf_printf(out, "%s%d", i ? "+" : "", s->N[i]);
    rb_buf_printf(out, " K=%d k=%d", s->K, s->paths);
    if (s->kind == CG_LINEAR && s->eps > 0) rb_buf_printf(out, " eps=%g", s->eps);
    if (s->kind == CG_LINEAR)
      rb_buf_printf(out, " b<=%d tile=%d,%d,%d,%d", k->sched.batch_max, k->sched.tile[0], k->sched.tile[1],
                    k->sched.tile[2], k->sched.tile[3]);
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
  case CG_NLL: rb_buf_printf(out, " V=%d", s->vocab); break;
  case CG_PLANES:
    rb_buf_printf(out, " K=%d k=%d segments=%d", s->K, s->paths, s->nseg);
    if (s->eps > 0) rb_buf_printf(out, " eps=%g", s->eps);
    break;
  /* training kinds: the op fields each reads (codegen.h) */
  case CG_EMBED_FWD:
  case CG_EMBED_GRAD: rb_buf_printf(out, " V=%d D=%d", s->vocab, s->dim); break;
  case CG_RMSNORM_FWD:
  case CG_RMSNORM_GRAD: rb_buf_printf(out, " D=%d eps=%g", s->dim, s->eps); break;
  case CG_HEADS_SPLIT:
  case CG_HEADS_MERGE: rb_buf_printf(out, " H=%d HD=%d theta=%g", s->heads, s->head_dim, s->rope_theta); break;
  case CG_SOFTMAX_FWD:
  case CG_SOFTMAX_GRAD: rb_buf_printf(out, " HD=%d", s->head_dim); break;
  case CG_KL_LOSS:
  case CG_CE_LOSS: rb_buf_printf(out, " V=%d", s->vocab); break;
  case CG_MSE_ROWS: rb_buf_printf(out, " D=%d", s->dim); break;
  case CG_DERIVE:
  case CG_DERIVE_STANDARD:
  case CG_DERIVE_GRAD_G:
  case CG_DERIVE_GRAD_H: rb_buf_printf(out, " N=%d K=%d k=%d", s->N[0], s->K, s->paths); break;
  default: break;
  }
}

CgLaunch cg_geometry_launch(const CgGeometry *g, int n) {
  CgLaunch l;
  memset(&l, 0, sizeof l);
  if (n < 1 || !g->block[0]) return l;
  memcpy(l.grid, g->grid, sizeof l.grid);
  memcpy(l.block, g->block, sizeof l.block);
  l.smem = g->smem;
  if (g->grow_axis >= 0 && g->grow_axis < 3 && g->n_per_block)
    l.grid[g->grow_axis] *= ((unsigned)n + g->n_per_block - 1) / g->n_per_block;
  if (g->n_small && (unsigned)n <= g->n_small) {
    l.block[0] = g->block_x_small;
    if (g->grid_x_small) l.grid[0] = g->grid_x_small;
  }
  return l;
}
