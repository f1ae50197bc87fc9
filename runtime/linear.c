/* linear.c: a quantized linear step's weights on the device, and its run.
 * Binding uploads the canonical packed tensors (packed.c) and repacks the
 * bits on the GPU into the one layout all of the step's bucket kernels read;
 * running picks the bucket by batch, and for a bucket under the dequant
 * strategy runs its kernel, cuBLAS and the epilogue over the executor's scratch. */
#include <string.h>

#include "ir/ir.h"
#include "runtime/runtime.h"

struct RtLinear {
  int step;
  RtDevPtr bits; /* the kernel layout, read by every batch bucket */
  RtDevPtr g, h;
  RtDevPtr hn;   /* h_p .* w of the rmsnorm its decode buckets fold in (rt_linear_fold_norm), or 0 */
  /* The bmma buckets' activation planes (CG_PLANES writes them, the bucket's kernel reads them
   * next): the layer's own, so that no other layer's pre-pass can overwrite them between the
   * two, whatever overlaps under programmatic launch. 0 without a bmma bucket. */
  RtDevPtr planes;
};

const CgOp *rt_linear_op(const RtPlan *p, int step) {
  if (step < 0 || step >= p->nsteps) return NULL;
  const RtPlanStep *s = &p->steps[step];
  if (!s->paths || s->kernels.nbucket < 1 || s->kernels.repack < 0) return NULL;
  return &p->kernels[s->kernels.bucket[0]].kernel.op;
}

int rt_linear_bind(RtProgram *pr, int step, const uint32_t *const *bits, const uint16_t *const *g,
                   const uint16_t *const *h, RtLinear **out, RbBuf *err) {
  const RtPlan *p = rt_program_plan(pr);
  const CgOp *op = rt_linear_op(p, step);
  if (!op) {
    rb_buf_printf(err, "step %d is not a quantized linear", step);
    return RB_EUSER;
  }
  const RtPlanStep *st = &p->steps[step];
  int K = op->K, k = op->paths, ntot = 0;
  for (int i = 0; i < op->nseg; i++) ntot += op->N[i];
  RtLinear *w = rb_calloc(1, sizeof *w);
  uint16_t *gcat = rb_malloc((size_t)k * ntot * 2);
  RtDevPtr src = 0;
  int rc = RB_EINTERNAL;
  if (!w || !gcat) goto done;
  w->step = step;
  /* g is (paths, Ntot): each path's rows of every segment, concatenated. */
  for (int q = 0, row0 = 0; q < k; q++, row0 = 0)
    for (int i = 0; i < op->nseg; row0 += op->N[i++])
      memcpy(gcat + (size_t)q * ntot + row0, g[i] + (size_t)q * op->N[i], (size_t)op->N[i] * 2);
  size_t hseg = cg_packed_part_bytes(CG_PACKED_H, k, 0, K), maxseg = 0;
  for (int i = 0; i < op->nseg; i++)
    if (cg_packed_part_bytes(CG_PACKED_BITS, k, op->N[i], K) > maxseg)
      maxseg = cg_packed_part_bytes(CG_PACKED_BITS, k, op->N[i], K);
  if ((rc = rt_program_alloc(pr, &w->g, (size_t)k * ntot * 2)) || (rc = rt_program_alloc(pr, &w->h, hseg * op->nseg)) ||
      (rc = rt_program_alloc(pr, &src, maxseg)) || (rc = rt_program_upload(pr, w->g, gcat, (size_t)k * ntot * 2)))
    goto done;
  for (int i = 0; i < op->nseg && !rc; i++) rc = rt_program_upload(pr, w->h + hseg * i, h[i], hseg);
  /* Clear (pad rows and columns must be 0), then repack every segment. */
  if (!rc && !(rc = rt_program_alloc(pr, &w->bits, st->layout_bytes))) rc = rt_program_fill(pr, w->bits, 0, st->layout_bytes);
  /* Zeroed once: a bucket of 4 reads the planes of rows past the batch too (never stored). */
  size_t pbytes = st->kernels.planes >= 0 ? cg_planes_bytes(op) : 0;
  if (!rc && pbytes && !(rc = rt_program_alloc(pr, &w->planes, pbytes))) rc = rt_program_fill(pr, w->planes, 0, pbytes);
  for (int i = 0; i < op->nseg && !rc; i++) {
    if ((rc = rt_program_upload(pr, src, bits[i], cg_packed_part_bytes(CG_PACKED_BITS, k, op->N[i], K)))) break;
    CgRepackArgs a = {w->bits, src, i};
    CgArgv v;
    cg_repack_argv(&a, &v);
    rc = rt_program_launch(pr, st->kernels.repack, 1, v.v, NULL);
    if (!rc) rc = rt_program_sync(pr); /* src is reused by the next segment */
  }
done:
  if (src) rt_program_free(pr, src);
  rb_free(gcat);
  if (rc != RB_OK) {
    rb_buf_printf(err, "binding the weights of step %d failed: %s", step, rc == RB_EINTERNAL && w ? rt_program_error(pr) : "out of memory");
    rt_linear_free(pr, w);
    return rc ? rc : RB_EINTERNAL;
  }
  *out = w;
  return RB_OK;
}

int rt_linear_fold_norm(RtProgram *pr, RtLinear *w, const uint16_t *const *h, const uint16_t *norm, RbBuf *err) {
  const CgOp *op = rt_linear_op(rt_program_plan(pr), w->step);
  size_t per = (size_t)op->paths * op->K, n = per * op->nseg;
  uint16_t *hn = rb_malloc(n * 2);
  int rc = hn ? RB_OK : RB_EINTERNAL;
  /* fp16(h * w): the rounding the unfused path takes where the norm writes fp16(x r w) */
  for (size_t i = 0; hn && i < n; i++)
    hn[i] = rb_f16_from_f32(rb_f32_from_f16(h[i / per][i % per]) * rb_f32_from_f16(norm[i % op->K]));
  if (!rc && !w->hn) rc = rt_program_alloc(pr, &w->hn, n * 2); /* a second fold reuses it */
  if (!rc) rc = rt_program_upload(pr, w->hn, hn, n * 2);
  if (rc) rb_buf_printf(err, "folding the rmsnorm weight into step %d failed: %s", w->step,
                        hn ? rt_program_error(pr) : "out of memory");
  rb_free(hn);
  return rc;
}

void rt_linear_free(RtProgram *pr, RtLinear *w) {
  if (!w) return;
  rt_program_free(pr, w->bits);
  rt_program_free(pr, w->g);
  rt_program_free(pr, w->h);
  if (w->hn) rt_program_free(pr, w->hn);
  if (w->planes) rt_program_free(pr, w->planes);
  rb_free(w);
}

/* Rows of all segments: W_hat's rows, the GEMM's output width. */
static int op_ntot(const CgOp *op) {
  int ntot = 0;
  for (int i = 0; i < op->nseg; i++) ntot += op->N[i];
  return ntot;
}

void rt_linear_scratch_need(const RtPlan *p, int max_batch, size_t *w_bytes, size_t *gu_bytes) {
  *w_bytes = *gu_bytes = 0;
  for (int i = 0; i < p->nsteps; i++) {
    const CgNodeKernels *nk = &p->steps[i].kernels;
    for (int b = 0; b < nk->nbucket; b++) {
      const CgKernel *k = &p->kernels[nk->bucket[b]].kernel;
      if (k->sched.strategy != CG_STRAT_DEQUANT) continue;
      size_t ntot = (size_t)op_ntot(&k->op), wb = ntot * (size_t)k->op.K * 2, gb = (size_t)max_batch * ntot * 2;
      if (wb > *w_bytes) *w_bytes = wb;
      if (k->op.epilogue == CG_EPI_SWIGLU && gb > *gu_bytes) *gu_bytes = gb;
    }
  }
}

/* The dequant strategy: W_hat into the scratch (one pass over the bits), then
 * the product on cuBLAS with fp32 accumulation, as the fp16 path computes it. */
static int run_dequant(RtProgram *pr, const RtLinear *w, int kernel, int batch, RtDevPtr y, RtDevPtr x, RtDevPtr res,
                       RtStream s, const RtLinearScratch *sc) {
  const RtPlan *p = rt_program_plan(pr);
  RtGpu *gpu = rt_program_gpu(pr);
  const CgOp *op = &p->kernels[kernel].kernel.op;
  const RtPlanStep *st = &p->steps[w->step];
  int ntot = op_ntot(op), swiglu = op->epilogue == CG_EPI_SWIGLU;
  size_t wb = (size_t)ntot * op->K * 2, gb = (size_t)batch * ntot * 2;
  if (!sc || !sc->blas || sc->w_bytes < wb || (swiglu && sc->gu_bytes < gb)) {
    rt_gpu_set_error(gpu, "step %d (IR line %d): its dequant bucket needs the executor's scratch (cuBLAS, %zu bytes "
                     "of fp16 weights%s), which this caller has not given", w->step, st->line, wb,
                     swiglu ? " and the gate|up rows" : "");
    return RB_EUSER;
  }
  if (swiglu && st->kernels.main < 0) {
    rt_gpu_set_error(gpu, "step %d (IR line %d): a swiglu dequant bucket without its product kernel (the plan "
                     "predates cg_kernels_complete: run rabitc again)", w->step, st->line);
    return RB_EUSER;
  }
  CgDequantArgs d = {sc->w, w->bits, w->g, w->h};
  CgArgv v;
  cg_dequant_argv(&d, &v);
  int rc = rt_program_launch(pr, kernel, batch, v.v, s);
  if (rc) return rc;
  if (swiglu) {
    if ((rc = rt_blas_linear(sc->blas, batch, ntot, op->K, x, sc->w, sc->gu, ntot, 0, 0))) return rc;
    CgSwigluArgs a = {y, sc->gu, ntot, batch};
    cg_swiglu_argv(&a, &v);
    return rt_program_launch(pr, st->kernels.main, batch, v.v, s);
  }
  int add = op->epilogue == CG_EPI_ADD;
  if (add && y != res && (rc = rt_memcpy_dtod(gpu, y, res, (size_t)batch * ntot * 2, s))) return rc;
  return rt_blas_linear(sc->blas, batch, ntot, op->K, x, sc->w, y, ntot, 0, add);
}

int rt_linear_kernel(const RtPlan *p, int step, int batch) {
  const CgNodeKernels *nk = &p->steps[step].kernels;
  /* The smallest bucket that holds the batch; the last serves every larger one. */
  for (int i = 0; i < nk->nbucket; i++)
    if (batch <= p->kernels[nk->bucket[i]].kernel.sched.batch_max) return nk->bucket[i];
  return nk->bucket[nk->nbucket - 1];
}

int rt_linear_norm_step(const RtPlan *p, int step, int *norm, RbBuf *err) {
  *norm = -1;
  const RtPlanStep *ps = step >= 0 && step < p->nsteps ? &p->steps[step] : NULL;
  float eps = 0;
  int mixed = 0; /* buckets folding in norms of two epsilons */
  for (int b = 0; ps && ps->paths && b < ps->kernels.nbucket; b++) {
    float e = p->kernels[ps->kernels.bucket[b]].kernel.op.eps;
    if (e > 0) mixed |= eps > 0 && e != eps, eps = e;
  }
  if (!eps) return RB_OK;
  /* The step writing its input, read by nothing else (what selection saw in the graph). */
  int v = ps->in[0], at = -1, readers = 0;
  for (int i = 0; i < p->nsteps; i++) {
    if (p->steps[i].nout > 0 && p->steps[i].out[0] == v) at = i;
    for (int k = 0; k < p->steps[i].nin; k++) readers += p->steps[i].in[k] == v;
  }
  const RtPlanStep *ns = at >= 0 ? &p->steps[at] : NULL;
  const CgOp *op = rt_linear_op(p, step);
  if (mixed || !ns || !op || ns->op != IR_RMSNORM || at > step || readers != 1 || v == p->ret || ns->kernels.main < 0 ||
      p->kernels[ns->kernels.main].kernel.op.eps != eps || ns->width[0] != op->K) {
    rb_buf_printf(err, "step %d (IR line %d) folds in an rmsnorm (eps %g), but its input is not the output of one "
                  "rmsnorm step of that eps read by it alone: the plan is inconsistent (run rabitc again)",
                  step, ps->line, (double)eps);
    return RB_EUSER;
  }
  *norm = at;
  return RB_OK;
}

int rt_linear_prenorm(const RtPlan *p, int step, int batch) {
  return p->steps[step].paths && p->kernels[rt_linear_kernel(p, step, batch)].kernel.op.eps > 0;
}

int rt_linear_run(RtProgram *pr, const RtLinear *w, int batch, RtDevPtr y, RtDevPtr x, RtDevPtr res, RtStream s,
                  const RtLinearScratch *sc) {
  const RtPlan *p = rt_program_plan(pr);
  int kernel = rt_linear_kernel(p, w->step, batch);
  if (p->kernels[kernel].kernel.sched.strategy == CG_STRAT_DEQUANT)
    return run_dequant(pr, w, kernel, batch, y, x, res, s, sc);
  /* The fused kernels load x and h 16 bytes at a time when K % 8 == 0 and trap on a base
   * that is not 16-byte aligned (a trap would end the context): said here instead. */
  const CgOp *op = &p->kernels[kernel].kernel.op;
  RtDevPtr h = op->eps > 0 ? w->hn : w->h;
  if (!h) {
    rt_gpu_set_error(rt_program_gpu(pr), "step %d (IR line %d): its kernel at batch %d normalizes its input (a fused "
                     "rmsnorm), and no norm weight was folded into it (rt_linear_fold_norm)", w->step,
                     p->steps[w->step].line, batch);
    return RB_EUSER;
  }
  if (op->K % 8 == 0 && ((x | h) & 15u)) {
    rt_gpu_set_error(rt_program_gpu(pr), "step %d (IR line %d): x (0x%llx) is not 16-byte aligned, as the linear's "
                     "kernel needs for K = %d", w->step, p->steps[w->step].line, (unsigned long long)x, op->K);
    return RB_EUSER;
  }
  CgArgv v;
  if (p->kernels[kernel].kernel.sched.strategy == CG_STRAT_BMMA) {
    /* The pre-pass turns x into the planes the kernel reads in its place. */
    const int planes = p->steps[w->step].kernels.planes;
    if (planes < 0 || !w->planes) {
      rt_gpu_set_error(rt_program_gpu(pr), "step %d (IR line %d): a bmma bucket without its planes kernel or "
                       "buffer (the plan is inconsistent: run rabitc again)", w->step, p->steps[w->step].line);
      return RB_EUSER;
    }
    CgPlanesArgs pa = {w->planes, x, h, batch};
    cg_planes_argv(&pa, &v);
    int rc = rt_program_launch(pr, planes, batch, v.v, s);
    if (rc) return rc;
    x = w->planes;
  }
  CgLinearArgs a = {y, x, w->bits, w->g, h, res, batch};
  cg_linear_argv(&a, &v);
  return rt_program_launch(pr, kernel, batch, v.v, s);
}
