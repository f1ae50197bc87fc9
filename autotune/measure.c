/* measure.c: the tuner's backend on a GPU. A unit's candidates are built
 * through the kernel cache on threads (rt_build_kernels, the compile
 * pipeline's own), each is run on fresh random data (validate.c) and checked
 * against the CPU reference before it is timed, and timing is the graph
 * harness (runtime/cuda/timing.c) over copies of the weights rotating past
 * the L2, each candidate launched as a plan launches it (rt_time_sequence: with
 * programmatic overlap, and a bmma candidate after its planes pre-pass, which
 * is part of its time). The broken-candidate hook runs a candidate with its g
 * one row off: an indexing bug that is exactly as fast as the right kernel. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autotune/autotune.h"

typedef struct {
  RtModule *mod;
  RtFunction fn;
  CgGeometry geo;
} Cand;

struct AtGpu {
  RtGpu *gpu;
  RtCache *cache;
  const CgTarget *t;
  int jobs;
  /* the unit begun */
  const AtUnit *u;
  const AtSpace *s;
  AtLinearData data;
  Cand *c;
  RtDevPtr bits, g, h, x, res, y; /* the validated weights (g with a spare row), the activations */
  uint16_t *yh;
  size_t layout, gbytes, hbytes;
  RtDevPtr rot;                    /* nrot slots of stride bytes: bits, g, h each */
  size_t stride;
  int nrot, launches;
  Cand pre;                        /* the bmma candidates' planes pre-pass, when the space has one */
  RtDevPtr planes;                 /* its output, which a bmma candidate reads in place of x */
};

static size_t up256(size_t v) { return (v + 255) & ~(size_t)255; }

/* The GPU's failure in log: the driver's report. */
static int gpu_fail(AtGpu *m, RbBuf *log, const char *what) {
  rb_buf_printf(log, "%s: %s\n", what, rt_gpu_error(m->gpu));
  return RB_EINTERNAL;
}

static void unit_free(AtGpu *m) {
  if (m->c)
    for (int i = 0; i < m->s->n; i++)
      if (m->c[i].mod) rt_module_unload(m->c[i].mod);
  rb_free(m->c);
  if (m->pre.mod) rt_module_unload(m->pre.mod);
  memset(&m->pre, 0, sizeof m->pre);
  RtDevPtr all[] = {m->bits, m->g, m->h, m->x, m->res, m->y, m->rot, m->planes};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i]) rt_mem_free(m->gpu, all[i]);
  rb_free(m->yh);
  at_linear_data_free(&m->data);
  m->c = NULL;
  m->bits = m->g = m->h = m->x = m->res = m->y = m->rot = m->planes = 0;
  m->yh = NULL;
  m->u = NULL;
}

/* Build kernels[0..n) through the cache; load each that built into c[i]. */
static int build(AtGpu *m, const CgKernel *kernels, int n, Cand *c, int *ok, RbBuf *log) {
  RtBuilt *b = rb_calloc((size_t)n, sizeof *b);
  if (!b) return RB_EINTERNAL;
  RtBuildOptions o = {m->t, rt_gpu_arch(m->gpu), m->cache, m->jobs};
  rt_build_kernels(kernels, n, &o, b);
  int rc = RB_OK;
  for (int i = 0; i < n && rc == RB_OK; i++) {
    ok[i] = 0;
    if (b[i].rc == RB_EINTERNAL) rc = RB_EINTERNAL;
    if (b[i].rc != RB_OK) {
      rb_buf_printf(log, "candidate %s did not build: %.*s\n", b[i].entry,
                    b[i].log.data ? (int)strcspn(b[i].log.data, "\n") : 0, b[i].log.data ? b[i].log.data : "");
      continue;
    }
    RbBuf why = {0};
    if (m->t->geometry(&kernels[i], &c[i].geo, &why) != RB_OK || rt_module_load(m->gpu, b[i].cubin, b[i].len, &c[i].mod) ||
        rt_module_function(c[i].mod, b[i].entry, &c[i].fn)) {
      rb_buf_printf(log, "candidate %s did not load: %s\n", b[i].entry, why.len ? why.data : rt_gpu_error(m->gpu));
      if (c[i].mod) rt_module_unload(c[i].mod);
      c[i].mod = NULL;
    } else {
      ok[i] = 1;
    }
    rb_buf_free(&why);
  }
  rt_built_free(b, n);
  rb_free(b);
  return rc;
}

/* The canonical bits into the kernel layout, with the repack kernel of the op. */
static int repack(AtGpu *m, RbBuf *log) {
  const CgOp *op = &m->u->kernel.op;
  CgKernel rk;
  memset(&rk, 0, sizeof rk);
  rk.op.kind = CG_REPACK;
  rk.op.K = op->K, rk.op.paths = op->paths, rk.op.nseg = op->nseg;
  memcpy(rk.op.N, op->N, sizeof rk.op.N);
  Cand c = {0};
  int ok = 0, rc = build(m, &rk, 1, &c, &ok, log);
  if (rc == RB_OK && !ok) rc = RB_EINTERNAL; /* the layout writer must build: nothing is tunable without it */
  size_t maxseg = 0;
  for (int s = 0; s < op->nseg; s++)
    if (cg_packed_part_bytes(CG_PACKED_BITS, op->paths, op->N[s], op->K) > maxseg)
      maxseg = cg_packed_part_bytes(CG_PACKED_BITS, op->paths, op->N[s], op->K);
  RtDevPtr src = 0;
  if (rc == RB_OK && (rt_mem_alloc(m->gpu, &src, maxseg) || rt_memset8(m->gpu, m->bits, 0, m->layout)))
    rc = gpu_fail(m, log, "repacking the weights");
  for (int s = 0; s < op->nseg && rc == RB_OK; s++) {
    CgRepackArgs a = {m->bits, src, s};
    CgArgv v;
    cg_repack_argv(&a, &v);
    CgLaunch l = cg_geometry_launch(&c.geo, 1);
    if (rt_memcpy_htod(m->gpu, src, m->data.bits[s], cg_packed_part_bytes(CG_PACKED_BITS, op->paths, op->N[s], op->K)) ||
        rt_launch(m->gpu, c.fn, l.grid, l.block, l.smem, NULL, v.v) || rt_sync(m->gpu))
      rc = gpu_fail(m, log, "repacking the weights");
  }
  if (src) rt_mem_free(m->gpu, src);
  if (c.mod) rt_module_unload(c.mod);
  return rc;
}

/* Copies of the validated weights, one per rotation slot. */
static int rotation(AtGpu *m, RbBuf *log) {
  m->stride = up256(m->layout) + up256(m->gbytes) + up256(m->hbytes);
  m->nrot = rt_time_rotation(m->stride, 4096);
  m->launches = m->nrot > 64 ? m->nrot : 64;
  if (rt_mem_alloc(m->gpu, &m->rot, m->stride * (size_t)m->nrot)) return gpu_fail(m, log, "the rotating weights");
  for (int i = 0; i < m->nrot; i++) {
    RtDevPtr at = m->rot + m->stride * (size_t)i;
    if (rt_memcpy_dtod(m->gpu, at, m->bits, m->layout, NULL) ||
        rt_memcpy_dtod(m->gpu, at + up256(m->layout), m->g, m->gbytes, NULL) ||
        rt_memcpy_dtod(m->gpu, at + up256(m->layout) + up256(m->gbytes), m->h, m->hbytes, NULL))
      return gpu_fail(m, log, "the rotating weights");
  }
  return rt_sync(m->gpu) ? gpu_fail(m, log, "the rotating weights") : RB_OK;
}

static int gpu_begin(void *ctx, const AtUnit *u, const AtSpace *s, RbBuf *log) {
  AtGpu *m = ctx;
  unit_free(m);
  m->u = u;
  m->s = s;
  const CgOp *op = &u->kernel.op;
  int B = u->batch[u->nbatch - 1];
  char key[160] = "";
  at_op_describe(op, key);
  uint64_t seed = 1469598103934665603ull ^ (uint64_t)u->kernel.sched.batch_max; /* fixed per op and bucket */
  for (const char *p = key; *p; p++) seed = (seed ^ (unsigned char)*p) * 1099511628211ull;
  if (at_linear_data_make(&m->data, op, B, u->batch, u->nbatch, seed)) return RB_EINTERNAL;
  const AtLinearData *d = &m->data;
  m->layout = m->t->layout_bytes(op);
  m->gbytes = (size_t)op->paths * d->ntot * 2;
  m->hbytes = (size_t)op->nseg * op->paths * op->K * 2;
  m->c = rb_calloc((size_t)s->n, sizeof *m->c);
  m->yh = rb_malloc((size_t)B * d->nout * 2);
  if (!m->c || !m->yh) return RB_EINTERNAL;
  if (rt_mem_alloc(m->gpu, &m->bits, m->layout) || rt_mem_alloc(m->gpu, &m->g, m->gbytes + 64) ||
      rt_mem_alloc(m->gpu, &m->h, m->hbytes) || rt_mem_alloc(m->gpu, &m->x, (size_t)B * op->K * 2) ||
      rt_mem_alloc(m->gpu, &m->res, (size_t)B * d->ntot * 2) || rt_mem_alloc(m->gpu, &m->y, (size_t)B * d->nout * 2) ||
      rt_memset8(m->gpu, m->g, 0, m->gbytes + 64) || rt_memcpy_htod(m->gpu, m->g, d->g16, m->gbytes) ||
      rt_memcpy_htod(m->gpu, m->h, d->h16, m->hbytes) || rt_memcpy_htod(m->gpu, m->x, d->x16, (size_t)B * op->K * 2) ||
      rt_memcpy_htod(m->gpu, m->res, d->res16, (size_t)B * d->ntot * 2))
    return gpu_fail(m, log, "the unit's buffers");
  int rc = repack(m, log);
  if (!rc) rc = rotation(m, log);
  /* The pre-pass the bmma candidates share: built once, its planes made again before each run. */
  CgKernel pk;
  int bmma = 0;
  for (int i = 0; i < s->n && !bmma; i++) bmma = s->c[i].sched.strategy == CG_STRAT_BMMA;
  if (!rc && bmma && cg_linear_planes_kernel(&(CgKernel){.op = *op, .sched = {CG_STRAT_BMMA, 1, {0}}}, &pk)) {
    int ok = 0;
    rc = build(m, &pk, 1, &m->pre, &ok, log);
    if (!rc && !ok) rc = RB_EINTERNAL; /* its candidates cannot run without it */
    if (!rc && (rt_mem_alloc(m->gpu, &m->planes, cg_planes_bytes(op)) || rt_memset8(m->gpu, m->planes, 0, cg_planes_bytes(op))))
      rc = gpu_fail(m, log, "the bmma planes");
  }
  return rc;
}

/* The pre-pass's launch for batch rows over h at h (a rotation slot's, or the validated one). */
static void planes_launch(AtGpu *m, int batch, CgPlanesArgs *a, RtDevPtr h, CgArgv *v, CgLaunch *l) {
  *a = (CgPlanesArgs){m->planes, m->x, h, batch};
  cg_planes_argv(a, v);
  *l = cg_geometry_launch(&m->pre.geo, batch);
}

/* The strategies this backend times: dequant's time is its kernel, the cuBLAS GEMM and the
 * epilogue together (rt_linear_run), which it does not run. */
static int measurable(CgStrategy s) {
  return s == CG_STRAT_XOR || s == CG_STRAT_MMA || s == CG_STRAT_LOP3 || s == CG_STRAT_BMMA || s == CG_STRAT_XSMEM;
}

static int gpu_compile(void *ctx, int from, int to, int *ok, RbBuf *log) {
  AtGpu *m = ctx;
  /* Only the chunk being visited stays loaded. */
  for (int i = 0; i < m->s->n; i++)
    if (m->c[i].mod && (i < from || i >= to)) rt_module_unload(m->c[i].mod), m->c[i].mod = NULL;
  CgKernel *k = rb_calloc((size_t)(to - from), sizeof *k);
  int *at = rb_calloc((size_t)(to - from), sizeof *at), *built = rb_calloc((size_t)(to - from), sizeof *built);
  Cand *c = rb_calloc((size_t)(to - from), sizeof *c);
  if (!k || !at || !built || !c) {
    rb_free(k), rb_free(at), rb_free(built), rb_free(c);
    return RB_EINTERNAL;
  }
  int n = 0;
  for (int i = from; i < to; i++) {
    ok[i - from] = 0;
    if (measurable(m->s->c[i].sched.strategy)) {
      at[n] = i;
      k[n++] = (CgKernel){.op = m->u->kernel.op, .sched = m->s->c[i].sched};
      continue;
    }
    char what[48];
    at_schedule_describe(&m->s->c[i].sched, what);
    rb_buf_printf(log, "candidate %d (%s) is not measured: its time is a kernel, a cuBLAS GEMM and the epilogue "
                       "together, and this tuner times one kernel\n", i, what);
  }
  int rc = n ? build(m, k, n, c, built, log) : RB_OK;
  for (int j = 0; j < n; j++) {
    m->c[at[j]] = c[j];
    ok[at[j] - from] = built[j];
    int regs = 0, local = 0;
    if (built[j] && rt_function_usage(m->gpu, c[j].fn, &regs, &local) == RB_OK && local > 0)
      rb_buf_printf(log, "note: candidate %d spills: %d registers and %d bytes of local memory a thread\n", at[j], regs,
                    local);
  }
  rb_free(k), rb_free(at), rb_free(built), rb_free(c);
  return rc;
}

static int gpu_validate(void *ctx, int i, int broken, int *valid, RbBuf *log) {
  AtGpu *m = ctx;
  const AtLinearData *d = &m->data;
  *valid = 1;
  for (int j = 0; j < m->u->nbatch && *valid; j++) {
    int batch = m->u->batch[j];
    size_t ybytes = (size_t)batch * d->nout * 2;
    const int bmma = m->s->c[i].sched.strategy == CG_STRAT_BMMA;
    CgLinearArgs a = {m->y, bmma ? m->planes : m->x, m->bits, m->g + (broken ? 2 : 0), m->h,
                      m->u->kernel.op.epilogue == CG_EPI_ADD ? m->res : 0, batch};
    CgArgv v, pv;
    CgPlanesArgs pa;
    CgLaunch pl;
    cg_linear_argv(&a, &v);
    CgLaunch l = cg_geometry_launch(&m->c[i].geo, batch);
    if (bmma) planes_launch(m, batch, &pa, m->h, &pv, &pl);
    if (rt_memset8(m->gpu, m->y, 0xFF, ybytes) ||
        (bmma && rt_launch(m->gpu, m->pre.fn, pl.grid, pl.block, pl.smem, NULL, pv.v)) ||
        rt_launch(m->gpu, m->c[i].fn, l.grid, l.block, l.smem, NULL, v.v) ||
        rt_sync(m->gpu) || rt_memcpy_dtoh(m->gpu, m->yh, m->y, ybytes))
      return gpu_fail(m, log, "validating a candidate");
    *valid = at_linear_data_check(d, &m->s->c[i].sched, m->yh, batch, NULL, log);
  }
  return RB_OK;
}

static int gpu_time(void *ctx, int i, int batch, double *us, RbBuf *log) {
  AtGpu *m = ctx;
  RtDevPtr res = m->u->kernel.op.epilogue == CG_EPI_ADD ? m->res : 0;
  const int bmma = m->s->c[i].sched.strategy == CG_STRAT_BMMA;
  CgLinearArgs *a = rb_malloc((size_t)m->nrot * sizeof *a);
  CgPlanesArgs *pa = rb_malloc((size_t)m->nrot * sizeof *pa);
  CgArgv *v = rb_malloc((size_t)m->nrot * sizeof *v), *pv = rb_malloc((size_t)m->nrot * sizeof *pv);
  void ***args = rb_malloc((size_t)m->nrot * sizeof *args), ***pargs = rb_malloc((size_t)m->nrot * sizeof *pargs);
  const int oom = !a || !pa || !v || !pv || !args || !pargs;
  int rc = oom ? RB_EINTERNAL : RB_OK;
  CgLaunch pl = {{0}, {0}, 0};
  for (int r = 0; r < m->nrot && !rc; r++) {
    RtDevPtr at = m->rot + m->stride * (size_t)r, h = at + up256(m->layout) + up256(m->gbytes);
    a[r] = (CgLinearArgs){m->y, bmma ? m->planes : m->x, at, at + up256(m->layout), h, res, batch};
    cg_linear_argv(&a[r], &v[r]);
    args[r] = v[r].v;
    if (bmma) planes_launch(m, batch, &pa[r], h, &pv[r], &pl);
    pargs[r] = pv[r].v;
  }
  CgLaunch l = cg_geometry_launch(&m->c[i].geo, batch);
  RtTimedKernel seq[2];
  int nk = 0;
  if (bmma)
    seq[nk++] = (RtTimedKernel){m->pre.fn, pl.grid, pl.block, pl.smem, pargs, m->nrot};
  seq[nk++] = (RtTimedKernel){m->c[i].fn, l.grid, l.block, l.smem, args, m->nrot};
  if (!rc) rc = rt_time_sequence(m->gpu, seq, nk, m->launches, 20, us);
  rb_free(a), rb_free(pa), rb_free(v), rb_free(pv), rb_free(args), rb_free(pargs);
  if (oom) return RB_EINTERNAL;
  return rc ? gpu_fail(m, log, "timing a candidate") : RB_OK;
}

static void gpu_end(void *ctx) { unit_free(ctx); }

static double gpu_now(void *ctx) {
  (void)ctx;
  return rb_now_ms() / 1e3;
}

int at_gpu_open(RtGpu *gpu, RtCache *cache, const CgTarget *t, int jobs, AtGpu **out) {
  AtGpu *m = rb_calloc(1, sizeof *m);
  *out = m;
  if (!m) return RB_EINTERNAL;
  m->gpu = gpu, m->cache = cache, m->t = t, m->jobs = jobs;
  return RB_OK;
}

void at_gpu_close(AtGpu *m) {
  if (!m) return;
  if (m->u) unit_free(m);
  rb_free(m);
}

AtBackend at_gpu_backend(AtGpu *m) {
  AtBackend b = {m, gpu_begin, gpu_compile, gpu_validate, gpu_time, gpu_end, gpu_now};
  return b;
}

int at_gpu_limits(RtGpu *gpu, AtLimits *out) {
  memset(out, 0, sizeof *out);
  out->regs_per_thread = 255; /* the ISA's limit on every GPU since Kepler; no attribute reports it */
  out->sm_count = rt_gpu_sm_count(gpu);
  if (rt_gpu_attribute(gpu, RT_GPU_REGS_PER_BLOCK, &out->regs_per_block) ||
      rt_gpu_attribute(gpu, RT_GPU_SMEM_PER_BLOCK, &out->smem_per_block) ||
      rt_gpu_attribute(gpu, RT_GPU_THREADS_PER_BLOCK, &out->threads_per_block))
    return RB_EINTERNAL;
  return RB_OK;
}

int at_gpu_bandwidth(RtGpu *gpu, double *bytes_per_s, char *how, size_t n) {
  enum { BYTES = 256 << 20 };
  if (rt_time_copy_bandwidth(gpu, BYTES, 10, bytes_per_s) == RB_OK && *bytes_per_s > 0) {
    snprintf(how, n, "measured (a %d MiB device-to-device copy, bytes read and written)", BYTES >> 20);
    return RB_OK;
  }
  int khz = 0, bits = 0;
  if (rt_gpu_attribute(gpu, RT_GPU_MEM_CLOCK_KHZ, &khz) || rt_gpu_attribute(gpu, RT_GPU_MEM_BUS_BITS, &bits) || !khz ||
      !bits)
    return RB_EINTERNAL;
  *bytes_per_s = 2.0 * khz * 1e3 * bits / 8.0; /* double data rate */
  snprintf(how, n, "nominal (2 x the %d MHz memory clock x %d bits; the copy could not be measured)", khz / 1000, bits);
  return RB_OK;
}
