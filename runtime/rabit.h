/* rabit.h: the public C API of the RaBiT runtime (prefix rabit_).
 * Load a plan written by `rabitc model.ir -o model.rplan`, open it on a GPU
 * (every kernel loaded from the cache, a missing cubin rebuilt from its spec),
 * bind each quantized linear's weights in the canonical packed format, and
 * run the plan's kernels on device buffers. All functions return 0 on
 * success; on failure a message is written to err (when given). */
#ifndef RABIT_H
#define RABIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct RabitPlan RabitPlan;
typedef struct RabitSession RabitSession;
typedef struct RabitLinear RabitLinear;
typedef uint64_t rabit_devptr; /* a CUdeviceptr */

/* ---- plans ---- */
int rabit_plan_load(const char *path, RabitPlan **plan, char *err, size_t errlen);
void rabit_plan_free(RabitPlan *plan);
int rabit_plan_steps(const RabitPlan *plan);
int rabit_plan_kernels(const RabitPlan *plan);
const char *rabit_plan_step_op(const RabitPlan *plan, int step);   /* "linear", "rmsnorm", ... */
int rabit_plan_step_weights(const RabitPlan *plan, int step);      /* how many it binds */
const char *rabit_plan_step_weight(const RabitPlan *plan, int step, int i); /* Hugging Face name */
/* A quantized linear step's shape: segments, their N, K and paths. 0 for other steps. */
int rabit_plan_linear_shape(const RabitPlan *plan, int step, int *nseg, int N[4], int *K, int *paths);
/* The rmsnorm step a quantized linear step folds in at its small batches (the decode
 * buckets), or -1: at a batch where rabit_plan_linear_prenorm is 1, the linear's x is
 * that norm's input, the norm step is not run, and the norm's weight must have been
 * folded in (rabit_linear_fold_norm). -1 also for a step that is no quantized linear. */
int rabit_plan_linear_norm(const RabitPlan *plan, int step);
int rabit_plan_linear_prenorm(const RabitPlan *plan, int step, int batch);

/* ---- sessions: a plan on a GPU ---- */
/* Opens device `device` on its primary context and loads every kernel of the
 * plan for that device's architecture, compiling what the cache lacks. */
int rabit_session_open(const RabitPlan *plan, int device, RabitSession **out, char *err, size_t errlen);
void rabit_session_close(RabitSession *s);
/* How many of the plan's kernels came from the cache at open. */
int rabit_session_cache_hits(const RabitSession *s);

int rabit_alloc(RabitSession *s, rabit_devptr *p, size_t bytes);
void rabit_free(RabitSession *s, rabit_devptr p);
int rabit_upload(RabitSession *s, rabit_devptr dst, const void *src, size_t bytes);
int rabit_download(RabitSession *s, void *dst, rabit_devptr src, size_t bytes);
int rabit_sync(RabitSession *s);

/* ---- quantized linears ---- */
/* Bind the weights of a quantized linear step, per segment in the canonical
 * packed format: bits[s] (paths, N[s], ceil(K/32)) u32 with bit j of word w
 * the sign of column 32w+j (1 = -1); g[s] (paths, N[s]) and h[s] (paths, K)
 * as IEEE fp16 bits. The weights are repacked on the GPU into the layouts of
 * the step's kernels. */
int rabit_linear_bind(RabitSession *s, int step, const uint32_t *const *bits, const uint16_t *const *g,
                      const uint16_t *const *h, RabitLinear **out, char *err, size_t errlen);
void rabit_linear_free(RabitSession *s, RabitLinear *w);
/* For a step that folds in an rmsnorm (rabit_plan_linear_norm): h as bound, and the
 * norm's weight (K fp16 bits); its small batches then compute linear(rmsnorm(x)). */
int rabit_linear_fold_norm(RabitSession *s, RabitLinear *w, const uint16_t *const *h, const uint16_t *norm, char *err,
                           size_t errlen);
/* y = W x (+ res for a linear_add step; silu(gate) * up for linear_swiglu).
 * x (batch, K) and y (batch, out width) fp16 on the device; res (batch, N)
 * or 0. With K % 8 == 0, x must be 16-byte aligned (rabit_alloc's buffers are;
 * another x is refused with an error, not launched). The kernel is chosen by batch: the smallest of the step's buckets
 * that holds it. A bucket under the dequant strategy (the prefill buckets, unless
 * the plan was compiled with RABIT_PREFILL=mma) borrows a scratch the session makes at the first run
 * that takes one: cuBLAS bound to that run's stream (later such runs must pass
 * the same stream), the fp16 W_hat of the plan's largest such layer, and a
 * swiglu's gate|up for the largest batch run so far. */
int rabit_linear_run(RabitSession *s, const RabitLinear *w, int batch, rabit_devptr y, rabit_devptr x,
                     rabit_devptr res, void *stream);

/* ---- any kernel ---- */
/* The kernels of a step, by the role they play. */
typedef enum {
  RABIT_ROLE_MAIN,   /* the op's kernel (embed, rmsnorm, attention, swiglu, add) */
  RABIT_ROLE_ROPE,   /* attention: rope_kv, launched before main */
  RABIT_ROLE_REPACK, /* quantized linear: canonical bits -> the kernel layout */
} RabitRole;
/* Launch a step's kernel of that role (codegen.h documents each kind's
 * arguments); n is the extent the launch geometry depends on (rows, or
 * elements for add). Nonzero when the step has no kernel of that role. */
int rabit_step_launch(RabitSession *s, int step, RabitRole role, int n, void **args, void *stream);

#ifdef __cplusplus
}
#endif
#endif
