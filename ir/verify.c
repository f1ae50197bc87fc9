/* verify.c: the checker run between passes (QBE's ssacheck in spirit).
 * Everything a pass or codegen relies on is asserted here, with the error at
 * the op's source location, so a broken pass cannot reach codegen. The
 * training graph (grad.c) is checked the same way, by its rows. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ir/ir.h"

static int weights_expected(const IrNode *n) {
  switch (ir_ops[n->op].weights) {
  case IR_W_NONE: return 0;
  case IR_W_ONE: return 1;
  case IR_W_TWO: return 2;
  case IR_W_PER_OUT: return (n->attr_set & IR_BIT(IR_A_TIED)) ? 0 : n->nint;
  }
  return 0;
}

/* The IR's own limits (ir.h, IR_DIM_MAX): every known dim of the node's
 * inputs is positive and at most IR_DIM_MAX, their product at most
 * IR_ELEMS_MAX; size arguments and integer attributes at most IR_DIM_MAX
 * (their signs are the shape rules'); float attributes finite and nonzero
 * as f32 where they are nonzero. ir_node_infer runs it before the shape rule,
 * which multiplies: lowering and the grad pass infer before the verifier runs. */
int ir_node_check_limits(const IrGraph *g, const IrNode *n, IrDiag *d) {
  const char *op = ir_ops[n->op].name;
  int line = n->line, col = n->col;
  for (int i = 0; i < n->nin; i++) {
    const IrValue *v = &g->values[n->in[i]];
    int64_t elems = 1;
    for (int j = 0; j < v->type.rank; j++) {
      int64_t x = v->type.dim[j].n;
      if (v->type.dim[j].sym) continue;
      if (x < 1 || x > IR_DIM_MAX) {
        ir_diag_error(d, line, col, "'%s' input '%s' has dimension %lld, outside 1..%lld", op,
                      v->name ? v->name : "?", (long long)x, IR_DIM_MAX);
        return 0;
      }
      if (elems > IR_ELEMS_MAX / x) {
        ir_diag_error(d, line, col, "'%s' input '%s' has more than %lld elements per token", op,
                      v->name ? v->name : "?", IR_ELEMS_MAX);
        return 0;
      }
      elems *= x;
    }
  }
  for (int i = 0; i < n->nint; i++)
    if (n->ints[i] > IR_DIM_MAX) {
      ir_diag_error(d, line, col, "'%s' size argument %d is %lld, above the limit %lld", op, i + 1,
                    (long long)n->ints[i], IR_DIM_MAX);
      return 0;
    }
  for (int a = 0; a < IR_NATTR; a++) {
    if (!(n->attr_set & IR_BIT(a))) continue;
    if (ir_attr_kinds[a] == IR_AK_INT && n->attr[a].i > IR_DIM_MAX) {
      ir_diag_error(d, line, col, "'%s' %s = %lld is above the limit %lld", op, ir_attr_names[a],
                    (long long)n->attr[a].i, IR_DIM_MAX);
      return 0;
    }
    if (ir_attr_kinds[a] != IR_AK_FLOAT) continue;
    double f = n->attr[a].f;
    if (!isfinite(f)) {
      ir_diag_error(d, line, col, "'%s' %s must be a finite number, got %g", op, ir_attr_names[a], f);
      return 0;
    }
    if (isinf((float)f)) {
      ir_diag_error(d, line, col, "'%s' %s = %g overflows f32 (the largest f32 is %.9g)", op,
                    ir_attr_names[a], f, (double)FLT_MAX);
      return 0;
    }
    if (f != 0 && (float)f == 0.0f) {
      ir_diag_error(d, line, col, "'%s' %s = %g rounds to 0 in f32 (the smallest f32 is %.9g)", op,
                    ir_attr_names[a], f, (double)FLT_TRUE_MIN);
      return 0;
    }
  }
  return 1;
}

/* Weight names seen so far (name -> node), and the embeddings a tied linear
 * may name: hash maps, so verification stays linear in the graph's size. */
typedef struct {
  RbMap bound, embeds;
  int oom;
} Seen;

static int verify_node(IrGraph *g, int idx, IrDiag *d, Seen *seen) {
  IrNode *n = &g->nodes[idx];
  if ((unsigned)n->op >= IR_NOP) {
    ir_diag_error(d, n->line, n->col, "node %d has an invalid op", idx);
    return 0;
  }
  const IrOpInfo *op = &ir_ops[n->op];
  int line = n->line, col = n->col, ok = 1;
  if (n->nint < op->nint_min || n->nint > op->nint_max) {
    ir_diag_error(d, line, col, "'%s' takes %d to %d size arguments, got %d", op->name,
                  op->nint_min, op->nint_max, n->nint);
    return 0;
  }
  int ntensor = ir_op_ntensor(op, n->nint);
  if (n->nin != ntensor || n->nin > IR_MAX_IN) {
    ir_diag_error(d, line, col, "'%s' takes %d tensor input%s, got %d", op->name, ntensor,
                  ntensor == 1 ? "" : "s", n->nin);
    return 0;
  }
  for (int i = 0; i < n->nin; i++) {
    int v = n->in[i];
    if (v < 0 || v >= g->nvalues) {
      ir_diag_error(d, line, col, "'%s' input %d is not a value", op->name, i + 1);
      return 0;
    }
    int def = g->values[v].def;
    if (def >= idx || (def >= 0 && g->nodes[def].dead)) {
      ir_diag_error(d, line, col, "'%s' uses '%s' before it is defined", op->name,
                    g->values[v].name ? g->values[v].name : "?");
      return 0;
    }
  }
  uint32_t unknown = n->attr_set & ~op->attrs_allowed;
  for (int a = 0; a < IR_NATTR; a++) {
    if (unknown & IR_BIT(a)) {
      ir_diag_error(d, line, col, "'%s' has no attribute '%s'", op->name, ir_attr_names[a]);
      ok = 0;
    }
    if ((op->attrs_required & IR_BIT(a)) && !(n->attr_set & IR_BIT(a))) {
      ir_diag_error(d, line, col, "'%s' needs attribute '%s'", op->name, ir_attr_names[a]);
      ok = 0;
    }
  }
  if (op->quantizable) {
    int p = ir_node_paths(n);
    if (p < 0 || p > 4) {
      ir_diag_error(d, line, col, "quant paths must be 1..4 (or none), got %d", p);
      ok = 0;
    }
  }
  if (n->attr_set & IR_BIT(IR_A_TIED)) {
    if (ir_node_paths(n) != 0 || n->nint != 1) {
      ir_diag_error(d, line, col, "a tied linear must have one output and quant = none");
      ok = 0;
    } else if (!rb_map_get(&seen->embeds, n->attr[IR_A_TIED].s, NULL)) {
      ir_diag_error(d, line, col, "tied weight '%s' is not bound by any 'embed'",
                    n->attr[IR_A_TIED].s);
      ok = 0;
    }
  }
  int want = weights_expected(n);
  if (n->nweights != want) {
    ir_diag_error(d, line, col, "'%s' binds %d weight name%s, expected %d", op->name, n->nweights,
                  n->nweights == 1 ? "" : "s", want);
    ok = 0;
  }
  for (int j = 0; j < n->nweights; j++) {
    int prev = -1;
    rb_map_get(&seen->bound, n->weights[j], &prev);
    if (op->shares_weights) {
      /* A backward op names its forward's weights: they must be bound already. */
      if (prev < 0) {
        ir_diag_error(d, line, col, "'%s' names weight '%s', which no earlier op binds", op->name,
                      n->weights[j]);
        ok = 0;
      }
      continue;
    }
    if (!n->weights[j][0]) {
      ir_diag_error(d, line, col, "'%s' has an empty weight name", op->name);
      ok = 0;
    } else if (prev >= 0) {
      ir_diag_error(d, line, col, "weight '%s' is already bound at line %d", n->weights[j],
                    g->nodes[prev].line);
      ok = 0;
    }
    for (int k = 0; k < j; k++)
      if (strcmp(n->weights[k], n->weights[j]) == 0) {
        ir_diag_error(d, line, col, "weight '%s' is bound twice by one op", n->weights[j]);
        ok = 0;
      }
  }
  for (int j = 0; j < n->nweights && !op->shares_weights; j++)
    if (!rb_map_get(&seen->bound, n->weights[j], NULL) && rb_map_put(&seen->bound, n->weights[j], idx))
      seen->oom = 1;
  return ok && ir_node_infer(g, idx, d) == RB_OK;
}

int ir_graph_verify(IrGraph *g, IrDiag *d) {
  int before = d->nerrors;
  Seen seen = {{0}, {0}, 0};
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (!n->dead && n->op == IR_EMBED && n->nweights == 1 && rb_map_put(&seen.embeds, n->weights[0], i))
      seen.oom = 1;
  }
  for (int i = 0; i < g->nnodes && !seen.oom; i++)
    if (!g->nodes[i].dead) verify_node(g, i, d, &seen);
  rb_map_free(&seen.bound);
  rb_map_free(&seen.embeds);
  if (seen.oom) return RB_EINTERNAL;
  if (d->nerrors != before) return RB_EUSER;
  if (g->ret < 0 || g->ret >= g->nvalues) {
    ir_diag_error(d, g->ret_line, g->ret_col, "graph '%s' has no return value", g->name);
    return RB_EUSER;
  }
  const IrValue *r = &g->values[g->ret];
  if (r->def >= 0 && g->nodes[r->def].dead) {
    ir_diag_error(d, g->ret_line, g->ret_col, "the return value was removed by a pass");
    return RB_EUSER;
  }
  /* The declared return dtype may widen f16 to f32 (the runtime converts); the shape must match. */
  IrType got = r->type, want = g->ret_type;
  if ((got.dtype == IR_I32) != (want.dtype == IR_I32)) goto bad_return;
  got.dtype = want.dtype;
  if (!ir_type_equal(&got, &want)) goto bad_return;
  return RB_OK;
bad_return:;
  RbBuf a = {0}, b = {0};
  ir_type_print(&a, &r->type);
  ir_type_print(&b, &g->ret_type);
  ir_diag_error(d, g->ret_line, g->ret_col, "graph '%s' returns %s, but its signature says %s",
                g->name, a.data ? a.data : "?", b.data ? b.data : "?");
  rb_buf_free(&a);
  rb_buf_free(&b);
  return RB_EUSER;
}
