/* shape.c: one shape rule per op (named in the op table) and inference.
 * Rules see the input types and the node's integer args and attributes, and
 * report errors at the node's source location. */
#include <string.h>

#include "ir/ir.h"

static const IrType *in_type(const IrGraph *g, const IrNode *n, int i) {
  return &g->values[n->in[i]].type;
}

static const char *in_name(const IrGraph *g, const IrNode *n, int i) {
  return g->values[n->in[i]].name;
}

/* Render a type into a small rotating set of static buffers for messages. */
static const char *type_str(const IrType *t) {
  static char bufs[4][96];
  static int next;
  char *s = bufs[next++ & 3];
  RbBuf b = {0};
  ir_type_print(&b, t);
  snprintf(s, 96, "%s", b.data ? b.data : "?");
  rb_buf_free(&b);
  return s;
}

static IrType matrix(IrDim rows, int64_t cols) {
  IrType t = {IR_F16, 2, {rows, {NULL, cols}}};
  return t;
}

static int is_float(const IrType *t) { return t->dtype == IR_F16 || t->dtype == IR_F32; }

/* Require input i to be a float matrix (rows, cols); cols must be known. */
static int want_matrix(const IrGraph *g, const IrNode *n, int i, IrDiag *d) {
  const IrType *t = in_type(g, n, i);
  if (!is_float(t) || t->rank != 2 || t->dim[1].sym) {
    ir_diag_error(d, n->line, n->col, "'%s' input '%s' must be a float matrix [T, width], got %s",
                  ir_ops[n->op].name, in_name(g, n, i), type_str(t));
    return 0;
  }
  return 1;
}

static int positive_ints(const IrNode *n, IrDiag *d) {
  for (int i = 0; i < n->nint; i++)
    if (n->ints[i] <= 0) {
      ir_diag_error(d, n->line, n->col, "'%s' size argument %d must be positive, got %lld",
                    ir_ops[n->op].name, i + 1, (long long)n->ints[i]);
      return 0;
    }
  return 1;
}

/* The K attribute, where given, states the weight's input width. */
static int check_k(const IrGraph *g, const IrNode *n, IrDiag *d) {
  int64_t width = in_type(g, n, 0)->dim[1].n;
  if ((n->attr_set & IR_BIT(IR_A_K)) && n->attr[IR_A_K].i != width) {
    if (n->nint > 1)
      ir_diag_error(d, n->line, n->col,
                    "fused '%s' segments have K = %lld, but their shared input '%s' has width %lld",
                    ir_ops[n->op].name, (long long)n->attr[IR_A_K].i, in_name(g, n, 0),
                    (long long)width);
    else
      ir_diag_error(d, n->line, n->col, "'%s' input width %lld does not match weight K %lld",
                    ir_ops[n->op].name, (long long)width, (long long)n->attr[IR_A_K].i);
    return 0;
  }
  return 1;
}

int ir_shape_embed(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  const IrType *t = in_type(g, n, 0);
  if (t->dtype != IR_I32 || t->rank != 1) {
    ir_diag_error(d, n->line, n->col, "'embed' takes token ids i32[T], got %s for '%s'",
                  type_str(t), in_name(g, n, 0));
    return -1;
  }
  if (!positive_ints(n, d)) return -1;
  out[0] = matrix(t->dim[0], n->ints[1]);
  return 1;
}

int ir_shape_rmsnorm(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d)) return -1;
  if ((n->attr_set & IR_BIT(IR_A_EPS)) && !(n->attr[IR_A_EPS].f > 0)) {
    ir_diag_error(d, n->line, n->col, "'rmsnorm' eps must be positive, got %g", n->attr[IR_A_EPS].f);
    return -1;
  }
  out[0] = *in_type(g, n, 0);
  out[0].dtype = IR_F16;
  return 1;
}

int ir_shape_linear(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d) || !positive_ints(n, d) || !check_k(g, n, d)) return -1;
  for (int i = 0; i < n->nint; i++) out[i] = matrix(in_type(g, n, 0)->dim[0], n->ints[i]);
  return n->nint;
}

int ir_shape_linear_add(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d) || !want_matrix(g, n, 1, d) || !positive_ints(n, d) ||
      !check_k(g, n, d))
    return -1;
  out[0] = matrix(in_type(g, n, 0)->dim[0], n->ints[0]);
  const IrType *r = in_type(g, n, 1);
  if (!ir_dim_equal(r->dim[0], out[0].dim[0]) || r->dim[1].n != n->ints[0]) {
    ir_diag_error(d, n->line, n->col, "'linear_add' residual '%s' is %s, but the product is %s",
                  in_name(g, n, 1), type_str(r), type_str(&out[0]));
    return -1;
  }
  return 1;
}

int ir_shape_linear_swiglu(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d) || !positive_ints(n, d) || !check_k(g, n, d)) return -1;
  out[0] = matrix(in_type(g, n, 0)->dim[0], n->ints[0]);
  return 1;
}

int ir_shape_attention(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  for (int i = 0; i < 3; i++)
    if (!want_matrix(g, n, i, d)) return -1;
  int64_t h = n->attr[IR_A_HEADS].i, hkv = n->attr[IR_A_KV_HEADS].i, hd = n->attr[IR_A_HEAD_DIM].i;
  if (h <= 0 || hkv <= 0 || hd <= 0) {
    ir_diag_error(d, n->line, n->col, "'attention' heads, kv_heads and head_dim must be positive");
    return -1;
  }
  if (h % hkv) {
    ir_diag_error(d, n->line, n->col, "'attention' heads %lld is not a multiple of kv_heads %lld",
                  (long long)h, (long long)hkv);
    return -1;
  }
  if (hd % 2) {
    ir_diag_error(d, n->line, n->col, "'attention' head_dim %lld must be even for RoPE",
                  (long long)hd);
    return -1;
  }
  if (!(n->attr[IR_A_ROPE_THETA].f > 0)) {
    ir_diag_error(d, n->line, n->col, "'attention' rope_theta must be positive");
    return -1;
  }
  const int64_t want[3] = {h * hd, hkv * hd, hkv * hd};
  static const char *const role[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++) {
    const IrType *t = in_type(g, n, i);
    if (t->dim[1].n != want[i]) {
      ir_diag_error(d, n->line, n->col, "'attention' %s input '%s' has width %lld, expected %s = %lld",
                    role[i], in_name(g, n, i), (long long)t->dim[1].n,
                    i ? "kv_heads * head_dim" : "heads * head_dim", (long long)want[i]);
      return -1;
    }
    if (!ir_dim_equal(t->dim[0], in_type(g, n, 0)->dim[0])) {
      ir_diag_error(d, n->line, n->col, "'attention' inputs disagree on the token count: %s vs %s",
                    type_str(in_type(g, n, 0)), type_str(t));
      return -1;
    }
  }
  out[0] = matrix(in_type(g, n, 0)->dim[0], h * hd);
  return 1;
}

int ir_shape_same2(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  const IrType *a = in_type(g, n, 0), *b = in_type(g, n, 1);
  if (!is_float(a) || !is_float(b) || a->rank != b->rank) goto mismatch;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_equal(a->dim[i], b->dim[i])) goto mismatch;
  out[0] = *a;
  out[0].dtype = IR_F16;
  return 1;
mismatch:
  ir_diag_error(d, n->line, n->col, "shape mismatch: '%s' operands '%s' %s and '%s' %s",
                ir_ops[n->op].name, in_name(g, n, 0), type_str(a), in_name(g, n, 1), type_str(b));
  return -1;
}

int ir_node_infer(IrGraph *g, int node, IrDiag *d) {
  IrNode *n = &g->nodes[node];
  IrType out[IR_MAX_OUT];
  int nout = ir_ops[n->op].shape(g, n, out, d);
  if (nout < 0) return RB_EUSER;
  if (n->nout == 0) {
    for (int i = 0; i < nout; i++) {
      int v = ir_value_add(g, &out[i], node, i, NULL);
      if (v < 0) return RB_EINTERNAL;
      n = &g->nodes[node]; /* no realloc of nodes here, but stay safe */
      n->out[n->nout++] = v;
    }
    return RB_OK;
  }
  if (n->nout != nout) {
    ir_diag_error(d, n->line, n->col, "'%s' has %d outputs, its shape rule gives %d",
                  ir_ops[n->op].name, n->nout, nout);
    return RB_EUSER;
  }
  for (int i = 0; i < nout; i++)
    if (!ir_type_equal(&g->values[n->out[i]].type, &out[i])) {
      ir_diag_error(d, n->line, n->col, "'%s' output %d is recorded as %s, but its inputs give %s",
                    ir_ops[n->op].name, i, type_str(&g->values[n->out[i]].type), type_str(&out[i]));
      return RB_EUSER;
    }
  return RB_OK;
}
