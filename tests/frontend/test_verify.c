/* test_verify: the verifier catches each broken invariant a pass could
 * introduce (graphs corrupted on purpose after a clean compile), and the
 * fusion pass produces exactly the expected op list and a verified graph. */
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"
#include "tests/common/check.h"


static const char *SRC =
    "rabit 1\n"
    "model \"v\"\n"
    "let D = 64, F = 96\n"
    "graph f(tokens: i32[T]) -> f32[T, 100] {\n"
    "  x = embed(tokens, 100, D) @weights(\"emb\")\n"
    "  h = rmsnorm(x, eps = 1e-5) @weights(\"n1\")\n"
    "  q = linear(h, D) @weights(\"q\")\n"
    "  k = linear(h, 32) @weights(\"k\")\n"
    "  v = linear(h, 32, quant = rabit(paths = 3)) @weights(\"v\")\n"
    "  a = attention(q, k, v, heads = 4, kv_heads = 2, head_dim = 16, rope_theta = 1e4)\n"
    "  x = add(x, linear(a, D) @weights(\"o\"))\n"
    "  g = linear(x, F) @weights(\"g\")\n"
    "  u = linear(x, F) @weights(\"u\")\n"
    "  m = linear(swiglu(g, u), D) @weights(\"d\")\n"
    "  x = add(x, m)\n"
    "  y = linear(x, D) @weights(\"twice\")\n"
    "  x = add(y, y)\n"
    "  return linear(x, 100, quant = none, tied = \"emb\")\n"
    "}\n";

static IrGraph *fresh(void) {
  IrDiag d;
  ir_diag_init(&d, "v.ir", SRC);
  IrGraph *g = NULL;
  int rc = fe_compile("v.ir", SRC, NULL, &d, &g);
  if (rc == RB_OK) rc = ir_graph_verify(g, &d);
  if (rc != RB_OK) printf("setup failed:\n%s", d.out.data ? d.out.data : "");
  ir_diag_free(&d);
  return rc == RB_OK ? g : NULL;
}

/* Index of the n-th live node with op `op`. */
static int find(const IrGraph *g, IrOp op, int nth) {
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i].dead && g->nodes[i].op == op && nth-- == 0) return i;
  return -1;
}

typedef void (*Breaker)(IrGraph *g);

static void bad_paths(IrGraph *g) { g->nodes[find(g, IR_LINEAR, 0)].attr[IR_A_QUANT].paths = 7; }
static void use_before_def(IrGraph *g) {
  int h = find(g, IR_RMSNORM, 0);
  g->nodes[h].in[0] = g->nodes[find(g, IR_ATTENTION, 0)].out[0];
}
static void dead_def(IrGraph *g) { g->nodes[find(g, IR_RMSNORM, 0)].dead = 1; }
static void weights_count(IrGraph *g) { g->nodes[find(g, IR_LINEAR, 1)].nweights = 0; }
static void dup_weight(IrGraph *g) { g->nodes[find(g, IR_LINEAR, 1)].weights[0] = "q"; }
static void wrong_type(IrGraph *g) {
  IrNode *n = &g->nodes[find(g, IR_LINEAR, 0)];
  g->values[n->out[0]].type.dim[1].n = 65;
}
static void bad_attr(IrGraph *g) { g->nodes[find(g, IR_RMSNORM, 0)].attr_set |= IR_BIT(IR_A_TIED); }
static void missing_attr(IrGraph *g) {
  g->nodes[find(g, IR_ATTENTION, 0)].attr_set &= ~IR_BIT(IR_A_HEADS);
}
static void fused_k(IrGraph *g) {
  IrNode *n = &g->nodes[find(g, IR_LINEAR, 0)];
  n->attr_set |= IR_BIT(IR_A_K);
  n->attr[IR_A_K].i = 32;
}
static void bad_return(IrGraph *g) { g->ret = g->nodes[find(g, IR_RMSNORM, 0)].out[0]; }
static void bad_arity(IrGraph *g) { g->nodes[find(g, IR_ADD, 0)].nin = 1; }
static void tied_missing(IrGraph *g) {
  int e = find(g, IR_EMBED, 0);
  g->nodes[e].weights[0] = "other";
}

static void expect_error(const char *name, Breaker brk, const char *want) {
  IrGraph *g = fresh();
  if (!g) {
    CHECK(0, "%s: setup", name);
    return;
  }
  brk(g);
  IrDiag d;
  ir_diag_init(&d, "v.ir", SRC);
  int rc = ir_graph_verify(g, &d);
  CHECK(rc == RB_EUSER, "%s: verifier accepted a broken graph", name);
  CHECK(d.out.data && strstr(d.out.data, want), "%s: expected '%s' in:\n%s", name, want,
        d.out.data ? d.out.data : "(nothing)");
  ir_diag_free(&d);
  ir_graph_free(g);
}

static void test_fusion(void) {
  IrGraph *g = fresh();
  if (!g) return;
  int rewrites = ir_fuse(g);
  IrDiag d;
  ir_diag_init(&d, "v.ir", SRC);
  CHECK(ir_graph_verify(g, &d) == RB_OK, "fused graph fails verification:\n%s", d.out.data);
  ir_diag_free(&d);
  /* q and k share h and quant: one linear with two outputs; v (3 paths) stays
   * apart; o folds into its add; g/u merge and fold into linear_swiglu; d folds
   * into its add; 'twice' feeds both operands of one add, so it stays. */
  static const IrOp want[] = {IR_EMBED,       IR_RMSNORM,       IR_LINEAR,     IR_LINEAR,
                              IR_ATTENTION,   IR_LINEAR_ADD,    IR_LINEAR_SWIGLU, IR_LINEAR_ADD,
                              IR_LINEAR,      IR_ADD,           IR_LINEAR};
  int n = 0, ok = 1;
  for (int i = 0; i < g->nnodes; i++) {
    if (g->nodes[i].dead) continue;
    if (n >= (int)(sizeof want / sizeof want[0]) || g->nodes[i].op != want[n]) ok = 0;
    n++;
  }
  CHECK(ok && n == (int)(sizeof want / sizeof want[0]), "fused op list differs (%d ops)", n);
  CHECK(rewrites == 5, "expected 5 rewrites, got %d", rewrites);
  const IrNode *qk = &g->nodes[find(g, IR_LINEAR, 0)];
  CHECK(qk->nout == 2 && qk->ints[0] == 64 && qk->ints[1] == 32 && !strcmp(qk->weights[1], "k"),
        "q/k fusion kept the wrong segments");
  const IrNode *sw = &g->nodes[find(g, IR_LINEAR_SWIGLU, 0)];
  CHECK(!strcmp(sw->weights[0], "g") && !strcmp(sw->weights[1], "u"), "gate/up order lost");
  CHECK(ir_fuse(g) == 0, "fusion is not idempotent");
  ir_graph_free(g);
}

int main(void) {
  expect_error("bad_paths", bad_paths, "quant paths must be 1..4 (or none), got 7");
  expect_error("use_before_def", use_before_def, "before it is defined");
  expect_error("dead_def", dead_def, "before it is defined");
  expect_error("weights_count", weights_count, "binds 0 weight names, expected 1");
  expect_error("dup_weight", dup_weight, "weight 'q' is already bound at line 7");
  expect_error("wrong_type", wrong_type, "is recorded as f16[T, 65], but its inputs give f16[T, 64]");
  expect_error("bad_attr", bad_attr, "'rmsnorm' has no attribute 'tied'");
  expect_error("missing_attr", missing_attr, "'attention' needs attribute 'heads'");
  expect_error("fused_k", fused_k, "does not match weight K 32");
  expect_error("bad_return", bad_return, "returns f16[T, 64], but its signature says f32[T, 100]");
  expect_error("bad_arity", bad_arity, "'add' takes 2 tensor inputs, got 1");
  expect_error("tied_missing", tied_missing, "tied weight 'emb' is not bound by any 'embed'");
  test_fusion();
  return CHECK_SUMMARY();
}
