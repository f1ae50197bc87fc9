/* session.c: the public API of rabit.h, a thin layer over the runtime's own
 * (plan.c, program.c, linear.c): handles wrap the internal objects and error
 * buffers become caller-sized strings. The only file that includes rabit.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/rabit.h"
#include "runtime/runtime.h"

struct RabitPlan {
  RtPlan *p;
};

struct RabitSession {
  RtGpu *gpu;
  RtProgram *prog;
  /* What the dequant buckets (prefill batches) borrow, made by the first run that
   * takes one: cuBLAS on that run's stream, W_hat of the plan's largest such layer,
   * a swiglu's gate|up for the largest batch run so far. */
  RtLinearScratch lin;
  RtStream lin_stream;
};

struct RabitLinear {
  RtLinear *w;
  int step;
};

/* Copy an error buffer into the caller's string. */
static void say(char *err, size_t len, const RbBuf *e) {
  if (err && len) snprintf(err, len, "%s", e->data ? e->data : "out of memory");
}

/* ---- plans ---- */

int rabit_plan_load(const char *path, RabitPlan **plan, char *err, size_t errlen) {
  RbBuf e = {0};
  RtPlan *p = NULL;
  int rc = rt_plan_load(path, &p, &e);
  if (rc == RB_OK && !(*plan = rb_calloc(1, sizeof **plan))) {
    rt_plan_free(p);
    rc = RB_EINTERNAL;
  }
  if (rc == RB_OK) (*plan)->p = p;
  else say(err, errlen, &e);
  rb_buf_free(&e);
  return rc;
}

void rabit_plan_free(RabitPlan *plan) {
  if (!plan) return;
  rt_plan_free(plan->p);
  rb_free(plan);
}

int rabit_plan_steps(const RabitPlan *plan) { return plan->p->nsteps; }
int rabit_plan_kernels(const RabitPlan *plan) { return plan->p->nkernels; }

static const RtPlanStep *step_of(const RtPlan *p, int step) {
  return step >= 0 && step < p->nsteps ? &p->steps[step] : NULL;
}

const char *rabit_plan_step_op(const RabitPlan *plan, int step) {
  const RtPlanStep *s = step_of(plan->p, step);
  return s ? ir_ops[s->op].name : NULL;
}

int rabit_plan_step_weights(const RabitPlan *plan, int step) {
  const RtPlanStep *s = step_of(plan->p, step);
  return s ? s->nweights : 0;
}

const char *rabit_plan_step_weight(const RabitPlan *plan, int step, int i) {
  const RtPlanStep *s = step_of(plan->p, step);
  return s && i >= 0 && i < s->nweights ? s->weights[i] : NULL;
}

int rabit_plan_linear_shape(const RabitPlan *plan, int step, int *nseg, int N[4], int *K, int *paths) {
  const CgOp *op = rt_linear_op(plan->p, step);
  if (!op) return 0;
  *nseg = op->nseg;
  memcpy(N, op->N, sizeof op->N);
  *K = op->K;
  *paths = op->paths;
  return 1;
}

int rabit_plan_linear_norm(const RabitPlan *plan, int step) {
  RbBuf e = {0};
  int norm;
  if (rt_linear_norm_step(plan->p, step, &norm, &e)) norm = -1; /* rabit_plan_load checked the plan */
  rb_buf_free(&e);
  return norm;
}

int rabit_plan_linear_prenorm(const RabitPlan *plan, int step, int batch) {
  return rabit_plan_linear_norm(plan, step) >= 0 && rt_linear_prenorm(plan->p, step, batch);
}

/* ---- sessions ---- */

int rabit_session_open(const RabitPlan *plan, int device, RabitSession **out, char *err, size_t errlen) {
  RbBuf e = {0};
  RabitSession *s = rb_calloc(1, sizeof *s);
  int rc = s ? rt_gpu_open(&s->gpu, device, &e) : RB_EINTERNAL;
  if (!rc) rc = rt_program_open(plan->p, s->gpu, &s->prog, &e);
  if (rc) {
    say(err, errlen, &e);
    rabit_session_close(s);
  } else {
    *out = s;
  }
  rb_buf_free(&e);
  return rc;
}

void rabit_session_close(RabitSession *s) {
  if (!s) return;
  if (s->lin.blas) rt_blas_close(s->lin.blas);
  if (s->lin.w) rt_mem_free(s->gpu, s->lin.w);
  if (s->lin.gu) rt_mem_free(s->gpu, s->lin.gu);
  rt_program_close(s->prog);
  if (s->gpu) rt_gpu_close(s->gpu);
  rb_free(s);
}

int rabit_session_cache_hits(const RabitSession *s) { return rt_program_cache_hits(s->prog); }

int rabit_alloc(RabitSession *s, rabit_devptr *p, size_t bytes) { return rt_mem_alloc(s->gpu, p, bytes); }
void rabit_free(RabitSession *s, rabit_devptr p) { rt_mem_free(s->gpu, p); }
int rabit_upload(RabitSession *s, rabit_devptr dst, const void *src, size_t bytes) {
  return rt_memcpy_htod(s->gpu, dst, src, bytes);
}
int rabit_download(RabitSession *s, void *dst, rabit_devptr src, size_t bytes) {
  return rt_memcpy_dtoh(s->gpu, dst, src, bytes);
}
int rabit_sync(RabitSession *s) { return rt_sync(s->gpu); }

int rabit_step_launch(RabitSession *s, int step, RabitRole role, int n, void **args, void *stream) {
  const RtPlanStep *st = step_of(rt_program_plan(s->prog), step);
  if (!st) return RB_EUSER;
  int kernel = role == RABIT_ROLE_MAIN ? st->kernels.main
               : role == RABIT_ROLE_ROPE ? st->kernels.rope
               : role == RABIT_ROLE_REPACK ? st->kernels.repack : -1;
  return kernel < 0 ? RB_EUSER : rt_program_launch(s->prog, kernel, n, args, stream);
}

/* ---- quantized linears ---- */

int rabit_linear_bind(RabitSession *s, int step, const uint32_t *const *bits, const uint16_t *const *g,
                      const uint16_t *const *h, RabitLinear **out, char *err, size_t errlen) {
  RbBuf e = {0};
  RabitLinear *l = rb_calloc(1, sizeof *l);
  int rc = l ? rt_linear_bind(s->prog, step, bits, g, h, &l->w, &e) : RB_EINTERNAL;
  if (l) l->step = step;
  if (rc) {
    say(err, errlen, &e);
    rb_free(l);
  } else {
    *out = l;
  }
  rb_buf_free(&e);
  return rc;
}

int rabit_linear_fold_norm(RabitSession *s, RabitLinear *w, const uint16_t *const *h, const uint16_t *norm, char *err,
                           size_t errlen) {
  RbBuf e = {0};
  int rc = rt_linear_fold_norm(s->prog, w->w, h, norm, &e);
  if (rc) say(err, errlen, &e);
  rb_buf_free(&e);
  return rc;
}

void rabit_linear_free(RabitSession *s, RabitLinear *w) {
  if (!w) return;
  rt_linear_free(s->prog, w->w);
  rb_free(w);
}

/* Grow one scratch buffer to bytes (its contents need not survive). */
static int grow(RabitSession *s, RtDevPtr *p, size_t *have, size_t bytes) {
  if (bytes <= *have) return RB_OK;
  if (*p) rt_mem_free(s->gpu, *p);
  *p = 0, *have = 0;
  if (rt_mem_alloc(s->gpu, p, bytes)) {
    rt_gpu_set_error(s->gpu, "out of GPU memory for a dequant bucket's scratch (%zu bytes)", bytes);
    return RB_EINTERNAL;
  }
  *have = bytes;
  return RB_OK;
}

/* The scratch a run at batch needs when its bucket is under the dequant strategy. */
static int dequant_scratch(RabitSession *s, int batch, RtStream stream) {
  if (!s->lin.blas) {
    RbBuf e = {0};
    int rc = rt_blas_open(s->gpu, stream, &s->lin.blas, &e);
    if (rc) rt_gpu_set_error(s->gpu, "a dequant bucket needs cuBLAS: %s", e.data ? e.data : "out of memory");
    rb_buf_free(&e);
    if (rc) return rc;
    s->lin_stream = stream;
  } else if (stream != s->lin_stream) {
    rt_gpu_set_error(s->gpu, "a session runs its dequant buckets on one stream, the first such run's; this run "
                             "gave another");
    return RB_EUSER;
  }
  size_t wb, gb;
  rt_linear_scratch_need(rt_program_plan(s->prog), batch, &wb, &gb);
  int rc = grow(s, &s->lin.w, &s->lin.w_bytes, wb);
  return rc ? rc : grow(s, &s->lin.gu, &s->lin.gu_bytes, gb);
}

int rabit_linear_run(RabitSession *s, const RabitLinear *w, int batch, rabit_devptr y, rabit_devptr x,
                     rabit_devptr res, void *stream) {
  const RtPlan *p = rt_program_plan(s->prog);
  if (batch > 0 && p->kernels[rt_linear_kernel(p, w->step, batch)].kernel.sched.strategy == CG_STRAT_DEQUANT) {
    int rc = dequant_scratch(s, batch, stream);
    if (rc) return rc;
  }
  return rt_linear_run(s->prog, w->w, batch, y, x, res, stream, &s->lin);
}
