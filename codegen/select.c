/* select.c: the kernels a fused graph needs, one per distinct kernel, each
 * recorded under the role it plays for its node. Layers of the same shape
 * share a kernel, so a 32-layer model compiles a handful of them, and each
 * kernel remembers the IR lines it serves. */
#include <string.h>

#include "codegen/codegen.h"
#include "ir/ir.h"

/* Find or add kernel s, record that graph node `node` (IR line `line`)
 * uses it, and store its index in *role. */
static int add_use(CgKernelSet *ks, const CgKernel *s, int node, int line, int *role) {
  int i = 0;
  while (i < ks->n && !cg_kernel_equal(&ks->k[i].kernel, s)) i++;
  if (i == ks->n) {
    if (ks->n == ks->cap) {
      int cap = ks->cap ? ks->cap * 2 : 32;
      CgKernelUse *p = rb_realloc(ks->k, (size_t)cap * sizeof *p);
      if (!p) return RB_EINTERNAL;
      ks->k = p;
      ks->cap = cap;
    }
    memset(&ks->k[ks->n++], 0, sizeof ks->k[0]);
    ks->k[i].kernel = *s;
    ks->k[i].from = CG_FROM_DEFAULT;
  }
  CgKernelUse *u = &ks->k[i];
  u->uses++;
  int seen = 0;
  for (int j = 0; j < u->nlines; j++) seen |= u->lines[j] == line;
  if (!seen && u->nlines < 8) u->lines[u->nlines++] = line;
  (void)node;
  *role = i;
  return RB_OK;
}

static int64_t in_width(const IrGraph *g, const IrNode *n) { return g->values[n->in[0]].type.dim[1].n; }

/* A quantized linear node: its kernel per batch bucket (the target's
 * default schedules) and the repack of the layout they share. */
static int linear_kernels(const IrGraph *g, int node, const CgTarget *t, CgKernelSet *ks) {
  const IrNode *n = &g->nodes[node];
  CgNodeKernels *nk = &ks->node[node];
  CgKernel k;
  memset(&k, 0, sizeof k);
  CgOp *s = &k.op;
  s->kind = CG_LINEAR;
  s->K = (int)in_width(g, n);
  s->paths = ir_node_paths(n);
  switch (n->op) {
  case IR_LINEAR_SWIGLU:
    s->nseg = 2;
    s->N[0] = s->N[1] = (int)n->ints[0];
    s->epilogue = CG_EPI_SWIGLU;
    break;
  case IR_LINEAR_ADD:
    s->nseg = 1;
    s->N[0] = (int)n->ints[0];
    s->epilogue = CG_EPI_ADD;
    break;
  default:
    s->nseg = n->nint;
    for (int i = 0; i < n->nint; i++) s->N[i] = (int)n->ints[i];
    break;
  }
  CgSchedule buckets[CG_MAX_BUCKETS];
  int nb = t->linear_buckets(s, buckets);
  for (int b = 0; b < nb; b++) {
    k.sched = buckets[b];
    if (add_use(ks, &k, node, n->line, &nk->bucket[nk->nbucket++])) return RB_EINTERNAL;
  }
  /* The repack depends only on the layout (segments, K, paths), which every
   * schedule shares: one copy of a layer's bits serves all batch sizes. */
  CgKernel r;
  memset(&r, 0, sizeof r);
  r.op.kind = CG_REPACK;
  r.op.K = s->K;
  r.op.paths = s->paths;
  r.op.nseg = s->nseg;
  memcpy(r.op.N, s->N, sizeof r.op.N);
  return add_use(ks, &r, node, n->line, &nk->repack);
}

int cg_kernels_from_graph(const IrGraph *g, const CgTarget *t, const CgTargetOptions *opt, CgKernelSet *ks) {
  memset(ks, 0, sizeof *ks);
  ks->node = rb_calloc((size_t)g->nnodes + 1, sizeof *ks->node);
  if (!ks->node) return RB_EINTERNAL;
  ks->nnodes = g->nnodes;
  for (int i = 0; i < g->nnodes; i++) {
    CgNodeKernels *nk = &ks->node[i];
    nk->main = nk->rope = nk->repack = nk->nll = -1;
  }
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    CgNodeKernels *nk = &ks->node[i];
    if (n->dead) continue;
    CgKernel k;
    memset(&k, 0, sizeof k);
    CgOp *s = &k.op;
    int rc = RB_OK;
    switch (n->op) {
    case IR_LINEAR:
    case IR_LINEAR_ADD:
    case IR_LINEAR_SWIGLU:
      if (ir_node_paths(n)) rc = linear_kernels(g, i, t, ks);
      else if (n->op == IR_LINEAR_SWIGLU) {
        /* Dense: cuBLAS computes gate and up side by side, this kernel the product. */
        s->kind = CG_SWIGLU;
        s->dim = (int)n->ints[0];
        rc = add_use(ks, &k, i, n->line, &nk->main);
      }
      break; /* dense linears run on cuBLAS */
    case IR_EMBED:
      s->kind = CG_EMBED;
      s->vocab = (int)n->ints[0];
      s->dim = (int)n->ints[1];
      rc = add_use(ks, &k, i, n->line, &nk->main);
      break;
    case IR_RMSNORM:
      s->kind = CG_RMSNORM;
      s->dim = (int)in_width(g, n);
      s->eps = (float)n->attr[IR_A_EPS].f;
      rc = add_use(ks, &k, i, n->line, &nk->main);
      break;
    case IR_ATTENTION:
      s->heads = (int)n->attr[IR_A_HEADS].i;
      s->kv_heads = (int)n->attr[IR_A_KV_HEADS].i;
      s->head_dim = (int)n->attr[IR_A_HEAD_DIM].i;
      s->rope_theta = (float)n->attr[IR_A_ROPE_THETA].f;
      s->max_ctx = opt && opt->max_ctx ? opt->max_ctx : 2048;
      s->kind = CG_ROPE_KV;
      rc = add_use(ks, &k, i, n->line, &nk->rope);
      s->kind = CG_ATTENTION;
      if (!rc) rc = add_use(ks, &k, i, n->line, &nk->main);
      break;
    case IR_SWIGLU:
      s->kind = CG_SWIGLU;
      s->dim = (int)in_width(g, n);
      rc = add_use(ks, &k, i, n->line, &nk->main);
      break;
    case IR_ADD:
      s->kind = CG_ADD;
      s->dim = (int)in_width(g, n);
      rc = add_use(ks, &k, i, n->line, &nk->main);
      break;
    default: break; /* the training ops: their kernels are the training step's selection */
    }
    if (rc) {
      cg_kernel_set_free(ks);
      return RB_EINTERNAL;
    }
  }
  /* Evaluation scores the returned logits where they are (rabit ppl, eval):
   * the node producing them gets the NLL kernel, so every plan can. */
  for (int i = 0; g->ret >= 0 && g->ret_type.dtype == IR_F32 && i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead || n->nout != 1 || n->out[0] != g->ret) continue;
    CgKernel k;
    memset(&k, 0, sizeof k);
    k.op.kind = CG_NLL;
    k.op.vocab = (int)g->values[g->ret].type.dim[1].n;
    if (add_use(ks, &k, i, n->line, &ks->node[i].nll)) {
      cg_kernel_set_free(ks);
      return RB_EINTERNAL;
    }
  }
  return RB_OK;
}

void cg_kernel_set_free(CgKernelSet *ks) {
  rb_free(ks->k);
  rb_free(ks->node);
  memset(ks, 0, sizeof *ks);
}
