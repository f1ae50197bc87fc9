/* fuse.c: the fusion pass.
 * Requires: a verified graph. Produces a graph the verifier accepts, where
 *  - linears reading the same input with the same quant become one linear with
 *    several outputs (q/k/v, gate/up), each segment keeping its own weight;
 *  - swiglu(gate, up) over the two outputs of such a linear becomes linear_swiglu;
 *  - a single-output linear whose only use is an add becomes linear_add.
 * Removed nodes are marked dead, not erased, so node indices stay valid. */
#include <string.h>

#include "ir/ir.h"

static int is_plain_linear(const IrNode *n) {
  return !n->dead && n->op == IR_LINEAR && !(n->attr_set & IR_BIT(IR_A_TIED));
}

static int same_k_attr(const IrNode *a, const IrNode *b) {
  int ka = (a->attr_set & IR_BIT(IR_A_K)) != 0, kb = (b->attr_set & IR_BIT(IR_A_K)) != 0;
  return !ka || !kb || a->attr[IR_A_K].i == b->attr[IR_A_K].i;
}

/* Move every segment of node src into node dst (same input, same quant). */
static void absorb(IrGraph *g, IrNode *dst, int dst_idx, IrNode *src) {
  for (int i = 0; i < src->nout; i++) {
    int v = src->out[i];
    g->values[v].def = dst_idx;
    g->values[v].def_out = dst->nout;
    dst->ints[dst->nint++] = src->ints[i];
    dst->weights[dst->nweights++] = src->weights[i];
    dst->out[dst->nout++] = v;
  }
  if (src->attr_set & IR_BIT(IR_A_K)) {
    dst->attr_set |= IR_BIT(IR_A_K);
    dst->attr[IR_A_K] = src->attr[IR_A_K];
  }
  src->dead = 1;
}

/* One pass over the nodes, remembering for each (input, paths) the first
 * linear that reads it: later ones join it while it has room. */
static int merge_shared_inputs(IrGraph *g) {
  int rewrites = 0;
  int *leader = rb_malloc(((size_t)g->nvalues * 5 + 1) * sizeof(int));
  if (!leader) return 0; /* fusion is an optimization: skip it rather than fail */
  for (int i = 0; i < g->nvalues * 5; i++) leader[i] = -1;
  for (int j = 0; j < g->nnodes; j++) {
    IrNode *b = &g->nodes[j];
    if (!is_plain_linear(b)) continue;
    int slot = b->in[0] * 5 + ir_node_paths(b), i = leader[slot];
    IrNode *a = i >= 0 ? &g->nodes[i] : NULL;
    if (a && same_k_attr(a, b) && a->nout + b->nout <= IR_MAX_OUT) {
      absorb(g, a, i, b);
      rewrites++;
    } else if (!a || a->nout + b->nout > IR_MAX_OUT) {
      leader[slot] = j; /* a full group: later linears start the next one */
    }
  }
  rb_free(leader);
  return rewrites;
}

/* Use counts of every value (the return counts as a use). */
static int *count_uses(const IrGraph *g) {
  int *uses = rb_calloc((size_t)g->nvalues + 1, sizeof(int));
  if (!uses) return NULL;
  for (int i = 0; i < g->nnodes; i++)
    if (!g->nodes[i].dead)
      for (int j = 0; j < g->nodes[i].nin; j++) uses[g->nodes[i].in[j]]++;
  if (g->ret >= 0) uses[g->ret]++;
  return uses;
}

/* Folding only lowers use counts, so counts taken once stay safe to test
 * "exactly one use" against for the whole pass. */
static int fold_swiglu(IrGraph *g) {
  int rewrites = 0, *uses = count_uses(g);
  if (!uses) return 0;
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *s = &g->nodes[i];
    if (s->dead || s->op != IR_SWIGLU) continue;
    int gate = s->in[0], up = s->in[1], L = g->values[gate].def;
    if (L < 0 || g->values[up].def != L) continue;
    IrNode *lin = &g->nodes[L];
    if (!is_plain_linear(lin) || lin->nout != 2 || gate == up) continue;
    if (uses[gate] != 1 || uses[up] != 1) continue;
    int gi = g->values[gate].def_out, ui = g->values[up].def_out;
    if (lin->ints[gi] != lin->ints[ui]) continue;
    const char *wg = lin->weights[gi], *wu = lin->weights[ui];
    int64_t n = lin->ints[gi];
    lin->op = IR_LINEAR_SWIGLU;
    lin->nint = 1;
    lin->ints[0] = n;
    lin->nweights = 2;
    lin->weights[0] = wg;
    lin->weights[1] = wu;
    lin->nout = 1;
    lin->out[0] = s->out[0];
    g->values[s->out[0]].def = L;
    g->values[s->out[0]].def_out = 0;
    s->dead = 1;
    rewrites++;
  }
  rb_free(uses);
  return rewrites;
}

static int fold_add(IrGraph *g) {
  int rewrites = 0, *uses = count_uses(g);
  if (!uses) return 0;
  for (int i = 0; i < g->nnodes; i++) {
    IrNode *a = &g->nodes[i];
    if (a->dead || a->op != IR_ADD) continue;
    for (int side = 0; side < 2; side++) {
      int prod = a->in[side], res = a->in[1 - side], L = g->values[prod].def;
      if (L < 0) continue;
      IrNode *lin = &g->nodes[L];
      if (!is_plain_linear(lin) || lin->nout != 1 || uses[prod] != 1 || prod == res)
        continue;
      /* The add's node becomes the fused op: both inputs are defined before it. */
      IrNode fused = *lin;
      fused.op = IR_LINEAR_ADD;
      fused.nin = 2;
      fused.in[1] = res;
      fused.nout = 1;
      fused.out[0] = a->out[0];
      fused.line = a->line;
      fused.col = a->col;
      fused.layer = a->layer;
      lin->dead = 1;
      *a = fused;
      rewrites++;
      break;
    }
  }
  rb_free(uses);
  return rewrites;
}

int ir_fuse(IrGraph *g) {
  int n = merge_shared_inputs(g);
  n += fold_swiglu(g);
  n += fold_add(g);
  return n;
}
