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

/* A type's dims after its opening bracket ("T, 64]"), to write "[L, T, 64]". */
static const char *dims_str(const IrType *t) { return strchr(type_str(t), '[') + 1; }

static IrType matrix(IrDim rows, int64_t cols) {
  IrType t = {IR_F16, 2, {rows, {NULL, cols}}};
  return t;
}

/* A gradient: f32, whatever the forward value's storage type (TRAINING.md). */
static IrType grad_of(const IrType *t) {
  IrType r = *t;
  r.dtype = IR_F32;
  return r;
}

static const IrType scalar_f32 = {IR_F32, 1, {{NULL, 1}}};

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

/* The K attribute, where given, states the width of the weight's input x
 * (tensor input xi). */
static int check_k_at(const IrGraph *g, const IrNode *n, int xi, IrDiag *d) {
  int64_t width = in_type(g, n, xi)->dim[1].n;
  if ((n->attr_set & IR_BIT(IR_A_K)) && n->attr[IR_A_K].i != width) {
    if (n->nint > 1)
      ir_diag_error(d, n->line, n->col,
                    "fused '%s' segments have K = %lld, but their shared input '%s' has width %lld",
                    ir_ops[n->op].name, (long long)n->attr[IR_A_K].i, in_name(g, n, xi),
                    (long long)width);
    else
      ir_diag_error(d, n->line, n->col, "'%s' input width %lld does not match weight K %lld",
                    ir_ops[n->op].name, (long long)width, (long long)n->attr[IR_A_K].i);
    return 0;
  }
  return 1;
}

static int check_k(const IrGraph *g, const IrNode *n, IrDiag *d) { return check_k_at(g, n, 0, d); }

/* Inputs a and b have the same shape (ranks and dims). */
static int same_shape(const IrType *a, const IrType *b) {
  if (a->rank != b->rank) return 0;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_equal(a->dim[i], b->dim[i])) return 0;
  return 1;
}

/* Every input from index `from` on has input `from`'s shape. */
static int same_shapes(const IrGraph *g, const IrNode *n, int from, IrDiag *d) {
  for (int i = from + 1; i < n->nin; i++)
    if (!same_shape(in_type(g, n, from), in_type(g, n, i))) {
      ir_diag_error(d, n->line, n->col, "shape mismatch: '%s' inputs '%s' %s and '%s' %s",
                    ir_ops[n->op].name, in_name(g, n, from), type_str(in_type(g, n, from)),
                    in_name(g, n, i), type_str(in_type(g, n, i)));
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

/* The attention checks on q, k, v at tensor inputs at..at+2; sets *width to
 * heads * head_dim. */
static int check_attention(const IrGraph *g, const IrNode *n, int at, int64_t *width, IrDiag *d) {
  for (int i = 0; i < 3; i++)
    if (!want_matrix(g, n, at + i, d)) return 0;
  int64_t h = n->attr[IR_A_HEADS].i, hkv = n->attr[IR_A_KV_HEADS].i, hd = n->attr[IR_A_HEAD_DIM].i;
  const char *op = ir_ops[n->op].name;
  if (h <= 0 || hkv <= 0 || hd <= 0) {
    ir_diag_error(d, n->line, n->col, "'%s' heads, kv_heads and head_dim must be positive", op);
    return 0;
  }
  if (h % hkv) {
    ir_diag_error(d, n->line, n->col, "'%s' heads %lld is not a multiple of kv_heads %lld", op,
                  (long long)h, (long long)hkv);
    return 0;
  }
  if (hd % 2) {
    ir_diag_error(d, n->line, n->col, "'%s' head_dim %lld must be even for RoPE", op, (long long)hd);
    return 0;
  }
  if (!(n->attr[IR_A_ROPE_THETA].f > 0)) {
    ir_diag_error(d, n->line, n->col, "'%s' rope_theta must be positive", op);
    return 0;
  }
  const int64_t want[3] = {h * hd, hkv * hd, hkv * hd};
  static const char *const role[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; i++) {
    const IrType *t = in_type(g, n, at + i);
    if (t->dim[1].n != want[i]) {
      ir_diag_error(d, n->line, n->col, "'%s' %s input '%s' has width %lld, expected %s = %lld", op,
                    role[i], in_name(g, n, at + i), (long long)t->dim[1].n,
                    i ? "kv_heads * head_dim" : "heads * head_dim", (long long)want[i]);
      return 0;
    }
    if (!ir_dim_equal(t->dim[0], in_type(g, n, at)->dim[0])) {
      ir_diag_error(d, n->line, n->col, "'%s' inputs disagree on the token count: %s vs %s", op,
                    type_str(in_type(g, n, at)), type_str(t));
      return 0;
    }
  }
  *width = h * hd;
  return 1;
}

int ir_shape_attention(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  int64_t width;
  if (!check_attention(g, n, 0, &width, d)) return -1;
  out[0] = matrix(in_type(g, n, 0)->dim[0], width);
  return 1;
}

int ir_shape_same2(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  const IrType *a = in_type(g, n, 0), *b = in_type(g, n, 1);
  if (!is_float(a) || !is_float(b) || a->rank != b->rank) goto mismatch;
  for (int i = 0; i < a->rank; i++)
    if (!ir_dim_equal(a->dim[i], b->dim[i])) goto mismatch;
  out[0] = *a;
  /* Activations are f16; the sum of two gradients (f32) stays a gradient. */
  out[0].dtype = a->dtype == IR_F32 && b->dtype == IR_F32 ? IR_F32 : IR_F16;
  return 1;
mismatch:
  ir_diag_error(d, n->line, n->col, "shape mismatch: '%s' operands '%s' %s and '%s' %s",
                ir_ops[n->op].name, in_name(g, n, 0), type_str(a), in_name(g, n, 1), type_str(b));
  return -1;
}

/* ---- the training ops (grad.c appends them) ---- */

int ir_shape_kl_loss(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d) || !want_matrix(g, n, 1, d) || !same_shapes(g, n, 0, d)) return -1;
  out[0] = scalar_f32;
  out[1] = grad_of(in_type(g, n, 0));
  return 2;
}

int ir_shape_hidden_mse(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d)) return -1;
  const IrType *x = in_type(g, n, 0), *th = in_type(g, n, 1);
  if (!is_float(th) || th->rank != 3 || th->dim[0].sym || !ir_dim_equal(th->dim[1], x->dim[0]) ||
      !ir_dim_equal(th->dim[2], x->dim[1])) {
    ir_diag_error(d, n->line, n->col,
                  "'hidden_mse' teacher states '%s' must be [L, %s for x '%s' %s, got %s",
                  in_name(g, n, 1), dims_str(x), in_name(g, n, 0), type_str(x), type_str(th));
    return -1;
  }
  if (n->ints[0] < 0 || n->ints[0] >= th->dim[0].n) {
    ir_diag_error(d, n->line, n->col, "'hidden_mse' layer %lld is outside 0..%lld",
                  (long long)n->ints[0], (long long)th->dim[0].n - 1);
    return -1;
  }
  if (!(n->attr[IR_A_SCALE].f > 0)) {
    ir_diag_error(d, n->line, n->col, "'hidden_mse' scale must be positive, got %g",
                  n->attr[IR_A_SCALE].f);
    return -1;
  }
  out[0] = scalar_f32;
  out[1] = grad_of(x);
  return 2;
}

/* linear_grad(dy_1..dy_m, x, N_1..N_m): the backward of y_1..y_m = linear(x, N_1..N_m). */
int ir_shape_linear_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  int m = n->nint;
  if (!want_matrix(g, n, m, d) || !positive_ints(n, d) || !check_k_at(g, n, m, d)) return -1;
  const IrType *x = in_type(g, n, m);
  for (int i = 0; i < m; i++) {
    const IrType *dy = in_type(g, n, i);
    if (!want_matrix(g, n, i, d)) return -1;
    if (!ir_dim_equal(dy->dim[0], x->dim[0]) || dy->dim[1].n != n->ints[i]) {
      IrType want = matrix(x->dim[0], n->ints[i]);
      ir_diag_error(d, n->line, n->col, "'linear_grad' gradient %d '%s' is %s, expected [%s",
                    i + 1, in_name(g, n, i), type_str(dy), dims_str(&want));
      return -1;
    }
  }
  out[0] = grad_of(x);
  return 1;
}

int ir_shape_rmsnorm_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  if (!want_matrix(g, n, 0, d) || !want_matrix(g, n, 1, d) || !same_shapes(g, n, 0, d)) return -1;
  if (!(n->attr[IR_A_EPS].f > 0)) {
    ir_diag_error(d, n->line, n->col, "'rmsnorm_grad' eps must be positive, got %g", n->attr[IR_A_EPS].f);
    return -1;
  }
  out[0] = grad_of(in_type(g, n, 1));
  return 1;
}

int ir_shape_attention_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  int64_t width;
  if (!want_matrix(g, n, 0, d) || !check_attention(g, n, 1, &width, d)) return -1;
  const IrType *dout = in_type(g, n, 0), *q = in_type(g, n, 1);
  if (!ir_dim_equal(dout->dim[0], q->dim[0]) || dout->dim[1].n != width) {
    ir_diag_error(d, n->line, n->col, "'attention_grad' output gradient '%s' is %s, expected [%s",
                  in_name(g, n, 0), type_str(dout), dims_str(q));
    return -1;
  }
  for (int i = 0; i < 3; i++) out[i] = grad_of(in_type(g, n, 1 + i));
  return 3;
}

int ir_shape_swiglu_grad(const IrGraph *g, const IrNode *n, IrType *out, IrDiag *d) {
  for (int i = 0; i < 3; i++)
    if (!is_float(in_type(g, n, i))) {
      ir_diag_error(d, n->line, n->col, "'swiglu_grad' input '%s' must be a float tensor, got %s",
                    in_name(g, n, i), type_str(in_type(g, n, i)));
      return -1;
    }
  if (!same_shapes(g, n, 0, d)) return -1;
  out[0] = grad_of(in_type(g, n, 1));
  out[1] = grad_of(in_type(g, n, 2));
  return 2;
}

int ir_node_infer(IrGraph *g, int node, IrDiag *d) {
  IrNode *n = &g->nodes[node];
  IrType out[IR_MAX_OUT];
  if (!ir_node_check_limits(g, n, d)) return RB_EUSER;
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
