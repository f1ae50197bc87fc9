/* session.c: the public API of rabit.h over the plan, the kernel build and
 * the driver API. A session loads every kernel of a plan for its GPU's exact
 * architecture: the keys are recomputed from the specs, so a plan compiled on
 * this machine hits the cache, and anything missing or stale is rebuilt. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/rabit.h"
#include "runtime/runtime.h"

struct RabitPlan {
  RtPlan *p;
};

struct RabitSession {
  const RtPlan *plan;
  RtGpu *gpu;
  RtModule **modules;
  RtFunction *fn;
  int hits;
  double ms_build, ms_load; /* open: cubins from cache or NVRTC; module loads */
};

struct RabitLinear {
  int step;
  RtDevPtr bits; /* the kernel layout, read by every batch bucket */
  RtDevPtr g, h;
};

static void say(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t len, const char *fmt, ...) {
  if (!err || !len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, len, fmt, ap);
  va_end(ap);
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
  else say(err, errlen, "%s", e.data ? e.data : "out of memory");
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
  return s ? s->op : NULL;
}

int rabit_plan_step_weights(const RabitPlan *plan, int step) {
  const RtPlanStep *s = step_of(plan->p, step);
  return s ? s->nweights : 0;
}

const char *rabit_plan_step_weight(const RabitPlan *plan, int step, int i) {
  const RtPlanStep *s = step_of(plan->p, step);
  return s && i >= 0 && i < s->nweights ? s->weights[i] : NULL;
}

/* The xor kernel's spec of a quantized linear step, or NULL. */
static const CgSpec *linear_spec(const RtPlan *p, int step) {
  const RtPlanStep *s = step_of(p, step);
  if (!s || !s->paths || s->nkernels != CG_MAX_NODE_KERNELS) return NULL;
  return &p->kernels[s->kernel[0]].spec;
}

int rabit_plan_linear_shape(const RabitPlan *plan, int step, int *nseg, int N[4], int *K, int *paths) {
  const CgSpec *sp = linear_spec(plan->p, step);
  if (!sp) return 0;
  *nseg = sp->nseg;
  memcpy(N, sp->N, sizeof sp->N);
  *K = sp->K;
  *paths = sp->paths;
  return 1;
}

/* ---- sessions ---- */

int rabit_session_open(const RabitPlan *plan, int device, RabitSession **out, char *err, size_t errlen) {
  RbBuf e = {0};
  int rc = rt_session_open_plan(plan->p, device, out, &e);
  if (rc) say(err, errlen, "%s", e.data ? e.data : "out of memory");
  rb_buf_free(&e);
  return rc;
}

int rt_session_open_plan(const RtPlan *p, int device, RabitSession **out, RbBuf *err) {
  RbBuf e = {0};
  RabitSession *s = rb_calloc(1, sizeof *s);
  CgSpec *specs = rb_calloc((size_t)p->nkernels + 1, sizeof *specs);
  RtBuilt *built = rb_calloc((size_t)p->nkernels + 1, sizeof *built);
  RtCache *cache = NULL;
  int rc = RB_EINTERNAL;
  if (!s || !specs || !built) goto fail;
  s->plan = p;
  s->modules = rb_calloc((size_t)p->nkernels + 1, sizeof *s->modules);
  s->fn = rb_calloc((size_t)p->nkernels + 1, sizeof *s->fn);
  if (!s->modules || !s->fn) goto fail;
  if ((rc = rt_gpu_open(&s->gpu, device, &e)) != RB_OK) goto fail;
  if ((rc = rt_cache_open(&cache, NULL, RT_CACHE_DEFAULT_MAX, &e)) != RB_OK) goto fail;
  for (int i = 0; i < p->nkernels; i++) specs[i] = p->kernels[i].spec;
  RtBuildOptions bo = {rt_gpu_arch(s->gpu), cache, 0};
  double t0 = rb_now_ms();
  rc = rt_build_kernels(specs, p->nkernels, &bo, built);
  double t1 = rb_now_ms();
  for (int i = 0; i < p->nkernels && rc == RB_OK; i++) {
    if (strcmp(built[i].entry, p->kernels[i].entry) != 0) {
      rb_buf_printf(&e, "plan kernel %d: its spec now gives entry %s, the plan says %s; recompile the plan",
                    i, built[i].entry, p->kernels[i].entry);
      rc = RB_EUSER;
      break;
    }
    s->hits += built[i].hit;
    rc = rt_module_load(s->gpu, built[i].cubin, built[i].len, &s->modules[i]);
    if (rc == RB_OK) rc = rt_module_function(s->modules[i], built[i].entry, &s->fn[i]);
    if (rc != RB_OK) rb_buf_printf(&e, "plan kernel %d (%s) failed to load", i, built[i].entry);
  }
  s->ms_build = t1 - t0;
  s->ms_load = rb_now_ms() - t1;
  for (int i = 0; i < p->nkernels && rc != RB_OK && !e.len; i++)
    if (built[i].rc != RB_OK) rb_buf_printf(&e, "kernel %s failed to build: %s", built[i].entry, built[i].log.data ? built[i].log.data : "");
  if (rc != RB_OK) goto fail;
  rt_built_free(built, p->nkernels);
  rb_free(built);
  rb_free(specs);
  rt_cache_close(cache);
  rb_buf_free(&e);
  *out = s;
  return RB_OK;
fail:
  rb_buf_puts(err, e.data ? e.data : "out of memory");
  if (built) rt_built_free(built, p->nkernels);
  rb_free(built);
  rb_free(specs);
  rt_cache_close(cache);
  rb_buf_free(&e);
  rabit_session_close(s);
  return rc ? rc : RB_EINTERNAL;
}

void rabit_session_close(RabitSession *s) {
  if (!s) return;
  for (int i = 0; s->modules && i < s->plan->nkernels; i++)
    if (s->modules[i]) rt_module_unload(s->modules[i]);
  rb_free(s->modules);
  rb_free(s->fn);
  if (s->gpu) rt_gpu_close(s->gpu);
  rb_free(s);
}

int rabit_session_cache_hits(const RabitSession *s) { return s->hits; }

RtGpu *rt_session_gpu(RabitSession *s) { return s->gpu; }
const RtPlan *rt_session_plan(const RabitSession *s) { return s->plan; }

void rt_session_times(const RabitSession *s, double *ms_build, double *ms_load) {
  *ms_build = s->ms_build;
  *ms_load = s->ms_load;
}

int rabit_alloc(RabitSession *s, rabit_devptr *p, size_t bytes) { return rt_mem_alloc(s->gpu, p, bytes); }
void rabit_free(RabitSession *s, rabit_devptr p) { rt_mem_free(s->gpu, p); }
int rabit_upload(RabitSession *s, rabit_devptr dst, const void *src, size_t bytes) {
  return rt_memcpy_htod(s->gpu, dst, src, bytes);
}
int rabit_download(RabitSession *s, void *dst, rabit_devptr src, size_t bytes) {
  return rt_memcpy_dtoh(s->gpu, dst, src, bytes);
}
int rabit_sync(RabitSession *s) { return rt_sync(s->gpu); }

static int launch(RabitSession *s, int kernel, int n, void **args, void *stream) {
  CgLaunch l = cg_launch(&s->plan->kernels[kernel].spec, n);
  if (!l.grid[0]) return RB_EUSER;
  return rt_launch(s->gpu, s->fn[kernel], l.grid, l.block, l.smem, stream, args);
}

int rt_session_launch(RabitSession *s, int kernel, int n, void **args, RtStream st) {
  if (kernel < 0 || kernel >= s->plan->nkernels) return RB_EUSER;
  return launch(s, kernel, n, args, st);
}

int rabit_step_launch(RabitSession *s, int step, int j, int n, void **args, void *stream) {
  const RtPlanStep *st = step_of(s->plan, step);
  if (!st || j < 0 || j >= st->nkernels) return RB_EUSER;
  return launch(s, st->kernel[j], n, args, stream);
}

/* ---- quantized linears ---- */

int rabit_linear_bind(RabitSession *s, int step, const uint32_t *const *bits, const uint16_t *const *g,
                      const uint16_t *const *h, RabitLinear **out, char *err, size_t errlen) {
  const CgSpec *sp = linear_spec(s->plan, step);
  if (!sp) {
    say(err, errlen, "step %d is not a quantized linear", step);
    return RB_EUSER;
  }
  const RtPlanStep *st = &s->plan->steps[step];
  int K = sp->K, k = sp->paths, W = (K + 31) / 32, ntot = 0;
  for (int i = 0; i < sp->nseg; i++) ntot += sp->N[i];
  RabitLinear *w = rb_calloc(1, sizeof *w);
  uint16_t *gcat = rb_malloc((size_t)k * ntot * 2);
  RtDevPtr src = 0;
  int rc = RB_EINTERNAL;
  if (!w || !gcat) goto done;
  w->step = step;
  /* g is (paths, Ntot): each path's rows of every segment, concatenated. */
  for (int p = 0, row0 = 0; p < k; p++, row0 = 0)
    for (int i = 0; i < sp->nseg; row0 += sp->N[i++])
      memcpy(gcat + (size_t)p * ntot + row0, g[i] + (size_t)p * sp->N[i], (size_t)sp->N[i] * 2);
  size_t hseg = (size_t)k * K * 2, maxseg = 0;
  for (int i = 0; i < sp->nseg; i++)
    if ((size_t)k * sp->N[i] * W * 4 > maxseg) maxseg = (size_t)k * sp->N[i] * W * 4;
  if ((rc = rt_mem_alloc(s->gpu, &w->g, (size_t)k * ntot * 2)) || (rc = rt_mem_alloc(s->gpu, &w->h, hseg * sp->nseg)) ||
      (rc = rt_mem_alloc(s->gpu, &src, maxseg)) || (rc = rt_memcpy_htod(s->gpu, w->g, gcat, (size_t)k * ntot * 2)))
    goto done;
  for (int i = 0; i < sp->nseg && !rc; i++) rc = rt_memcpy_htod(s->gpu, w->h + hseg * i, h[i], hseg);
  /* Clear (pad rows and columns must be 0), then repack every segment. */
  if (!rc && !(rc = rt_mem_alloc(s->gpu, &w->bits, st->layout_bytes)))
    rc = rt_memset8(s->gpu, w->bits, 0, st->layout_bytes);
  for (int i = 0; i < sp->nseg && !rc; i++) {
    if ((rc = rt_memcpy_htod(s->gpu, src, bits[i], (size_t)k * sp->N[i] * W * 4))) break;
    void *args[] = {&w->bits, &src, &i};
    rc = launch(s, st->kernel[3], i, args, NULL);
    if (!rc) rc = rt_sync(s->gpu); /* src is reused by the next segment */
  }
done:
  if (src) rt_mem_free(s->gpu, src);
  rb_free(gcat);
  if (rc != RB_OK) {
    say(err, errlen, "binding the weights of step %d failed (see the CUDA error above)", step);
    rabit_linear_free(s, w);
    return rc ? rc : RB_EINTERNAL;
  }
  *out = w;
  return RB_OK;
}

void rabit_linear_free(RabitSession *s, RabitLinear *w) {
  if (!w) return;
  if (w->bits) rt_mem_free(s->gpu, w->bits);
  if (w->g) rt_mem_free(s->gpu, w->g);
  if (w->h) rt_mem_free(s->gpu, w->h);
  rb_free(w);
}

int rabit_linear_run(RabitSession *s, const RabitLinear *w, int batch, rabit_devptr y, rabit_devptr x,
                     rabit_devptr res, void *stream) {
  const RtPlanStep *st = &s->plan->steps[w->step];
  /* Buckets: the xor kernel for one row, mma up to 16 rows, the large mma beyond. */
  int which = batch <= 1 ? 0 : batch <= CG_BUCKET_SMALL ? 1 : 2;
  void *args[] = {&y, &x, (void *)&w->bits, (void *)&w->g, (void *)&w->h, &res, &batch};
  return launch(s, st->kernel[which], batch, args, stream);
}
