/* grad.c: the grad pass. Appends the loss and the backward to a verified,
 * unfused forward graph, one backward rule per op row (IR_OPS' last column),
 * so that the trainer can run the training step node by node like a forward.
 * TRAINING.md says what each appended op computes. */
#include <math.h>
#include <string.h>

#include "ir/ir.h"

/* The pass's state, which the backward rules extend. */
struct IrGrad {
  IrGraph *g;
  IrDiag *d;
  int nfwd;   /* values [0, nfwd) are the forward's; only they receive gradients */
  int *needs; /* per forward value: depends on a trainable weight, so has a gradient */
  int *grad;  /* per forward value: the value holding its gradient so far, -1 none */
};

/* Trainable weights: a linear's when quantized (the latent W and the scales).
 * Norms, embeddings and dense linears (the tied lm_head) are frozen. */
static int trainable(const IrNode *n) { return n->op == IR_LINEAR && ir_node_paths(n) > 0; }

/* Append a copy of node `tmpl` at the given place (source location, layer); its
 * outputs are inferred by the row's shape rule and named after the values
 * they are the gradients of (of[i]; where of is NULL or of[i] is -1, name[i]).
 * Returns the node index, or -1 with *rc set. */
static int emit(struct IrGrad *s, const IrNode *tmpl, int line, int col, int layer, const int *of,
                const char *const *name, int *rc) {
  IrGraph *g = s->g;
  IrNode n = *tmpl;
  n.line = line;
  n.col = col;
  n.layer = layer;
  n.nout = 0;
  n.dead = 0;
  int idx = ir_node_add(g, &n);
  if (idx < 0) {
    *rc = RB_EINTERNAL;
    return -1;
  }
  if ((*rc = ir_node_infer(g, idx, s->d)) != RB_OK) return -1;
  for (int i = 0; i < g->nodes[idx].nout; i++) {
    const char *nm = name ? name[i] : NULL; /* for messages only: the printer renames values */
    if (of && of[i] >= 0) {
      const char *base = g->values[of[i]].name;
      nm = base ? rb_arena_printf(&g->arena, "d%s", base) : rb_arena_printf(&g->arena, "d#%d", of[i]);
    }
    g->values[g->nodes[idx].out[i]].name = nm;
  }
  if (g->arena.oom) *rc = RB_EINTERNAL;
  return *rc ? -1 : idx;
}

/* A node prototype: op and tensor inputs, nothing else set. */
static IrNode proto(IrOp op, int nin, const int *in) {
  IrNode n;
  memset(&n, 0, sizeof n);
  n.op = op;
  n.nin = nin;
  for (int i = 0; i < nin; i++) n.in[i] = in[i];
  return n;
}

/* Hand forward value v the gradient contribution gv. The first contribution
 * is v's gradient; each later one is summed into it with an add node at
 * forward node `at`'s place, in the order the backward produces them. Values
 * that need no gradient drop their contributions. */
static int accumulate(struct IrGrad *s, int v, int gv, const IrNode *at) {
  if (v >= s->nfwd || !s->needs[v]) return RB_OK;
  if (s->grad[v] < 0) {
    s->grad[v] = gv;
    return RB_OK;
  }
  int in[2] = {s->grad[v], gv}, of[1] = {v}, rc;
  IrNode n = proto(IR_ADD, 2, in);
  int idx = emit(s, &n, at->line, at->col, at->layer, of, NULL, &rc);
  if (idx < 0) return rc;
  s->grad[v] = s->g->nodes[idx].out[0];
  return RB_OK;
}

/* The forward node's output gradient i (the driver checked they all exist). */
static int dy(const struct IrGrad *s, const IrNode *f, int i) { return s->grad[f->out[i]]; }

/* ---- the backward rules (named in IR_OPS) ---- */

/* The embedding is frozen, so nothing flows past it (its input is token ids).
 * A future option that trains it would emit its scatter-add here. */
int ir_grad_embed(struct IrGrad *s, int node) {
  (void)s;
  (void)node;
  return RB_OK;
}

/* dx = rmsnorm_grad(dy, x), only when x has a gradient: the weight is frozen,
 * so the first layer's input norm (over the embedding) has no backward. */
int ir_grad_rmsnorm(struct IrGrad *s, int node) {
  const IrNode f = s->g->nodes[node];
  if (!s->needs[f.in[0]]) return RB_OK;
  int in[2] = {dy(s, &f, 0), f.in[0]}, of[1] = {f.in[0]}, rc;
  IrNode n = proto(IR_RMSNORM_GRAD, 2, in);
  n.attr_set = f.attr_set;
  n.attr[IR_A_EPS] = f.attr[IR_A_EPS];
  n.nweights = f.nweights;
  n.weights[0] = f.weights[0];
  int idx = emit(s, &n, f.line, f.col, f.layer, of, NULL, &rc);
  return idx < 0 ? rc : accumulate(s, f.in[0], s->g->nodes[idx].out[0], &f);
}

/* dx = linear_grad(dy_1..dy_m, x, N_1..N_m): always emitted, since a
 * quantized linear's weight gradients come from it even where x needs none
 * (layer 0's q/k/v); it keeps the forward's weights, quant, K and tied. */
int ir_grad_linear(struct IrGrad *s, int node) {
  const IrNode f = s->g->nodes[node];
  int in[IR_MAX_IN], of[1] = {f.in[0]}, rc;
  for (int i = 0; i < f.nout; i++) in[i] = dy(s, &f, i);
  in[f.nout] = f.in[0];
  IrNode n = proto(IR_LINEAR_GRAD, f.nout + 1, in);
  n.nint = f.nint;
  memcpy(n.ints, f.ints, sizeof n.ints);
  n.attr_set = f.attr_set;
  memcpy(n.attr, f.attr, sizeof n.attr);
  n.nweights = f.nweights;
  memcpy(n.weights, f.weights, sizeof n.weights);
  int idx = emit(s, &n, f.line, f.col, f.layer, of, NULL, &rc);
  return idx < 0 ? rc : accumulate(s, f.in[0], s->g->nodes[idx].out[0], &f);
}

/* dq, dk, dv = attention_grad(dout, q, k, v): the softmax is recomputed
 * from q and k, so only the inputs are kept. */
int ir_grad_attention(struct IrGrad *s, int node) {
  const IrNode f = s->g->nodes[node];
  int in[4] = {dy(s, &f, 0), f.in[0], f.in[1], f.in[2]}, rc;
  IrNode n = proto(IR_ATTENTION_GRAD, 4, in);
  n.attr_set = f.attr_set;
  memcpy(n.attr, f.attr, sizeof n.attr);
  int idx = emit(s, &n, f.line, f.col, f.layer, f.in, NULL, &rc);
  for (int i = 0; i < 3 && idx >= 0 && !rc; i++) rc = accumulate(s, f.in[i], s->g->nodes[idx].out[i], &f);
  return rc;
}

/* dg, du = swiglu_grad(dy, g, u). */
int ir_grad_swiglu(struct IrGrad *s, int node) {
  const IrNode f = s->g->nodes[node];
  int in[3] = {dy(s, &f, 0), f.in[0], f.in[1]}, rc;
  IrNode n = proto(IR_SWIGLU_GRAD, 3, in);
  int idx = emit(s, &n, f.line, f.col, f.layer, f.in, NULL, &rc);
  for (int i = 0; i < 2 && idx >= 0 && !rc; i++) rc = accumulate(s, f.in[i], s->g->nodes[idx].out[i], &f);
  return rc;
}

/* add passes dy to both inputs unchanged: no node of its own (the residual
 * stream's sums are accumulate's adds). */
int ir_grad_add(struct IrGrad *s, int node) {
  const IrNode f = s->g->nodes[node];
  int rc = accumulate(s, f.in[0], dy(s, &f, 0), &f);
  return rc ? rc : accumulate(s, f.in[1], dy(s, &f, 0), &f);
}

/* ---- the pass ---- */

/* A new f32 graph input; -1 after a diagnostic or on allocation failure (*rc). */
static int add_input(IrGraph *g, IrDiag *d, const char *name, const IrType *t, int *rc) {
  for (int i = 0; i < g->ninputs; i++)
    if (strcmp(g->values[g->inputs[i]].name, name) == 0) {
      ir_diag_error(d, g->ret_line, g->ret_col,
                    "the training graph adds an input '%s', but graph '%s' already has one", name,
                    g->name);
      *rc = RB_EUSER;
      return -1;
    }
  if (g->ninputs >= (int)(sizeof g->inputs / sizeof g->inputs[0])) {
    ir_diag_error(d, g->ret_line, g->ret_col, "the training graph's input '%s' would be its ninth", name);
    *rc = RB_EUSER;
    return -1;
  }
  int v = ir_value_add(g, t, -1, 0, name);
  if (v < 0) {
    *rc = RB_EINTERNAL;
    return -1;
  }
  g->inputs[g->ninputs++] = v;
  return v;
}

/* Refuse what the pass cannot differentiate, and mark the values that have
 * gradients. Returns RB_OK or RB_EUSER (reported). */
static int check_forward(struct IrGrad *s) {
  IrGraph *g = s->g;
  IrDiag *d = s->d;
  int before = d->nerrors, ntrain = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    if (!ir_ops[n->op].grad) {
      ir_diag_error(d, n->line, n->col,
                    "'%s' has no backward rule: the grad pass takes the verified, unfused forward "
                    "graph",
                    ir_ops[n->op].name);
      continue;
    }
    int needs = trainable(n);
    ntrain += needs;
    for (int j = 0; j < n->nin; j++) needs |= s->needs[n->in[j]];
    for (int j = 0; j < n->nout; j++) s->needs[n->out[j]] = needs;
  }
  if (d->nerrors != before) return RB_EUSER;
  if (!ntrain) {
    ir_diag_error(d, g->ret_line, g->ret_col,
                  "graph '%s' has nothing to train: no linear has quant = rabit(...)", g->name);
    return RB_EUSER;
  }
  const IrType *r = &g->values[g->ret].type;
  if (r->dtype == IR_I32 || r->rank != 2) {
    ir_diag_error(d, g->ret_line, g->ret_col,
                  "the training loss needs logits [T, V]; graph '%s' returns a rank-%d %s tensor", g->name,
                  r->rank, ir_dtype_name(r->dtype));
    return RB_EUSER;
  }
  return RB_OK;
}

/* One hidden_mse per repeat iteration l, on the value its last node writes
 * (the residual stream after block l). */
static int hidden_losses(struct IrGrad *s, double gamma, int nfwd_nodes) {
  IrGraph *g = s->g;
  int L = 0, rc = RB_OK;
  for (int i = 0; i < nfwd_nodes; i++)
    if (!g->nodes[i].dead && g->nodes[i].layer >= L) L = g->nodes[i].layer + 1;
  if (L == 0) {
    ir_diag_error(s->d, g->ret_line, g->ret_col,
                  "gamma > 0 needs layers (a 'repeat' block) for the hidden-state loss; graph '%s' has none",
                  g->name);
    return RB_EUSER;
  }
  int *last = rb_malloc((size_t)L * sizeof(int));
  if (!last) return RB_EINTERNAL;
  for (int l = 0; l < L; l++) last[l] = -1;
  for (int i = 0; i < nfwd_nodes; i++)
    if (!g->nodes[i].dead && g->nodes[i].layer >= 0) last[g->nodes[i].layer] = i;
  for (int l = 0; l < L && !rc; l++) {
    const IrNode *n = last[l] >= 0 ? &g->nodes[last[l]] : NULL;
    if (!n || n->nout != 1) {
      ir_diag_error(s->d, n ? n->line : g->ret_line, n ? n->col : g->ret_col,
                    "the hidden-state loss needs layer %d to end in an op with one output", l);
      rc = RB_EUSER;
    }
  }
  int th = -1;
  if (!rc) {
    const IrType *x = &g->values[g->nodes[last[0]].out[0]].type;
    IrType t = {IR_F32, 3, {{NULL, L}, x->dim[0], x->dim[1]}};
    th = add_input(g, s->d, "teacher_hidden", &t, &rc);
  }
  for (int l = 0; l < L && !rc; l++) {
    const IrNode f = g->nodes[last[l]];
    int in[2] = {f.out[0], th}, of[2] = {-1, f.out[0]};
    const char *names[2] = {rb_arena_printf(&g->arena, "mse%d", l), NULL};
    IrNode n = proto(IR_HIDDEN_MSE, 2, in);
    n.nint = 1;
    n.ints[0] = l;
    n.attr_set = IR_BIT(IR_A_SCALE);
    n.attr[IR_A_SCALE].f = gamma / L;
    int idx = emit(s, &n, f.line, f.col, l, of, names, &rc);
    if (idx >= 0) rc = accumulate(s, f.out[0], g->nodes[idx].out[1], &f);
  }
  rb_free(last);
  return rc;
}

/* The backward, last forward node first. A node runs its rule when its
 * outputs have gradients; a trainable linear whose outputs have none would
 * leave its weights untrained, which is reported. */
static int backward(struct IrGrad *s, int nfwd_nodes) {
  IrGraph *g = s->g;
  for (int i = nfwd_nodes - 1; i >= 0; i--) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    int have = 0;
    for (int j = 0; j < n->nout; j++) have += s->grad[n->out[j]] >= 0;
    if (have == 0 && trainable(n)) {
      ir_diag_error(s->d, n->line, n->col,
                    "'%s' is trainable, but its output does not reach the loss", ir_ops[n->op].name);
      return RB_EUSER;
    }
    if (have == 0) continue;
    if (have != n->nout) {
      ir_diag_error(s->d, n->line, n->col,
                    "only %d of the %d outputs of '%s' reach the loss (the grad pass needs all or none)",
                    have, n->nout, ir_ops[n->op].name);
      return RB_EUSER;
    }
    int rc = ir_ops[n->op].grad(s, i);
    if (rc) return rc;
  }
  return RB_OK;
}

int ir_grad(IrGraph *g, const IrGradOptions *o, IrDiag *d) {
  double gamma = o ? o->gamma : 0;
  if (!(gamma >= 0) || !isfinite(gamma)) {
    ir_diag_error(d, g->ret_line, g->ret_col, "gamma must be a finite number >= 0, got %g", gamma);
    return RB_EUSER;
  }
  if (g->ret < 0) return RB_EINTERNAL; /* not a verified graph */
  struct IrGrad s = {g, d, g->nvalues, NULL, NULL};
  s.needs = rb_calloc((size_t)g->nvalues + 1, sizeof(int));
  s.grad = rb_malloc(((size_t)g->nvalues + 1) * sizeof(int));
  int rc = s.needs && s.grad ? RB_OK : RB_EINTERNAL;
  for (int v = 0; !rc && v < g->nvalues; v++) s.grad[v] = -1;
  int nfwd_nodes = g->nnodes, logits = g->ret, loss = -1;
  if (!rc) rc = check_forward(&s);
  if (!rc) {
    IrType t = g->values[logits].type;
    t.dtype = IR_F32;
    int teacher = add_input(g, d, "teacher", &t, &rc);
    if (!rc) {
      int in[2] = {logits, teacher}, of[2] = {-1, logits};
      const char *names[2] = {"kl", NULL};
      IrNode n = proto(IR_KL_LOSS, 2, in);
      int idx = emit(&s, &n, g->ret_line, g->ret_col, -1, of, names, &rc);
      if (idx >= 0) {
        const IrNode k = g->nodes[idx];
        loss = k.out[0];
        rc = accumulate(&s, logits, k.out[1], &k);
      }
    }
  }
  if (!rc && gamma > 0) rc = hidden_losses(&s, gamma, nfwd_nodes);
  if (!rc) rc = backward(&s, nfwd_nodes);
  if (!rc) {
    g->ret = loss;
    g->ret_type = g->values[loss].type;
    g->name = "train";
  }
  rb_free(s.needs);
  rb_free(s.grad);
  return rc;
}
