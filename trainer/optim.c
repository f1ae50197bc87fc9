/* optim.c: the update of a training step (TRAINING.md): the gradient-norm
 * clip, Muon for every latent matrix (momentum, then Newton-Schulz as batched
 * cuBLAS bf16 products, one shape group at a time) and AdamW for the scales.
 * The per-step learning rates come from device scalars, so a captured step replays. */
#include <math.h>

#include "trainer/step.h"

/* The gradient norm over every trainable gradient, and the clip coefficient, into the scalars. */
int tr_optim_norm(TrStep *s) {
  CgArgv av;
  size_t nG = s->nW + s->nS;
  CgOp op = tr_op(CG_SUMSQ);
  CgSumsqArgs sq = {s->sumsq_parts, s->grads, (long long)nG};
  cg_sumsq_argv(&sq, &av);
  int rc = tr_launch(s, &op, 1, &av);
  if (!rc) rc = tr_reduce(s, s->sumsq_total, s->sumsq_parts, CG_SUMSQ_PARTS, 1);
  if (rc) return rc;
  op = tr_op(CG_CLIP_COEF);
  CgClipCoefArgs cc = {s->scalars, s->sumsq_total, (float)s->o.max_norm};
  cg_clip_coef_argv(&cc, &av);
  return tr_launch(s, &op, 1, &av);
}

/* Muon for every group, AdamW for the scales, with the clip coefficient tr_optim_norm left (TRAINING.md). */
int tr_optim_update(TrStep *s) {
  CgArgv av;
  int rc;
  CgOp op = tr_op(CG_MUON_MOMENTUM);
  CgMuonMomentumArgs mm = {s->muon_buf, s->muon_u, s->grads, s->scalars, (long long)s->nW, (float)s->o.mu};
  cg_muon_momentum_argv(&mm, &av);
  if ((rc = tr_launch(s, &op, (long long)s->nW, &av))) return rc;
  for (int gi = 0; gi < s->ngroups && !rc; gi++) {
    const MuonGroup *gr = &s->groups[gi];
    int N = gr->N, K = gr->K, tr = N > K, r = tr ? K : N, c = tr ? N : K, cnt = gr->count;
    long long per = (long long)N * K;
    RtDevPtr u = s->muon_u + (RtDevPtr)(gr->w_off * 4);
    op = tr_op(CG_BATCH_SUMSQ);
    CgBatchSumsqArgs bs = {s->muon_norms, u, per, cnt};
    cg_batch_sumsq_argv(&bs, &av);
    if ((rc = tr_launch(s, &op, cnt, &av))) break;
    op = tr_op(CG_MUON_NORMALIZE);
    CgMuonNormalizeArgs nz = {s->ns_x, u, s->muon_norms, N, K, cnt, tr};
    cg_muon_normalize_argv(&nz, &av);
    if ((rc = tr_launch(s, &op, per * cnt, &av))) break;
    RtDevPtr x = s->ns_x, xn = s->ns_xn;
    for (int it = 0; it < 5 && !rc; it++) {
      /* A = X X^T; B = b A + c A A; X = a X + B X, in bf16 (torch.optim.Muon) */
      RtGemm ga = {.ta = 0, .tb = 1, .M = r, .N = r, .K = c, .alpha = 1.0f, .beta = 0.0f, .a = x, .lda = c,
                   .stride_a = (long long)r * c, .b = x, .ldb = c, .stride_b = (long long)r * c, .c = s->ns_a,
                   .ldc = r, .stride_c = (long long)r * r, .batch = cnt, .ab_type = RT_BLAS_BF16,
                   .c_type = RT_BLAS_BF16};
      if ((rc = tr_gemm(s, &ga))) break;
      if (!s->planning && rt_memcpy_dtod(s->gpu, s->ns_b, s->ns_a, (size_t)cnt * r * r * 2, NULL)) {
        rc = RB_EINTERNAL;
        break;
      }
      RtGemm gb = ga;
      gb.tb = 0, gb.K = r, gb.alpha = 2.0315f, gb.beta = -4.7750f, gb.a = s->ns_a, gb.lda = r,
      gb.stride_a = (long long)r * r, gb.b = s->ns_a, gb.ldb = r, gb.stride_b = (long long)r * r, gb.c = s->ns_b;
      if ((rc = tr_gemm(s, &gb))) break;
      if (!s->planning && rt_memcpy_dtod(s->gpu, xn, x, (size_t)cnt * r * c * 2, NULL)) {
        rc = RB_EINTERNAL;
        break;
      }
      RtGemm gx = {.ta = 0, .tb = 0, .M = r, .N = c, .K = r, .alpha = 1.0f, .beta = 3.4445f, .a = s->ns_b,
                   .lda = r, .stride_a = (long long)r * r, .b = x, .ldb = c, .stride_b = (long long)r * c, .c = xn,
                   .ldc = c, .stride_c = (long long)r * c, .batch = cnt, .ab_type = RT_BLAS_BF16,
                   .c_type = RT_BLAS_BF16};
      if ((rc = tr_gemm(s, &gx))) break;
      RtDevPtr t = x;
      x = xn, xn = t;
    }
    if (rc) break;
    op = tr_op(CG_MUON_APPLY);
    CgMuonApplyArgs ap = {s->params + (RtDevPtr)(gr->w_off * 4), x, s->scalars, N, K, cnt, tr,
                          0.2f * sqrtf((float)(N > K ? N : K))};
    cg_muon_apply_argv(&ap, &av);
    rc = tr_launch(s, &op, per * cnt, &av);
  }
  if (rc) return rc;
  op = tr_op(CG_ADAMW);
  CgAdamwArgs aw = {s->params + (RtDevPtr)(s->nW * 4), s->adam_m, s->adam_v, s->grads + (RtDevPtr)(s->nW * 4),
                    s->scalars, (long long)s->nS, (float)s->o.beta1, (float)s->o.beta2, (float)s->o.eps, 1};
  cg_adamw_argv(&aw, &av);
  return tr_launch(s, &op, (long long)s->nS, &av);
}
