/* select.c: the kernels a fused graph needs, one per distinct kernel, each
 * recorded under the role it plays for its node. Layers of the same shape
 * share a kernel, so a 32-layer model compiles a handful of them, and each
 * kernel remembers the IR lines it serves. First, the index limits
 * (codegen.h): nothing is cut to a CgOp's int fields before it is known to fit. */
#include <stdarg.h>
#include <stdio.h>
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

/* ==== index limits (codegen.h) ==== */

_Static_assert(IR_DIM_MAX <= CG_INDEX_MAX, "a dimension the verifier accepts must fit a CgOp field");

/* 1 when v <= CG_INDEX_MAX; else 0, reported at n as "<what> = v <unit>". */
static int fits(IrDiag *d, const IrNode *n, int64_t v, const char *unit, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fits(IrDiag *d, const IrNode *n, int64_t v, const char *unit, const char *fmt, ...) {
  if (v <= CG_INDEX_MAX) return 1;
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  ir_diag_error(d, n->line, n->col, "'%s' %s = %lld %s, more than the kernels' index limit %lld",
                ir_ops[n->op].name, what, (long long)v, unit, (long long)CG_INDEX_MAX);
  return 0;
}

/* A linear's (or linear_grad's) sizes: its outputs together, the packed signs
 * of a quantized one, each weight dense. Every factor is at most IR_DIM_MAX
 * (the verifier), so the int64 products are exact. */
static int linear_fits(const IrGraph *g, const IrNode *n, IrDiag *d) {
  int xi = n->op == IR_LINEAR_GRAD ? n->nint : 0, segs = n->op == IR_LINEAR_SWIGLU ? 2 : n->nint;
  int64_t K = g->values[n->in[xi]].type.dim[1].n, ntot = 0;
  for (int i = 0; i < segs; i++) ntot += n->ints[n->op == IR_LINEAR_SWIGLU ? 0 : i];
  if (segs > 1 && !fits(d, n, ntot, "outputs", "N (all segments)")) return 0;
  int k = ir_node_paths(n);
  if (k > 0 && !fits(d, n, k * ntot * cg_packed_words(K), "words of packed signs",
                     "k * N * ceil(K / 32) = %d * %lld * %lld", k, (long long)ntot,
                     (long long)cg_packed_words(K)))
    return 0;
  for (int i = 0; i < segs; i++) {
    int64_t N = n->ints[n->op == IR_LINEAR_SWIGLU ? 0 : i];
    const char *w = i < n->nweights ? n->weights[i]
                    : (n->attr_set & IR_BIT(IR_A_TIED)) ? n->attr[IR_A_TIED].s : "?";
    if (!fits(d, n, N * K, "elements", "weight '%s' N * K = %lld * %lld", w, (long long)N, (long long)K))
      return 0;
  }
  return 1;
}

int cg_graph_check(const IrGraph *g, IrDiag *d) {
  int before = d->nerrors, nseen = 0, seen[32][2];
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    /* The layers of a repeat share their source line: one error for all of them. */
    int dup = 0;
    for (int j = 0; j < nseen; j++) dup |= seen[j][0] == n->line && seen[j][1] == n->col;
    if (dup) continue;
    int had = d->nerrors;
    switch (n->op) {
    case IR_LINEAR:
    case IR_LINEAR_ADD:
    case IR_LINEAR_SWIGLU:
    case IR_LINEAR_GRAD: linear_fits(g, n, d); break;
    case IR_EMBED:
      fits(d, n, n->ints[0] * n->ints[1], "elements", "table '%s' V * D = %lld * %lld",
           n->nweights ? n->weights[0] : "?", (long long)n->ints[0], (long long)n->ints[1]);
      break;
    case IR_ATTENTION:
    case IR_ATTENTION_GRAD: {
      int64_t h = n->attr[IR_A_HEADS].i, hkv = n->attr[IR_A_KV_HEADS].i, hd = n->attr[IR_A_HEAD_DIM].i;
      if (fits(d, n, h * hd, "columns", "heads * head_dim = %lld * %lld", (long long)h, (long long)hd))
        fits(d, n, hkv * hd, "columns", "kv_heads * head_dim = %lld * %lld", (long long)hkv, (long long)hd);
      break;
    }
    default: break; /* row-wise ops: their widths are dims, which the verifier bounds */
    }
    if (d->nerrors != had && nseen < 32) seen[nseen][0] = n->line, seen[nseen++][1] = n->col;
  }
  return d->nerrors == before ? RB_OK : RB_EUSER;
}

/* The rmsnorm node whose output is linear node `node`'s input and nothing else's
 * (nor the graph's result), or -1: the norm a decode bucket can fold in. */
static int norm_before(const IrGraph *g, int node) {
  int v = g->nodes[node].in[0], def = g->values[v].def;
  if (def < 0 || g->nodes[def].dead || g->nodes[def].op != IR_RMSNORM || v == g->ret) return -1;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    for (int j = 0; !n->dead && i != node && j < n->nin; j++)
      if (n->in[j] == v) return -1;
  }
  return def;
}

/* The planes pre-pass of node `node` when its kernel k needs one (a bmma bucket): one per
 * node, whatever its buckets (the batch is its extent). */
static int add_planes(CgKernelSet *ks, const CgKernel *k, int node, int line) {
  CgNodeKernels *nk = &ks->node[node];
  CgKernel planes;
  if (nk->planes >= 0 || !cg_linear_planes_kernel(k, &planes)) return RB_OK;
  return add_use(ks, &planes, node, line, &nk->planes);
}

/* A quantized linear node: its kernel per batch bucket (the target's
 * default schedules) and the repack of the layout they share. A bucket the
 * target can normalize in (linear_prenorm), as opt->fuse_norm allows, takes the
 * rmsnorm before it along (CgOp.eps): the executor then skips the norm at those
 * batches. */
static int linear_kernels(const IrGraph *g, int node, const CgTarget *t, const CgTargetOptions *opt, CgKernelSet *ks) {
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
  int norm = opt->fuse_norm != CG_FUSE_NONE && t->linear_prenorm ? norm_before(g, node) : -1;
  for (int b = 0; b < nb; b++) {
    if (opt->no_bmma && buckets[b].strategy == CG_STRAT_BMMA) continue;
    k.sched = buckets[b];
    int how = norm >= 0 ? t->linear_prenorm(&buckets[b]) : 0;
    int fold = how == CG_PRENORM_EXACT || (how == CG_PRENORM_KERNEL && opt->fuse_norm == CG_FUSE_ALL);
    s->eps = fold ? (float)g->nodes[norm].attr[IR_A_EPS].f : 0.0f;
    if (add_use(ks, &k, node, n->line, &nk->bucket[nk->nbucket++]) || add_planes(ks, &k, node, n->line))
      return RB_EINTERNAL;
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

int cg_kernels_from_graph(const IrGraph *g, const CgTarget *t, const CgTargetOptions *opt, IrDiag *d,
                          CgKernelSet *ks) {
  memset(ks, 0, sizeof *ks);
  if (cg_graph_check(g, d) != RB_OK) return RB_EUSER;
  ks->node = rb_calloc((size_t)g->nnodes + 1, sizeof *ks->node);
  if (!ks->node) return RB_EINTERNAL;
  ks->nnodes = g->nnodes;
  for (int i = 0; i < g->nnodes; i++) {
    CgNodeKernels *nk = &ks->node[i];
    nk->main = nk->rope = nk->repack = nk->planes = nk->nll = -1;
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
      if (ir_node_paths(n)) rc = linear_kernels(g, i, t, opt, ks);
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

int cg_kernels_complete(const IrGraph *g, CgKernelSet *ks) {
  for (int i = 0; i < g->nnodes && i < ks->nnodes; i++) {
    CgNodeKernels *nk = &ks->node[i];
    int dequant = 0, dim = 0;
    for (int b = 0; b < nk->nbucket; b++) {
      /* A copy: add_use may move ks->k. */
      const CgKernel k = ks->k[nk->bucket[b]].kernel;
      if (k.op.epilogue == CG_EPI_SWIGLU && k.sched.strategy == CG_STRAT_DEQUANT) dequant = 1, dim = k.op.N[0];
      /* A bucket a schedule made bmma needs the pre-pass selection gives the default ones. */
      if (add_planes(ks, &k, i, g->nodes[i].line)) return RB_EINTERNAL;
    }
    if (!dequant || nk->main >= 0) continue;
    /* Its GEMM gives gate|up side by side, as a dense swiglu's cuBLAS product does. */
    CgKernel pk;
    memset(&pk, 0, sizeof pk);
    pk.op.kind = CG_SWIGLU;
    pk.op.dim = dim;
    if (add_use(ks, &pk, i, g->nodes[i].line, &nk->main)) return RB_EINTERNAL;
  }
  return RB_OK;
}

void cg_kernel_set_free(CgKernelSet *ks) {
  rb_free(ks->k);
  rb_free(ks->node);
  memset(ks, 0, sizeof *ks);
}
