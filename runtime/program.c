/* program.c: a plan's kernels loaded on a device, and the device's ops.
 * On a GPU every binary is fetched from the cache or rebuilt from the kernel
 * the plan records, for the GPU's exact architecture; launches take their
 * geometry from the plan. The host's ops are program_host.c's; the rt_program_*
 * calls below are the one interface the executor uses for both. */
#include <string.h>

#include "runtime/runtime.h"

struct RtProgram {
  const RtPlan *plan;
  const RtDeviceOps *ops;
  void *impl; /* the device's state: on a GPU, this program itself */
  RtGpu *gpu; /* NULL on the host */
  RtModule **modules;
  RtFunction *fn;
  int hits, threads;
  double ms_build, ms_load;
};

/* ---- the GPU's ops: the driver calls ---- */

static RtGpu *gpu_of(void *impl) { return ((RtProgram *)impl)->gpu; }
static int cuda_alloc(void *impl, RtDevPtr *p, size_t bytes) { return rt_mem_alloc(gpu_of(impl), p, bytes); }
static void cuda_free(void *impl, RtDevPtr p) { rt_mem_free(gpu_of(impl), p); }
static int cuda_upload(void *impl, RtDevPtr dst, const void *src, size_t bytes) {
  return rt_memcpy_htod(gpu_of(impl), dst, src, bytes);
}
static int cuda_download(void *impl, void *dst, RtDevPtr src, size_t bytes) {
  return rt_memcpy_dtoh(gpu_of(impl), dst, src, bytes);
}
static int cuda_copy(void *impl, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s) {
  return rt_memcpy_dtod(gpu_of(impl), dst, src, bytes, s);
}
static int cuda_fill(void *impl, RtDevPtr dst, unsigned char v, size_t bytes) {
  return rt_memset8(gpu_of(impl), dst, v, bytes);
}
static int cuda_sync(void *impl) { return rt_sync(gpu_of(impl)); }
static const char *cuda_error(const void *impl) { return rt_gpu_error(((const RtProgram *)impl)->gpu); }

static int cuda_launch(void *impl, int kernel, int n, void **args, RtStream s) {
  RtProgram *pr = impl;
  CgLaunch l = cg_geometry_launch(&pr->plan->kernels[kernel].geometry, n);
  if (!l.grid[0]) return RB_EUSER;
  /* Every kernel a plan names begins with rb_grid_enter, so on a stream of its own it may
   * overlap the one before (the legacy default stream, the repack's, stays plain). */
  return rt_launch_ex(pr->gpu, pr->fn[kernel], l.grid, l.block, l.smem, s, args, s != NULL);
}

static void cuda_close(void *impl) {
  RtProgram *pr = impl;
  for (int i = 0; pr->modules && i < pr->plan->nkernels; i++)
    if (pr->modules[i]) rt_module_unload(pr->modules[i]);
  rb_free(pr->modules);
  rb_free(pr->fn);
}

static const RtDeviceOps cuda_ops = {"cuda", cuda_alloc, cuda_free, cuda_upload, cuda_download, cuda_copy,
                                     cuda_fill, cuda_sync, cuda_launch, NULL, cuda_error, cuda_close};

RtProgram *rt_program_new(const RtPlan *p, const RtDeviceOps *ops, void *impl, RtGpu *gpu) {
  RtProgram *pr = rb_calloc(1, sizeof *pr);
  if (!pr) return NULL;
  pr->plan = p, pr->ops = ops, pr->gpu = gpu;
  pr->impl = impl ? impl : pr;
  return pr;
}

/* rt_program_build's load on a GPU: the cubin as a module, its entry as a function. */
static int load_module(void *ctx, int i, RtBuilt *b, RtCache *cache, RbBuf *err) {
  RtProgram *pr = ctx;
  (void)cache;
  int rc = rt_module_load(pr->gpu, b->cubin, b->len, &pr->modules[i]);
  if (rc == RB_OK) rc = rt_module_function(pr->modules[i], b->entry, &pr->fn[i]);
  if (rc != RB_OK) rb_buf_printf(err, "plan kernel %d (%s) failed to load: %s", i, b->entry, rt_gpu_error(pr->gpu));
  return rc;
}

int rt_program_open(const RtPlan *p, RtGpu *gpu, RtProgram **out, RbBuf *err) {
  const CgTarget *t = rt_plan_target(p);
  if (!t) {
    rb_buf_printf(err, "the plan's target '%s' is not built into this runtime", p->target);
    return RB_EUSER;
  }
  if (t == &cg_target_host) {
    rb_buf_printf(err, "the plan is for the host target: it runs on this CPU (rt_program_open_host), not on a GPU");
    return RB_EUSER;
  }
  RtProgram *pr = rt_program_new(p, &cuda_ops, NULL, gpu);
  int rc = RB_EINTERNAL;
  if (pr && (pr->modules = rb_calloc((size_t)p->nkernels + 1, sizeof *pr->modules)) &&
      (pr->fn = rb_calloc((size_t)p->nkernels + 1, sizeof *pr->fn)))
    rc = rt_program_build(p, t, rt_gpu_arch(gpu), load_module, pr, &pr->hits, &pr->ms_build, &pr->ms_load, err);
  if (rc != RB_OK) {
    if (!err->len) rb_buf_puts(err, "out of memory");
    rt_program_close(pr);
    return rc;
  }
  *out = pr;
  return RB_OK;
}

int rt_program_build(const RtPlan *p, const CgTarget *t, const char *arch, RtKernelLoad load, void *ctx, int *hits,
                     double *ms_build, double *ms_load, RbBuf *err) {
  CgKernel *kernels = rb_calloc((size_t)p->nkernels + 1, sizeof *kernels);
  RtBuilt *built = rb_calloc((size_t)p->nkernels + 1, sizeof *built);
  RtCache *cache = NULL;
  RbBuf warn = {0};
  int rc = RB_EINTERNAL;
  double t0 = rb_now_ms(), t1 = t0;
  *hits = 0;
  if (!kernels || !built) goto done;
  if ((rc = rt_cache_open(&cache, NULL, RT_CACHE_DEFAULT_MAX, &warn)) != RB_OK) goto done;
  for (int i = 0; i < p->nkernels; i++) kernels[i] = p->kernels[i].kernel;
  RtBuildOptions bo = {t, arch, cache, 0};
  rc = rt_build_kernels(kernels, p->nkernels, &bo, built);
  t1 = rb_now_ms();
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
    *hits += built[i].hit;
    rc = load(ctx, i, &built[i], cache, err);
  }
done:
  *ms_build = t1 - t0;
  *ms_load = rb_now_ms() - t1;
  if (built) rt_built_free(built, p->nkernels);
  rb_free(built);
  rb_free(kernels);
  rt_cache_close(cache);
  rb_buf_free(&warn);
  return rc;
}

void rt_program_close(RtProgram *pr) {
  if (!pr) return;
  if (pr->ops && pr->ops->close) pr->ops->close(pr->impl);
  rb_free(pr);
}

const RtPlan *rt_program_plan(const RtProgram *pr) { return pr->plan; }
RtGpu *rt_program_gpu(const RtProgram *pr) { return pr->gpu; }
const char *rt_program_device(const RtProgram *pr) { return pr->ops->name; }
int rt_program_cache_hits(const RtProgram *pr) { return pr->hits; }
int rt_program_threads(const RtProgram *pr) { return pr->threads; }

void rt_program_times(const RtProgram *pr, double *ms_build, double *ms_load) {
  *ms_build = pr->ms_build;
  *ms_load = pr->ms_load;
}

void rt_program_set_stats(RtProgram *pr, int hits, double ms_build, double ms_load, int threads) {
  pr->hits = hits, pr->ms_build = ms_build, pr->ms_load = ms_load, pr->threads = threads;
}

int rt_program_launch(RtProgram *pr, int kernel, int n, void **args, RtStream s) {
  if (kernel < 0 || kernel >= pr->plan->nkernels) return RB_EUSER;
  return pr->ops->launch(pr->impl, kernel, n, args, s);
}

int rt_program_alloc(RtProgram *pr, RtDevPtr *p, size_t bytes) { return pr->ops->alloc(pr->impl, p, bytes); }
void rt_program_free(RtProgram *pr, RtDevPtr p) {
  if (p) pr->ops->free(pr->impl, p);
}
int rt_program_upload(RtProgram *pr, RtDevPtr dst, const void *src, size_t bytes) {
  return pr->ops->upload(pr->impl, dst, src, bytes);
}
int rt_program_download(RtProgram *pr, void *dst, RtDevPtr src, size_t bytes) {
  return pr->ops->download(pr->impl, dst, src, bytes);
}
int rt_program_copy(RtProgram *pr, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s) {
  return pr->ops->copy(pr->impl, dst, src, bytes, s);
}
int rt_program_fill(RtProgram *pr, RtDevPtr dst, unsigned char v, size_t bytes) {
  return pr->ops->fill(pr->impl, dst, v, bytes);
}
int rt_program_sync(RtProgram *pr) { return pr->ops->sync(pr->impl); }
const char *rt_program_error(const RtProgram *pr) { return pr->ops->error(pr->impl); }

int rt_program_dense(RtProgram *pr, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int y_f32,
                     int accumulate) {
  if (!pr->ops->dense) return RB_EUSER; /* a GPU's dense linears are cuBLAS's, on the executor's stream */
  return pr->ops->dense(pr->impl, M, N, K, x, w, y, ldy, y_f32, accumulate);
}
