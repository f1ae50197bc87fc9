/* codegen.h: what to compute -> source (prefix cg_). A kernel is an op (what:
 * kind, shapes, k, epilogue) under a schedule (how: strategy, tiles, batch
 * bucket); a target (CgTarget) turns it into source and launch geometry.
 * Codegen knows nothing of devices. Sources include only
 * NVRTC's built-in headers (none, in practice): every type they need is spelled
 * out in the source, so no unhashed file can change a binary. */
#ifndef RABIT_CODEGEN_H
#define RABIT_CODEGEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* memcpy, for CG_ARGV */

#include "ir/base.h"

#define CG_MAX_SEG 4     /* fused linears: q/k/v, gate/up */
#define CG_MAX_TILE 4
#define CG_MAX_BUCKETS 6  /* batch buckets of one quantized linear */
#define CG_ENTRY_MAX 64   /* a kernel's entry-point name, NUL included */

/* Kernel kinds. X(name, printed-name). */
#define CG_KINDS(X)                \
  X(CG_LINEAR, "linear")           \
  X(CG_REPACK, "repack")           \
  X(CG_EMBED, "embed")             \
  X(CG_RMSNORM, "rmsnorm")         \
  X(CG_ROPE_KV, "rope_kv")         \
  X(CG_ATTENTION, "attention")     \
  X(CG_SWIGLU, "swiglu")           \
  X(CG_ADD, "add")                 \
  X(CG_NLL, "nll")                 \
  X(CG_PLANES, "planes")           \
  CG_TRAIN_KINDS(X)

/* The training kinds (TRAINING.md is their contract; cuda/train_ops.c and
 * cuda/train_optim.c emit them). fp32 activations, bf16 GEMM operands. */
#define CG_TRAIN_KINDS(X)                    \
  X(CG_CAST_BF16, "cast_bf16")               \
  X(CG_EMBED_FWD, "embed_fwd")               \
  X(CG_EMBED_GRAD, "embed_grad")             \
  X(CG_RMSNORM_FWD, "rmsnorm_fwd")           \
  X(CG_RMSNORM_GRAD, "rmsnorm_grad")         \
  X(CG_HEADS_SPLIT, "heads_split")           \
  X(CG_HEADS_MERGE, "heads_merge")           \
  X(CG_SOFTMAX_FWD, "softmax_fwd")           \
  X(CG_SOFTMAX_GRAD, "softmax_grad")         \
  X(CG_SWIGLU_FWD, "swiglu_fwd")             \
  X(CG_SWIGLU_GRAD, "swiglu_grad")           \
  X(CG_ADD_FWD, "add_fwd")                   \
  X(CG_KL_LOSS, "kl_loss")                   \
  X(CG_CE_LOSS, "ce_loss")                   \
  X(CG_COL_ABS, "col_abs")                   \
  X(CG_MSE_ROWS, "mse_rows")                 \
  X(CG_MSE_GRAD, "mse_grad")                 \
  X(CG_REDUCE, "reduce")                     \
  X(CG_SUMSQ, "sumsq")                       \
  X(CG_DERIVE, "derive")                     \
  X(CG_DERIVE_STANDARD, "derive_standard")   \
  X(CG_DERIVE_GRAD_G, "derive_grad_g")       \
  X(CG_DERIVE_GRAD_H, "derive_grad_h")       \
  X(CG_ADAMW, "adamw")                       \
  X(CG_MUON_MOMENTUM, "muon_momentum")       \
  X(CG_BATCH_SUMSQ, "batch_sumsq")           \
  X(CG_MUON_NORMALIZE, "muon_normalize")     \
  X(CG_MUON_APPLY, "muon_apply")             \
  X(CG_CLIP_COEF, "clip_coef")

typedef enum {
#define X(e, s) e,
  CG_KINDS(X)
#undef X
  CG_NKIND
} CgKind;

typedef enum {
  CG_EPI_NONE = 0,
  CG_EPI_ADD,    /* y = W x + res */
  CG_EPI_SWIGLU, /* two segments (gate, up): y = silu(W_g x) * (W_u x) */
} CgEpilogue;

/* What a kernel computes: the op, its shapes, k and epilogue. The same on
 * every target and under every schedule; the autotuner never changes it. */
typedef struct CgOp {
  CgKind kind;
  /* linear and repack */
  int K;                  /* input width */
  int nseg, N[CG_MAX_SEG];/* output width of each fused segment */
  int paths;              /* k, 1..4 */
  CgEpilogue epilogue;
  /* decoder ops */
  int dim;                /* rmsnorm/swiglu/add/embed width D */
  int vocab;              /* embed */
  int heads, kv_heads, head_dim, max_ctx; /* rope_kv, attention */
  /* rmsnorm's epsilon. On a linear, eps > 0 makes it the linear of an RMS-normalized
   * input (a fused rmsnorm): each row of x is scaled by rsqrt(mean(x^2) + eps) first,
   * the norm's weight having been folded into h by the runtime (h_p .* w). */
  float eps, rope_theta;
} CgOp;

/* Linear strategies (the autotuner chooses among them per shape and batch). */
typedef enum {
  CG_STRAT_NONE = 0,
  CG_STRAT_XOR,  /* the b<=8 bucket: bits decoded to +-g with one LOP3 per register, mma.sync sums */
  CG_STRAT_MMA,  /* batch >= 2: bits decoded to +-g fp16 fragments for mma.sync, batch tiles of 8..64 */
  CG_STRAT_DEQUANT, /* buckets above batch 16 (prefill, evaluation): the kernel expands the bits into the
                     * dense fp16 W_hat (CgDequantArgs); the runtime multiplies on cuBLAS and applies the
                     * epilogue (res added by the GEMM, swiglu by the step's product kernel, `main`) */
  CG_STRAT_LOP3, /* the register design (batch tiles of 8 or 16) with each sign put into an fp16 mantissa
                  * bit by one LOP3 (A = C + bit), the C part taken out by one constant mma a k16 step */
  CG_STRAT_BMMA, /* batches 1..CG_BMMA_BATCH_MAX: no decode. The bits are the A operand of b1 mma.sync
                  * (and + popc) as they lie; a pre-pass kernel (CG_PLANES) quantizes h_p .* x to int16
                  * per 256 columns and writes its 16 bit planes as the B operand */
  CG_STRAT_XSMEM, /* batch tiles of 8 or 16: the register design's decode with each K group's x and h_p
                   * staged once per block in shared memory, the block's warps splitting rows and K */
} CgStrategy;
#define CG_NSTRATEGY 7 /* the spellings a plan may hold: none, xor, mma, dequant, lop3, bmma, xsmem */
#define CG_BMMA_BATCH_MAX 4 /* the largest bucket the bmma strategy serves (and its planes hold) */

/* Where a schedule came from (recorded in the plan). */
typedef enum { CG_FROM_DEFAULT, CG_FROM_SHIPPED, CG_FROM_TUNED } CgScheduleSource;

/* How a kernel runs on its target: what the autotuner searches, keeping the op. */
typedef struct CgSchedule {
  CgStrategy strategy;
  int batch_max;          /* bucket: the largest batch this kernel serves (1, 16, 512...) */
  int tile[CG_MAX_TILE];  /* strategy-specific; meaning documented in the emitter, 0 = default */
} CgSchedule;

/* One kernel: an op under a schedule. Its canonical source is a deterministic
 * function of these two alone, so the same kernel reached from any IR file
 * hashes to the same cache entry. */
typedef struct CgKernel {
  CgOp op;
  CgSchedule sched;
} CgKernel;

/* Launch geometry, fixed when the plan is made, as a function of the run-time
 * extent n (batch rows for a linear, T for the row-wise ops, the element count
 * for add): the grid along grow_axis is grid[grow_axis] * ceil(n / n_per_block);
 * a kernel with a decode variant (attention) runs block_x_small threads and
 * grid_x_small blocks along x (its context split) when n <= n_small. */
typedef struct {
  unsigned grid[3], block[3];
  unsigned smem;          /* dynamic shared memory bytes */
  int grow_axis;          /* 0..2; -1: the grid does not depend on n */
  unsigned n_per_block;
  unsigned n_small, block_x_small; /* 0: no decode variant */
  unsigned grid_x_small;           /* the decode variant's grid[0]; 0: grid[0] */
} CgGeometry;

typedef struct {
  unsigned grid[3], block[3];
  unsigned smem;
} CgLaunch;

/* The launch for extent n (n >= 1); an all-zero grid for n < 1. */
CgLaunch cg_geometry_launch(const CgGeometry *g, int n);

/* ==== the kernel argument ABI, one struct per family (marshalled beside its emitter) ====
 *
 * Activations are fp16, row-major, with fp32 accumulation. CgDevPtr is a
 * device address (a CUdeviceptr on CUDA). Each *_argv fills the pointer
 * array a launch takes (out->v[i] points into the struct, which must outlive
 * the launch). */
typedef uint64_t CgDevPtr;
#define CG_MAX_ARGS 12
typedef struct {
  void *v[CG_MAX_ARGS];
  int n;
} CgArgv;

/* CG_LINEAR: y = sum_p g_p .* (B_p (h_p .* x)) [+ res | swiglu]
 *    x    (batch, K)
 *    bits the kernel layout written by the matching CG_REPACK (see cuda/linear.c)
 *    g    (paths, Ntot)         Ntot = sum of N[s]; rows of the segments concatenated
 *    h    (nseg, paths, K)      one h per segment: h belongs to each matrix
 *    res  (batch, Ntot) for CG_EPI_ADD, else 0
 *    y    (batch, Ntot), or (batch, N[0]) for CG_EPI_SWIGLU */
typedef struct { CgDevPtr y, x, bits, g, h, res; int batch; } CgLinearArgs;
/* CG_LINEAR under CG_STRAT_DEQUANT: the first half of the op. w (Ntot, K) fp16 row-major =
 * W_hat = sum_p diag(g_p) B_p diag(h_p) of every segment, rows of the segments concatenated as in g,
 * each element fmaf(+-g_p, h_p, acc) over p = 0..paths-1 in fp32 from 0, then rounded to fp16
 * (nearest even), so a CPU loop of the same fmaf gives the same bits. bits, g, h as above. Then
 * y = x W_hat^T (+ res) is one GEMM, and for CG_EPI_SWIGLU the GEMM's (batch, 2 N[0]) gate|up
 * goes through the CG_SWIGLU product kernel. The grid is fixed (it covers the weights). */
typedef struct { CgDevPtr w, bits, g, h; } CgDequantArgs;
/* CG_PLANES: a bmma bucket's pre-pass (op: the linear's K, paths and nseg; N stays 0: rows do not matter). For batch row b < batch,
 * segment s, path p and 256-column group G, u = h_p .* x (fp32 products) is quantized to
 * q = rint(u / sc), sc = max |u| / 32767, and its 16 two's-complement bit planes are written in
 * the B-fragment layout the bmma kernel loads (cuda/bmma.c), then (sc, sc * sum q) as two floats.
 * planes holds cg_planes_bytes(op); the bmma kernel takes it as its CgLinearArgs x. */
typedef struct { CgDevPtr planes, x, h; int batch; } CgPlanesArgs;
/* Bytes of a CG_PLANES buffer for op (batches up to CG_BMMA_BATCH_MAX); 0 for an invalid op. */
uint64_t cg_planes_bytes(const CgOp *op);
/* The CG_PLANES kernel a linear kernel k needs before it: 1 with it in *planes when k is under
 * CG_STRAT_BMMA, else 0. */
int cg_linear_planes_kernel(const CgKernel *k, CgKernel *planes);
/* CG_REPACK: segment seg's canonical bits (paths, N[seg], ceil(K/32)) -> dst, the
 * kernel layout of the whole fused op, one layout for every schedule (so a
 * layer's bits are held once). Launched once per segment. */
typedef struct { CgDevPtr dst, src; int seg; } CgRepackArgs;
/* CG_EMBED: y (T, dim) = table (vocab, dim) [tokens (T)] */
typedef struct { CgDevPtr y, tokens, table; int T; } CgEmbedArgs;
/* CG_RMSNORM: y = x * rsqrt(mean(x^2) + eps) * w, rows of dim */
typedef struct { CgDevPtr y, x, w; int T; } CgRmsnormArgs;
/* CG_ROPE_KV: rotates q in place and k into the cache (Hugging Face rotate-half)
 * for positions *pos0..*pos0+T-1, and copies v into its cache; caches are
 * (kv_heads, max_ctx, head_dim). pos0 lives in device memory so that a captured
 * decode step replays at every position without touching the graph. */
typedef struct { CgDevPtr q; int ldq; CgDevPtr k; int ldk; CgDevPtr v; int ldv; CgDevPtr kcache, vcache, pos0; int T; } CgRopeKvArgs;
/* CG_ATTENTION: causal GQA, query t attends to cache positions 0..pos0+t; out (T, heads*head_dim) */
/* ws: the decode variant's workspace, cg_attention_ws_bytes of it, zeroed once
 * before the first launch (the kernels leave it zeroed); unused when 0 bytes. */
typedef struct { CgDevPtr out, q; int ldq; CgDevPtr kcache, vcache, pos0; int T; CgDevPtr ws; } CgAttentionArgs;
/* CG_SWIGLU: y (T, dim) = silu(gu[:, :dim]) * gu[:, dim:2dim], rows of gu ld apart */
typedef struct { CgDevPtr y, gu; int ld, T; } CgSwigluArgs;
/* CG_ADD: y = a + b over n elements */
typedef struct { CgDevPtr y, a, b; int n; } CgAddArgs;
/* CG_NLL: nll (T) f32 = logsumexp(logits[t, 0..vocab)) - logits[t, targets[t]], logits f32 (T, ld),
 * one block per row, fixed-order reduction (deterministic); NaN for a target outside the vocabulary.
 * Evaluation's loss on the returned logits, so they never leave the device. [vocab] extent T */
typedef struct { CgDevPtr nll, logits, targets; int ld, T; } CgNllArgs;

/* Fill out with the addresses given, in the kernel's parameter order. */
#define CG_ARGV(out, ...)                                   \
  do {                                                      \
    void *cg_argv_[] = {__VA_ARGS__};                       \
    (out)->n = (int)(sizeof cg_argv_ / sizeof cg_argv_[0]); \
    memcpy((out)->v, cg_argv_, sizeof cg_argv_);            \
  } while (0)

void cg_linear_argv(CgLinearArgs *a, CgArgv *out);
void cg_dequant_argv(CgDequantArgs *a, CgArgv *out);
void cg_planes_argv(CgPlanesArgs *a, CgArgv *out);
void cg_repack_argv(CgRepackArgs *a, CgArgv *out);
void cg_embed_argv(CgEmbedArgs *a, CgArgv *out);
void cg_rmsnorm_argv(CgRmsnormArgs *a, CgArgv *out);
void cg_rope_kv_argv(CgRopeKvArgs *a, CgArgv *out);
void cg_attention_argv(CgAttentionArgs *a, CgArgv *out);
/* Bytes of workspace an attention kernel of this geometry needs (0: none). */
size_t cg_attention_ws_bytes(const CgOp *op, const CgGeometry *g);
void cg_swiglu_argv(CgSwigluArgs *a, CgArgv *out);
void cg_add_argv(CgAddArgs *a, CgArgv *out);
void cg_nll_argv(CgNllArgs *a, CgArgv *out);

/* ==== the training kinds' arguments (TRAINING.md) ====
 * "n" below is the launch extent cg_geometry_launch takes, unless a kind says
 * its grid is fixed (then pass 1). Shapes in (parentheses) are row-major;
 * f32 unless marked bf16. The op fields each kind reads are in [brackets]. */

/* Device scalars of one optimizer step, one float each in this order, in a
 * buffer the trainer writes before the step (so a captured step replays). */
enum { CG_SC_LR_W, CG_SC_LR_S, CG_SC_BIAS1, CG_SC_BIAS2, CG_SC_CLIP, CG_SC_NORM, CG_NSCALARS };
#define CG_SUMSQ_PARTS 256 /* CG_SUMSQ writes this many partial sums; its grid is fixed */

/* CG_CAST_BF16: y bf16 (n) = x (n). [none] extent n */
typedef struct { CgDevPtr y, x; int n; } CgCastArgs;
/* CG_EMBED_FWD: y (T, dim) = table bf16 (vocab, dim) [tokens]; 0 outside the vocabulary. [vocab, dim] extent T */
typedef struct { CgDevPtr y, tokens, table; int T; } CgEmbedFwdArgs;
/* CG_EMBED_GRAD: dtable (vocab, dim) += sum of dy (T, dim) rows by token, rows in ascending t,
 * deterministic (no atomics). [vocab, dim] fixed grid */
typedef struct { CgDevPtr dtable, tokens, dy; int T; } CgEmbedGradArgs;
/* CG_RMSNORM_FWD: y (T, dim) = x r w. [dim, eps] extent T */
typedef struct { CgDevPtr y, x, w; int T; } CgRmsnormFwdArgs;
/* CG_RMSNORM_GRAD: dx (T, dim) from dy, x, w. [dim, eps] extent T */
typedef struct { CgDevPtr dx, dy, x, w; int T; } CgRmsnormGradArgs;
/* CG_HEADS_SPLIT: x (T, ld) with heads of head_dim at column h*head_dim -> y bf16 (T/S, heads, S, head_dim),
 * RoPE-rotated at position t mod S when rotate. [heads, head_dim, rope_theta] extent T */
typedef struct { CgDevPtr y, x; int ld, T, S, rotate; } CgHeadsSplitArgs;
/* CG_HEADS_MERGE: the transpose back, fp32: x (T/S, heads, S, head_dim) -> y (T, ld) columns h*head_dim...,
 * inverse-rotated (angle -a, the RoPE backward) when rotate. [heads, head_dim, rope_theta] extent T */
typedef struct { CgDevPtr y, x; int ld, T, S, rotate; } CgHeadsMergeArgs;
/* CG_SOFTMAX_FWD: rows of S scores (rows = B heads S; row r is query position r mod S):
 * p bf16 (rows, S) = softmax_j<=i(scores / sqrt(head_dim)), 0 for j > i. [head_dim] extent rows */
typedef struct { CgDevPtr p, scores; int rows, S; } CgSoftmaxFwdArgs;
/* CG_SOFTMAX_GRAD: ds bf16 (rows, S) = P (dP - sum_j P dP) / sqrt(head_dim), 0 for j > i;
 * p bf16, dp f32. [head_dim] extent rows */
typedef struct { CgDevPtr ds, p, dp; int rows, S; } CgSoftmaxGradArgs;
/* CG_SWIGLU_FWD: y = silu(g) u over n elements. [none] extent n */
typedef struct { CgDevPtr y, g, u; int n; } CgSwigluFwdArgs;
/* CG_SWIGLU_GRAD: dg, du from dy, g, u over n elements. [none] extent n */
typedef struct { CgDevPtr dg, du, dy, g, u; int n; } CgSwigluGradArgs;
/* CG_ADD_FWD: y = a + b over n elements (y may alias a or b). [none] extent n */
typedef struct { CgDevPtr y, a, b; int n; } CgAddFwdArgs;
/* CG_KL_LOSS: per row of logits (T, vocab) against teacher (T, vocab):
 * row_loss (T) = sum_v p (log p - log q); dlogits (T, vocab) = (q - p) * grad_scale
 * (the trainer passes 1/T). dlogits may alias logits. [vocab] extent T */
typedef struct { CgDevPtr dlogits, row_loss, logits, teacher; int T; float grad_scale; } CgKlLossArgs;
/* CG_CE_LOSS: next-token cross-entropy (the calibration's loss): row_loss (T) = logsumexp - logits[targets[t]],
 * dlogits (T, vocab) = (softmax - onehot) * grad_scale; a row whose target is < 0 gives 0 and 0.
 * dlogits may alias logits. [vocab] extent T */
typedef struct { CgDevPtr dlogits, row_loss, logits, targets; int T; float grad_scale; } CgCeLossArgs;
/* CG_COL_ABS: parts (CG_COL_ABS_PARTS, m) = column sums of |x| (T, m), part c over rows c, c + PARTS, ...;
 * CG_REDUCE over the parts gives the column sums. [none] extent m */
#define CG_COL_ABS_PARTS 64
typedef struct { CgDevPtr parts, x; int T, m; } CgColAbsArgs;
/* CG_MSE_ROWS: parts (T, 2) = (sum_d (x - t)^2, sum_d t^2) per row. [dim] extent T */
typedef struct { CgDevPtr parts, x, t; int T; } CgMseRowsArgs;
/* CG_MSE_GRAD: dx = scale 2 (x - t) / sums[1] over n elements (sums: the reduced parts). [none] extent n */
typedef struct { CgDevPtr dx, x, t, sums; int n; float scale; } CgMseGradArgs;
/* CG_REDUCE: out (m) = sum over r < rows of in (rows, m), fixed order. [none] extent m */
typedef struct { CgDevPtr out, in; int rows, m; } CgReduceArgs;
/* CG_SUMSQ: parts (CG_SUMSQ_PARTS) of sum x^2 over n elements; reduce them with CG_REDUCE. [none] fixed grid */
typedef struct { CgDevPtr parts, x; long long n; } CgSumsqArgs;
/* CG_DERIVE: the coupled derivation of TRAINING.md: w (N, K), g (paths, N), h (paths, K) ->
 * what bf16 (N, K) and bits (paths, N, ceil(K/32)) canonical words, pad bits 0. [N[0], K, paths] fixed grid */
typedef struct { CgDevPtr what, bits, w, g, h; } CgDeriveArgs;
/* CG_DERIVE_STANDARD takes CgDeriveArgs (cg_derive_argv) with w (paths, N, K): standard QAT's one latent
 * per path, B_p = sign(w_p), what = bf16(sum_p B_p g_p h_p). [N[0], K, paths] fixed grid */
/* CG_DERIVE_GRAD_G: dg (paths, N) = row sums of dwhat (N, K) B_p h_p. [N[0], K, paths] fixed grid */
typedef struct { CgDevPtr dg, dwhat, bits, h; } CgDeriveGradGArgs;
/* CG_DERIVE_GRAD_H: dh (paths, K) = column sums of dwhat B_p g_p, deterministic, in one launch:
 * each block owns a stripe of 8 columns and sums all N rows itself in a fixed order (no second
 * stage, no CG_REDUCE). part is a scratch of cg_derive_grad_h_parts(op) floats, today 0: the
 * kernel never reads it and it may be 0. [N[0], K, paths] fixed grid */
typedef struct { CgDevPtr dh, part, dwhat, bits, g; } CgDeriveGradHArgs;
/* CG_ADAMW: p, m, v, grad (n): the TRAINING.md step with lr scalars[CG_SC_LR_S], bias corrections
 * scalars[CG_SC_BIAS1/2] (1 - beta^t) and grad * scalars[CG_SC_CLIP]; p clamped at >= 0 when clamp. [none] extent n */
typedef struct { CgDevPtr p, m, v, grad, scalars; long long n; float beta1, beta2, eps; int clamp; } CgAdamwArgs;
/* CG_MUON_MOMENTUM: buf = mu buf + (1 - mu) c grad; u = (1 - mu) c grad + mu buf (c the clip scalar). [none] extent n */
typedef struct { CgDevPtr buf, u, grad, scalars; long long n; float mu; } CgMuonMomentumArgs;
/* CG_BATCH_SUMSQ: out (batch) = sum x^2 over each of batch consecutive blocks of per elements. [none] extent batch */
typedef struct { CgDevPtr out, x; long long per; int batch; } CgBatchSumsqArgs;
/* CG_MUON_NORMALIZE: x bf16 = u / max(sqrt(sumsq[b]), 1e-7) for batch matrices u (batch, rows, cols);
 * written transposed (batch, cols, rows) when transpose. [none] extent batch*rows*cols */
typedef struct { CgDevPtr x, u, sumsq; int rows, cols, batch, transpose; } CgMuonNormalizeArgs;
/* CG_MUON_APPLY: w (batch, rows, cols) -= scalars[CG_SC_LR_W] scale x, x bf16 laid out as
 * CG_MUON_NORMALIZE wrote it (transposed when transpose). [none] extent batch*rows*cols */
typedef struct { CgDevPtr w, x, scalars; int rows, cols, batch, transpose; float scale; } CgMuonApplyArgs;
/* CG_CLIP_COEF: one thread: scalars[CG_SC_NORM] = sqrt(*sumsq);
 * scalars[CG_SC_CLIP] = min(1, max_norm / (norm + 1e-6)). [none] fixed grid */
typedef struct { CgDevPtr scalars, sumsq; float max_norm; } CgClipCoefArgs;

void cg_cast_argv(CgCastArgs *a, CgArgv *out);
void cg_embed_fwd_argv(CgEmbedFwdArgs *a, CgArgv *out);
void cg_embed_grad_argv(CgEmbedGradArgs *a, CgArgv *out);
void cg_rmsnorm_fwd_argv(CgRmsnormFwdArgs *a, CgArgv *out);
void cg_rmsnorm_grad_argv(CgRmsnormGradArgs *a, CgArgv *out);
void cg_heads_split_argv(CgHeadsSplitArgs *a, CgArgv *out);
void cg_heads_merge_argv(CgHeadsMergeArgs *a, CgArgv *out);
void cg_softmax_fwd_argv(CgSoftmaxFwdArgs *a, CgArgv *out);
void cg_softmax_grad_argv(CgSoftmaxGradArgs *a, CgArgv *out);
void cg_swiglu_fwd_argv(CgSwigluFwdArgs *a, CgArgv *out);
void cg_swiglu_grad_argv(CgSwigluGradArgs *a, CgArgv *out);
void cg_add_fwd_argv(CgAddFwdArgs *a, CgArgv *out);
void cg_kl_loss_argv(CgKlLossArgs *a, CgArgv *out);
void cg_ce_loss_argv(CgCeLossArgs *a, CgArgv *out);
void cg_col_abs_argv(CgColAbsArgs *a, CgArgv *out);
void cg_mse_rows_argv(CgMseRowsArgs *a, CgArgv *out);
void cg_mse_grad_argv(CgMseGradArgs *a, CgArgv *out);
void cg_reduce_argv(CgReduceArgs *a, CgArgv *out);
void cg_sumsq_argv(CgSumsqArgs *a, CgArgv *out);
void cg_derive_argv(CgDeriveArgs *a, CgArgv *out);
void cg_derive_grad_g_argv(CgDeriveGradGArgs *a, CgArgv *out);
void cg_derive_grad_h_argv(CgDeriveGradHArgs *a, CgArgv *out);
void cg_adamw_argv(CgAdamwArgs *a, CgArgv *out);
void cg_muon_momentum_argv(CgMuonMomentumArgs *a, CgArgv *out);
void cg_batch_sumsq_argv(CgBatchSumsqArgs *a, CgArgv *out);
void cg_muon_normalize_argv(CgMuonNormalizeArgs *a, CgArgv *out);
void cg_muon_apply_argv(CgMuonApplyArgs *a, CgArgv *out);
void cg_clip_coef_argv(CgClipCoefArgs *a, CgArgv *out);
/* Floats of CG_DERIVE_GRAD_H's scratch for op (0 today: the one-launch kernel needs none;
 * callers allocate what it says, so a future two-stage kernel changes nothing above codegen). */
uint64_t cg_derive_grad_h_parts(const CgOp *op);

/* ==== targets: what a backend provides (QBE's Target) ==== */

/* One struct per target, chosen once; nothing above codegen asks which. */
typedef struct CgTarget {
  const char *name;     /* "cuda" */
  const char *compiler; /* the JIT that builds its source: "nvrtc" */
  /* The canonical source of k and its entry point's name. RB_OK, RB_EUSER
   * (a kernel the target cannot emit, with the reason in err) or RB_EINTERNAL. */
  int (*emit)(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err);
  /* Launch geometry of k; RB_EUSER for a kernel emit refuses. */
  int (*geometry)(const CgKernel *k, CgGeometry *out, RbBuf *err);
  /* Bytes of a quantized linear's bits in the target's in-memory layout (what
   * its repack writes and every bucket reads); 0 for an invalid op. */
  uint64_t (*layout_bytes)(const CgOp *op);
  /* The default schedules of a quantized linear: one per batch bucket,
   * ascending batch_max, the last serving every larger batch. Returns the count. */
  int (*linear_buckets)(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]);
  /* Whether a quantized linear under default schedule s can normalize its own input
   * (CgOp.eps > 0), so that selection may fold the rmsnorm before it into it at that
   * bucket: 0 no, CG_PRENORM_KERNEL in the kernel's own products, CG_PRENORM_EXACT in
   * a pre-pass that loses nothing to it (CgTargetOptions.fuse_norm picks). NULL: never. */
  int (*linear_prenorm)(const CgSchedule *s);
  /* Whether k's source is written for arch, the exact target its compiler gets
   * ("sm_90", "sm_90a"): RB_OK, or RB_EUSER with the archs it needs in err.
   * NULL: a target without architectures. */
  int (*arch_check)(const CgKernel *k, const char *arch, RbBuf *err);
} CgTarget;

extern const CgTarget cg_target_cuda;

/* The host CPU through LLVM 16 (codegen/host/): each kernel's source is a
 * textual LLVM IR module (.ll) built with LLVM's C API, compiled by the
 * "llvm" compiler (runtime/jit/llvm.c) at O3 for this CPU. An entry is a
 * CgHostEntry: argv is the same CgArgv a CUDA launch takes (cg_*_argv, host
 * addresses in the CgDevPtr fields), and it computes the work items
 * [begin, end) of its geometry (the grid's product: grid[0] * grid[1] *
 * grid[2] of cg_geometry_launch; block is 1, 1, 1), so a thread pool splits
 * them. Where the build has no LLVM the target exists but refuses every
 * kernel, and cg_host_available says why. */
extern const CgTarget cg_target_host;
typedef void (*CgHostEntry)(void *const *argv, int64_t begin, int64_t end);
/* RB_OK when this build has the host target, else RB_EUSER with the reason in err. */
int cg_host_available(RbBuf *err);

/* ==== kinds.c: names and descriptions ==== */

const char *cg_kind_name(CgKind k);
/* RB_OK when the fields an op kernel (embed, rmsnorm, rope_kv, attention, swiglu,
 * add, nll) reads are usable on any target, else RB_EUSER with the reason in err. */
int cg_op_check(const CgOp *s, RbBuf *err);
const char *cg_strategy_name(CgStrategy s);         /* "xor", "mma", "dequant", "lop3", "bmma", "xsmem", "none" */
const char *cg_epilogue_name(CgEpilogue e);         /* "none", "add", "swiglu" */
const char *cg_schedule_source_name(CgScheduleSource s); /* "default", "shipped", "tuned" */
/* A stable one-line description, e.g. "linear xor N=576+192+192 K=576 k=2 b<=8 tile=4,0,0,0".
 * It names the kernel in plans, tables and the header of dumped .cu files. */
void cg_kernel_describe(const CgKernel *k, RbBuf *out);
int cg_kernel_equal(const CgKernel *a, const CgKernel *b);

/* ==== select.c: from a fused graph to the kernels it needs ==== */

struct IrGraph;

enum { CG_PRENORM_KERNEL = 1, CG_PRENORM_EXACT = 2 }; /* CgTarget.linear_prenorm's answers */
/* CgTargetOptions.fuse_norm: which buckets take the rmsnorm before their linear in. */
enum {
  CG_FUSE_NONE,  /* none */
  CG_FUSE_ALL,   /* every bucket the target can normalize in */
  CG_FUSE_EXACT, /* those that normalize exactly (CG_PRENORM_EXACT): the compile's default */
};

typedef struct {
  int max_ctx;   /* KV cache length the attention kernels are specialized for */
  int fuse_norm; /* CG_FUSE_* */
  int no_bmma;   /* 1: no bmma buckets (batches 1..4 take the next bucket's kernel) */
} CgTargetOptions;

/* One distinct kernel and the IR it serves. */
typedef struct {
  CgKernel kernel;
  CgScheduleSource from; /* where its schedule came from */
  int nlines;
  int lines[8]; /* the first distinct IR source lines served (for .cu headers) */
  int uses;     /* how many graph nodes use it */
} CgKernelUse;

/* The kernels of one graph node by role, as indices into the set; -1 where
 * a role does not apply. Dense (quant = none) linears run on cuBLAS and have
 * none, but for the product kernel of a dense swiglu (and of a quantized one
 * with a dequant bucket: cg_kernels_complete). */
typedef struct {
  int main;    /* the op's kernel: embed, rmsnorm, attention, swiglu, add; a linear_swiglu's
                * product kernel (CG_SWIGLU: dense, or a bucket under the dequant strategy) */
  int rope;    /* attention: rope_kv, launched before main */
  int repack;  /* quantized linear: writes the bit layout that every bucket reads */
  int planes;  /* quantized linear with a bmma bucket: its activation planes pre-pass (CG_PLANES) */
  int nbucket; /* quantized linear: its kernels by batch, ascending batch_max */
  int bucket[CG_MAX_BUCKETS];
  int nll;     /* the node returning f32 logits: their per-row NLL (CG_NLL), for evaluation */
} CgNodeKernels;

typedef struct CgKernelSet {
  CgKernelUse *k;
  int n, cap;
  CgNodeKernels *node; /* one per graph node */
  int nnodes;
} CgKernelSet;

/* Index limits: the one place they are written down.
 * The kernels index with 32-bit ints: CgOp's fields, the argument structs'
 * extents and counts (int n, int ld, ...), thread indices and row offsets
 * within a tensor. So every T-independent size a kernel computes must be at
 * most CG_INDEX_MAX, or selection refuses the graph at the op's
 * path:line:col, naming the value; nothing is cut to 32 bits silently.
 *   - every dimension, size argument and integer attribute: the verifier
 *     bounds them by IR_DIM_MAX (= CG_INDEX_MAX; ir.h), finite nonzero f32
 *     attributes likewise;
 *   - linear, linear_add, linear_swiglu, linear_grad: N of all segments
 *     together (the output row, Ntot); k * Ntot * ceil(K/32) words of packed
 *     signs (the repack's flat index); N * K of each weight (the dense
 *     weight: cuBLAS for quant = none, what rabit quantize reads, what the
 *     trainer derives and casts with int counts);
 *   - embed: V * D, the table (the trainer's bf16 copy, the tied head);
 *   - attention, attention_grad: heads * head_dim and kv_heads * head_dim,
 *     the q and k/v row widths the kernels compute in int.
 * Bytes follow: a tensor of at most CG_INDEX_MAX elements of at most 4 bytes
 * is under 2^33 bytes, and byte offsets are 64-bit everywhere (size_t,
 * uint64_t, long long in the kernels). Counts across tensors (the trainer's
 * parameter total) are long long, with grid-stride kernels. T-dependent
 * extents (T * D rows of an add) are the runtime's, against its batch limits. */
#define CG_INDEX_MAX 2147483647LL

struct IrDiag;

/* Check a verified graph (fused, or the training graph) against the index
 * limits above. RB_OK, or RB_EUSER with every offending op reported to d. */
int cg_graph_check(const struct IrGraph *g, struct IrDiag *d);

/* Collect the distinct kernels a verified, fused graph needs on target t:
 * for each quantized linear its batch buckets and the repack of its layout;
 * for every other op its kernel. Returns RB_OK, RB_EUSER (a size over the
 * index limits, reported to d by cg_graph_check) or RB_EINTERNAL on
 * allocation failure. */
int cg_kernels_from_graph(const struct IrGraph *g, const CgTarget *t, const CgTargetOptions *opt,
                          struct IrDiag *d, CgKernelSet *out);
/* Once the schedules are final (the compile's schedule hook, RABIT_PREFILL): add
 * the kernels a schedule needs beside its own. A quantized swiglu with a bucket
 * under CG_STRAT_DEQUANT gets the CG_SWIGLU product kernel as its `main` (the
 * fused kernels need none, so default plans hold none). RB_OK or RB_EINTERNAL. */
int cg_kernels_complete(const struct IrGraph *g, CgKernelSet *ks);
void cg_kernel_set_free(CgKernelSet *ks);

/* ==== stats.c: the layer table ==== */

/* Print the table of layers rabitc will compile: op, shape, paths, count,
 * parameters; and the model's parameter total. */
void cg_graph_summary(const struct IrGraph *g, RbBuf *out);
uint64_t cg_graph_params(const struct IrGraph *g);


/* ==== reference.c: the CPU reference of the quantized linear (float64) ====
 * Written from DESIGN.md's equations, independent of the emitters; the kernel
 * tests and the tuner's validation check every linear kernel against it. */

/* One segment: y (batch, N) = sum_p g[p, n] * sum_j s(p, n, j) * h[p, j] * x[b, j], where
 * s = -1 if bit j of row (p, n) in canonical bits (paths, N, ceil(K/32)) is set, else +1.
 * x (batch, K), g (paths, N), h (paths, K) float. */
void cg_ref_linear(double *y, const float *x, const uint32_t *bits, const float *g, const float *h, int batch, int N,
                   int K, int paths);
/* Pack signs (paths, N, K) of +1/-1 into canonical words (paths, N, ceil(K/32)); pad bits 0. */
void cg_ref_pack_signs(uint32_t *bits, const int8_t *signs, int paths, int N, int K);
double cg_ref_silu(double v);
/* ||a - b|| / ||b||; ||a - b|| when ||b|| is 0. A NaN anywhere gives NaN: test !(err <= tol). */
double cg_ref_rel_l2(const double *a, const double *b, size_t n);
/* A linear op's output row width (N[0] for swiglu, else Ntot); *ntot (may be NULL) gets Ntot. */
int cg_ref_linear_width(const CgOp *op, int *ntot);
/* One output row of the fused linear op: each segment s from bits[s], g[s]
 * (paths, N[s]) and h + s * paths * K, concatenated, then the epilogue (+ res
 * (Ntot) for add; silu(gate) * up for swiglu). seg: Ntot doubles of scratch.
 * With op->eps > 0 the sums are scaled by rsqrt(mean(x^2) + eps) before the epilogue. */
void cg_ref_linear_row(const CgOp *op, double *y, const float *x, const uint32_t *const *bits, const float *const *g,
                       const float *h, const float *res, double *seg);
/* The relative L2 error a linear kernel under s may show against the reference. */
double cg_ref_linear_tolerance(const CgSchedule *s);

/* ==== packed.c: the canonical packed format, owned once ==== */

/* For each quantized weight <base> (N x K) with k paths, on disk and in
 * every API that takes canonical weights:
 *   <base>.bits  I32 [k, N, ceil(K/32)]  bit j of word w: the sign of column 32w + j (-1 -> 1), pad bits 0
 *   <base>.g     F16 [k, N]              row scales
 *   <base>.h     F16 [k, K]              column scales
 * A full-precision weight keeps <base>.weight. Nothing outside packed.c
 * spells these names or computes the word count. */
#define CG_MAX_PATHS 4

typedef enum { CG_PACKED_BITS, CG_PACKED_G, CG_PACKED_H, CG_PACKED_NPART } CgPackedPart;

int64_t cg_packed_words(int64_t K);           /* 32-bit words per row of signs: ceil(K/32) */
uint32_t cg_packed_pad_mask(int64_t K);       /* the bits of a row's last word that hold columns */
const char *cg_packed_suffix(CgPackedPart part); /* ".bits", ".g", ".h" */
const char *cg_packed_dtype(CgPackedPart part);  /* safetensors spelling: "I32", "F16" */
/* "<base><suffix>" and "<base>.weight" into out; -1 when it does not fit. */
int cg_packed_name(char *out, size_t n, const char *base, CgPackedPart part);
int cg_dense_name(char *out, size_t n, const char *base);
/* A part's shape; returns its rank (3 for bits, 2 for g and h). */
int cg_packed_shape(CgPackedPart part, int k, int64_t N, int64_t K, int64_t shape[3]);
uint64_t cg_packed_count(CgPackedPart part, int k, int64_t N, int64_t K);      /* elements */
uint64_t cg_packed_part_bytes(CgPackedPart part, int k, int64_t N, int64_t K); /* bytes as stored */
uint64_t cg_packed_bytes(int k, int64_t N, int64_t K);                         /* bits + g + h */
/* Check a stored tensor (dtype in safetensors spelling) against the part's
 * dtype and shape. RB_OK, or RB_EUSER with "'name' must be I32 [2, 576, 18]
 * (paths, N, ceil(K/32)), found ..." appended to err. */
int cg_packed_check(CgPackedPart part, const char *dtype, int rank, const int64_t *shape, int k, int64_t N,
                    int64_t K, const char *name, RbBuf *err);
/* k as a .bits tensor's shape says it (1..4), or 0 when the shape is not one. */
int cg_packed_paths(int rank, const int64_t *shape);

#endif
