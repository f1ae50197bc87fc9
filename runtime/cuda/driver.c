/* cuda.c: the CUDA driver API, loaded at run time with dlopen("libcuda.so.1")
 * and resolved through cuGetProcAddress, so that the tools start on machines
 * with no GPU. Kernels run on the device's primary context, which cuBLAS shares. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cudaTypedefs.h>

#include "runtime/cuda/gpu.h"

/* Every entry point we use: name without the "cu" prefix, the ABI version we
 * ask cuGetProcAddress for, and the matching PFN type from cudaTypedefs.h.
 * Plain dlsym("cuMemAlloc") would find the CUDA 2.x ABI (32-bit sizes); asking
 * by version gets cuMemAlloc_v2 and friends. 12000 is the baseline, so the
 * driver returns the CUDA 12 ABI of each call (cuCtxSynchronize without the
 * CUDA 13 context argument); the PFN types below are those versions. */
#define RT_CU_FUNCS(X)                                                   \
  X(Init, 12000, PFN_cuInit_v2000)                                       \
  X(GetErrorName, 12000, PFN_cuGetErrorName_v6000)                       \
  X(GetErrorString, 12000, PFN_cuGetErrorString_v6000)                   \
  X(DeviceGetCount, 12000, PFN_cuDeviceGetCount_v2000)                   \
  X(DeviceGet, 12000, PFN_cuDeviceGet_v2000)                             \
  X(DeviceGetName, 12000, PFN_cuDeviceGetName_v2000)                     \
  X(DeviceGetAttribute, 12000, PFN_cuDeviceGetAttribute_v2000)           \
  X(DevicePrimaryCtxRetain, 12000, PFN_cuDevicePrimaryCtxRetain_v7000)   \
  X(DevicePrimaryCtxRelease, 12000, PFN_cuDevicePrimaryCtxRelease_v11000) \
  X(CtxSetCurrent, 12000, PFN_cuCtxSetCurrent_v4000)                     \
  X(CtxSynchronize, 12000, PFN_cuCtxSynchronize_v2000)                   \
  X(ModuleLoadData, 12000, PFN_cuModuleLoadData_v2000)                   \
  X(ModuleGetFunction, 12000, PFN_cuModuleGetFunction_v2000)             \
  X(ModuleUnload, 12000, PFN_cuModuleUnload_v2000)                       \
  X(FuncSetAttribute, 12000, PFN_cuFuncSetAttribute_v9000)               \
  X(FuncGetAttribute, 12000, PFN_cuFuncGetAttribute_v2020)               \
  X(MemAlloc, 12000, PFN_cuMemAlloc_v3020)                               \
  X(MemFree, 12000, PFN_cuMemFree_v3020)                                 \
  X(MemcpyHtoD, 12000, PFN_cuMemcpyHtoD_v3020)                           \
  X(MemcpyDtoH, 12000, PFN_cuMemcpyDtoH_v3020)                           \
  X(MemsetD8, 12000, PFN_cuMemsetD8_v3020)                               \
  X(MemcpyDtoDAsync, 12000, PFN_cuMemcpyDtoDAsync_v3020)                 \
  X(LaunchKernel, 12000, PFN_cuLaunchKernel_v4000)                       \
  X(LaunchKernelEx, 12000, PFN_cuLaunchKernelEx_v11060)                  \
  X(StreamCreate, 12000, PFN_cuStreamCreate_v2000)                       \
  X(StreamDestroy, 12000, PFN_cuStreamDestroy_v4000)                     \
  X(StreamSynchronize, 12000, PFN_cuStreamSynchronize_v2000)             \
  X(StreamBeginCapture, 12000, PFN_cuStreamBeginCapture_v10010)          \
  X(StreamEndCapture, 12000, PFN_cuStreamEndCapture_v10000)              \
  X(GraphInstantiateWithFlags, 12000, PFN_cuGraphInstantiateWithFlags_v11040) \
  X(GraphUpload, 12000, PFN_cuGraphUpload_v11010)                        \
  X(GraphLaunch, 12000, PFN_cuGraphLaunch_v10000)                        \
  X(GraphExecDestroy, 12000, PFN_cuGraphExecDestroy_v10000)              \
  X(GraphDestroy, 12000, PFN_cuGraphDestroy_v10000)                      \
  X(EventCreate, 12000, PFN_cuEventCreate_v2000)                         \
  X(EventRecord, 12000, PFN_cuEventRecord_v2000)                         \
  X(EventSynchronize, 12000, PFN_cuEventSynchronize_v2000)               \
  X(EventElapsedTime, 12080, PFN_cuEventElapsedTime_v12080)              \
  X(EventDestroy, 12000, PFN_cuEventDestroy_v4000)

static struct {
#define X(name, ver, type) type name;
  RT_CU_FUNCS(X)
#undef X
} cu;

/* Loading happens once per process; its outcome (and the reason for a
 * failure) is kept for every later rt_gpu_open. */
static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static int cu_status = RB_EINTERNAL;
static char cu_reason[512];

struct RtGpu {
  int ordinal;
  CUdevice dev;
  CUcontext ctx;
  char name[256];
  char arch[16];
  int sm_count;
  int overlap; /* programmatic dependent launch: sm_90 and later, unless RABIT_PDL=0 */
  char error[512]; /* the last failing call, for the caller to show */
};

struct RtModule {
  RtGpu *g;
  CUmodule mod;
};

struct RtGraph {
  CUgraph graph;
  CUgraphExec exec;
};

/* Text for a driver error code; usable even when cuGetErrorName is missing. */
static const char *cu_err_name(CUresult r) {
  const char *s = NULL;
  if (!cu.GetErrorName || cu.GetErrorName(r, &s) != CUDA_SUCCESS || !s)
    s = "CUDA_ERROR_UNRECOGNIZED";
  return s;
}

/* Where a failure is recorded when there is no RtGpu yet (rt_gpu_open). */
static _Thread_local char orphan_error[512];

void rt_gpu_set_error(RtGpu *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g ? g->error : orphan_error, sizeof orphan_error, fmt, ap);
  va_end(ap);
}

const char *rt_gpu_error(const RtGpu *g) {
  const char *e = g ? g->error : orphan_error;
  return e[0] ? e : "no CUDA error recorded";
}

/* The one report format for failing driver calls (ggml's CU_CHECK style),
 * recorded on the GPU for the caller to show: library code never prints. */
static void cu_report(RtGpu *g, CUresult r, const char *stmt, const char *file, int line) {
  rt_gpu_set_error(g, "%s:%d: CUDA error %s (%d) in `%s` on device %d (%s)", file, line, cu_err_name(r), (int)r,
                   stmt, g ? g->ordinal : -1, g ? g->name : "?");
}

/* For calls whose failure is a bug or a resource failure: report and return
 * RB_EINTERNAL from the enclosing function. */
#define CU_CHECK(g, stmt)                                    \
  do {                                                       \
    CUresult rt_cu_r_ = (stmt);                              \
    if (rt_cu_r_ != CUDA_SUCCESS) {                          \
      cu_report((g), rt_cu_r_, #stmt, __FILE__, __LINE__);   \
      return RB_EINTERNAL;                                   \
    }                                                        \
  } while (0)

/* For void functions (free, destroy): report only. */
#define CU_WARN(g, stmt)                                     \
  do {                                                       \
    CUresult rt_cu_r_ = (stmt);                              \
    if (rt_cu_r_ != CUDA_SUCCESS)                            \
      cu_report((g), rt_cu_r_, #stmt, __FILE__, __LINE__);   \
  } while (0)

/* The context current on this thread as far as we know. The driver's current
 * context is per thread, so a RtGpu used from a second thread must be bound
 * there too; checking a thread-local first keeps that to one call per thread. */
static _Thread_local CUcontext cu_bound;

/* Make g's primary context current on the calling thread. */
static int cu_bind(RtGpu *g) {
  if (cu_bound == g->ctx)
    return RB_OK;
  CU_CHECK(g, cu.CtxSetCurrent(g->ctx));
  cu_bound = g->ctx;
  return RB_OK;
}

#define CU_BIND(g)                  \
  do {                              \
    int rt_cu_b_ = cu_bind(g);      \
    if (rt_cu_b_ != RB_OK)          \
      return rt_cu_b_;              \
  } while (0)

/* dlopen the driver, resolve every entry point, cuInit. Sets cu_status and,
 * on failure, cu_reason. The handle is never closed: unloading a driver that
 * has live contexts is unsafe, and the process keeps it anyway. */
static void cu_load(void) {
  const char *path = getenv("RABIT_LIBCUDA");
  if (!path || !path[0])
    path = "libcuda.so.1";
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(cu_reason, sizeof cu_reason, "%s", e ? e : path);
    cu_status = RB_EUSER;
    return;
  }
  /* The 5-argument cuGetProcAddress (CUDA 12+) is exported as _v2; the bare
   * name is the CUDA 11 4-argument ABI. */
  PFN_cuGetProcAddress_v12000 getproc;
  *(void **)&getproc = dlsym(h, "cuGetProcAddress_v2");
  if (!getproc) {
    snprintf(cu_reason, sizeof cu_reason,
             "%s has no cuGetProcAddress_v2: the driver is older than CUDA 12.0", path);
    cu_status = RB_EUSER;
    return;
  }
  CUdriverProcAddressQueryResult q;
  CUresult r;
#define X(name, ver, type)                                                                   \
  q = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;                                                  \
  r = getproc("cu" #name, (void **)&cu.name, ver, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &q);    \
  if (r != CUDA_SUCCESS || q != CU_GET_PROC_ADDRESS_SUCCESS || !cu.name) {                   \
    snprintf(cu_reason, sizeof cu_reason,                                                    \
             "%s: cannot resolve cu" #name " (CUDA %d ABI): error %d, status %d", path, ver, \
             (int)r, (int)q);                                                                \
    cu.name = NULL;                                                                          \
    cu_status = RB_EUSER;                                                                    \
    return;                                                                                  \
  }
  RT_CU_FUNCS(X)
#undef X

  r = cu.Init(0);
  if (r != CUDA_SUCCESS) {
    const char *s = NULL;
    if (cu.GetErrorString(r, &s) != CUDA_SUCCESS || !s)
      s = "";
    snprintf(cu_reason, sizeof cu_reason, "cuInit failed: %s (%d): %s", cu_err_name(r), (int)r,
             s);
    cu_status = RB_EUSER;
    return;
  }
  cu_status = RB_OK;
}

/* Open device ordinal on its primary context; see runtime.h. */
int rt_gpu_open(RtGpu **out, int ordinal, RbBuf *err) {
  *out = NULL;
  pthread_once(&cu_once, cu_load);
  if (cu_status != RB_OK) {
    if (err)
      rb_buf_printf(err, "running kernels needs an NVIDIA GPU and driver: %s\n", cu_reason);
    return cu_status;
  }
  int count = 0;
  CUresult r = cu.DeviceGetCount(&count);
  if (r != CUDA_SUCCESS || ordinal < 0 || ordinal >= count) {
    if (err)
      rb_buf_printf(err,
                    "running kernels needs an NVIDIA GPU and driver: no CUDA device %d "
                    "(%d found%s%s)\n",
                    ordinal, r == CUDA_SUCCESS ? count : 0, r == CUDA_SUCCESS ? "" : ": ",
                    r == CUDA_SUCCESS ? "" : cu_err_name(r));
    return RB_EUSER;
  }

  RtGpu *g = rb_calloc(1, sizeof *g);
  if (!g) {
    if (err)
      rb_buf_printf(err, "out of memory\n");
    return RB_EINTERNAL;
  }
  g->ordinal = ordinal;
  snprintf(g->name, sizeof g->name, "?");
  int major = 0, minor = 0;
  int rc = RB_EINTERNAL;
#define OPEN_CHECK(stmt)                                   \
  do {                                                     \
    CUresult e_ = (stmt);                                  \
    if (e_ != CUDA_SUCCESS) {                              \
      cu_report(g, e_, #stmt, __FILE__, __LINE__);         \
      goto fail;                                           \
    }                                                      \
  } while (0)
  OPEN_CHECK(cu.DeviceGet(&g->dev, ordinal));
  OPEN_CHECK(cu.DeviceGetName(g->name, (int)sizeof g->name, g->dev));
  OPEN_CHECK(cu.DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g->dev));
  OPEN_CHECK(cu.DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g->dev));
  OPEN_CHECK(cu.DeviceGetAttribute(&g->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g->dev));
  snprintf(g->arch, sizeof g->arch, "sm_%d%d", major, minor);
  const char *pdl = getenv("RABIT_PDL");
  g->overlap = major >= 9 && !(pdl && !strcmp(pdl, "0"));
  OPEN_CHECK(cu.DevicePrimaryCtxRetain(&g->ctx, g->dev));
  r = cu.CtxSetCurrent(g->ctx);
  if (r != CUDA_SUCCESS) {
    cu_report(g, r, "cu.CtxSetCurrent(g->ctx)", __FILE__, __LINE__);
    cu.DevicePrimaryCtxRelease(g->dev);
    goto fail;
  }
  cu_bound = g->ctx;
#undef OPEN_CHECK
  *out = g;
  return RB_OK;

fail:
  if (err)
    rb_buf_printf(err, "cannot open CUDA device %d (%s): %s\n", ordinal, g->name, rt_gpu_error(g));
  rb_free(g);
  return rc;
}

/* Release the primary context reference taken by rt_gpu_open. Everything
 * allocated on g should be freed first. */
void rt_gpu_close(RtGpu *g) {
  if (!g)
    return;
  CU_WARN(g, cu.DevicePrimaryCtxRelease(g->dev));
  if (cu_bound == g->ctx)
    cu_bound = NULL; /* the context may be gone; rebind on the next use */
  rb_free(g);
}

const char *rt_gpu_name(const RtGpu *g) { return g->name; }
const char *rt_gpu_arch(const RtGpu *g) { return g->arch; }
int rt_gpu_sm_count(const RtGpu *g) { return g->sm_count; }

/* The driver's attribute behind each RtGpuAttr (gpu.h). */
static const CUdevice_attribute attr_of[RT_GPU_NATTR] = {
    [RT_GPU_REGS_PER_BLOCK] = CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK,
    [RT_GPU_SMEM_PER_BLOCK] = CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
    [RT_GPU_THREADS_PER_BLOCK] = CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
    [RT_GPU_MEM_CLOCK_KHZ] = CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE,
    [RT_GPU_MEM_BUS_BITS] = CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH,
    [RT_GPU_L2_BYTES] = CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE,
};

int rt_function_usage(RtGpu *g, RtFunction fn, int *regs, int *local_bytes) {
  *regs = *local_bytes = 0;
  CU_BIND(g);
  CU_CHECK(g, cu.FuncGetAttribute(regs, CU_FUNC_ATTRIBUTE_NUM_REGS, (CUfunction)fn));
  CU_CHECK(g, cu.FuncGetAttribute(local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, (CUfunction)fn));
  return RB_OK;
}

int rt_gpu_attribute(RtGpu *g, RtGpuAttr a, int *value) {
  *value = 0;
  if ((unsigned)a >= RT_GPU_NATTR) return RB_EINTERNAL;
  CU_BIND(g);
  CU_CHECK(g, cu.DeviceGetAttribute(value, attr_of[a], g->dev));
  return RB_OK;
}

/* Load a cubin (len is implied by its ELF header; cuModuleLoadData reads it). */
int rt_module_load(RtGpu *g, const void *cubin, size_t len, RtModule **out) {
  *out = NULL;
  (void)len;
  CU_BIND(g);
  RtModule *m = rb_calloc(1, sizeof *m);
  if (!m)
    return RB_EINTERNAL;
  m->g = g;
  CUresult r = cu.ModuleLoadData(&m->mod, cubin);
  if (r != CUDA_SUCCESS) {
    cu_report(g, r, "cu.ModuleLoadData(&m->mod, cubin)", __FILE__, __LINE__);
    rb_free(m);
    return RB_EINTERNAL;
  }
  *out = m;
  return RB_OK;
}

/* Look a kernel up by its (extern "C") name. */
int rt_module_function(RtModule *m, const char *name, RtFunction *fn) {
  *fn = NULL;
  CU_BIND(m->g);
  CUfunction f = NULL;
  CUresult r = cu.ModuleGetFunction(&f, m->mod, name);
  if (r != CUDA_SUCCESS) {
    rt_gpu_set_error(m->g, "%s:%d: CUDA error %s (%d): no kernel named %s in the module", __FILE__, __LINE__,
                     cu_err_name(r), (int)r, name);
    return RB_EINTERNAL;
  }
  *fn = (RtFunction)f;
  return RB_OK;
}

void rt_module_unload(RtModule *m) {
  if (!m)
    return;
  if (cu_bind(m->g) == RB_OK)
    CU_WARN(m->g, cu.ModuleUnload(m->mod));
  rb_free(m);
}

int rt_mem_alloc(RtGpu *g, RtDevPtr *p, size_t bytes) {
  *p = 0;
  CU_BIND(g);
  CUdeviceptr d = 0;
  CU_CHECK(g, cu.MemAlloc(&d, bytes));
  *p = (RtDevPtr)d;
  return RB_OK;
}

void rt_mem_free(RtGpu *g, RtDevPtr p) {
  if (!p)
    return;
  if (cu_bind(g) == RB_OK)
    CU_WARN(g, cu.MemFree((CUdeviceptr)p));
}

/* Synchronous copies on the legacy default stream: they are ordered after
 * earlier work on blocking streams, and the host buffer may be reused on return. */
int rt_memcpy_htod(RtGpu *g, RtDevPtr dst, const void *src, size_t bytes) {
  CU_BIND(g);
  CU_CHECK(g, cu.MemcpyHtoD((CUdeviceptr)dst, src, bytes));
  return RB_OK;
}

int rt_memcpy_dtoh(RtGpu *g, void *dst, RtDevPtr src, size_t bytes) {
  CU_BIND(g);
  CU_CHECK(g, cu.MemcpyDtoH(dst, (CUdeviceptr)src, bytes));
  return RB_OK;
}

int rt_memcpy_dtod(RtGpu *g, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s) {
  CU_BIND(g);
  CU_CHECK(g, cu.MemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, (CUstream)s));
  return RB_OK;
}

int rt_memset8(RtGpu *g, RtDevPtr dst, unsigned char v, size_t bytes) {
  CU_BIND(g);
  CU_CHECK(g, cu.MemsetD8((CUdeviceptr)dst, v, bytes));
  return RB_OK;
}

int rt_gpu_overlap(const RtGpu *g) { return g->overlap; }

/* Launch fn. Dynamic shared memory above the 48 KiB default must be opted into
 * per function, so that is done here rather than left to every caller. */
int rt_launch(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3],
              unsigned smem, RtStream stream, void **args) {
  return rt_launch_ex(g, fn, grid, block, smem, stream, args, 0);
}

int rt_launch_ex(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3], unsigned smem,
                 RtStream stream, void **args, int overlap) {
  CU_BIND(g);
  CUfunction f = (CUfunction)fn;
  if (smem > 48u * 1024u)
    CU_CHECK(g, cu.FuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                    (int)smem));
  if (!overlap || !g->overlap) {
    CU_CHECK(g, cu.LaunchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem,
                                (CUstream)stream, args, NULL));
    return RB_OK;
  }
  /* The kernel may begin while the one before it on the stream drains; its
   * griddepcontrol.wait (rb_grid_enter) holds it until that one's results are visible. */
  CUlaunchAttribute attr;
  memset(&attr, 0, sizeof attr);
  attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attr.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig cfg = {grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, (CUstream)stream, &attr, 1};
  CU_CHECK(g, cu.LaunchKernelEx(&cfg, f, args, NULL));
  return RB_OK;
}

/* Wait for all work on g's context; launch errors surface here. */
int rt_sync(RtGpu *g) {
  CU_BIND(g);
  CU_CHECK(g, cu.CtxSynchronize());
  return RB_OK;
}

/* A blocking stream (flags 0): it stays ordered with the legacy default
 * stream that rt_memcpy_* use, so a copy followed by a launch on s needs no
 * extra synchronization. */
int rt_stream_create(RtGpu *g, RtStream *s) {
  *s = NULL;
  CU_BIND(g);
  CUstream st = NULL;
  CU_CHECK(g, cu.StreamCreate(&st, CU_STREAM_DEFAULT));
  *s = (RtStream)st;
  return RB_OK;
}

void rt_stream_destroy(RtGpu *g, RtStream s) {
  if (!s)
    return;
  if (cu_bind(g) == RB_OK)
    CU_WARN(g, cu.StreamDestroy((CUstream)s));
}

/* Thread-local capture mode: an unsafe call (cuMemAlloc, a synchronous copy)
 * from the capturing thread fails loudly, while other threads of the process
 * (a compile or data thread) are not disturbed as they would be in global mode.
 * s must be a created stream: the legacy default stream cannot be captured. */
int rt_capture_begin(RtGpu *g, RtStream s) {
  CU_BIND(g);
  CU_CHECK(g, cu.StreamBeginCapture((CUstream)s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
  return RB_OK;
}

/* End the capture and instantiate it. */
int rt_capture_end(RtGpu *g, RtStream s, RtGraph **out) {
  *out = NULL;
  CU_BIND(g);
  CUgraph graph = NULL;
  CU_CHECK(g, cu.StreamEndCapture((CUstream)s, &graph));
  RtGraph *gr = rb_calloc(1, sizeof *gr);
  if (!gr) {
    CU_WARN(g, cu.GraphDestroy(graph));
    return RB_EINTERNAL;
  }
  gr->graph = graph;
  CUresult r = cu.GraphInstantiateWithFlags(&gr->exec, graph, 0);
  if (r != CUDA_SUCCESS) {
    cu_report(g, r, "cu.GraphInstantiateWithFlags(&gr->exec, graph, 0)", __FILE__, __LINE__);
    CU_WARN(g, cu.GraphDestroy(graph));
    rb_free(gr);
    return RB_EINTERNAL;
  }
  *out = gr;
  return RB_OK;
}

int rt_graph_launch(RtGpu *g, RtGraph *gr, RtStream s) {
  CU_BIND(g);
  CU_CHECK(g, cu.GraphLaunch(gr->exec, (CUstream)s));
  return RB_OK;
}

void rt_graph_destroy(RtGpu *g, RtGraph *gr) {
  if (!gr)
    return;
  if (cu_bind(g) == RB_OK) {
    CU_WARN(g, cu.GraphExecDestroy(gr->exec));
    CU_WARN(g, cu.GraphDestroy(gr->graph));
  }
  rb_free(gr);
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Event-timed replays of gr: one warm-up replay (it also uploads the graph),
 * then reps replays each timed alone; *median_ms is their median. */
static int time_graph(RtGpu *g, RtGraph *gr, CUstream s, int reps, float *times, CUevent ev[2]) {
  CU_CHECK(g, cu.GraphUpload(gr->exec, s));
  CU_CHECK(g, cu.GraphLaunch(gr->exec, s));
  CU_CHECK(g, cu.StreamSynchronize(s));
  for (int i = 0; i < reps; i++) {
    CU_CHECK(g, cu.EventRecord(ev[0], s));
    CU_CHECK(g, cu.GraphLaunch(gr->exec, s));
    CU_CHECK(g, cu.EventRecord(ev[1], s));
    CU_CHECK(g, cu.EventSynchronize(ev[1]));
    CU_CHECK(g, cu.EventElapsedTime(&times[i], ev[0], ev[1]));
  }
  return RB_OK;
}

int rt_time_graph(RtGpu *g, RtGraph *gr, RtStream s, int reps, float *median_ms) {
  *median_ms = 0;
  if (reps < 1 || !gr)
    return RB_EINTERNAL;
  CU_BIND(g);
  float *times = rb_malloc((size_t)reps * sizeof *times);
  if (!times)
    return RB_EINTERNAL;
  CUevent ev[2] = {NULL, NULL};
  int rc = RB_EINTERNAL;
  CUresult r = cu.EventCreate(&ev[0], CU_EVENT_DEFAULT);
  if (r == CUDA_SUCCESS)
    r = cu.EventCreate(&ev[1], CU_EVENT_DEFAULT);
  if (r != CUDA_SUCCESS)
    cu_report(g, r, "cu.EventCreate(&ev[i], CU_EVENT_DEFAULT)", __FILE__, __LINE__);
  else
    rc = time_graph(g, gr, (CUstream)s, reps, times, ev);
  for (int i = 0; i < 2; i++)
    if (ev[i])
      CU_WARN(g, cu.EventDestroy(ev[i]));
  if (rc == RB_OK) {
    qsort(times, (size_t)reps, sizeof *times, cmp_float);
    *median_ms = (reps & 1) ? times[reps / 2] : 0.5f * (times[reps / 2 - 1] + times[reps / 2]);
  }
  rb_free(times);
  return rc;
}
