/* lower.c: the AST to an ir graph. Constants are folded, repeats unrolled,
 * weight-name templates substituted, quant defaults applied (an op's own
 * quant, else --paths, else the file's default), and every op's output types
 * inferred as it is created, so shape errors point at the op at fault.
 * Requires a tree from fe_parse: its recursion (eval, nested calls, nested
 * repeats) is bounded by the parser's FE_MAX_DEPTH. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"

typedef struct {
  int is_float;
  int64_t i;
  double f;
} Num;

typedef struct {
  const char *name;
  Num val;
  int line;
  int is_loop;
} Const;

typedef struct {
  const FeProgram *prog;
  const FeOptions *opt;
  IrDiag *d;
  IrGraph *g;
  Const *consts;
  int nconsts, capconsts;
  RbMap binds; /* value name -> value index (or POISON); names are AST strings */
  int layer;
  int default_paths;
  long work;
  int oom;
} Lower;

#define MAX_WORK 4000000L
/* A name whose defining statement failed: uses of it stay quiet, since the
 * error was reported where it was defined. */
#define POISON (-2)

/* Strings the graph keeps are copied into its arena: the AST's die with the parse. */
static const char *keep(Lower *L, const char *s) { return s ? rb_arena_strdup(&L->g->arena, s) : NULL; }

static void *grow(Lower *L, void *arr, int n, int *cap, size_t size) {
  if (n < *cap) return arr;
  int ncap = *cap ? *cap * 2 : 16;
  void *p = rb_realloc(arr, (size_t)ncap * size);
  if (!p) {
    L->oom = 1;
    return NULL;
  }
  *cap = ncap;
  return p;
}

static const Const *find_const(const Lower *L, const char *name) {
  for (int i = L->nconsts - 1; i >= 0; i--)
    if (strcmp(L->consts[i].name, name) == 0) return &L->consts[i];
  return NULL;
}

/* The value bound to name: its index, POISON, or -1 when unbound. */
static int find_value(const Lower *L, const char *name) {
  int v;
  return rb_map_get(&L->binds, name, &v) ? v : -1;
}

static int push_const(Lower *L, const char *name, Num v, int line, int is_loop) {
  Const *c = grow(L, L->consts, L->nconsts, &L->capconsts, sizeof(Const));
  if (!c) return 0;
  L->consts = c;
  L->consts[L->nconsts++] = (Const){name, v, line, is_loop};
  return 1;
}

static int bind(Lower *L, const char *name, int value) {
  if (rb_map_put(&L->binds, name, value) == RB_OK) return 1;
  L->oom = 1;
  return 0;
}

/* ---- constant expressions ---- */

static double as_double(Num n) { return n.is_float ? n.f : (double)n.i; }

/* Evaluate a constant expression. Returns 1, or 0 after reporting an error. */
static int eval(Lower *L, const FeExpr *e, Num *out) {
  IrDiag *d = L->d;
  Num a, b;
  switch (e->kind) {
  case FE_E_INT: *out = (Num){0, e->ival, 0}; return 1;
  case FE_E_FLOAT: *out = (Num){1, 0, e->fval}; return 1;
  case FE_E_STRING:
    ir_diag_error(d, e->line, e->col, "expected a number, found a string");
    return 0;
  case FE_E_CALL:
    ir_diag_error(d, e->line, e->col, "'%s(...)' is an op call, but a number is expected here", e->str);
    return 0;
  case FE_E_NAME: {
    const Const *c = find_const(L, e->str);
    if (c) {
      *out = c->val;
      return 1;
    }
    if (find_value(L, e->str) == POISON) return 0;
    if (find_value(L, e->str) >= 0)
      ir_diag_error(d, e->line, e->col, "'%s' is a tensor, but a number is expected here", e->str);
    else ir_diag_error(d, e->line, e->col, "undefined constant '%s'", e->str);
    return 0;
  }
  case FE_E_NEG:
    if (!eval(L, e->lhs, &a)) return 0;
    if (a.is_float) a.f = -a.f;
    else if (a.i == INT64_MIN) goto overflow;
    else a.i = -a.i;
    *out = a;
    return 1;
  case FE_E_BINARY:
    if (!eval(L, e->lhs, &a) || !eval(L, e->rhs, &b)) return 0;
    if (e->op == '%' && (a.is_float || b.is_float)) {
      ir_diag_error(d, e->line, e->col, "'%%' needs integer operands");
      return 0;
    }
    if ((e->op == '/' || e->op == '%') && as_double(b) == 0) {
      ir_diag_error(d, e->line, e->col, "division by zero");
      return 0;
    }
    if (a.is_float || b.is_float) {
      double x = as_double(a), y = as_double(b);
      *out = (Num){1, 0, e->op == '+' ? x + y : e->op == '-' ? x - y : e->op == '*' ? x * y : x / y};
      return 1;
    }
    out->is_float = 0;
    switch (e->op) {
    case '+': if (__builtin_add_overflow(a.i, b.i, &out->i)) goto overflow; return 1;
    case '-': if (__builtin_sub_overflow(a.i, b.i, &out->i)) goto overflow; return 1;
    case '*': if (__builtin_mul_overflow(a.i, b.i, &out->i)) goto overflow; return 1;
    case '%':
      if (b.i == -1) out->i = 0; /* INT64_MIN % -1 traps */
      else out->i = a.i % b.i;
      return 1;
    case '/':
      /* Exact division stays an integer; anything else is a float, which a
       * dimension then rejects as non-integer. */
      if (b.i == -1) {
        if (a.i == INT64_MIN) goto overflow;
        out->i = -a.i;
      } else if (a.i % b.i == 0) out->i = a.i / b.i;
      else *out = (Num){1, 0, (double)a.i / (double)b.i};
      return 1;
    }
    return 0;
  }
  return 0;
overflow:
  ir_diag_error(d, e->line, e->col, "integer overflow in constant expression");
  return 0;
}

/* An integer-valued expression (a dimension, a size, paths). */
static int eval_int(Lower *L, const FeExpr *e, const char *what, int64_t *out) {
  Num n;
  if (!eval(L, e, &n)) return 0;
  if (n.is_float) {
    ir_diag_error(L->d, e->line, e->col, "%s must be an integer, got %g", what, n.f);
    return 0;
  }
  *out = n.i;
  return 1;
}

/* ---- types ---- */

static int lower_type(Lower *L, const FeType *t, IrType *out) {
  static const struct { const char *name; IrDtype dt; } dtypes[] = {
      {"i32", IR_I32}, {"f16", IR_F16}, {"f32", IR_F32}};
  memset(out, 0, sizeof *out);
  int found = 0;
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (t->dtype && strcmp(t->dtype, dtypes[i].name) == 0) {
      out->dtype = dtypes[i].dt;
      found = 1;
    }
  if (!found) {
    ir_diag_error(L->d, t->line, t->col, "unknown type '%s' (expected i32, f16 or f32)",
                  t->dtype ? t->dtype : "?");
    return 0;
  }
  out->rank = t->rank;
  for (int i = 0; i < t->rank; i++) {
    const FeExpr *e = t->dims[i];
    if (e->kind == FE_E_NAME && !find_const(L, e->str)) {
      out->dim[i].sym = keep(L, e->str); /* a symbolic dimension, such as the token count T */
      continue;
    }
    int64_t n;
    if (!eval_int(L, e, "a dimension", &n)) return 0;
    if (n <= 0) {
      ir_diag_error(L->d, e->line, e->col, "a dimension must be positive, got %lld", (long long)n);
      return 0;
    }
    out->dim[i].n = n;
  }
  return 1;
}

/* ---- ops ---- */

/* quant = "none" | "rabit" "(" "paths" "=" INT ")" */
static int lower_quant(Lower *L, const FeExpr *e, int *paths) {
  if (e->kind == FE_E_NAME && strcmp(e->str, "none") == 0) {
    *paths = 0;
    return 1;
  }
  if (e->kind != FE_E_CALL || strcmp(e->str, "rabit") != 0 || e->nargs != 1 || !e->args[0].name ||
      strcmp(e->args[0].name, "paths") != 0 || e->nannots) {
    ir_diag_error(L->d, e->line, e->col, "quant must be 'rabit(paths = k)' or 'none'");
    return 0;
  }
  int64_t k;
  if (!eval_int(L, e->args[0].value, "quant paths", &k)) return 0;
  if (k < 1 || k > 4) {
    ir_diag_error(L->d, e->args[0].value->line, e->args[0].value->col,
                  "quant paths must be 1..4, got %lld", (long long)k);
    return 0;
  }
  *paths = (int)k;
  return 1;
}

/* Substitute {name} in a weight-name template with integer constants or loop variables. */
static const char *expand_weight(Lower *L, const FeExpr *e) {
  RbBuf b = {0};
  const char *s = e->str;
  const char *result = NULL;
  while (*s) {
    if (*s != '{') {
      rb_buf_put(&b, s++, 1);
      continue;
    }
    const char *close = strchr(s, '}');
    if (!close) {
      ir_diag_error(L->d, e->line, e->col, "unclosed '{' in weight name \"%s\"", e->str);
      goto done;
    }
    char name[64];
    int n = (int)(close - s - 1);
    snprintf(name, sizeof name, "%.*s", n < 63 ? n : 63, s + 1);
    const Const *c = find_const(L, name);
    if (!c || c->val.is_float) {
      ir_diag_error(L->d, e->line, e->col, "unknown integer name '{%s}' in weight name \"%s\"", name,
                    e->str);
      goto done;
    }
    rb_buf_printf(&b, "%lld", (long long)c->val.i);
    s = close + 1;
  }
  result = rb_arena_strdup(&L->g->arena, b.data ? b.data : "");
done:
  rb_buf_free(&b);
  return result;
}

static int lower_annotations(Lower *L, const FeExpr *e, IrNode *n) {
  for (int i = 0; i < e->nannots; i++) {
    const FeAnnot *an = &e->annots[i];
    if (strcmp(an->name, "weights") != 0) {
      ir_diag_error(L->d, an->line, an->col, "unknown annotation '@%s' (expected '@weights')", an->name);
      return 0;
    }
    if (n->nweights) {
      ir_diag_error(L->d, an->line, an->col, "'@weights' is given twice");
      return 0;
    }
    if (an->nargs == 0 || an->nargs > IR_MAX_OUT) {
      ir_diag_error(L->d, an->line, an->col, "'@weights' takes 1 to %d weight names, got %d",
                    IR_MAX_OUT, an->nargs);
      return 0;
    }
    for (int j = 0; j < an->nargs; j++) {
      const FeArg *a = &an->args[j];
      if (a->name || a->value->kind != FE_E_STRING) {
        ir_diag_error(L->d, a->line, a->col, "'@weights' takes weight names as strings");
        return 0;
      }
      const char *w = expand_weight(L, a->value);
      if (!w) return 0;
      n->weights[n->nweights++] = w;
    }
  }
  return 1;
}

static int lower_attr(Lower *L, const IrOpInfo *op, const FeArg *a, IrNode *n) {
  IrAttr at = ir_attr_lookup(a->name);
  if (at == IR_NATTR || !(op->attrs_allowed & IR_BIT(at))) {
    ir_diag_error(L->d, a->line, a->col, "'%s' has no attribute '%s'", op->name, a->name);
    return 0;
  }
  if (n->attr_set & IR_BIT(at)) {
    ir_diag_error(L->d, a->line, a->col, "attribute '%s' is given twice", a->name);
    return 0;
  }
  Num v;
  switch (ir_attr_kinds[at]) {
  case IR_AK_INT:
    if (!eval_int(L, a->value, rb_arena_printf(&L->g->arena, "attribute '%s'", a->name), &n->attr[at].i))
      return 0;
    break;
  case IR_AK_FLOAT:
    if (!eval(L, a->value, &v)) return 0;
    n->attr[at].f = as_double(v);
    break;
  case IR_AK_STRING:
    if (a->value->kind != FE_E_STRING) {
      ir_diag_error(L->d, a->value->line, a->value->col, "attribute '%s' must be a string", a->name);
      return 0;
    }
    n->attr[at].s = keep(L, a->value->str);
    break;
  case IR_AK_QUANT:
    if (!lower_quant(L, a->value, &n->attr[at].paths)) return 0;
    break;
  }
  n->attr_set |= IR_BIT(at);
  return 1;
}

static int lower_call(Lower *L, const FeExpr *e, int *outs);

/* A positional argument that names a tensor: a bound value or a nested call.
 * A name bound to nothing counts as a tensor, so that its use reports it. */
static int is_tensor_arg(const Lower *L, const FeExpr *e) {
  return e->kind == FE_E_CALL || (e->kind == FE_E_NAME && !find_const(L, e->str));
}

/* Lower one tensor argument to a value, or -1 after an error. */
static int lower_tensor_arg(Lower *L, const FeExpr *e) {
  if (e->kind == FE_E_NAME) {
    int v = find_value(L, e->str);
    if (v == -1 && find_const(L, e->str))
      ir_diag_error(L->d, e->line, e->col, "'%s' is a constant, but a tensor is expected here", e->str);
    else if (v == -1) ir_diag_error(L->d, e->line, e->col, "undefined value '%s'", e->str);
    return v < 0 ? -1 : v;
  }
  int outs[IR_MAX_OUT];
  int n = lower_call(L, e, outs);
  if (n < 0) return -1;
  if (n != 1) {
    ir_diag_error(L->d, e->line, e->col,
                  "'%s' gives %d outputs; bind them with names ('a, b = %s(...)') first", e->str, n,
                  e->str);
    return -1;
  }
  return outs[0];
}

/* Lower a call to a new node; store its outputs in outs. Returns the output
 * count, or -1 after an error. */
static int lower_call(Lower *L, const FeExpr *e, int *outs) {
  IrOp opc = ir_op_lookup(e->str);
  if (opc == IR_NOP) {
    RbBuf names = {0};
    for (int i = 0; i < IR_NOP; i++) rb_buf_printf(&names, "%s%s", i ? ", " : "", ir_ops[i].name);
    ir_diag_error(L->d, e->line, e->col, "unknown op '%s' (ops: %s)", e->str,
                  names.data ? names.data : "?");
    rb_buf_free(&names);
    return -1;
  }
  const IrOpInfo *op = &ir_ops[opc];
  IrNode n;
  memset(&n, 0, sizeof n);
  n.op = opc;
  n.line = e->line;
  n.col = e->col;
  n.layer = L->layer;
  int ntensor = 0, nsize = 0, ok = 1;
  for (int i = 0; i < e->nargs; i++) {
    const FeArg *a = &e->args[i];
    if (a->name) continue;
    if (a->value->kind == FE_E_NAME && !find_const(L, a->value->str) &&
        find_value(L, a->value->str) == -1) {
      ir_diag_error(L->d, a->line, a->col, "undefined name '%s'", a->value->str);
      return -1;
    }
    if (a->value->kind == FE_E_NAME && find_value(L, a->value->str) == POISON) return -1;
    if (is_tensor_arg(L, a->value)) {
      if (nsize) {
        ir_diag_error(L->d, a->line, a->col, "'%s' takes its tensor inputs before its sizes", op->name);
        return -1;
      }
      ntensor++;
    } else nsize++;
  }
  /* linear_grad's tensor count follows its sizes: one dy per N, then x. */
  int want_tensor = ir_op_ntensor(op, nsize);
  if (ntensor != want_tensor && op->ntensor == IR_NT_PER_INT) {
    ir_diag_error(L->d, e->line, e->col,
                  "'%s' takes one gradient per size argument, then its input: %d tensor inputs "
                  "for %d sizes, got %d",
                  op->name, want_tensor, nsize, ntensor);
    return -1;
  }
  if (ntensor != want_tensor) {
    ir_diag_error(L->d, e->line, e->col, "'%s' takes %d tensor input%s, got %d", op->name,
                  want_tensor, want_tensor == 1 ? "" : "s", ntensor);
    return -1;
  }
  if (nsize < op->nint_min || nsize > op->nint_max) {
    if (op->nint_min == op->nint_max)
      ir_diag_error(L->d, e->line, e->col, "'%s' takes %d size argument%s after its input%s, got %d",
                    op->name, op->nint_min, op->nint_min == 1 ? "" : "s", op->ntensor == 1 ? "" : "s", nsize);
    else
      ir_diag_error(L->d, e->line, e->col, "'%s' takes %d to %d size arguments after its input, got %d",
                    op->name, op->nint_min, op->nint_max, nsize);
    return -1;
  }
  for (int i = 0; i < e->nargs; i++) {
    const FeArg *a = &e->args[i];
    if (a->name) {
      ok &= lower_attr(L, op, a, &n);
    } else if (n.nin < ntensor) {
      int v = lower_tensor_arg(L, a->value);
      if (v < 0) return -1;
      n.in[n.nin++] = v;
    } else {
      ok &= eval_int(L, a->value, "a size argument", &n.ints[n.nint++]);
    }
  }
  ok = ok && lower_annotations(L, e, &n);
  if (!ok) return -1;
  if (op->quantizable && !(n.attr_set & IR_BIT(IR_A_QUANT))) {
    n.attr_set |= IR_BIT(IR_A_QUANT);
    n.attr[IR_A_QUANT].paths = L->default_paths;
  }
  if (op->quantizable && L->opt && L->opt->dense) n.attr[IR_A_QUANT].paths = 0;
  if (L->g->nnodes >= FE_MAX_NODES) {
    ir_diag_error(L->d, e->line, e->col, "the graph has more than %d ops after unrolling", FE_MAX_NODES);
    return -1;
  }
  for (int a = 0; a < IR_NATTR; a++)
    if ((op->attrs_required & IR_BIT(a)) && !(n.attr_set & IR_BIT(a))) {
      ir_diag_error(L->d, e->line, e->col, "'%s' needs attribute '%s'", op->name, ir_attr_names[a]);
      ok = 0;
    }
  if (!ok) return -1;
  int idx = ir_node_add(L->g, &n);
  if (idx < 0) {
    L->oom = 1;
    return -1;
  }
  if (ir_node_infer(L->g, idx, L->d) != RB_OK) return -1;
  const IrNode *node = &L->g->nodes[idx];
  for (int i = 0; i < node->nout; i++) outs[i] = node->out[i];
  return node->nout;
}

/* ---- statements ---- */

static int lower_stmts(Lower *L, const FeStmt *s, int in_repeat);

static int check_new_name(Lower *L, const char *name, int line, int col) {
  const Const *c = find_const(L, name);
  if (c) {
    ir_diag_error(L->d, line, col, "'%s' is already a %s (line %d)", name,
                  c->is_loop ? "loop variable" : "constant", c->line);
    return 0;
  }
  return 1;
}

static int lower_assign_value(Lower *L, const FeStmt *s);

/* name, ... = expr. On failure the names are bound to POISON. */
static int lower_assign(Lower *L, const FeStmt *s) {
  if (lower_assign_value(L, s)) return 1;
  for (int i = 0; i < s->nnames; i++)
    if (!find_const(L, s->names[i]) && !bind(L, s->names[i], POISON)) return 0;
  return 0;
}

static int lower_assign_value(Lower *L, const FeStmt *s) {
  for (int i = 0; i < s->nnames; i++) {
    if (!check_new_name(L, s->names[i], s->line, s->name_cols[i])) return 0;
    for (int j = 0; j < i; j++)
      if (strcmp(s->names[i], s->names[j]) == 0) {
        ir_diag_error(L->d, s->line, s->name_cols[i], "'%s' is bound twice in one statement", s->names[i]);
        return 0;
      }
  }
  const FeExpr *e = s->value;
  int outs[IR_MAX_OUT], n;
  if (e->kind == FE_E_CALL) {
    n = lower_call(L, e, outs);
    if (n < 0) return 0;
  } else if (e->kind == FE_E_NAME && find_value(L, e->str) >= 0) {
    outs[0] = find_value(L, e->str);
    n = 1;
  } else {
    ir_diag_error(L->d, e->line, e->col,
                  "a statement binds the result of an op; use 'let' for constants");
    return 0;
  }
  if (n != s->nnames) {
    ir_diag_error(L->d, s->line, s->col, "'%s' gives %d output%s, but %d name%s bound",
                  e->kind == FE_E_CALL ? e->str : e->str, n, n == 1 ? "" : "s", s->nnames,
                  s->nnames == 1 ? " is" : "s are");
    return 0;
  }
  for (int i = 0; i < n; i++) {
    if (!L->g->values[outs[i]].name) L->g->values[outs[i]].name = keep(L, s->names[i]);
    if (!bind(L, s->names[i], outs[i])) return 0;
  }
  return 1;
}

static int lower_repeat(Lower *L, const FeStmt *s) {
  int64_t lo, hi;
  if (!s->lo || !s->hi || !eval_int(L, s->lo, "a repeat bound", &lo) ||
      !eval_int(L, s->hi, "a repeat bound", &hi))
    return 0;
  if (hi < lo) {
    ir_diag_error(L->d, s->lo->line, s->lo->col, "empty or reversed range %lld..%lld", (long long)lo,
                  (long long)hi);
    return 0;
  }
  if (hi - lo > FE_MAX_NODES) {
    ir_diag_error(L->d, s->lo->line, s->lo->col, "repeat count %lld exceeds %d", (long long)(hi - lo),
                  FE_MAX_NODES);
    return 0;
  }
  if (!check_new_name(L, s->var, s->line, s->col)) return 0;
  if (!push_const(L, s->var, (Num){0, lo, 0}, s->line, 1)) return 0;
  int slot = L->nconsts - 1, outer = L->layer, ok = 1;
  for (int64_t i = lo; i < hi && ok; i++) {
    L->consts[slot].val.i = i;
    L->layer = (int)i;
    /* An error in the body would repeat on every iteration: stop at the first. */
    ok = lower_stmts(L, s->body, 1);
  }
  L->layer = outer;
  L->nconsts = slot;
  return ok;
}

static int lower_stmts(Lower *L, const FeStmt *s, int in_repeat) {
  int ok = 1;
  for (; s; s = s->next) {
    if (++L->work > MAX_WORK) {
      ir_diag_error(L->d, s->line, s->col, "the graph is too large to unroll");
      return 0;
    }
    switch (s->kind) {
    case FE_S_ASSIGN: ok &= lower_assign(L, s); break;
    case FE_S_REPEAT: ok &= lower_repeat(L, s); break;
    case FE_S_RETURN:
      if (in_repeat) {
        ir_diag_error(L->d, s->line, s->col, "'return' inside 'repeat'");
        return 0;
      }
      if (s->next) {
        ir_diag_error(L->d, s->next->line, s->next->col, "statement after 'return'");
        return 0;
      }
      L->g->ret_line = s->line;
      L->g->ret_col = s->col;
      if (s->value->kind == FE_E_CALL || s->value->kind == FE_E_NAME) {
        int v = lower_tensor_arg(L, s->value);
        if (v < 0) return 0;
        L->g->ret = v;
      } else {
        ir_diag_error(L->d, s->value->line, s->value->col, "'return' needs a tensor");
        return 0;
      }
      break;
    }
    if (L->oom || L->d->nerrors > 50) return 0;
  }
  return ok;
}

static int lower_program(Lower *L) {
  const FeProgram *p = L->prog;
  IrGraph *g = L->g;
  g->model = p->model ? rb_arena_strdup(&g->arena, p->model) : NULL;
  g->name = keep(L, p->graph_name ? p->graph_name : "main");
  for (int i = 0; i < p->nlets; i++) {
    const FeLet *l = &p->lets[i];
    if (!l->name || !l->value) continue;
    const Const *prev = find_const(L, l->name);
    if (prev) {
      ir_diag_error(L->d, l->line, l->col, "constant '%s' is already defined at line %d", l->name, prev->line);
      continue;
    }
    Num v;
    if (eval(L, l->value, &v) && !push_const(L, l->name, v, l->line, 0)) return 0;
  }
  L->default_paths = FE_DEFAULT_PATHS;
  if (p->quant_default && !lower_quant(L, p->quant_default, &L->default_paths)) return 0;
  g->quant_default = L->default_paths;
  if (L->opt && L->opt->paths) L->default_paths = L->opt->paths;
  if (L->d->nerrors) return 0;

  if (p->nparams > (int)(sizeof g->inputs / sizeof g->inputs[0])) {
    ir_diag_error(L->d, p->graph_line, p->graph_col, "a graph takes at most 8 inputs");
    return 0;
  }
  for (int i = 0; i < p->nparams; i++) {
    const FeParam *prm = &p->params[i];
    if (!check_new_name(L, prm->name, prm->line, prm->col)) return 0;
    if (find_value(L, prm->name) >= 0) {
      ir_diag_error(L->d, prm->line, prm->col, "parameter '%s' is declared twice", prm->name);
      return 0;
    }
    IrType t;
    if (!lower_type(L, &prm->type, &t)) return 0;
    int v = ir_value_add(g, &t, -1, 0, keep(L, prm->name));
    if (v < 0 || !bind(L, prm->name, v)) return 0;
    g->inputs[g->ninputs++] = v;
  }
  if (!lower_type(L, &p->ret, &g->ret_type)) return 0;
  g->ret_line = p->graph_line;
  g->ret_col = p->graph_col;
  if (!lower_stmts(L, p->body, 0)) return 0;
  if (g->ret < 0) {
    ir_diag_error(L->d, p->graph_line, p->graph_col, "graph '%s' has no 'return'", g->name);
    return 0;
  }
  return 1;
}

int fe_lower(const FeProgram *prog, const FeOptions *opt, IrDiag *d, IrGraph **out) {
  Lower L;
  memset(&L, 0, sizeof L);
  L.prog = prog;
  L.opt = opt;
  L.d = d;
  L.layer = -1;
  L.g = ir_graph_new();
  if (!L.g) return RB_EINTERNAL;
  int before = d->nerrors;
  int ok = lower_program(&L);
  rb_free(L.consts);
  rb_map_free(&L.binds);
  if (L.oom || L.g->arena.oom) {
    ir_graph_free(L.g);
    return RB_EINTERNAL;
  }
  if (!ok || d->nerrors != before) {
    ir_graph_free(L.g);
    return RB_EUSER;
  }
  *out = L.g;
  return RB_OK;
}

int fe_compile(const char *path, const char *src, const FeOptions *opt, IrDiag *d, IrGraph **out) {
  (void)path;
  if (strnlen(src, FE_MAX_SOURCE_BYTES + 1) > FE_MAX_SOURCE_BYTES) {
    char cap[32];
    ir_diag_error(d, 0, 0, "the file is over %s, the cap on an IR file", rb_size_str(FE_MAX_SOURCE_BYTES, cap));
    return RB_EUSER;
  }
  RbArena a = {0};
  FeToken *toks = NULL;
  int ntoks = 0;
  FeProgram prog;
  int rc = fe_tokenize(src, &a, d, &toks, &ntoks);
  /* The lexer reports every bad character in the file; parsing after one
   * would mostly report its echoes. */
  if (rc != RB_OK) goto done;
  int prc = fe_parse(toks, ntoks, &a, d, &prog);
  if (prc == RB_EINTERNAL || a.oom) {
    rc = RB_EINTERNAL;
    goto done;
  }
  if (rc != RB_OK || prc != RB_OK) {
    rc = RB_EUSER;
    goto done;
  }
  rc = fe_lower(&prog, opt, d, out);
done:
  rb_arena_free(&a);
  return rc;
}
