/* runtime.h: the runtime's own layer (prefix rt_): the compile pipeline, the
 * plan file, a plan's kernels loaded on a GPU, quantized linears' weights, and
 * the executor. session.c builds the public API (rabit.h) on these; the pieces
 * below them have their own headers: jit/, cuda/, formats/, text/. */
#ifndef RABIT_RUNTIME_H
#define RABIT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/base.h"
#include "runtime/cuda/gpu.h"
#include "runtime/jit/jit.h"

/* ==== plan.c: the versioned plan, the contract between rabitc and its users ==== */

#define RT_PLAN_VERSION 4 /* 3: the decode variant's grid x (split attention); 4: a linear's eps (a fused rmsnorm) */
#define RT_PLAN_MAX_BYTES (64ull << 20) /* a plan file is read whole: 64 MiB at most */

/* One kernel: what it computes and how (the whole kernel, so a missing binary
 * is rebuilt from the plan alone), its cache key, and its launch geometry,
 * fixed when the plan was made: the runtime launches from these fields. */
typedef struct {
  CgKernel kernel;
  RtKey key;
  char entry[CG_ENTRY_MAX];
  CgGeometry geometry;
  CgScheduleSource from; /* where its schedule came from: default, shipped or tuned */
} RtPlanKernel;

#define RT_PLAN_MAX_VALUES 4

/* One op of the fused graph: its kernels by role, the weights it binds, the
 * values it reads and writes. */
typedef struct {
  IrOp op;
  int line, layer;
  CgNodeKernels kernels; /* indices into RtPlan.kernels; -1 where a role does not apply */
  int nin, in[RT_PLAN_MAX_VALUES], nout, out[RT_PLAN_MAX_VALUES];
  int width[RT_PLAN_MAX_VALUES]; /* each output's row width (T is dynamic) */
  int paths;            /* 0 = none */
  int tied;             /* a dense linear reusing the embedding named in weights[0] */
  int nweights;
  char *weights[RT_PLAN_MAX_VALUES];
  size_t layout_bytes; /* quantized linears: the repacked bits, one layout for every bucket */
} RtPlanStep;

typedef struct RtPlan {
  int version;
  char model[128], target[16], arch[16], compiler[128], tool[32];
  RtKey ir_hash;
  int nkernels, nsteps, nvalues;
  int ret;        /* the returned value */
  int ret_f32;    /* returned as f32 (logits) rather than f16 */
  RtPlanKernel *kernels;
  RtPlanStep *steps;
} RtPlan;

/* The target a plan's kernels were made for (cg_target_cuda today), or NULL. */
const CgTarget *rt_plan_target(const RtPlan *p);

/* Build the in-memory plan of a verified, fused graph whose kernels were
 * built (built[i] serves ks->k[i]); the IR text's hash identifies the source. */
int rt_plan_make(RtPlan **out, const IrGraph *g, const char *ir_text, const CgTarget *t, const char *arch,
                 const CgKernelSet *ks, const RtBuilt *built, RbBuf *err);
/* Render a plan as text (what rt_plan_write writes). */
void rt_plan_format(const RtPlan *p, RbBuf *out);
/* Write it to path through a temp file and a rename, so that a failed write
 * leaves any old plan whole. */
int rt_plan_write(const char *path, const RtPlan *p, RbBuf *err);
/* Load and validate a plan file; errors name the file and line. */
int rt_plan_load(const char *path, RtPlan **out, RbBuf *err);
int rt_plan_parse(const char *path, const char *text, RtPlan **out, RbBuf *err);
void rt_plan_free(RtPlan *p);

/* ==== compile.c: the one pipeline, text -> graph -> kernels -> binaries -> plan ==== */

#define RT_DEFAULT_MAX_CTX 2048 /* KV-cache length when the caller names none */

/* The stages in order. RT_STAGE_GRAD (ir_grad, then verify) runs only with
 * `train`, and ends a training compile: the fused stages and the back end
 * are the inference pipeline's. Without `train` it is skipped. */
typedef enum { RT_STAGE_PARSE, RT_STAGE_VERIFY, RT_STAGE_GRAD, RT_STAGE_FUSE, RT_STAGE_SELECT, RT_STAGE_BUILD,
               RT_STAGE_PLAN, RT_NSTAGE } RtStage;

/* The schedule hook: called once per selected kernel, in the set's order,
 * after selection and before anything is built (rabitc and rabit pass the
 * autotuner's at_schedule_pick, which reads the tuning databases). It may
 * write another schedule for k into *sched, keeping its batch bucket (k's op
 * is never changed), and returns where that schedule came from;
 * CG_FROM_DEFAULT keeps k as selected. The pipeline passes a replacement
 * through the target (geometry, then emit): one the target refuses leaves
 * the default in place with a note in RtCompiled.warnings, never a failure. */
typedef CgScheduleSource (*RtScheduleFn)(void *ctx, const CgKernel *k, CgSchedule *sched);

typedef struct {
  const char *path;  /* the IR file ("-": stdin); names the diagnostics */
  const char *text;  /* the IR text itself, or NULL to read path */
  FeOptions fe;      /* --paths override, every linear dense */
  const CgTarget *target; /* NULL: CUDA */
  RtStage stop;      /* the last stage to run */
  const char *arch;  /* exact target ("sm_90"), needed from RT_STAGE_BUILD on */
  int max_ctx;       /* KV-cache length the attention kernels serve; 0 = RT_DEFAULT_MAX_CTX */
  int jobs;          /* compile threads; 0 = the online CPUs */
  int train;         /* the training graph: verify, grad, verify; nothing after RT_STAGE_GRAD */
  double gamma;      /* with train: the hidden-state MSE's weight (ir_grad); 0 = KL alone */
  RtScheduleFn schedule; /* NULL: every kernel keeps its default schedule */
  void *schedule_ctx;    /* schedule's first argument */
} RtCompileOptions;

/* What the stages made; each field is valid once `reached` is past its stage. */
typedef struct {
  const char *shown;   /* the name diagnostics use ("<stdin>" for -) */
  RbBuf text;          /* the IR text: its hash identifies the plan's source */
  IrGraph *graph;      /* verified; the training graph at RT_STAGE_GRAD; fused from RT_STAGE_FUSE on */
  CgKernelSet kernels; /* RT_STAGE_SELECT */
  RtBuilt *built;      /* RT_STAGE_BUILD attempted: one per kernel, failures included */
  RtCache *cache;
  RtPlan *plan;        /* RT_STAGE_PLAN */
  int reached;         /* the last stage that completed; -1 for none */
  int hits, failed;    /* kernels the cache held; kernels that did not build */
  double ms_build;
  RbBuf diag;          /* frontend diagnostics: path:line:col: error: ..., the line, a caret */
  RbBuf warnings;      /* lines for the caller to show: the cache's (e.g. a memory-only cache),
                        * and a note per schedule the hook proposed and the target refused */
} RtCompiled;

/* Run the stages up to o->stop. Frontend diagnostics go to c->diag, other
 * errors (one line, no newline: an unreadable file, kernels that failed) to
 * err; a kernel that does not build is described in c->built[i] (entry, rc,
 * NVRTC log). Returns RB_OK, RB_EUSER (bad input) or RB_EINTERNAL. Free c
 * with rt_compiled_free either way. */
int rt_compile(const RtCompileOptions *o, RtCompiled *c, RbBuf *err);
/* Run the back-end stages up to o->stop on c, which a call of rt_compile
 * left at RT_STAGE_FUSE (rabitc prints the layer table in between). */
int rt_compile_continue(const RtCompileOptions *o, RtCompiled *c, RbBuf *err);
void rt_compiled_free(RtCompiled *c);
/* The plan, now the caller's to free with rt_plan_free. */
RtPlan *rt_compiled_take_plan(RtCompiled *c);

/* ==== weights.c: the tensors a plan binds, and a weight file checked against them ==== */

/* One tensor a plan binds: a full-precision float tensor (<base>.weight), or
 * one part of a quantized weight in the packed format (packed.c). */
typedef struct {
  char name[520];
  const char *base;  /* the weight's name as the IR binds it (points into the plan) */
  int step;          /* the plan step that binds it */
  int packed;        /* 1: part of a quantized weight with k paths */
  CgPackedPart part;
  int k;
  int64_t N, K;      /* packed: the weight's shape, N x K */
  int rank;
  int64_t shape[3];
} RtPlanTensor;

typedef int (*RtPlanTensorFn)(void *ctx, const RtPlanTensor *t);

/* Call fn for every tensor the plan binds, in step order (a tied linear binds
 * none of its own); stops at, and returns, the first nonzero return. */
int rt_plan_tensors(const RtPlan *p, RtPlanTensorFn fn, void *ctx);

struct RtSafetensors;
/* Check that file f (named path) holds every tensor the plan binds, with the
 * shape, dtype and k it needs: RB_OK, or RB_EUSER with one message naming the
 * file, the tensor and the IR line (a weight whose k differs from the IR's
 * is named as such). Runs on the CPU: the executor calls it before uploading. */
int rt_weights_check(const RtPlan *p, const struct RtSafetensors *f, const char *path, RbBuf *err);

/* ==== program.c: a plan's kernels loaded on a device, and its memory ==== */

/* A program runs on a GPU (program.c: cubins through the driver) or on this
 * CPU (program_host.c: the host target's objects in an ORC JIT, over the base
 * library's thread pool). The executor and the linears reach memory and
 * launches only through the rt_program_* calls below, which go through the
 * device's ops: one executor for both. An RtDevPtr is a device address on a
 * GPU and a host address on the host. What only a GPU has (streams, cuBLAS,
 * graphs) the executor takes from rt_program_gpu, NULL on the host. */
typedef struct RtProgram RtProgram;

typedef struct RtDeviceOps {
  const char *name; /* "cuda", "host" */
  int (*alloc)(void *impl, RtDevPtr *p, size_t bytes);
  void (*free)(void *impl, RtDevPtr p);
  int (*upload)(void *impl, RtDevPtr dst, const void *src, size_t bytes);
  int (*download)(void *impl, void *dst, RtDevPtr src, size_t bytes);
  int (*copy)(void *impl, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s); /* ordered on s */
  int (*fill)(void *impl, RtDevPtr dst, unsigned char v, size_t bytes);
  int (*sync)(void *impl);
  int (*launch)(void *impl, int kernel, int n, void **args, RtStream s);
  /* y (M, ldy) = x (M, K) W^T [+ y], W (N, K) fp16, fp32 sums, y fp16 or f32: the
   * dense linear where the device has no cuBLAS (NULL on a GPU: the executor's cuBLAS) */
  int (*dense)(void *impl, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int y_f32,
               int accumulate);
  const char *(*error)(const void *impl); /* the last failure */
  void (*close)(void *impl);
} RtDeviceOps;

/* Load every kernel of plan p on gpu for the GPU's exact architecture: the
 * keys are recomputed from the kernels, so a plan compiled on this machine
 * hits the cache, and anything missing or stale is rebuilt. p and gpu are
 * borrowed and must outlive the program. */
int rt_program_open(const RtPlan *p, RtGpu *gpu, RtProgram **out, RbBuf *err);
/* The same on this CPU for a plan of the host target (program_host.c): its
 * kernels built through the cache and loaded into a JIT of the program's own,
 * launched over a pool of `threads` threads (< 1: the online CPUs). A build
 * without LLVM says so (RB_EUSER). p is borrowed. */
int rt_program_open_host(const RtPlan *p, int threads, RtProgram **out, RbBuf *err);
/* A program over a device's ops (what rt_program_open_host builds); impl is
 * the device's own state, closed with the program. */
RtProgram *rt_program_new(const RtPlan *p, const RtDeviceOps *ops, void *impl, RtGpu *gpu);
void rt_program_close(RtProgram *pr);
const RtPlan *rt_program_plan(const RtProgram *pr);
RtGpu *rt_program_gpu(const RtProgram *pr); /* NULL on the host */
const char *rt_program_device(const RtProgram *pr); /* "cuda", "host" */
int rt_program_cache_hits(const RtProgram *pr);
/* What opening took: every binary (cache or compiler), every module load. */
void rt_program_times(const RtProgram *pr, double *ms_build, double *ms_load);
void rt_program_set_stats(RtProgram *pr, int hits, double ms_build, double ms_load, int threads);
/* What both targets' open does with a plan's kernels: build every one for (t, arch)
 * through the kernel cache, check it against the plan (a failed build, or a spec
 * whose entry has moved), then hand it to load(ctx, i, built, cache, err), which
 * makes it runnable on the device. Fills *hits and the build and load times (ms). */
typedef int (*RtKernelLoad)(void *ctx, int i, RtBuilt *b, RtCache *cache, RbBuf *err);
int rt_program_build(const RtPlan *p, const CgTarget *t, const char *arch, RtKernelLoad load, void *ctx, int *hits,
                     double *ms_build, double *ms_load, RbBuf *err);
int rt_program_threads(const RtProgram *pr); /* the host's pool; 0 on a GPU */
/* Launch plan kernel `kernel` for extent n with the plan's geometry. */
int rt_program_launch(RtProgram *pr, int kernel, int n, void **args, RtStream s);
/* The device's memory (RB_EINTERNAL on failure, the reason in rt_program_error). */
int rt_program_alloc(RtProgram *pr, RtDevPtr *p, size_t bytes);
void rt_program_free(RtProgram *pr, RtDevPtr p);
int rt_program_upload(RtProgram *pr, RtDevPtr dst, const void *src, size_t bytes);
int rt_program_download(RtProgram *pr, void *dst, RtDevPtr src, size_t bytes);
int rt_program_copy(RtProgram *pr, RtDevPtr dst, RtDevPtr src, size_t bytes, RtStream s);
int rt_program_fill(RtProgram *pr, RtDevPtr dst, unsigned char v, size_t bytes);
int rt_program_sync(RtProgram *pr);
/* The device's dense linear (RtDeviceOps.dense); RB_EUSER where it has none. */
int rt_program_dense(RtProgram *pr, int M, int N, int K, RtDevPtr x, RtDevPtr w, RtDevPtr y, int ldy, int y_f32,
                     int accumulate);
const char *rt_program_error(const RtProgram *pr);

/* ==== linear.c: a quantized linear step's weights on the device ==== */

typedef struct RtLinear RtLinear;

/* Bind the weights of quantized linear step `step`, per segment in the
 * canonical packed format (codegen.h, packed.c): bits[s] (paths, N[s],
 * ceil(K/32)) words, g[s] (paths, N[s]) and h[s] (paths, K) fp16 bits. They
 * are repacked on the GPU into the layout every bucket reads. */
int rt_linear_bind(RtProgram *pr, int step, const uint32_t *const *bits, const uint16_t *const *g,
                   const uint16_t *const *h, RtLinear **out, RbBuf *err);
void rt_linear_free(RtProgram *pr, RtLinear *w);
/* The step's buckets with a fused rmsnorm (CgOp.eps > 0) read h_p .* norm: fold the
 * norm's weight norm (K fp16) into h (as rt_linear_bind took it) for them. */
int rt_linear_fold_norm(RtProgram *pr, RtLinear *w, const uint16_t *const *h, const uint16_t *norm, RbBuf *err);
/* The rmsnorm step a quantized linear step folds in at its decode buckets (CgOp.eps > 0)
 * into *norm, or -1; RB_EUSER when the plan's steps do not bear that out. */
int rt_linear_norm_step(const RtPlan *p, int step, int *norm, RbBuf *err);
/* Whether the step's kernel at this batch folds in the rmsnorm before it (CgOp.eps > 0):
 * then x is the norm's input, and the norm step does not run. */
int rt_linear_prenorm(const RtPlan *p, int step, int batch);
/* What a bucket under the dequant strategy borrows from its executor: one per
 * executor, allocated once and shared by every layer (never per call). blas is
 * cuBLAS bound to the stream the runs use; w the fp16 W_hat of the largest layer
 * with a dequant bucket; gu a swiglu's (batch, 2 F) gate|up, what the GEMM writes
 * and the product kernel reads. */
typedef struct {
  RtBlas *blas;
  RtDevPtr w, gu;
  size_t w_bytes, gu_bytes;
} RtLinearScratch;
/* The scratch plan p's dequant buckets need for batches up to max_batch: *w_bytes
 * the largest Ntot * K * 2, *gu_bytes the largest max_batch * 2 F * 2 of a swiglu;
 * both 0 when no bucket is under the dequant strategy. */
void rt_linear_scratch_need(const RtPlan *p, int max_batch, size_t *w_bytes, size_t *gu_bytes);
/* y = W x (+ res for linear_add; silu(gate) * up for linear_swiglu) over batch
 * rows, with the kernel of the smallest bucket that holds the batch. A bucket
 * under the dequant strategy runs its kernel into sc->w, then y = x W_hat^T on
 * sc->blas (res added by the GEMM, as the fp16 path does; a swiglu's gate|up into
 * sc->gu, then the step's product kernel); without sc (NULL, or too small) it
 * fails with the reason on the GPU's error. */
int rt_linear_run(RtProgram *pr, const RtLinear *w, int batch, RtDevPtr y, RtDevPtr x, RtDevPtr res, RtStream s,
                  const RtLinearScratch *sc);
/* The kernel (index in p->kernels) rt_linear_run takes for a batch of quantized linear step. */
int rt_linear_kernel(const RtPlan *p, int step, int batch);
/* The shape of a quantized linear step (its first bucket's op), or NULL. */
const CgOp *rt_linear_op(const RtPlan *p, int step);

/* ==== exec.c: the executor: a plan's steps over weights, with a KV cache ==== */

typedef struct {
  int max_tokens; /* rows per forward call (the prefill chunk); 0 = 512 */
  int random;     /* random weights of the plan's shapes instead of a file */
  uint64_t seed;
} RtModelOptions;

typedef struct RtModel RtModel;

/* Bind the weights of the program's plan from a safetensors file (the
 * canonical packed format for quantized linears, fp16/f32 for the rest, as
 * `rabit import` and `rabit quantize` write), allocate activations and KV
 * caches. Errors name the file and the tensor. pr is borrowed. */
int rt_model_open(RtProgram *pr, const char *weights, const RtModelOptions *o, RtModel **out, RbBuf *err);
void rt_model_close(RtModel *m);
int rt_model_vocab(const RtModel *m);
int rt_model_max_ctx(const RtModel *m);
int rt_model_max_tokens(const RtModel *m);
size_t rt_model_weight_bytes(const RtModel *m); /* device memory held by weights */
size_t rt_model_total_bytes(const RtModel *m);  /* weights + activations + KV caches */
/* Run tokens[0..T) at positions pos0..pos0+T-1 (T <= max_tokens, pos0+T <= max_ctx);
 * the cache keeps positions < pos0 from earlier calls. */
int rt_model_forward(RtModel *m, const int32_t *tokens, int T, int pos0);
/* One token at position pos through a CUDA graph captured on first use. */
int rt_model_decode(RtModel *m, int32_t token, int pos);
/* Replay the last decode step n more times, back to back (for timing). */
int rt_model_decode_replay(RtModel *m, int n);
/* Copy rows [row0, row0+n) of the last call's output (the logits) as f32. */
int rt_model_logits(RtModel *m, int row0, int n, float *out);
int rt_model_sync(RtModel *m);
/* Evaluate one window: tokens[0..T) from position 0 (the cache starts empty;
 * 2 <= T <= max_ctx, prefill chunks of max_tokens), and the negative
 * log-likelihood of each row r < T-1 predicting tokens[r+1], computed on the
 * device (the CG_NLL kernel: the logits never leave it). *nll_sum gets their
 * sum, in row order, in double; row_nll (T-1 floats) each row's, or NULL.
 * RB_EUSER for an id outside the vocabulary, a bad T, or a plan without the
 * nll kernel (f16 logits); the reason in rt_model_error. */
int rt_model_nll(RtModel *m, const int32_t *tokens, int T, double *nll_sum, float *row_nll);
/* Why the last failing call failed: the step, its IR line and the CUDA error. */
const char *rt_model_error(const RtModel *m);

#endif
