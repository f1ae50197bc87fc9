/* qat.c: one RaBiT QAT step on the GPU, run from the training graph that the
 * grad pass appends to the IR's forward: the coupled derivation of every
 * quantized weight, the teacher's and the student's forward, the loss, the
 * backward in the graph's order (TRAINING.md); then optim.c's update. Nodes
 * run through a launcher table indexed by op kind; dense products go to
 * cuBLAS in bf16, everything else to generated kernels. Opening, evaluation
 * and the state's accessors are here too; init.c loads and initializes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/step.h"

/* ==== small helpers ==== */

int tr_dev_alloc(TrStep *s, RtDevPtr *p, size_t bytes) {
  if (s->nallocs == s->capallocs) {
    int cap = s->capallocs ? 2 * s->capallocs : 256;
    RtDevPtr *a = rb_realloc(s->allocs, (size_t)cap * sizeof *a);
    if (!a) return RB_EINTERNAL;
    s->allocs = a, s->capallocs = cap;
  }
  if (rt_mem_alloc(s->gpu, p, bytes ? bytes : 4)) return RB_EINTERNAL;
  s->allocs[s->nallocs++] = *p;
  return RB_OK;
}

int tr_width(const IrType *t) {
  int64_t w = 1;
  for (int i = 0; i < t->rank; i++)
    if (!t->dim[i].sym) w *= t->dim[i].n;
  return (int)w;
}

static int has_rows(const IrType *t) {
  for (int i = 0; i < t->rank; i++)
    if (t->dim[i].sym) return 1;
  return 0;
}

/* The kernel for op, registered while planning; its index, or -1. */
static int kernel_of(TrStep *s, const CgOp *op) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op = *op;
  for (int i = 0; i < s->nkern; i++)
    if (cg_kernel_equal(&s->kern[i], &k)) return i;
  if (!s->planning) return -1;
  if (s->nkern == s->capkern) {
    int cap = s->capkern ? 2 * s->capkern : 64;
    CgKernel *kk = rb_realloc(s->kern, (size_t)cap * sizeof *kk);
    if (!kk) return -1;
    s->kern = kk, s->capkern = cap;
  }
  s->kern[s->nkern] = k;
  return s->nkern++;
}

CgOp tr_op(CgKind kind) {
  CgOp op;
  memset(&op, 0, sizeof op);
  op.kind = kind;
  return op;
}

/* Launch the kernel of op over extent n with the arguments in av. */
int tr_launch(TrStep *s, const CgOp *op, long long n, const CgArgv *av) {
  int ki = kernel_of(s, op);
  if (ki < 0) {
    rt_gpu_set_error(s->gpu, "trainer: no kernel for %s (was it planned?)", cg_kind_name(op->kind));
    return RB_EINTERNAL;
  }
  if (s->planning || n <= 0) return RB_OK;
  CgLaunch l = cg_geometry_launch(&s->geo[ki], n > 0x7fffffff ? 0x7fffffff : (int)n);
  return rt_launch(s->gpu, s->fn[ki], l.grid, l.block, l.smem, NULL, (void **)av->v);
}

int tr_gemm(TrStep *s, const RtGemm *g) { return s->planning ? RB_OK : rt_blas_gemm(s->blas, g); }

/* Row-major C (M, N) = op(A) op(B), bf16 operands, C fp32 (or bf16 when c16). */
static RtGemm gemm_rm(int ta, int tb, int M, int N, int K, RtDevPtr a, int lda, RtDevPtr b, int ldb, RtDevPtr c,
                      int ldc, float beta) {
  return (RtGemm){.ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.0f, .beta = beta, .a = a, .b = b, .c = c,
                  .lda = lda, .ldb = ldb, .ldc = ldc, .batch = 1, .ab_type = RT_BLAS_BF16, .c_type = RT_BLAS_F32};
}

static int cast16(TrStep *s, RtDevPtr y, RtDevPtr x, long long n) {
  CgOp op = tr_op(CG_CAST_BF16);
  CgCastArgs a = {y, x, (int)n};
  CgArgv av;
  cg_cast_argv(&a, &av);
  return tr_launch(s, &op, n, &av);
}

int tr_reduce(TrStep *s, RtDevPtr out, RtDevPtr in, int rows, int m) {
  CgOp op = tr_op(CG_REDUCE);
  CgReduceArgs a = {out, in, rows, m};
  CgArgv av;
  cg_reduce_argv(&a, &av);
  return tr_launch(s, &op, m, &av);
}

/* The bf16 copy of value v in pass p for a GEMM, cast at its first use in the pass. */
static int shadow_of(TrStep *s, Pass *p, int v, RtDevPtr *out) {
  if (!p->shadow[v]) {
    rt_gpu_set_error(s->gpu, "trainer: value %d has no bf16 copy", v);
    return RB_EINTERNAL;
  }
  *out = p->shadow[v];
  if (p->cast_epoch[v] == s->epoch) return RB_OK;
  p->cast_epoch[v] = s->epoch;
  return cast16(s, p->shadow[v], p->val[v], (long long)s->T * tr_width(&s->g->values[v].type));
}

static const QWeight *qweight(const TrStep *s, const char *name) {
  int i;
  return rb_map_get(&s->qindex, name, &i) ? &s->qw[i] : NULL;
}

static RtDevPtr frozen(const TrStep *s, const char *name) {
  int i;
  return rb_map_get(&s->findex, name, &i) ? s->frozen[i].p : 0;
}

/* The bf16 matrix segment w of linear node n reads in pass p. */
static RtDevPtr linear_weight(const TrStep *s, const Pass *p, const IrNode *n, int w) {
  if (n->attr_set & IR_BIT(IR_A_TIED)) return frozen(s, n->attr[IR_A_TIED].s);
  const QWeight *q = ir_node_paths(n) ? qweight(s, n->weights[w]) : NULL;
  if (q) return p->teacher || s->calibrating ? q->dense : q->what; /* calibration: the FP model */
  return frozen(s, n->weights[w]);
}

/* ==== forward launchers ==== */

typedef int (*NodeFn)(TrStep *s, Pass *p, const IrNode *n);

static int run_embed(TrStep *s, Pass *p, const IrNode *n) {
  CgOp op = tr_op(CG_EMBED_FWD);
  op.vocab = (int)n->ints[0], op.dim = (int)n->ints[1];
  CgEmbedFwdArgs a = {p->val[n->out[0]], s->tokens, frozen(s, n->weights[0]), s->T};
  CgArgv av;
  cg_embed_fwd_argv(&a, &av);
  return tr_launch(s, &op, s->T, &av);
}

static int run_rmsnorm(TrStep *s, Pass *p, const IrNode *n) {
  CgOp op = tr_op(CG_RMSNORM_FWD);
  op.dim = tr_width(&s->g->values[n->in[0]].type), op.eps = (float)n->attr[IR_A_EPS].f;
  CgRmsnormFwdArgs a = {p->val[n->out[0]], p->val[n->in[0]], frozen(s, n->weights[0]), s->T};
  CgArgv av;
  cg_rmsnorm_fwd_argv(&a, &av);
  return tr_launch(s, &op, s->T, &av);
}

static int run_linear(TrStep *s, Pass *p, const IrNode *n) {
  int x = n->in[0], K = tr_width(&s->g->values[x].type);
  RtDevPtr x16;
  int rc = shadow_of(s, p, x, &x16);
  for (int i = 0; !rc && i < n->nout; i++) {
    int N = (int)n->ints[i];
    RtGemm gm = gemm_rm(0, 1, s->T, N, K, x16, K, linear_weight(s, p, n, i), K, p->val[n->out[i]], N, 0.0f);
    rc = tr_gemm(s, &gm);
  }
  return rc;
}

/* Attention's geometry for node n. */
typedef struct {
  int H, G, E, rep;
  float theta;
} Heads;

static Heads heads_of(const IrNode *n) {
  Heads h = {(int)n->attr[IR_A_HEADS].i, (int)n->attr[IR_A_KV_HEADS].i, (int)n->attr[IR_A_HEAD_DIM].i, 1,
             (float)n->attr[IR_A_ROPE_THETA].f};
  h.rep = h.H / h.G;
  return h;
}

static int heads_split(TrStep *s, const Heads *h, int heads, RtDevPtr y, RtDevPtr x, int rotate) {
  CgOp op = tr_op(CG_HEADS_SPLIT);
  op.heads = heads, op.head_dim = h->E, op.rope_theta = h->theta;
  CgHeadsSplitArgs a = {y, x, heads * h->E, s->T, s->S, rotate};
  CgArgv av;
  cg_heads_split_argv(&a, &av);
  return tr_launch(s, &op, s->T, &av);
}

static int heads_merge(TrStep *s, const Heads *h, int heads, RtDevPtr y, RtDevPtr x, int rotate) {
  CgOp op = tr_op(CG_HEADS_MERGE);
  op.heads = heads, op.head_dim = h->E, op.rope_theta = h->theta;
  CgHeadsMergeArgs a = {y, x, heads * h->E, s->T, s->S, rotate};
  CgArgv av;
  cg_heads_merge_argv(&a, &av);
  return tr_launch(s, &op, s->T, &av);
}

/* Products over heads. Query-head tensors are (B, H, S, *): head j rep + r, j = b G + g the kv group,
 * r < rep its query heads; kv tensors are (B, G, S, *): head j. For each r, one strided batch over j. */
typedef struct {
  int ta, tb, M, N, K;
  RtDevPtr a, b, c;
  long long sa, sb, sc; /* one head's elements of a, b and c */
} HeadGemm;

/* C_(j,r) = op(A_(j,r)) op(B_j): a and c query-head tensors, b a kv tensor. */
static int head_gemm(TrStep *s, const Heads *h, const HeadGemm *hg) {
  int rc = RB_OK;
  for (int r = 0; r < h->rep && !rc; r++) {
    RtGemm g = {.ta = hg->ta, .tb = hg->tb, .M = hg->M, .N = hg->N, .K = hg->K, .alpha = 1.0f, .beta = 0.0f,
                .a = hg->a + (RtDevPtr)(r * hg->sa * 2), .lda = hg->ta ? hg->M : hg->K, .stride_a = h->rep * hg->sa,
                .b = hg->b, .ldb = hg->tb ? hg->K : hg->N, .stride_b = hg->sb,
                .c = hg->c + (RtDevPtr)(r * hg->sc * 4), .ldc = hg->N, .stride_c = h->rep * hg->sc,
                .batch = s->B * h->G, .ab_type = RT_BLAS_BF16, .c_type = RT_BLAS_F32};
    rc = tr_gemm(s, &g);
  }
  return rc;
}

/* C_j = sum_r op(A_(j,r)) op(B_(j,r)): a and b query-head tensors, c a kv tensor summed over its
 * query heads in ascending r (the GQA backward). */
static int head_gemm_kv(TrStep *s, const Heads *h, const HeadGemm *hg) {
  int rc = RB_OK;
  for (int r = 0; r < h->rep && !rc; r++) {
    RtGemm g = {.ta = hg->ta, .tb = hg->tb, .M = hg->M, .N = hg->N, .K = hg->K, .alpha = 1.0f,
                .beta = r ? 1.0f : 0.0f, .a = hg->a + (RtDevPtr)(r * hg->sa * 2), .lda = hg->ta ? hg->M : hg->K,
                .stride_a = h->rep * hg->sa, .b = hg->b + (RtDevPtr)(r * hg->sb * 2),
                .ldb = hg->tb ? hg->K : hg->N, .stride_b = h->rep * hg->sb, .c = hg->c, .ldc = hg->N,
                .stride_c = hg->sc, .batch = s->B * h->G, .ab_type = RT_BLAS_BF16, .c_type = RT_BLAS_F32};
    rc = tr_gemm(s, &g);
  }
  return rc;
}

/* Rotated q, k and v as bf16 head tensors, and P = softmax(q k^T / sqrt(E)), causal. */
static int attention_probs(TrStep *s, const Heads *h, RtDevPtr q, RtDevPtr k, RtDevPtr v) {
  int S = s->S, E = h->E, rc;
  if ((rc = heads_split(s, h, h->H, s->att_q, q, 1)) || (rc = heads_split(s, h, h->G, s->att_k, k, 1)) ||
      (rc = heads_split(s, h, h->G, s->att_v, v, 0)))
    return rc;
  HeadGemm sc = {0, 1, S, S, E, s->att_q, s->att_k, s->att_s, (long long)S * E, (long long)S * E, (long long)S * S};
  if ((rc = head_gemm(s, h, &sc))) return rc;
  CgOp op = tr_op(CG_SOFTMAX_FWD);
  op.head_dim = E;
  int rows = s->B * h->H * S;
  CgSoftmaxFwdArgs a = {s->att_p, s->att_s, rows, S};
  CgArgv av;
  cg_softmax_fwd_argv(&a, &av);
  return tr_launch(s, &op, rows, &av);
}

static int run_attention(TrStep *s, Pass *p, const IrNode *n) {
  Heads h = heads_of(n);
  int S = s->S, E = h.E;
  int rc = attention_probs(s, &h, p->val[n->in[0]], p->val[n->in[1]], p->val[n->in[2]]);
  HeadGemm pv = {0, 0, S, E, S, s->att_p, s->att_v, s->att_o, (long long)S * S, (long long)S * E, (long long)S * E};
  if (!rc) rc = head_gemm(s, &h, &pv);
  if (!rc) rc = heads_merge(s, &h, h.H, p->val[n->out[0]], s->att_o, 0);
  return rc;
}

static int run_swiglu(TrStep *s, Pass *p, const IrNode *n) {
  long long cnt = (long long)s->T * tr_width(&s->g->values[n->in[0]].type);
  CgOp op = tr_op(CG_SWIGLU_FWD);
  CgSwigluFwdArgs a = {p->val[n->out[0]], p->val[n->in[0]], p->val[n->in[1]], (int)cnt};
  CgArgv av;
  cg_swiglu_fwd_argv(&a, &av);
  return tr_launch(s, &op, cnt, &av);
}

static int run_add(TrStep *s, Pass *p, const IrNode *n) {
  long long cnt = (long long)s->T * tr_width(&s->g->values[n->in[0]].type);
  CgOp op = tr_op(CG_ADD_FWD);
  CgAddFwdArgs a = {p->val[n->out[0]], p->val[n->in[0]], p->val[n->in[1]], (int)cnt};
  CgArgv av;
  cg_add_fwd_argv(&a, &av);
  return tr_launch(s, &op, cnt, &av);
}

/* ==== the loss ==== */

static int run_kl_loss(TrStep *s, Pass *p, const IrNode *n) {
  int V = tr_width(&s->g->values[n->in[0]].type);
  if (s->calibrating) { /* the FP model's next-token cross-entropy instead (KL against itself is 0) */
    CgOp op = tr_op(CG_CE_LOSS);
    op.vocab = V;
    CgCeLossArgs a = {p->val[n->out[1]], s->row_loss, p->val[n->in[0]], s->targets, s->T, 1.0f / (float)s->T};
    CgArgv av;
    cg_ce_loss_argv(&a, &av);
    int rc = tr_launch(s, &op, s->T, &av);
    return rc ? rc : tr_reduce(s, s->losses, s->row_loss, s->T, 1);
  }
  CgOp op = tr_op(CG_KL_LOSS);
  op.vocab = V;
  CgKlLossArgs a = {p->val[n->out[1]], s->row_loss, p->val[n->in[0]], p->val[n->in[1]], s->T, 1.0f / (float)s->T};
  CgArgv av;
  cg_kl_loss_argv(&a, &av);
  int rc = tr_launch(s, &op, s->T, &av);
  return rc ? rc : tr_reduce(s, s->losses, s->row_loss, s->T, 1);
}

static int run_hidden_mse(TrStep *s, Pass *p, const IrNode *n) {
  int x = n->in[0], D = tr_width(&s->g->values[x].type), l = (int)n->ints[0];
  if (s->calibrating) /* no teacher: the term is absent, its gradient 0 */
    return s->planning ? RB_OK : rt_memset8(s->gpu, p->val[n->out[1]], 0, (size_t)s->T * D * 4);
  int slot = 1 + 2 * s->nmse++;
  RtDevPtr t = s->teacher_hidden + (RtDevPtr)((size_t)l * s->T * D * 4);
  CgOp op = tr_op(CG_MSE_ROWS);
  op.dim = D;
  CgMseRowsArgs a = {s->row_loss, p->val[x], t, s->T};
  CgArgv av;
  cg_mse_rows_argv(&a, &av);
  int rc = tr_launch(s, &op, s->T, &av);
  RtDevPtr sums = s->losses + (RtDevPtr)(slot * 4);
  if (!rc) rc = tr_reduce(s, sums, s->row_loss, s->T, 2);
  if (rc) return rc;
  CgOp og = tr_op(CG_MSE_GRAD);
  long long cnt = (long long)s->T * D;
  CgMseGradArgs ga = {p->val[n->out[1]], p->val[x], t, sums, (int)cnt, (float)n->attr[IR_A_SCALE].f};
  cg_mse_grad_argv(&ga, &av);
  return tr_launch(s, &og, cnt, &av);
}

/* ==== backward launchers ==== */

/* acc (m) += the column sums of |x| (T, m), deterministic: fixed parts, a fixed-order reduction. */
static int col_abs_add(TrStep *s, RtDevPtr acc, RtDevPtr x, int m) {
  CgOp op = tr_op(CG_COL_ABS);
  CgColAbsArgs a = {s->calib_parts, x, s->T, m};
  CgArgv av;
  cg_col_abs_argv(&a, &av);
  int rc = tr_launch(s, &op, m, &av);
  if (!rc) rc = tr_reduce(s, s->calib_tmp, s->calib_parts, CG_COL_ABS_PARTS, m);
  if (rc) return rc;
  CgOp oa = tr_op(CG_ADD_FWD);
  CgAddFwdArgs aa = {acc, acc, s->calib_tmp, m};
  cg_add_fwd_argv(&aa, &av);
  return tr_launch(s, &oa, m, &av);
}

static int run_linear_grad(TrStep *s, Pass *p, const IrNode *n) {
  int m = n->nin - 1, x = n->in[m], K = tr_width(&s->g->values[x].type), rc = RB_OK;
  RtDevPtr x16;
  if ((rc = shadow_of(s, p, x, &x16))) return rc;
  int quant = ir_node_paths(n) > 0 && !(n->attr_set & IR_BIT(IR_A_TIED));
  for (int i = 0; i < m && !rc; i++) {
    int N = (int)n->ints[i];
    if ((rc = cast16(s, s->dy16, p->val[n->in[i]], (long long)s->T * N))) break;
    RtGemm gx = gemm_rm(0, 0, s->T, K, N, s->dy16, N, linear_weight(s, p, n, i), K, p->val[n->out[0]], K,
                        i ? 1.0f : 0.0f);
    if ((rc = tr_gemm(s, &gx)) || !quant) continue;
    const QWeight *q = qweight(s, n->weights[i]);
    if (s->calibrating) { /* mean |dL/dy| per output channel and mean |x| per input channel */
      RtDevPtr acc = s->calib_acc + (RtDevPtr)(q->calib_off * 4);
      if ((rc = col_abs_add(s, acc, p->val[n->in[i]], N)) || (rc = col_abs_add(s, acc + (RtDevPtr)(N * 4), p->val[x], K)))
        break;
      continue;
    }
    RtDevPtr dW = s->grads + (RtDevPtr)(q->w_off * 4);
    RtGemm gw = gemm_rm(1, 0, N, K, s->T, s->dy16, N, x16, K, dW, K, 0.0f);
    if ((rc = tr_gemm(s, &gw))) break;
    /* standard QAT: every W_p receives dL/dW_hat itself (the identity straight-through estimator) */
    for (int lat = 1; lat < q->nlat && !rc && !s->planning; lat++)
      rc = rt_memcpy_dtod(s->gpu, dW + (RtDevPtr)((size_t)lat * N * K * 4), dW, (size_t)N * K * 4, NULL);
    if (rc) break;
    RtDevPtr sc = s->params + (RtDevPtr)((s->nW + q->s_off) * 4), dsc = s->grads + (RtDevPtr)((s->nW + q->s_off) * 4);
    CgOp op = tr_op(CG_DERIVE_GRAD_G);
    op.N[0] = q->N, op.nseg = 1, op.K = q->K, op.paths = q->k;
    CgDeriveGradGArgs ag = {dsc, dW, q->bits, sc + (RtDevPtr)((size_t)q->k * q->N * 4)};
    CgArgv av;
    cg_derive_grad_g_argv(&ag, &av);
    if ((rc = tr_launch(s, &op, 1, &av))) break;
    op.kind = CG_DERIVE_GRAD_H;
    CgDeriveGradHArgs ah = {dsc + (RtDevPtr)((size_t)q->k * q->N * 4), s->derive_part, dW, q->bits, sc};
    cg_derive_grad_h_argv(&ah, &av);
    rc = tr_launch(s, &op, 1, &av);
  }
  return rc;
}

static int run_rmsnorm_grad(TrStep *s, Pass *p, const IrNode *n) {
  CgOp op = tr_op(CG_RMSNORM_GRAD);
  op.dim = tr_width(&s->g->values[n->in[1]].type), op.eps = (float)n->attr[IR_A_EPS].f;
  CgRmsnormGradArgs a = {p->val[n->out[0]], p->val[n->in[0]], p->val[n->in[1]], frozen(s, n->weights[0]), s->T};
  CgArgv av;
  cg_rmsnorm_grad_argv(&a, &av);
  return tr_launch(s, &op, s->T, &av);
}

/* dO -> dq, dk, dv through the recomputed probabilities (TRAINING.md). */
static int run_attention_grad(TrStep *s, Pass *p, const IrNode *n) {
  Heads h = heads_of(n);
  int S = s->S, E = h.E, rc;
  long long se = (long long)S * E, ss = (long long)S * S;
  if ((rc = attention_probs(s, &h, p->val[n->in[1]], p->val[n->in[2]], p->val[n->in[3]]))) return rc;
  /* dO as bf16 heads (it is not rotated: the output is P v) */
  if ((rc = heads_split(s, &h, h.H, s->att_do, p->val[n->in[0]], 0))) return rc;
  HeadGemm dp = {0, 1, S, S, E, s->att_do, s->att_v, s->att_dp, se, se, ss}; /* dP = dO v^T */
  HeadGemm dv = {1, 0, S, E, S, s->att_p, s->att_do, s->att_dv, ss, se, se};  /* dv = sum_r P^T dO */
  if ((rc = head_gemm(s, &h, &dp)) || (rc = head_gemm_kv(s, &h, &dv))) return rc;
  CgOp op = tr_op(CG_SOFTMAX_GRAD);
  op.head_dim = E;
  int rows = s->B * h.H * S;
  CgSoftmaxGradArgs a = {s->att_ds, s->att_p, s->att_dp, rows, S};
  CgArgv av;
  cg_softmax_grad_argv(&a, &av);
  if ((rc = tr_launch(s, &op, rows, &av))) return rc;
  HeadGemm dq = {0, 0, S, E, S, s->att_ds, s->att_k, s->att_dq, ss, se, se}; /* dq = dS k */
  HeadGemm dk = {1, 0, S, E, S, s->att_ds, s->att_q, s->att_dk, ss, se, se}; /* dk = sum_r dS^T q */
  if ((rc = head_gemm(s, &h, &dq)) || (rc = head_gemm_kv(s, &h, &dk))) return rc;
  if ((rc = heads_merge(s, &h, h.H, p->val[n->out[0]], s->att_dq, 1))) return rc;
  if ((rc = heads_merge(s, &h, h.G, p->val[n->out[1]], s->att_dk, 1))) return rc;
  return heads_merge(s, &h, h.G, p->val[n->out[2]], s->att_dv, 0);
}

static int run_swiglu_grad(TrStep *s, Pass *p, const IrNode *n) {
  long long cnt = (long long)s->T * tr_width(&s->g->values[n->in[0]].type);
  CgOp op = tr_op(CG_SWIGLU_GRAD);
  CgSwigluGradArgs a = {p->val[n->out[0]], p->val[n->out[1]], p->val[n->in[0]], p->val[n->in[1]],
                        p->val[n->in[2]], (int)cnt};
  CgArgv av;
  cg_swiglu_grad_argv(&a, &av);
  return tr_launch(s, &op, cnt, &av);
}

/* The launcher table: one entry per op kind the training graph holds. */
static const NodeFn node_run[IR_NOP] = {
    [IR_EMBED] = run_embed,
    [IR_RMSNORM] = run_rmsnorm,
    [IR_LINEAR] = run_linear,
    [IR_ATTENTION] = run_attention,
    [IR_SWIGLU] = run_swiglu,
    [IR_ADD] = run_add,
    [IR_KL_LOSS] = run_kl_loss,
    [IR_HIDDEN_MSE] = run_hidden_mse,
    [IR_LINEAR_GRAD] = run_linear_grad,
    [IR_RMSNORM_GRAD] = run_rmsnorm_grad,
    [IR_ATTENTION_GRAD] = run_attention_grad,
    [IR_SWIGLU_GRAD] = run_swiglu_grad,
};

/* The forward is every node before the loss (the grad pass appends the loss,
 * then the backward, whose gradient sums are add nodes too). */
int tr_is_forward_node(const TrStep *s, int i) { return i < s->nforward; }

/* ==== the step ==== */

static int derive_all(TrStep *s) {
  int rc = RB_OK;
  for (int i = 0; i < s->nqw && !rc; i++) {
    const QWeight *q = &s->qw[i];
    CgOp op = tr_op(s->o.method == TR_METHOD_STANDARD ? CG_DERIVE_STANDARD : CG_DERIVE);
    op.N[0] = q->N, op.nseg = 1, op.K = q->K, op.paths = q->k;
    RtDevPtr sc = s->params + (RtDevPtr)((s->nW + q->s_off) * 4);
    CgDeriveArgs a = {q->what, q->bits, s->params + (RtDevPtr)(q->w_off * 4), sc,
                      sc + (RtDevPtr)((size_t)q->k * q->N * 4)};
    CgArgv av;
    cg_derive_argv(&a, &av);
    rc = tr_launch(s, &op, 1, &av);
  }
  return rc;
}

static int run_nodes(TrStep *s, Pass *p, int forward) {
  int rc = RB_OK;
  if (forward) s->epoch++;
  s->nmse = 0;
  for (int i = 0; i < s->g->nnodes && !rc; i++) {
    const IrNode *n = &s->g->nodes[i];
    if (n->dead || tr_is_forward_node(s, i) != forward) continue;
    if (!node_run[n->op]) {
      rt_gpu_set_error(s->gpu, "trainer: no launcher for op %s", ir_ops[n->op].name);
      return RB_EUSER;
    }
    rc = node_run[n->op](s, p, n);
  }
  return rc;
}

/* The teacher's residual stream after each block, where hidden_mse reads it. */
static int copy_teacher_hidden(TrStep *s) {
  for (int i = 0; i < s->g->nnodes; i++) {
    const IrNode *n = &s->g->nodes[i];
    if (n->dead || n->op != IR_HIDDEN_MSE || s->planning) continue;
    int x = n->in[0], D = tr_width(&s->g->values[x].type);
    size_t bytes = (size_t)s->T * D * 4;
    if (rt_memcpy_dtod(s->gpu, s->teacher_hidden + (RtDevPtr)(n->ints[0] * bytes), s->teacher.val[x], bytes, NULL))
      return RB_EINTERNAL;
  }
  return RB_OK;
}

/* Everything before the update, on the W_hat derive_all last made: the teacher's forward, the
 * student's, and unless forward_only the loss, the backward and the gradient norm. Calibrating,
 * the FP model's forward and backward alone. While planning it only collects kernels. */
int tr_step_body(TrStep *s) {
  int teacher = !s->forward_only && !s->calibrating;
  int rc = teacher ? run_nodes(s, &s->teacher, 1) : RB_OK;
  if (!rc && teacher) rc = copy_teacher_hidden(s);
  if (!rc) rc = run_nodes(s, &s->student, 1);
  if (!rc && !s->forward_only) rc = run_nodes(s, &s->student, 0);
  if (!rc && teacher) rc = tr_optim_norm(s);
  return rc;
}

static int logits_value(const TrStep *s);

/* ==== opening: weights, layout, memory, kernels ==== */

/* Is value v read as the x of a linear (a GEMM operand) anywhere? */
static int read_by_gemm(const IrGraph *g, int v) {
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    if (n->op == IR_LINEAR && n->in[0] == v) return 1;
    if (n->op == IR_LINEAR_GRAD && n->in[n->nin - 1] == v) return 1;
  }
  return 0;
}

static int alloc_pass(TrStep *s, Pass *p, int teacher) {
  const IrGraph *g = s->g;
  p->teacher = teacher;
  p->val = rb_calloc((size_t)g->nvalues, sizeof *p->val);
  p->shadow = rb_calloc((size_t)g->nvalues, sizeof *p->shadow);
  p->cast_epoch = rb_calloc((size_t)g->nvalues, sizeof *p->cast_epoch);
  if (!p->val || !p->shadow || !p->cast_epoch) return RB_EINTERNAL;
  for (int v = 0; v < g->nvalues; v++) {
    const IrValue *val = &g->values[v];
    if (val->def < 0) continue; /* graph inputs are bound below */
    if (teacher && !tr_is_forward_node(s, val->def)) continue;
    size_t rows = has_rows(&val->type) ? (size_t)s->T_max : 1, w = (size_t)tr_width(&val->type);
    int rc = tr_dev_alloc(s, &p->val[v], rows * w * 4);
    if (!rc && read_by_gemm(g, v)) rc = tr_dev_alloc(s, &p->shadow[v], rows * w * 2);
    if (rc) return rc;
  }
  return RB_OK;
}

/* Graph inputs: the tokens, the teacher's logits (the teacher pass's own buffer) and hidden states. */
static int bind_inputs(TrStep *s) {
  const IrGraph *g = s->g;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    if (n->op == IR_KL_LOSS) s->student.val[n->in[1]] = s->teacher.val[n->in[0]];
    if (n->op == IR_HIDDEN_MSE) s->student.val[n->in[1]] = s->teacher_hidden;
  }
  s->student.val[g->inputs[0]] = s->tokens;
  return RB_OK;
}

static int alloc_scratch(TrStep *s) {
  const IrGraph *g = s->g;
  size_t maxN = 1, q_el = 1, kv_el = 1, part = 1, L = 0, D = 0;
  for (int i = 0; i < g->nnodes; i++) {
    const IrNode *n = &g->nodes[i];
    if (n->dead) continue;
    if (n->op == IR_LINEAR)
      for (int w = 0; w < n->nout; w++) maxN = n->ints[w] > (int64_t)maxN ? (size_t)n->ints[w] : maxN;
    if (n->op == IR_ATTENTION) {
      Heads h = heads_of(n);
      q_el = (size_t)h.H * h.E > q_el ? (size_t)h.H * h.E : q_el;
      kv_el = (size_t)h.G * h.E > kv_el ? (size_t)h.G * h.E : kv_el;
      size_t sc = (size_t)h.H * (size_t)s->BS2_max;
      if (sc > part) part = sc;
    }
    if (n->op == IR_HIDDEN_MSE) {
      L++;
      D = (size_t)tr_width(&g->values[n->in[0]].type);
    }
  }
  size_t scores = part; /* B H S^2 over the largest attention */
  size_t T = (size_t)s->T_max, dpart = 1, maxg = 1, nsx = 1, nsa = 1;
  for (int i = 0; i < s->nqw; i++) {
    CgOp op = tr_op(CG_DERIVE_GRAD_H);
    op.N[0] = s->qw[i].N, op.nseg = 1, op.K = s->qw[i].K, op.paths = s->qw[i].k;
    uint64_t pp = cg_derive_grad_h_parts(&op);
    if (pp > dpart) dpart = (size_t)pp;
  }
  for (int gi = 0; gi < s->ngroups; gi++) {
    const MuonGroup *gr = &s->groups[gi];
    size_t r = (size_t)(gr->N < gr->K ? gr->N : gr->K), c = (size_t)(gr->N < gr->K ? gr->K : gr->N);
    if ((size_t)gr->count > maxg) maxg = (size_t)gr->count;
    if (gr->count * r * c > nsx) nsx = gr->count * r * c;
    if (gr->count * r * r > nsa) nsa = gr->count * r * r;
  }
  int rc = RB_OK;
  size_t nG = s->nW + s->nS;
  RtDevPtr *z[] = {&s->muon_buf, &s->adam_m, &s->adam_v};
  size_t zn[] = {s->nW, s->nS, s->nS};
  if (!rc) rc = tr_dev_alloc(s, &s->params, nG * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->grads, nG * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->muon_u, s->nW * 4);
  for (int i = 0; i < 3 && !rc; i++)
    if (!(rc = tr_dev_alloc(s, z[i], zn[i] * 4))) rc = rt_memset8(s->gpu, *z[i], 0, zn[i] * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->scalars, CG_NSCALARS * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->sumsq_parts, CG_SUMSQ_PARTS * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->sumsq_total, 4);
  if (!rc) rc = tr_dev_alloc(s, &s->muon_norms, maxg * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->ns_x, nsx * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->ns_xn, nsx * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->ns_a, nsa * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->ns_b, nsa * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->derive_part, dpart * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->tokens, T * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->row_loss, T * 2 * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->dy16, T * maxN * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->losses, (1 + 2 * (L + 1)) * 4);
  RtDevPtr *q16[] = {&s->att_q, &s->att_do}, *kv16[] = {&s->att_k, &s->att_v};
  for (int i = 0; i < 2 && !rc; i++) rc = tr_dev_alloc(s, q16[i], T * q_el * 2);
  for (int i = 0; i < 2 && !rc; i++) rc = tr_dev_alloc(s, kv16[i], T * kv_el * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->att_o, T * q_el * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_dq, T * q_el * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_dk, T * kv_el * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_dv, T * kv_el * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_s, scores * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_dp, scores * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->att_p, scores * 2);
  if (!rc) rc = tr_dev_alloc(s, &s->att_ds, scores * 2);
  if (!rc && L) rc = tr_dev_alloc(s, &s->teacher_hidden, L * T * D * 4);
  size_t calib = 0, nk_max = 1;
  for (int i = 0; i < s->nqw; i++) {
    s->qw[i].calib_off = calib;
    calib += (size_t)s->qw[i].N + s->qw[i].K;
    size_t m = (size_t)(s->qw[i].N > s->qw[i].K ? s->qw[i].N : s->qw[i].K);
    if (m > nk_max) nk_max = m;
  }
  if (!rc) rc = tr_dev_alloc(s, &s->targets, T * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->calib_acc, calib * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->calib_parts, (size_t)CG_COL_ABS_PARTS * nk_max * 4);
  if (!rc) rc = tr_dev_alloc(s, &s->calib_tmp, nk_max * 4);
  for (int i = 0; i < s->nqw && !rc; i++) {
    QWeight *q = &s->qw[i];
    size_t n = (size_t)q->N * q->K;
    if (!(rc = tr_dev_alloc(s, &q->what, n * 2)) && !(rc = tr_dev_alloc(s, &q->dense, n * 2)))
      rc = tr_dev_alloc(s, &q->bits, (size_t)q->k * q->N * (size_t)cg_packed_words(q->K) * 4);
  }
  return rc;
}

/* Build every kernel the planning pass collected (through the cache) and load it. */
static int build_kernels(TrStep *s, RbBuf *err) {
  RtBuilt *built = rb_calloc((size_t)s->nkern, sizeof *built);
  s->fn = rb_calloc((size_t)s->nkern, sizeof *s->fn);
  s->geo = rb_calloc((size_t)s->nkern, sizeof *s->geo);
  s->mod = rb_calloc((size_t)s->nkern, sizeof *s->mod);
  if (!built || !s->fn || !s->geo || !s->mod) {
    rb_free(built);
    return RB_EINTERNAL;
  }
  RtBuildOptions bo = {.target = s->target, .arch = rt_gpu_arch(s->gpu), .cache = s->c.cache, .jobs = s->o.jobs};
  int rc = rt_build_kernels(s->kern, s->nkern, &bo, built);
  for (int i = 0; i < s->nkern; i++) {
    if (built[i].rc) {
      RbBuf d = {0};
      cg_kernel_describe(&s->kern[i], &d);
      rb_buf_printf(err, "training kernel %s (%s) did not build: %s", built[i].entry, d.data ? d.data : "?",
                    built[i].log.data ? built[i].log.data : "no log");
      rb_buf_free(&d);
      break;
    }
    RbBuf e = {0};
    if ((rc = s->target->geometry(&s->kern[i], &s->geo[i], &e))) {
      rb_buf_printf(err, "training kernel %s: %s", built[i].entry, e.data ? e.data : "no geometry");
      rb_buf_free(&e);
      break;
    }
    rb_buf_free(&e);
    if ((rc = rt_module_load(s->gpu, built[i].cubin, built[i].len, &s->mod[i])) ||
        (rc = rt_module_function(s->mod[i], built[i].entry, &s->fn[i])))
      break;
  }
  rt_built_free(built, s->nkern);
  rb_free(built);
  return rc;
}

int tr_step_open(TrStep **out, RtGpu *gpu, const TrStepOptions *o, RbBuf *err) {
  *out = NULL;
  TrStep *s = rb_calloc(1, sizeof *s);
  if (!s) return RB_EINTERNAL;
  s->gpu = gpu, s->o = *o, s->target = &cg_target_cuda;
  if (s->o.max_norm <= 0) s->o.max_norm = 1.0;
  if (s->o.mu <= 0) s->o.mu = 0.95;
  if (s->o.beta1 <= 0) s->o.beta1 = 0.9;
  if (s->o.beta2 <= 0) s->o.beta2 = 0.999;
  if (s->o.eps <= 0) s->o.eps = 1e-8;
  s->B = o->batch, s->S = o->seq, s->T = o->batch * o->seq;
  s->T_max = s->T;
  s->BS2_max = o->batch * o->seq * o->seq;
  if (o->eval_batch * o->eval_seq > s->T_max) s->T_max = o->eval_batch * o->eval_seq;
  if (o->eval_batch * o->eval_seq * o->eval_seq > s->BS2_max) s->BS2_max = o->eval_batch * o->eval_seq * o->eval_seq;
  RtCompileOptions co = {.path = o->ir, .fe = o->fe, .stop = RT_STAGE_GRAD, .train = 1, .gamma = o->gamma};
  RtSafetensors *st = NULL;
  int rc = rt_compile(&co, &s->c, err);
  s->compiled = 1;
  if (rc && s->c.diag.data) rb_buf_puts(err, s->c.diag.data);
  if (!rc) {
    /* The training kinds take int extents: refuse, at the op, what they cannot index. */
    IrDiag d;
    ir_diag_init(&d, s->c.shown, s->c.text.data);
    rc = cg_graph_check(s->c.graph, &d);
    if (d.out.data) rb_buf_puts(err, d.out.data);
    ir_diag_free(&d);
  }
  if (!rc) {
    s->g = s->c.graph;
    s->nforward = s->g->nnodes;
    for (int i = 0; i < s->g->nnodes; i++)
      if (s->g->nodes[i].op == IR_KL_LOSS && i < s->nforward) s->nforward = i;
    RtKeyParts kp = {.source = s->c.text.data ? s->c.text.data : "", .options = "", .arch = "", .compiler_id = "",
                     .tool_version = ""};
    rt_key_hex(rt_key_make(&kp), s->ir_hash);
    RbBuf warn = {0};
    rc = rt_cache_open(&s->c.cache, o->cache_dir, RT_CACHE_DEFAULT_MAX, &warn);
    rb_buf_free(&warn);
  }
  if (!rc) rc = rt_st_open(o->weights, &st, err);
  if (!rc) rc = rt_blas_open(gpu, NULL, &s->blas, err);
  if (!rc) rc = tr_collect_weights(s, st, err);
  if (!rc) rc = tr_lay_out(s);
  if (!rc) rc = alloc_scratch(s);
  if (!rc) rc = alloc_pass(s, &s->student, 0);
  if (!rc) rc = alloc_pass(s, &s->teacher, 1);
  if (!rc) rc = bind_inputs(s);
  if (!rc) rc = tr_init_weights(s, st, NULL, NULL, s->o.ptq_rounds, err);
  rt_st_close(st);
  if (!rc) { /* planning: every kernel the step and the evaluation forward launch */
    s->planning = 1;
    rc = derive_all(s);
    if (!rc) rc = tr_step_body(s);
    if (!rc) rc = tr_optim_update(s);
    s->calibrating = 1;
    if (!rc) rc = tr_step_body(s);
    s->calibrating = 0;
    int lv = logits_value(s);
    if (!rc && lv >= 0 && o->eval_seq) {
      CgOp op = tr_op(CG_NLL);
      op.vocab = tr_width(&s->g->values[lv].type);
      rc = kernel_of(s, &op) < 0 ? RB_EINTERNAL : RB_OK;
    }
    s->planning = 0;
    if (!rc) rc = build_kernels(s, err);
  }
  if (rc) {
    if (!err->len && rt_gpu_error(gpu)) rb_buf_puts(err, rt_gpu_error(gpu));
    tr_step_close(s);
    return rc;
  }
  *out = s;
  return RB_OK;
}

void tr_step_close(TrStep *s) {
  if (!s) return;
  for (int i = 0; s->mod && i < s->nkern; i++) rt_module_unload(s->mod[i]);
  for (int i = 0; i < s->nallocs; i++) rt_mem_free(s->gpu, s->allocs[i]);
  rt_blas_close(s->blas);
  Pass *ps[] = {&s->student, &s->teacher};
  for (int i = 0; i < 2; i++) rb_free(ps[i]->val), rb_free(ps[i]->shadow), rb_free(ps[i]->cast_epoch);
  rb_free(s->allocs), rb_free(s->kern), rb_free(s->fn), rb_free(s->geo), rb_free(s->mod);
  rb_free(s->qw), rb_free(s->groups), rb_free(s->frozen);
  rb_map_free(&s->qindex), rb_map_free(&s->findex);
  if (s->c.cache) rt_cache_close(s->c.cache), s->c.cache = NULL;
  if (s->compiled) rt_compiled_free(&s->c);
  rb_free(s);
}

/* ==== running ==== */

int tr_step_run(TrStep *s, const int32_t *tokens, const TrStepHyper *hp, TrStepResult *r, RbBuf *err) {
  memset(r, 0, sizeof *r);
  s->B = s->o.batch, s->S = s->o.seq, s->T = s->B * s->S, s->forward_only = 0;
  float sc[CG_NSCALARS] = {0};
  sc[CG_SC_LR_W] = (float)hp->lr_w, sc[CG_SC_LR_S] = (float)hp->lr_s;
  sc[CG_SC_BIAS1] = (float)(1.0 - pow(s->o.beta1, hp->t));
  sc[CG_SC_BIAS2] = (float)(1.0 - pow(s->o.beta2, hp->t));
  sc[CG_SC_CLIP] = 1.0f;
  int rc = rt_memcpy_htod(s->gpu, s->tokens, tokens, (size_t)s->T * 4);
  if (!rc) rc = rt_memcpy_htod(s->gpu, s->scalars, sc, sizeof sc);
  if (!rc) rc = derive_all(s);
  if (!rc) rc = tr_step_body(s);
  /* The loss and the norm come back before the update, which runs only when both are
   * finite: a NaN leaves the parameters as they were, for the report to find its cause. */
  float losses[1 + 2 * 64] = {0};
  int nl = 1 + 2 * s->nmse;
  if (nl > (int)(sizeof losses / sizeof *losses)) nl = (int)(sizeof losses / sizeof *losses);
  if (!rc) rc = rt_memcpy_dtoh(s->gpu, losses, s->losses, (size_t)nl * 4);
  if (!rc) rc = rt_memcpy_dtoh(s->gpu, sc, s->scalars, sizeof sc);
  int finite = isfinite(losses[0]) && isfinite(sc[CG_SC_NORM]);
  for (int i = 1; i < nl; i++) finite = finite && isfinite(losses[i]);
  if (!rc && hp->update && finite) rc = tr_optim_update(s);
  if (rc) {
    rb_buf_printf(err, "training step: %s", rt_gpu_error(s->gpu) ? rt_gpu_error(s->gpu) : "a GPU call failed");
    return rc;
  }
  r->kl = losses[0] / (double)s->T; /* the rows' sum: the mean over tokens (TRAINING.md) */
  for (int i = 0, m = 0; i < s->g->nnodes; i++) {
    const IrNode *n = &s->g->nodes[i];
    if (n->dead || n->op != IR_HIDDEN_MSE) continue;
    float num = losses[1 + 2 * m], den = losses[2 + 2 * m];
    r->mse += n->attr[IR_A_SCALE].f * (den > 0 ? num / den : 0.0);
    m++;
  }
  r->loss = r->kl + r->mse;
  r->grad_norm = sc[CG_SC_NORM];
  r->updated = hp->update && finite;
  return RB_OK;
}

/* ==== state access ==== */

int tr_step_nweights(const TrStep *s) { return s->nqw; }

int tr_step_latents(const TrStep *s, int i) { return i >= 0 && i < s->nqw ? s->qw[i].nlat : 0; }

const char *tr_step_weight(const TrStep *s, int i, int *N, int *K, int *k) {
  if (i < 0 || i >= s->nqw) return NULL;
  if (N) *N = s->qw[i].N;
  if (K) *K = s->qw[i].K;
  if (k) *k = s->qw[i].k;
  return s->qw[i].name;
}

/* Where part of weight i lives on the device, and its bytes. */
static int part_addr(const TrStep *s, int i, TrPart part, RtDevPtr *p, size_t *bytes) {
  if (i < 0 || i >= s->nqw) return RB_EUSER;
  const QWeight *q = &s->qw[i];
  size_t nw = (size_t)q->N * q->K, ng = (size_t)q->k * q->N, nh = (size_t)q->k * q->K;
  RtDevPtr sc = (RtDevPtr)((s->nW + q->s_off) * 4);
  switch (part) {
  case TR_PART_W: *p = s->params + (RtDevPtr)(q->w_off * 4), *bytes = (size_t)q->nlat * nw * 4; break;
  case TR_PART_G: *p = s->params + sc, *bytes = ng * 4; break;
  case TR_PART_H: *p = s->params + sc + ng * 4, *bytes = nh * 4; break;
  case TR_PART_DW: *p = s->grads + (RtDevPtr)(q->w_off * 4), *bytes = (size_t)q->nlat * nw * 4; break;
  case TR_PART_DG: *p = s->grads + sc, *bytes = ng * 4; break;
  case TR_PART_DH: *p = s->grads + sc + ng * 4, *bytes = nh * 4; break;
  case TR_PART_BITS: *p = q->bits, *bytes = (size_t)q->k * q->N * (size_t)cg_packed_words(q->K) * 4; break;
  case TR_PART_WHAT: *p = q->what, *bytes = nw * 2; break;
  default: return RB_EUSER;
  }
  return RB_OK;
}

int tr_step_get(TrStep *s, int i, TrPart part, void *host) {
  RtDevPtr p;
  size_t n;
  int rc = part_addr(s, i, part, &p, &n);
  return rc ? rc : rt_memcpy_dtoh(s->gpu, host, p, n);
}

int tr_step_set(TrStep *s, int i, TrPart part, const void *host) {
  RtDevPtr p;
  size_t n;
  int rc = part_addr(s, i, part, &p, &n);
  return rc ? rc : rt_memcpy_htod(s->gpu, p, host, n);
}

/* The whole optimizer state as regions: what a checkpoint saves. */
static int region(const TrStep *s, TrRegion r, RtDevPtr *p, size_t *bytes) {
  switch (r) {
  case TR_REGION_PARAMS: *p = s->params, *bytes = (s->nW + s->nS) * 4; break;
  case TR_REGION_MUON: *p = s->muon_buf, *bytes = s->nW * 4; break;
  case TR_REGION_ADAM_M: *p = s->adam_m, *bytes = s->nS * 4; break;
  case TR_REGION_ADAM_V: *p = s->adam_v, *bytes = s->nS * 4; break;
  default: return RB_EUSER;
  }
  return RB_OK;
}

size_t tr_step_region_bytes(const TrStep *s, TrRegion r) {
  RtDevPtr p;
  size_t n = 0;
  return region(s, r, &p, &n) ? 0 : n;
}

int tr_step_region(TrStep *s, TrRegion r, void *host, int upload) {
  RtDevPtr p;
  size_t n;
  int rc = region(s, r, &p, &n);
  if (rc) return rc;
  return upload ? rt_memcpy_htod(s->gpu, p, host, n) : rt_memcpy_dtoh(s->gpu, host, p, n);
}

/* ==== evaluation: the student's forward on held-out windows ==== */

/* The logits the forward returns: the first input of the kl_loss node. */
static int logits_value(const TrStep *s) {
  for (int i = 0; i < s->g->nnodes; i++)
    if (!s->g->nodes[i].dead && s->g->nodes[i].op == IR_KL_LOSS) return s->g->nodes[i].in[0];
  return -1;
}

int tr_step_eval(TrStep *s, const TrEvalData *d, int max_windows, double *mean_nll, int *windows, RbBuf *err) {
  *mean_nll = NAN, *windows = 0;
  int lv = logits_value(s), V = lv >= 0 ? tr_width(&s->g->values[lv].type) : 0, W = d->window;
  if (lv < 0 || s->o.eval_seq != W || s->o.eval_batch < 1) {
    rb_buf_printf(err, "the training step was opened without evaluation windows of %d", W);
    return RB_EUSER;
  }
  int *pick = rb_malloc((size_t)d->nwindows * sizeof *pick), np = 0;
  float *nll = rb_malloc((size_t)s->o.eval_batch * W * sizeof *nll);
  int32_t *tok = rb_malloc((size_t)s->o.eval_batch * W * sizeof *tok);
  int32_t *tgt = rb_malloc((size_t)s->o.eval_batch * W * sizeof *tgt);
  int rc = pick && nll && tok && tgt ? RB_OK : RB_EINTERNAL;
  for (int i = 0; !rc && i < d->nwindows && (!max_windows || np < max_windows); i++)
    if (d->w[i].set == TR_EVAL_VALID) pick[np++] = i;
  double sum = 0;
  uint64_t count = 0;
  RtDevPtr targets = s->row_loss; /* T_max ints fit in its 2 T_max floats */
  if (!rc) rc = derive_all(s);     /* once: the weights do not change between the batches */
  for (int b0 = 0; !rc && b0 < np; b0 += s->o.eval_batch) {
    int nb = np - b0 < s->o.eval_batch ? np - b0 : s->o.eval_batch;
    for (int b = 0; b < nb; b++) {
      const int32_t *src = d->tokens + d->w[pick[b0 + b]].start;
      memcpy(tok + (size_t)b * W, src, (size_t)W * sizeof *tok);
      for (int t = 0; t < W - 1; t++) tgt[(size_t)b * W + t] = src[t + 1];
      tgt[(size_t)b * W + W - 1] = 0; /* scored but not counted */
    }
    s->B = nb, s->S = W, s->T = nb * W, s->forward_only = 1;
    rc = rt_memcpy_htod(s->gpu, s->tokens, tok, (size_t)s->T * 4);
    if (!rc) rc = rt_memcpy_htod(s->gpu, targets, tgt, (size_t)s->T * 4);
    if (!rc) rc = tr_step_body(s);
    CgOp op = tr_op(CG_NLL);
    op.vocab = V;
    CgNllArgs a = {s->att_o, s->student.val[lv], targets, V, s->T};
    CgArgv av;
    cg_nll_argv(&a, &av);
    if (!rc) rc = tr_launch(s, &op, s->T, &av);
    if (!rc) rc = rt_memcpy_dtoh(s->gpu, nll, s->att_o, (size_t)s->T * 4);
    for (int b = 0; !rc && b < nb; b++)
      for (int t = 0; t < W - 1; t++) sum += nll[(size_t)b * W + t], count++;
  }
  s->forward_only = 0;
  rb_free(pick), rb_free(nll), rb_free(tok), rb_free(tgt);
  if (rc) {
    rb_buf_printf(err, "evaluation: %s", rt_gpu_error(s->gpu) ? rt_gpu_error(s->gpu) : "a GPU call failed");
    return rc;
  }
  *mean_nll = count ? sum / (double)count : NAN;
  *windows = np;
  return RB_OK;
}

void tr_step_weight_offsets(const TrStep *s, int i, size_t *w_off, size_t *s_off, size_t *nW) {
  *w_off = s->qw[i].w_off, *s_off = s->qw[i].s_off, *nW = s->nW;
}

const char *tr_step_model(const TrStep *s) { return s->g->model ? s->g->model : "model"; }

const char *tr_step_ir_hash(const TrStep *s) { return s->ir_hash; }

/* The first non-finite value of n floats at p on the device, or -1. */
static long long first_nonfinite(TrStep *s, RtDevPtr p, size_t n, float *buf) {
  if (rt_memcpy_dtoh(s->gpu, buf, p, n * 4)) return -2;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(buf[i])) return (long long)i;
  return -1;
}

void tr_step_find_nonfinite(TrStep *s, char *what, size_t n) {
  snprintf(what, n, "no parameter or gradient holds one (the forward overflowed)");
  size_t most = 0;
  for (int i = 0; i < s->nqw; i++)
    if ((size_t)s->qw[i].nlat * s->qw[i].N * s->qw[i].K > most) most = (size_t)s->qw[i].nlat * s->qw[i].N * s->qw[i].K;
  float *buf = rb_malloc(most * 4 + 4);
  if (!buf) return;
  static const char *const part_names[] = {"W", "g", "h", "dW", "dg", "dh"};
  /* parameters first: a non-finite parameter is the cause, the gradients it poisons the effect */
  const TrPart order[] = {TR_PART_W, TR_PART_G, TR_PART_H, TR_PART_DW, TR_PART_DG, TR_PART_DH};
  for (int o = 0; o < 6; o++)
    for (int i = 0; i < s->nqw; i++) {
      RtDevPtr p = 0;
      size_t bytes = 0;
      part_addr(s, i, order[o], &p, &bytes);
      long long at = first_nonfinite(s, p, bytes / 4, buf);
      if (at >= 0) {
        snprintf(what, n, "%s of %s holds %g at element %lld", part_names[order[o]], s->qw[i].name, (double)buf[at],
                 at);
        rb_free(buf);
        return;
      }
    }
  rb_free(buf);
}

/* ==== the function-preserving initialization (DESIGN.md (a)-(c)) ==== */

