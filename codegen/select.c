/* select.c: the kernels a fused graph needs, one spec per distinct kernel.
 * Layers of the same shape share a spec, so a 32-layer model compiles a
 * handful of kernels, and each spec remembers the IR lines it serves. */
#include <string.h>

#include "codegen/codegen.h"
#include "ir/ir.h"

int cg_spec_equal(const CgSpec *a, const CgSpec *b) {
  /* Specs are built zeroed and filled field by field, so bytewise equality is
   * equality of every field, floats included. */
  return memcmp(a, b, sizeof *a) == 0;
}

/* Find or add the kernel s and record it for graph node `node`. */
static int add_use(CgKernelSet *ks, const CgSpec *s, int node, int line) {
  int i = 0;
  while (i < ks->n && !cg_spec_equal(&ks->k[i].spec, s)) i++;
  if (i == ks->n) {
    if (ks->n == ks->cap) {
      int cap = ks->cap ? ks->cap * 2 : 32;
      CgKernelUse *p = rb_realloc(ks->k, (size_t)cap * sizeof *p);
      if (!p) return RB_EINTERNAL;
      ks->k = p;
      ks->cap = cap;
    }
    memset(&ks->k[ks->n++], 0, sizeof ks->k[0]);
    ks->k[i].spec = *s;
  }
  CgKernelUse *u = &ks->k[i];
  u->uses++;
  int seen = 0;
  for (int j = 0; j < u->nlines; j++) seen |= u->lines[j] == line;
  if (!seen && u->nlines < 8) u->lines[u->nlines++] = line;
  CgNodeKernels *nk = &ks->node[node];
  if (nk->n < CG_MAX_NODE_KERNELS) nk->k[nk->n++] = i;
  return RB_OK;
}

static int64_t in_width(const IrGraph *g, const IrNode *n) { return g->values[n->in[0]].type.dim[1].n; }

/* A quantized linear node: its three batch buckets and its repacks. */
static int linear_kernels(const IrGraph *g, int node, CgKernelSet *ks) {
  const IrNode *n = &g->nodes[node];
  CgSpec s;
  memset(&s, 0, sizeof s);
  s.kind = CG_LINEAR;
  s.K = (int)in_width(g, n);
  s.paths = ir_node_paths(n);
  switch (n->op) {
  case IR_LINEAR_SWIGLU:
    s.nseg = 2;
    s.N[0] = s.N[1] = (int)n->ints[0];
    s.epilogue = CG_EPI_SWIGLU;
    break;
  case IR_LINEAR_ADD:
    s.nseg = 1;
    s.N[0] = (int)n->ints[0];
    s.epilogue = CG_EPI_ADD;
    break;
  default:
    s.nseg = n->nint;
    for (int i = 0; i < n->nint; i++) s.N[i] = (int)n->ints[i];
    break;
  }
  static const struct { CgStrategy strat; int batch; } buckets[] = {
      {CG_STRAT_XOR, 1}, {CG_STRAT_MMA, CG_BUCKET_SMALL}, {CG_STRAT_MMA, CG_BUCKET_LARGE}};
  for (size_t b = 0; b < sizeof buckets / sizeof buckets[0]; b++) {
    s.strategy = buckets[b].strat;
    s.batch_max = buckets[b].batch;
    if (add_use(ks, &s, node, n->line)) return RB_EINTERNAL;
  }
  /* The repack depends only on the layout (segments, K, paths), which every
   * strategy shares: one copy of a layer's bits serves all batch sizes. */
  CgSpec r;
  memset(&r, 0, sizeof r);
  r.kind = CG_REPACK;
  r.K = s.K;
  r.paths = s.paths;
  r.nseg = s.nseg;
  memcpy(r.N, s.N, sizeof r.N);
  r.batch_max = 1;
  r.strategy = CG_STRAT_XOR;
  return add_use(ks, &r, node, n->line);
}

int cg_kernels_from_graph(const IrGraph *g, const CgTargetOptions *opt, CgKernelSet *ks) {
  memset(ks, 0, sizeof *ks);
  ks->node = rb_calloc((size_t)g->nnodes + 1, sizeof *ks->node);
  if (!ks->node) return RB_EINTERNAL;
  ks->nnodes = g->nnodes;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    CgSpec s;
    memset(&s, 0, sizeof s);
    int rc = RB_OK;
    switch (n->op) {
    case IR_LINEAR:
    case IR_LINEAR_ADD:
    case IR_LINEAR_SWIGLU:
      if (ir_node_paths(n)) rc = linear_kernels(g, i, ks);
      else if (n->op == IR_LINEAR_SWIGLU) {
        /* Dense: cuBLAS computes gate and up side by side, this kernel the product. */
        s.kind = CG_SWIGLU;
        s.dim = (int)n->ints[0];
        rc = add_use(ks, &s, i, n->line);
      }
      break; /* dense linears run on cuBLAS */
    case IR_EMBED:
      s.kind = CG_EMBED;
      s.vocab = (int)n->ints[0];
      s.dim = (int)n->ints[1];
      rc = add_use(ks, &s, i, n->line);
      break;
    case IR_RMSNORM:
      s.kind = CG_RMSNORM;
      s.dim = (int)in_width(g, n);
      s.eps = (float)n->attr[IR_A_EPS].f;
      rc = add_use(ks, &s, i, n->line);
      break;
    case IR_ATTENTION:
      s.heads = (int)n->attr[IR_A_HEADS].i;
      s.kv_heads = (int)n->attr[IR_A_KV_HEADS].i;
      s.head_dim = (int)n->attr[IR_A_HEAD_DIM].i;
      s.rope_theta = (float)n->attr[IR_A_ROPE_THETA].f;
      s.max_ctx = opt && opt->max_ctx ? opt->max_ctx : 2048;
      s.kind = CG_ROPE_KV;
      rc = add_use(ks, &s, i, n->line);
      s.kind = CG_ATTENTION;
      if (!rc) rc = add_use(ks, &s, i, n->line);
      break;
    case IR_SWIGLU:
      s.kind = CG_SWIGLU;
      s.dim = (int)in_width(g, n);
      rc = add_use(ks, &s, i, n->line);
      break;
    case IR_ADD:
      s.kind = CG_ADD;
      s.dim = (int)in_width(g, n);
      rc = add_use(ks, &s, i, n->line);
      break;
    case IR_NOP: break;
    }
    if (rc) {
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
