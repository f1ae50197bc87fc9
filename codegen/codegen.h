/* codegen.h: kernel specs and the CUDA C emitters (prefix cg_).
 * A spec names one kernel completely; its canonical source is a deterministic
 * function of the spec alone (no provenance, no timestamps), so the same spec
 * reached from any IR file hashes to the same cache entry. Sources include only
 * NVRTC's built-in headers (none, in practice): every type they need is spelled
 * out in the source, so no unhashed file can change a binary. */
#ifndef RABIT_CODEGEN_H
#define RABIT_CODEGEN_H

#include <stddef.h>
#include <stdint.h>

#include "ir/base.h"

#define CG_MAX_SEG 4  /* fused linears: q/k/v, gate/up */
#define CG_MAX_TILE 4

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

/* Linear strategies (the autotuner chooses among them per shape and batch). */
typedef enum {
  CG_STRAT_NONE = 0,
  CG_STRAT_XOR,  /* batch 1: sign bit XORed into h.*x, fp32 adds */
  CG_STRAT_MMA,  /* batch >= 2: bits decoded to +-1 fp16 fragments for mma.sync */
} CgStrategy;

typedef enum {
  CG_EPI_NONE = 0,
  CG_EPI_ADD,    /* y = W x + res */
  CG_EPI_SWIGLU, /* two segments (gate, up): y = silu(W_g x) * (W_u x) */
} CgEpilogue;

typedef struct CgSpec {
  CgKind kind;
  /* linear and repack */
  CgStrategy strategy;
  int batch_max;          /* bucket: largest batch this kernel is specialized for (1, 16, 512...) */
  int K;                  /* input width */
  int nseg, N[CG_MAX_SEG];/* output width of each fused segment */
  int paths;              /* k, 1..4 */
  CgEpilogue epilogue;
  int tile[CG_MAX_TILE];  /* strategy-specific; meaning documented in the emitter, 0 = default */
  /* decoder ops */
  int dim;                /* rmsnorm/swiglu/add/embed width D */
  int vocab;              /* embed */
  int heads, kv_heads, head_dim, max_ctx; /* rope_kv, attention */
  float eps, rope_theta;
} CgSpec;

/* Kernel argument ABI, one per kind (all activations fp16, row-major, fp32 accumulation):
 *
 * CG_LINEAR  (half *y, const half *x, const uint32_t *bits, const half *g,
 *             const half *h, const half *res, int batch)
 *    x    (batch, K)
 *    bits kernel layout written by the matching CG_REPACK (see cg_linear.c)
 *    g    (paths, Ntot)         Ntot = sum of N[s]; rows of the segments concatenated
 *    h    (nseg, paths, K)      one h per segment: h belongs to each matrix
 *    res  (batch, Ntot) for CG_EPI_ADD, else unused (may be NULL)
 *    y    (batch, Ntot), or (batch, N[0]) for CG_EPI_SWIGLU
 * CG_REPACK  (uint32_t *dst, const uint32_t *src, int seg)
 *    src is segment seg's canonical bits (paths, N[seg], ceil(K/32)); dst the
 *    kernel layout for the whole fused spec, one layout for every strategy
 *    (so a layer's bits are held once). Launched once per segment.
 * CG_EMBED   (half *y, const int *tokens, const half *table, int T)      table (vocab, dim)
 * CG_RMSNORM (half *y, const half *x, const half *w, int T)             y = x * rsqrt(mean(x^2) + eps) * w
 * CG_ROPE_KV (half *q, int ldq, const half *k, int ldk, const half *v, int ldv,
 *             half *kcache, half *vcache, const int *pos0, int T)
 *    Rotates q in place and k into the cache (Hugging Face rotate-half), for
 *    positions *pos0..*pos0+T-1; caches are (kv_heads, max_ctx, head_dim).
 *    pos0 lives in device memory so that a captured decode step replays at
 *    every position without touching the graph.
 * CG_ATTENTION (half *out, const half *q, int ldq, const half *kcache,
 *             const half *vcache, const int *pos0, int T)
 *    causal GQA: query t attends to cache positions 0..pos0+t. out (T, heads*head_dim)
 * CG_SWIGLU  (half *y, const half *gu, int ld, int T)  y = silu(gu[:, :dim]) * gu[:, dim:2dim]
 * CG_ADD     (half *y, const half *a, const half *b, int n)
 */

typedef struct {
  unsigned grid[3], block[3];
  unsigned smem; /* dynamic shared memory bytes */
} CgLaunch;

/* Emit the canonical source of s into src and the entry point's name into
 * entry. Returns RB_OK, or RB_EUSER with a message in err for a spec that no
 * emitter supports (e.g. paths out of range). */
int cg_emit(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err);

/* Launch geometry for a call of s. n is the runtime extent: batch rows for
 * CG_LINEAR, T for the row-wise ops, the element count for CG_ADD, the segment
 * index for CG_REPACK. */
CgLaunch cg_launch(const CgSpec *s, int n);

/* A stable one-line description, e.g. "linear xor N=576+192+192 K=576 k=2 b<=1 tile=4,0,0,0".
 * It names the spec in plans, tables and the header of dumped .cu files. */
void cg_spec_describe(const CgSpec *s, RbBuf *out);

/* Bytes of the repacked bits of a linear (or repack) spec: the kernel layout every bucket reads. */
size_t cg_linear_bits_bytes(const CgSpec *s);

const char *cg_kind_name(CgKind k);

/* ==== select.c: from a fused graph to the kernels it needs ==== */

struct IrGraph;

/* Batch buckets of the linear kernels: batch 1 streams bits with the xor
 * strategy; small batches (decode with several sequences) and large ones
 * (prefill, evaluation) decode bits to mma fragments. */
#define CG_BUCKET_SMALL 16
#define CG_BUCKET_LARGE 512

typedef struct {
  int max_ctx; /* KV cache length the attention kernels are specialized for */
} CgTargetOptions;

/* One distinct kernel and the IR it serves. */
typedef struct {
  CgSpec spec;
  int nlines;
  int lines[8]; /* the first distinct IR source lines served (for .cu headers) */
  int uses;     /* how many graph nodes use it */
} CgKernelUse;

#define CG_MAX_NODE_KERNELS 4

/* The kernels of one graph node, as indices into the set: a quantized linear
 * has xor (b<=1), mma (b<=16), mma (b<=512), then the repack of the bit layout
 * all three read;
 * attention has rope_kv then attention; other ops one kernel. */
typedef struct {
  int n;
  int k[CG_MAX_NODE_KERNELS];
} CgNodeKernels;

typedef struct CgKernelSet {
  CgKernelUse *k;
  int n, cap;
  CgNodeKernels *node; /* one per graph node */
  int nnodes;
} CgKernelSet;

/* Collect the distinct kernels a verified, fused graph needs: for each
 * quantized linear its three batch buckets and the repack of each distinct
 * layout; for every other op its kernel. Dense (quant = none) linears run on
 * cuBLAS and need none. Returns RB_OK, or RB_EINTERNAL on allocation failure. */
int cg_kernels_from_graph(const struct IrGraph *g, const CgTargetOptions *opt, CgKernelSet *out);
void cg_kernel_set_free(CgKernelSet *ks);
int cg_spec_equal(const CgSpec *a, const CgSpec *b);


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
