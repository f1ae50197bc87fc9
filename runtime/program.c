/* program.c: a plan's kernels loaded on a GPU. Every binary is fetched from
 * the cache or rebuilt from the kernel the plan records, for the GPU's exact
 * architecture; launches take their geometry from the plan. */
#include <string.h>

#include "runtime/runtime.h"

struct RtProgram {
  const RtPlan *plan;
  RtGpu *gpu;
  RtModule **modules;
  RtFunction *fn;
  int hits;
  double ms_build, ms_load;
};

int rt_program_open(const RtPlan *p, RtGpu *gpu, RtProgram **out, RbBuf *err) {
  const CgTarget *t = rt_plan_target(p);
  if (!t) {
    rb_buf_printf(err, "the plan's target '%s' is not built into this runtime", p->target);
    return RB_EUSER;
  }
  RtProgram *pr = rb_calloc(1, sizeof *pr);
  CgKernel *kernels = rb_calloc((size_t)p->nkernels + 1, sizeof *kernels);
  RtBuilt *built = rb_calloc((size_t)p->nkernels + 1, sizeof *built);
  RtCache *cache = NULL;
  RbBuf warn = {0};
  int rc = RB_EINTERNAL;
  if (!pr || !kernels || !built) goto done;
  pr->plan = p;
  pr->gpu = gpu;
  pr->modules = rb_calloc((size_t)p->nkernels + 1, sizeof *pr->modules);
  pr->fn = rb_calloc((size_t)p->nkernels + 1, sizeof *pr->fn);
  if (!pr->modules || !pr->fn) goto done;
  if ((rc = rt_cache_open(&cache, NULL, RT_CACHE_DEFAULT_MAX, &warn)) != RB_OK) goto done;
  for (int i = 0; i < p->nkernels; i++) kernels[i] = p->kernels[i].kernel;
  RtBuildOptions bo = {t, rt_gpu_arch(gpu), cache, 0};
  double t0 = rb_now_ms();
  rc = rt_build_kernels(kernels, p->nkernels, &bo, built);
  double t1 = rb_now_ms();
  for (int i = 0; i < p->nkernels && rc != RB_OK; i++)
    if (built[i].rc != RB_OK) {
      rb_buf_printf(err, "kernel %s failed to build: %s", built[i].entry, built[i].log.data ? built[i].log.data : "");
      break;
    }
  for (int i = 0; i < p->nkernels && rc == RB_OK; i++) {
    if (strcmp(built[i].entry, p->kernels[i].entry) != 0) {
      rb_buf_printf(err, "plan kernel %d: its spec now gives entry %s, the plan says %s; recompile the plan", i,
                    built[i].entry, p->kernels[i].entry);
      rc = RB_EUSER;
      break;
    }
    pr->hits += built[i].hit;
    rc = rt_module_load(gpu, built[i].cubin, built[i].len, &pr->modules[i]);
    if (rc == RB_OK) rc = rt_module_function(pr->modules[i], built[i].entry, &pr->fn[i]);
    if (rc != RB_OK) rb_buf_printf(err, "plan kernel %d (%s) failed to load: %s", i, built[i].entry, rt_gpu_error(gpu));
  }
  pr->ms_build = t1 - t0;
  pr->ms_load = rb_now_ms() - t1;
done:
  if (built) rt_built_free(built, p->nkernels);
  rb_free(built);
  rb_free(kernels);
  rt_cache_close(cache);
  rb_buf_free(&warn);
  if (rc != RB_OK) {
    if (!err->len) rb_buf_puts(err, "out of memory");
    rt_program_close(pr);
    return rc;
  }
  *out = pr;
  return RB_OK;
}

void rt_program_close(RtProgram *pr) {
  if (!pr) return;
  for (int i = 0; pr->modules && i < pr->plan->nkernels; i++)
    if (pr->modules[i]) rt_module_unload(pr->modules[i]);
  rb_free(pr->modules);
  rb_free(pr->fn);
  rb_free(pr);
}

const RtPlan *rt_program_plan(const RtProgram *pr) { return pr->plan; }
RtGpu *rt_program_gpu(const RtProgram *pr) { return pr->gpu; }
int rt_program_cache_hits(const RtProgram *pr) { return pr->hits; }

void rt_program_times(const RtProgram *pr, double *ms_build, double *ms_load) {
  *ms_build = pr->ms_build;
  *ms_load = pr->ms_load;
}

int rt_program_launch(RtProgram *pr, int kernel, int n, void **args, RtStream s) {
  if (kernel < 0 || kernel >= pr->plan->nkernels) return RB_EUSER;
  CgLaunch l = cg_geometry_launch(&pr->plan->kernels[kernel].geometry, n);
  if (!l.grid[0]) return RB_EUSER;
  /* Every kernel a plan names begins with rb_grid_enter, so on a stream of its own it may
   * overlap the one before (the legacy default stream, the repack's, stays plain). */
  return rt_launch_ex(pr->gpu, pr->fn[kernel], l.grid, l.block, l.smem, s, args, s != NULL);
}
