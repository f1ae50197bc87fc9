/* runtime.h: NVRTC compilation, the on-disk kernel cache, and the CUDA driver
 * API loaded with dlopen (prefix rt_). Nothing here links libcuda: the tools
 * compile and cache on machines with no GPU and say plainly when running needs one. */
#ifndef RABIT_RUNTIME_H
#define RABIT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "ir/base.h"

/* ==== cache.c: cubins on disk under an XXH3-128 key ==== */

#define RT_CACHE_FORMAT 1

typedef struct {
  uint64_t hi, lo;
} RtKey;

/* Everything that changes a binary. */
typedef struct {
  const char *source;       /* canonical kernel source */
  const char *options;      /* NVRTC options, joined by spaces */
  const char *arch;         /* exact target: "sm_90", "sm_90a" */
  const char *compiler_id;  /* rt_nvrtc_id(): NVRTC version + builtins identity */
  const char *tool_version; /* RABIT_VERSION */
} RtKeyParts;

RtKey rt_key_make(const RtKeyParts *p); /* also mixes in RT_CACHE_FORMAT */
void rt_key_hex(RtKey k, char out[33]);

typedef struct RtCache RtCache;

typedef struct {
  uint64_t entries, bytes, max_bytes;
  const char *dir; /* NULL when memory-only */
} RtCacheStats;

#define RT_CACHE_DEFAULT_MAX (1ull << 30)

/* Open the cache in dir, or when dir is NULL in $RABIT_CACHE_DIR, else
 * $XDG_CACHE_HOME/rabit, else ~/.cache/rabit (created with mode 0700).
 * If the directory cannot be created or written, the cache lives in memory
 * for this process and a warning naming the directory and the reason is
 * appended to warn. Returns RB_OK, or RB_EINTERNAL on allocation failure. */
int rt_cache_open(RtCache **out, const char *dir, uint64_t max_bytes, RbBuf *warn);
void rt_cache_close(RtCache *c);

/* Look a key up. Returns 1 on a hit with *data (rb_malloc'ed) and *len set,
 * 0 on a miss. An entry with a bad magic, version, key, length or checksum is
 * a miss: it is removed, never loaded. A hit refreshes the entry's LRU time. */
int rt_cache_get(RtCache *c, RtKey key, void **data, size_t *len);

/* Store an entry: temp file in the same directory, fsync, rename, fsync of the
 * directory; then evict least-recently-used entries beyond max_bytes.
 * Returns RB_OK or RB_EINTERNAL (with the reason appended to err if non-NULL);
 * a failed put leaves no partial entry. */
int rt_cache_put(RtCache *c, RtKey key, const void *data, size_t len, RbBuf *err);

/* Get-or-build under a per-key lock file, so that concurrent processes
 * compile one kernel once. build() fills *data and *len (rb_malloc'ed) and
 * returns RB_OK, or an error code that is passed back. *hit says whether the
 * entry came from the cache. */
typedef int (*RtBuildFn)(void *ctx, void **data, size_t *len);
int rt_cache_fetch(RtCache *c, RtKey key, RtBuildFn build, void *ctx, void **data, size_t *len,
                   int *hit, RbBuf *err);

int rt_cache_stats(RtCache *c, RtCacheStats *st);
int rt_cache_clear(RtCache *c); /* removes every entry and lock file */

/* ==== nvrtc.c: run-time compilation ==== */

/* Compile source for arch ("sm_90") into a cubin (nvrtcGetCUBIN, never PTX).
 * name is the program name NVRTC puts in its messages. opts are extra NVRTC
 * options. On failure returns RB_EUSER with the NVRTC log appended to log. */
int rt_nvrtc_compile(const char *source, const char *name, const char *arch,
                     const char *const *opts, int nopts, void **cubin, size_t *len, RbBuf *log);

/* "nvrtc 13.0 builtins <hex digest of libnvrtc-builtins>", computed once.
 * nvrtcVersion gives only major.minor, so the builtins library's contents
 * identify the exact compiler. */
const char *rt_nvrtc_id(void);

/* The NVRTC options every kernel is compiled with, in a fixed order. */
extern const char *const rt_nvrtc_default_opts[];
extern const int rt_nvrtc_default_nopts;

/* ==== build.c: a model's kernels compiled in parallel through the cache ==== */

typedef struct {
  const char *arch; /* exact target, "sm_90" */
  RtCache *cache;
  int jobs;         /* worker threads; 0 = the online CPUs */
} RtBuildOptions;

typedef struct {
  char entry[64];
  RtKey key;
  int hit;     /* the cubin came from the cache */
  double ms;   /* wall time to obtain it: compile, or load from the cache */
  void *cubin; /* rb_malloc'ed */
  size_t len;
  int rc;      /* RB_OK, RB_EUSER (the spec or NVRTC rejected it), RB_EINTERNAL */
  RbBuf source;/* the canonical source */
  RbBuf log;   /* NVRTC's log on failure, and cache warnings */
} RtBuilt;

/* Emit, key, and fetch-or-compile each of the n specs, spreading them over
 * worker threads. out[i] describes specs[i]. Returns RB_OK when all of them
 * built, else the worst rc; every out[i] is filled either way. */
int rt_build_kernels(const CgSpec *specs, int n, const RtBuildOptions *o, RtBuilt *out);
void rt_built_free(RtBuilt *b, int n);

/* The options string that goes into the key: the default NVRTC options joined. */
const char *rt_build_options_string(void);

/* ==== plan.c: the versioned plan, the contract between rabitc and its users ==== */

struct IrGraph;

#define RT_PLAN_VERSION 1

typedef struct {
  CgSpec spec;
  RtKey key;
  char entry[64];
  unsigned block[3], smem;
  char tuning[32];     /* where its tile parameters came from: "default" until autotuned */
} RtPlanKernel;

#define RT_PLAN_MAX_STEP_KERNELS 5
#define RT_PLAN_MAX_VALUES 4

/* One op of the fused graph: which kernels serve it, the weights it binds,
 * the values it reads and writes. */
typedef struct {
  char op[16];
  int line, layer;
  int nkernels, kernel[RT_PLAN_MAX_STEP_KERNELS]; /* linears: xor, mma<=16, mma<=512, repack xor, repack mma */
  int nin, in[RT_PLAN_MAX_VALUES], nout, out[RT_PLAN_MAX_VALUES];
  int paths;            /* 0 = none */
  int nweights;
  char *weights[RT_PLAN_MAX_VALUES];
  size_t layout_bytes[2]; /* linears: repacked bits in the xor and mma layouts */
} RtPlanStep;

typedef struct RtPlan {
  int version;
  char model[128], arch[16], compiler[128], tool[32];
  RtKey ir_hash;
  int nkernels, nsteps, nvalues;
  RtPlanKernel *kernels;
  RtPlanStep *steps;
} RtPlan;

/* Write the plan of a verified, fused graph whose kernels were built
 * (built[i] serves ks->k[i]). The IR text's hash identifies the source.
 * Written to a temp file and renamed, so a failed write leaves any old plan. */
int rt_plan_write(const char *path, const struct IrGraph *g, const char *ir_text, const char *arch,
                  const CgKernelSet *ks, const RtBuilt *built, RbBuf *err);
/* Render a plan as text (what rt_plan_write writes). */
void rt_plan_format(const RtPlan *p, RbBuf *out);
/* Build the in-memory plan without writing it. */
int rt_plan_make(RtPlan **out, const struct IrGraph *g, const char *ir_text, const char *arch,
                 const CgKernelSet *ks, const RtBuilt *built);
/* Load and validate a plan file; errors name the file and line. */
int rt_plan_load(const char *path, RtPlan **out, RbBuf *err);
int rt_plan_parse(const char *path, const char *text, RtPlan **out, RbBuf *err);
void rt_plan_free(RtPlan *p);

/* ==== cuda.c: the driver API, through dlopen("libcuda.so.1") + cuGetProcAddress ==== */

typedef struct RtGpu RtGpu;
typedef struct RtModule RtModule;
typedef void *RtFunction; /* CUfunction */
typedef void *RtStream;   /* CUstream; NULL is the default stream */
typedef uint64_t RtDevPtr;/* CUdeviceptr */

/* Open device ordinal on its primary context. With no driver or no device it
 * returns RB_EUSER and appends to err a message that says running needs an
 * NVIDIA GPU and driver, with the loader's reason. */
int rt_gpu_open(RtGpu **out, int ordinal, RbBuf *err);
void rt_gpu_close(RtGpu *g);
const char *rt_gpu_name(const RtGpu *g);
const char *rt_gpu_arch(const RtGpu *g); /* "sm_90" */
int rt_gpu_sm_count(const RtGpu *g);

/* Every failing driver call is reported on stderr as
 * "file:line: CUDA error NAME (code) in `statement` on device N (name)". */
int rt_module_load(RtGpu *g, const void *cubin, size_t len, RtModule **out);
int rt_module_function(RtModule *m, const char *name, RtFunction *fn);
void rt_module_unload(RtModule *m);

int rt_mem_alloc(RtGpu *g, RtDevPtr *p, size_t bytes);
void rt_mem_free(RtGpu *g, RtDevPtr p);
int rt_memcpy_htod(RtGpu *g, RtDevPtr dst, const void *src, size_t bytes);
int rt_memcpy_dtoh(RtGpu *g, void *dst, RtDevPtr src, size_t bytes);
int rt_memset8(RtGpu *g, RtDevPtr dst, unsigned char v, size_t bytes);

/* args: an array of pointers to each kernel argument, as cuLaunchKernel wants. */
int rt_launch(RtGpu *g, RtFunction fn, const unsigned grid[3], const unsigned block[3],
              unsigned smem, RtStream stream, void **args);
int rt_sync(RtGpu *g);

int rt_stream_create(RtGpu *g, RtStream *s);
void rt_stream_destroy(RtGpu *g, RtStream s);

/* Timing: capture a sequence of launches on stream s into a graph, replay it,
 * and time the replays with events. */
typedef struct RtGraph RtGraph;
int rt_capture_begin(RtGpu *g, RtStream s);
int rt_capture_end(RtGpu *g, RtStream s, RtGraph **out);
int rt_graph_launch(RtGpu *g, RtGraph *gr, RtStream s);
void rt_graph_destroy(RtGpu *g, RtGraph *gr);
int rt_time_graph(RtGpu *g, RtGraph *gr, RtStream s, int reps, float *median_ms);

/* ==== session.c (the public API of rabit.h) ==== */

struct RabitSession;
/* The session's GPU, for tests and benchmarks that time graphs of launches. */
RtGpu *rt_session_gpu(struct RabitSession *s);
/* What opening took: getting every cubin (cache or NVRTC), loading every module. */
void rt_session_times(const struct RabitSession *s, double *ms_build, double *ms_load);

#endif
