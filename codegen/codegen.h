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
#define CG_MAX_BUCKETS 4  /* batch buckets of one quantized linear */
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
  X(CG_ADD, "add")

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
  float eps, rope_theta;
} CgOp;

/* Linear strategies (the autotuner chooses among them per shape and batch). */
typedef enum {
  CG_STRAT_NONE = 0,
  CG_STRAT_XOR,  /* the batch-1 bucket: bits decoded to +-g with one LOP3 per register, mma.sync sums */
  CG_STRAT_MMA,  /* batch >= 2: bits decoded to +-g fp16 fragments for mma.sync, batch tiles of 8..64 */
} CgStrategy;

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
 * a kernel with a decode variant (attention) runs block_x_small threads when
 * n <= n_small. */
typedef struct {
  unsigned grid[3], block[3];
  unsigned smem;          /* dynamic shared memory bytes */
  int grow_axis;          /* 0..2; -1: the grid does not depend on n */
  unsigned n_per_block;
  unsigned n_small, block_x_small; /* 0: no decode variant */
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
typedef struct { CgDevPtr out, q; int ldq; CgDevPtr kcache, vcache, pos0; int T; } CgAttentionArgs;
/* CG_SWIGLU: y (T, dim) = silu(gu[:, :dim]) * gu[:, dim:2dim], rows of gu ld apart */
typedef struct { CgDevPtr y, gu; int ld, T; } CgSwigluArgs;
/* CG_ADD: y = a + b over n elements */
typedef struct { CgDevPtr y, a, b; int n; } CgAddArgs;

/* Fill out with the addresses given, in the kernel's parameter order. */
#define CG_ARGV(out, ...)                                   \
  do {                                                      \
    void *cg_argv_[] = {__VA_ARGS__};                       \
    (out)->n = (int)(sizeof cg_argv_ / sizeof cg_argv_[0]); \
    memcpy((out)->v, cg_argv_, sizeof cg_argv_);            \
  } while (0)

void cg_linear_argv(CgLinearArgs *a, CgArgv *out);
void cg_repack_argv(CgRepackArgs *a, CgArgv *out);
void cg_embed_argv(CgEmbedArgs *a, CgArgv *out);
void cg_rmsnorm_argv(CgRmsnormArgs *a, CgArgv *out);
void cg_rope_kv_argv(CgRopeKvArgs *a, CgArgv *out);
void cg_attention_argv(CgAttentionArgs *a, CgArgv *out);
void cg_swiglu_argv(CgSwigluArgs *a, CgArgv *out);
void cg_add_argv(CgAddArgs *a, CgArgv *out);

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
} CgTarget;

extern const CgTarget cg_target_cuda;

/* ==== kinds.c: names and descriptions ==== */

const char *cg_kind_name(CgKind k);
const char *cg_strategy_name(CgStrategy s);         /* "xor", "mma", "none" */
const char *cg_epilogue_name(CgEpilogue e);         /* "none", "add", "swiglu" */
const char *cg_schedule_source_name(CgScheduleSource s); /* "default", "shipped", "tuned" */
/* A stable one-line description, e.g. "linear xor N=576+192+192 K=576 k=2 b<=1 tile=4,0,0,0".
 * It names the kernel in plans, tables and the header of dumped .cu files. */
void cg_kernel_describe(const CgKernel *k, RbBuf *out);
int cg_kernel_equal(const CgKernel *a, const CgKernel *b);

/* ==== select.c: from a fused graph to the kernels it needs ==== */

struct IrGraph;

typedef struct {
  int max_ctx; /* KV cache length the attention kernels are specialized for */
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
 * none, but for the product kernel of a dense swiglu. */
typedef struct {
  int main;    /* the op's kernel: embed, rmsnorm, attention, swiglu, add */
  int rope;    /* attention: rope_kv, launched before main */
  int repack;  /* quantized linear: writes the bit layout that every bucket reads */
  int nbucket; /* quantized linear: its kernels by batch, ascending batch_max */
  int bucket[CG_MAX_BUCKETS];
} CgNodeKernels;

typedef struct CgKernelSet {
  CgKernelUse *k;
  int n, cap;
  CgNodeKernels *node; /* one per graph node */
  int nnodes;
} CgKernelSet;

/* Collect the distinct kernels a verified, fused graph needs on target t:
 * for each quantized linear its batch buckets and the repack of its layout;
 * for every other op its kernel. Returns RB_OK, or RB_EINTERNAL on
 * allocation failure. */
int cg_kernels_from_graph(const struct IrGraph *g, const CgTarget *t, const CgTargetOptions *opt,
                          CgKernelSet *out);
void cg_kernel_set_free(CgKernelSet *ks);

/* ==== stats.c: the layer table ==== */

/* Print the table of layers rabitc will compile: op, shape, paths, count,
 * parameters; and the model's parameter total. */
void cg_graph_summary(const struct IrGraph *g, RbBuf *out);
uint64_t cg_graph_params(const struct IrGraph *g);


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
