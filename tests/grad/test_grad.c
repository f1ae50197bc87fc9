/* test_grad: the grad pass on tiny.ir and smollm2-135m.ir: the training
 * graph verifies, has the node counts the rules imply, one linear_grad per
 * quantized weight, the forward-then-loss-then-reverse layout, and prints as
 * IR that parses back to the same text; fused graphs and broken backwards are
 * refused with their diagnostics. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "tests/common/check.h"

static char *read_text(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  RbBuf b = {0};
  if (rb_read_file(path, &b) != 0) return NULL;
  return b.data;
}

/* Parse and verify src; NULL (and the diagnostics printed) on failure. */
static IrGraph *compile(const char *src, int dense) {
  IrDiag d;
  ir_diag_init(&d, "t.ir", src);
  FeOptions o = {0, dense};
  IrGraph *g = NULL;
  int rc = fe_compile("t.ir", src, &o, &d, &g);
  if (rc == RB_OK) rc = ir_graph_verify(g, &d);
  if (rc != RB_OK) {
    printf("%s", d.out.data ? d.out.data : "");
    ir_graph_free(g);
    g = NULL;
  }
  ir_diag_free(&d);
  return g;
}

/* Run the pass and verify; returns the status, the diagnostics in *msg (caller frees). */
static int grad(IrGraph *g, double gamma, char **msg) {
  IrDiag d;
  ir_diag_init(&d, "t.ir", NULL);
  IrGradOptions o = {gamma};
  int rc = ir_grad(g, &o, &d);
  if (rc == RB_OK) rc = ir_graph_verify(g, &d);
  *msg = d.out.data ? strdup(d.out.data) : NULL;
  ir_diag_free(&d);
  return rc;
}

static char *print(const IrGraph *g) {
  RbBuf b = {0};
  ir_graph_print(g, &b);
  return b.data;
}

static int count(const IrGraph *g, IrOp op, int from) {
  int n = 0;
  for (int i = from; i < g->nnodes; i++) n += !g->nodes[i].dead && g->nodes[i].op == op;
  return n;
}

static int find_weight_node(const IrGraph *g, IrOp op, const char *w) {
  for (int i = 0; i < g->nnodes; i++)
    for (int j = 0; j < g->nodes[i].nweights; j++)
      if (g->nodes[i].op == op && strcmp(g->nodes[i].weights[j], w) == 0) return i;
  return -1;
}

/* What the rules give for a sample with L layers (see each count's reason). */
typedef struct {
  const char *file;
  int L, fwd_nodes;
  int linears;       /* forward linear nodes: one linear_grad each, the tied lm_head's included */
  int adds_per_layer; /* gradient sums in a layer above 0: the residual after attention, the
                       * layer input, and the norm outputs read by several linears (q, k, v:
                       * 2 sums; gate and up apart in smollm2: 1 more) */
  int adds_layer0;   /* layer 0: only the residual after attention (x0 and the input norm's
                      * output depend on no trainable weight) */
} Sample;

static void check_sample(const char *dir, const Sample *s, double gamma) {
  char *src = read_text(dir, s->file);
  CHECK(src != NULL, "%s: cannot read", s->file);
  if (!src) return;
  IrGraph *g = compile(src, 0), *fwd = compile(src, 0);
  CHECK(g && fwd, "%s: does not compile", s->file);
  if (!g || !fwd) goto done;
  int nfwd = g->nnodes, nfwd_values = g->nvalues;
  CHECK(nfwd == s->fwd_nodes, "%s: %d forward nodes, expected %d", s->file, nfwd, s->fwd_nodes);
  char *msg = NULL;
  int rc = grad(g, gamma, &msg);
  CHECK(rc == RB_OK, "%s gamma %g: the training graph fails:\n%s", s->file, gamma, msg ? msg : "");
  free(msg);
  if (rc != RB_OK) goto done;

  /* The forward nodes are untouched and come first. */
  int same = 1;
  for (int i = 0; i < nfwd; i++)
    same &= g->nodes[i].op == fwd->nodes[i].op && g->nodes[i].nin == fwd->nodes[i].nin &&
            !memcmp(g->nodes[i].in, fwd->nodes[i].in, sizeof g->nodes[i].in) &&
            !memcmp(g->nodes[i].out, fwd->nodes[i].out, sizeof g->nodes[i].out);
  CHECK(same, "%s: the forward nodes changed", s->file);

  /* Then kl_loss, then one hidden_mse per layer, then the backward. */
  int nmse = gamma > 0 ? s->L : 0;
  CHECK(g->nodes[nfwd].op == IR_KL_LOSS && g->nodes[nfwd].in[0] == fwd->ret,
        "%s: node %d is not kl_loss over the logits", s->file, nfwd);
  for (int l = 0; l < nmse; l++) {
    const IrNode *m = &g->nodes[nfwd + 1 + l];
    CHECK(m->op == IR_HIDDEN_MSE && m->ints[0] == l && m->attr[IR_A_SCALE].f == gamma / s->L,
          "%s: node %d is not hidden_mse(l = %d, scale = gamma / L)", s->file, nfwd + 1 + l, l);
    /* On the value the last node of iteration l writes: no later forward node is in layer l. */
    int def = g->values[m->in[0]].def, later = 0;
    for (int i = def + 1; i < nfwd; i++) later |= g->nodes[i].layer == l;
    CHECK(def >= 0 && g->nodes[def].layer == l && !later && g->nodes[def].op == IR_ADD,
          "%s: hidden_mse %d reads node %d, not layer %d's residual stream", s->file, l, def, l);
  }
  int bwd = nfwd + 1 + nmse, ok = 1, prev = INT_MAX;
  for (int i = bwd; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    ok &= n->op != IR_KL_LOSS && n->op != IR_HIDDEN_MSE && n->op != IR_LINEAR && n->op != IR_RMSNORM &&
          n->op != IR_ATTENTION && n->op != IR_SWIGLU && n->op != IR_EMBED;
    int layer = n->layer < 0 ? INT_MAX : n->layer; /* the final norm and lm_head come first */
    CHECK(layer <= prev, "%s: backward node %d (layer %d) is out of reverse order", s->file, i, n->layer);
    prev = layer;
    /* Every backward input is a forward value, a graph input or an earlier gradient. */
    for (int j = 0; j < n->nin; j++) ok &= g->values[n->in[j]].def < i;
  }
  CHECK(ok, "%s: the backward holds a forward op or a bad input", s->file);

  /* Node counts per op, appended part. */
  int L = s->L;
  CHECK(count(g, IR_KL_LOSS, nfwd) == 1, "%s: kl_loss count", s->file);
  CHECK(count(g, IR_HIDDEN_MSE, nfwd) == nmse, "%s: hidden_mse count %d", s->file, count(g, IR_HIDDEN_MSE, nfwd));
  CHECK(count(g, IR_LINEAR_GRAD, nfwd) == s->linears, "%s: linear_grad count %d, expected %d", s->file,
        count(g, IR_LINEAR_GRAD, nfwd), s->linears);
  /* Every norm but layer 0's input norm (over the embedding), the final norm included. */
  CHECK(count(g, IR_RMSNORM_GRAD, nfwd) == 2 * L, "%s: rmsnorm_grad count %d", s->file,
        count(g, IR_RMSNORM_GRAD, nfwd));
  CHECK(count(g, IR_ATTENTION_GRAD, nfwd) == L && count(g, IR_SWIGLU_GRAD, nfwd) == L,
        "%s: attention_grad / swiglu_grad counts", s->file);
  /* With gamma each layer's output gets one more contribution (its MSE). */
  int adds = (L - 1) * s->adds_per_layer + s->adds_layer0 + (gamma > 0 ? L : 0);
  CHECK(count(g, IR_ADD, nfwd) == adds, "%s gamma %g: %d gradient adds, expected %d", s->file, gamma,
        count(g, IR_ADD, nfwd), adds);
  CHECK(g->nnodes - nfwd == 1 + nmse + s->linears + 2 * L + 2 * L + adds,
        "%s: %d appended nodes", s->file, g->nnodes - nfwd);

  /* Every quantized linear weight has exactly one linear_grad, with the forward's quant and sizes. */
  int weights_ok = 1, tied = 0;
  for (int i = 0; i < nfwd; i++) {
    const IrNode *f = &g->nodes[i];
    if (f->op != IR_LINEAR) continue;
    tied += (f->attr_set & IR_BIT(IR_A_TIED)) != 0;
    for (int j = 0; j < f->nweights; j++) {
      int uses = 0, b = -1;
      for (int k = nfwd; k < g->nnodes; k++)
        for (int w = 0; w < g->nodes[k].nweights; w++)
          if (g->nodes[k].op == IR_LINEAR_GRAD && !strcmp(g->nodes[k].weights[w], f->weights[j])) uses++, b = k;
      weights_ok &= uses == 1 && b >= 0 && ir_node_paths(&g->nodes[b]) == ir_node_paths(f) &&
                    g->nodes[b].nint == f->nint && g->nodes[b].ints[j] == f->ints[j] &&
                    g->nodes[b].in[f->nint] == f->in[0];
    }
  }
  CHECK(weights_ok, "%s: a quantized weight lacks its one matching linear_grad", s->file);
  int lm = -1;
  for (int k = nfwd; k < g->nnodes; k++)
    if (g->nodes[k].op == IR_LINEAR_GRAD && (g->nodes[k].attr_set & IR_BIT(IR_A_TIED))) lm = k;
  CHECK(tied == 1 && lm == bwd, "%s: the tied lm_head's linear_grad is not the first backward node", s->file);
  CHECK(find_weight_node(g, IR_RMSNORM_GRAD, "model.layers.0.input_layernorm") < 0,
        "%s: layer 0's input norm got a backward", s->file);
  CHECK(find_weight_node(g, IR_RMSNORM_GRAD, "model.layers.1.input_layernorm") > 0 &&
            find_weight_node(g, IR_RMSNORM_GRAD, "model.norm") > 0,
        "%s: a norm whose input has a gradient has no rmsnorm_grad", s->file);

  /* Inputs, return, name. */
  const IrValue *teacher = &g->values[g->inputs[1]];
  CHECK(!strcmp(g->name, "train") && g->ninputs == 2 + (gamma > 0) && !strcmp(teacher->name, "teacher") &&
            teacher->type.dtype == IR_F32 && ir_dim_equal(teacher->type.dim[1], g->values[fwd->ret].type.dim[1]),
        "%s: graph name or teacher input wrong", s->file);
  if (gamma > 0) {
    const IrType *th = &g->values[g->inputs[2]].type;
    const IrType *x = &g->values[g->nodes[nfwd + 1].in[0]].type;
    CHECK(th->dtype == IR_F32 && th->rank == 3 && th->dim[0].n == L && ir_dim_equal(th->dim[1], x->dim[0]) &&
              th->dim[2].n == x->dim[1].n,
          "%s: teacher_hidden is not f32[L, T, D]", s->file);
  }
  CHECK(g->ret == g->nodes[nfwd].out[0] && g->ret_type.rank == 1 && g->ret_type.dim[0].n == 1 &&
            g->ret_type.dtype == IR_F32,
        "%s: the graph does not return the KL loss f32[1]", s->file);
  /* Gradients are f32, shaped like their values. */
  int types_ok = 1;
  for (int v = nfwd_values; v < g->nvalues; v++) types_ok &= g->values[v].type.dtype == IR_F32;
  CHECK(types_ok, "%s: a gradient is not f32", s->file);

  /* The dump parses back and prints the same text. */
  char *text = print(g);
  IrGraph *back = text ? compile(text, 0) : NULL;
  char *again = back ? print(back) : NULL;
  CHECK(again && !strcmp(text, again), "%s: the training graph does not round-trip", s->file);
  free(text);
  free(again);
  ir_graph_free(back);
done:
  ir_graph_free(g);
  ir_graph_free(fwd);
  free(src);
}

/* The pass refuses what it cannot differentiate, with the diagnostic. */
static void expect_refused(const char *what, IrGraph *g, double gamma, const char *want) {
  char *msg = NULL;
  int rc = g ? grad(g, gamma, &msg) : RB_EINTERNAL;
  CHECK(rc == RB_EUSER && msg && strstr(msg, want), "%s: expected '%s', got rc %d:\n%s", what, want, rc,
        msg ? msg : "(nothing)");
  free(msg);
  ir_graph_free(g);
}

static void test_refusals(const char *dir) {
  char *src = read_text(dir, "tiny.ir");
  if (!src) return;
  IrGraph *fused = compile(src, 0);
  if (fused) ir_fuse(fused);
  expect_refused("fused", fused, 0, "'linear_add' has no backward rule: the grad pass takes the verified, unfused");
  expect_refused("dense", compile(src, 1), 0, "graph 'forward' has nothing to train");
  expect_refused("negative gamma", compile(src, 0), -1, "gamma must be a finite number >= 0");
  IrGraph *twice = compile(src, 0);
  char *msg = NULL;
  if (twice) CHECK(grad(twice, 0, &msg) == RB_OK, "tiny: first pass");
  free(msg);
  expect_refused("twice", twice, 0, "'kl_loss' has no backward rule");
  free(src);
  /* A single-linear program trains (its output is the logits), but has no
   * layers for a hidden-state loss. */
  src = read_text(dir, "linear-4096x4096-k2.ir");
  if (!src) return;
  IrGraph *one = compile(src, 0);
  CHECK(one && grad(one, 0, &msg) == RB_OK && one->nnodes == 3 && one->nodes[1].op == IR_KL_LOSS &&
            one->nodes[2].op == IR_LINEAR_GRAD,
        "single linear: expected linear, kl_loss, linear_grad");
  free(msg);
  ir_graph_free(one);
  expect_refused("no layers", compile(src, 0), 1, "gamma > 0 needs layers (a 'repeat' block)");
  free(src);
}

/* A hand-broken backward: the verifier rejects it by the rows' shape rules. */
typedef void (*Breaker)(IrGraph *g, int nfwd);

static int nth_op(const IrGraph *g, IrOp op, int from) {
  for (int i = from; i < g->nnodes; i++)
    if (g->nodes[i].op == op) return i;
  return -1;
}

static void dy_wrong_width(IrGraph *g, int nfwd) {
  /* The o_proj's backward given the gate gradient [T, 160] instead of [T, 64]. */
  int lg = find_weight_node(g, IR_LINEAR_GRAD, "model.layers.1.self_attn.o_proj");
  g->nodes[lg].in[0] = g->nodes[nth_op(g, IR_SWIGLU_GRAD, nfwd)].out[0];
}
static void dout_wrong(IrGraph *g, int nfwd) {
  int a = nth_op(g, IR_ATTENTION_GRAD, nfwd);
  g->nodes[a].in[0] = g->nodes[a].in[2]; /* k, [T, 32] */
}
static void dx_recorded_wrong(IrGraph *g, int nfwd) {
  int r = nth_op(g, IR_RMSNORM_GRAD, nfwd);
  g->values[g->nodes[r].out[0]].type.dim[1].n = 32;
}
static void unbound_weight(IrGraph *g, int nfwd) {
  g->nodes[nth_op(g, IR_RMSNORM_GRAD, nfwd)].weights[0] = "model.nowhere";
}
static void mse_layer(IrGraph *g, int nfwd) { g->nodes[nth_op(g, IR_HIDDEN_MSE, nfwd)].ints[0] = 2; }
static void lg_arity(IrGraph *g, int nfwd) { g->nodes[nth_op(g, IR_LINEAR_GRAD, nfwd)].nin = 1; }
static void sum_mismatch(IrGraph *g, int nfwd) {
  int a = nth_op(g, IR_ADD, nfwd);
  g->nodes[a].in[1] = g->inputs[1]; /* teacher, [T, 256] */
}

static void expect_broken(const char *dir, const char *what, Breaker brk, const char *want) {
  char *src = read_text(dir, "tiny.ir");
  IrGraph *g = src ? compile(src, 0) : NULL;
  char *msg = NULL;
  int nfwd = g ? g->nnodes : 0;
  if (!g || grad(g, 100, &msg) != RB_OK) {
    CHECK(0, "%s: setup", what);
    goto done;
  }
  brk(g, nfwd);
  IrDiag d;
  ir_diag_init(&d, "t.ir", NULL);
  int rc = ir_graph_verify(g, &d);
  CHECK(rc == RB_EUSER && d.out.data && strstr(d.out.data, want), "%s: expected '%s', got rc %d:\n%s", what,
        want, rc, d.out.data ? d.out.data : "(nothing)");
  ir_diag_free(&d);
done:
  free(msg);
  ir_graph_free(g);
  free(src);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : "samples";
  /* tiny: q, k, v separate (3 sums over the input norm's output, 2 adds), gate/up one linear;
   * smollm2: gate and up apart too (one more sum per layer). */
  static const Sample tiny = {"tiny.ir", 2, 27, 13, 4, 1};
  static const Sample smol = {"smollm2-135m.ir", 30, 30 * 13 + 3, 30 * 7 + 1, 5, 2};
  check_sample(dir, &tiny, 0);
  check_sample(dir, &tiny, 100);
  check_sample(dir, &smol, 0);
  check_sample(dir, &smol, 100);
  test_refusals(dir);
  expect_broken(dir, "dy_wrong_width", dy_wrong_width, "'linear_grad' gradient 1 'dg' is f32[T, 160], expected [T, 64]");
  expect_broken(dir, "dout_wrong", dout_wrong, "'attention_grad' output gradient 'k' is f16[T, 32], expected [T, 64]");
  expect_broken(dir, "dx_recorded_wrong", dx_recorded_wrong, "is recorded as f32[T, 32], but its inputs give f32[T, 64]");
  expect_broken(dir, "unbound_weight", unbound_weight, "'rmsnorm_grad' names weight 'model.nowhere', which no earlier op binds");
  expect_broken(dir, "mse_layer", mse_layer, "'hidden_mse' layer 2 is outside 0..1");
  expect_broken(dir, "lg_arity", lg_arity, "'linear_grad' takes 2 tensor inputs, got 1");
  expect_broken(dir, "sum_mismatch", sum_mismatch, "shape mismatch: 'add' operands");
  return CHECK_SUMMARY();
}
