/* linear_plan.h: what the linear emitters share (linear.c: xor, mma, lop3, dequant and
 * the repack; bmma.c): the plan a kernel's op and schedule resolve to, and the pieces of
 * source every design emits alike. Private to codegen/cuda. */
#ifndef RABIT_CODEGEN_CUDA_LINEAR_PLAN_H
#define RABIT_CODEGEN_CUDA_LINEAR_PLAN_H

#include "codegen/codegen.h"

#define SMEM_LIMIT 49152u /* default dynamic shared memory limit: no opt-in needed */
/* With a bit ring the launch opts in to more (rt_launch does it above 48 KB): 96 KB
 * fits every arch the kernels compile for (sm_86 and sm_89 allow 99 KB a block). */
#define RING_SMEM_LIMIT 98304u

/* Everything the emitters derive from a spec, resolved once. */
typedef struct {
  int W, C64, C256, ntot, nsb; /* nsb: segments one block works on (2 for swiglu) */
  int row0[CG_MAX_SEG];       /* first row of each segment in Ntot */
  int ntile[CG_MAX_SEG], tile0[CG_MAX_SEG], TT; /* mma 16-row tiles */
  int ngroup;                 /* block groups: segments, or 1 (gate+up) for swiglu */
  int blk0[CG_MAX_SEG + 1];   /* first block of each group, then the total */
  int reg;                    /* 1: the register design (xor, lop3, mma batch tiles 8/16); 0: staged */
  int lop3;                   /* reg: the lop3 decode (signs in mantissa bits, per-path sums) */
  int ST;                     /* reg: stages of the bit ring in shared memory (tile[2]; 0: none) */
  int RT, KS, KC, BT;
  int WR;                     /* xsmem: warps splitting a block's rows */
  int short_tile;             /* reg, BT 16: a block may see 8 batch rows or fewer (a second K loop) */
  int WPB;                    /* dequant: warps per block */
  unsigned threads, smem;
} CgLinearPlan;

static inline int cg_div_up(int a, int b) { return (a + b - 1) / b; }

/* Check k's op and schedule and resolve the defaults. RB_OK or RB_EUSER with a message. */
int cg_linear_plan(const CgKernel *k, CgLinearPlan *pl, RbBuf *err);
/* The default K split of the register-style designs: as many warps over the C256 256-column
 * groups as fill 16 with little imbalance (43 groups: 15 warps). */
int cg_linear_default_split(int C256);
/* The entry name rb_linear[_rms][_add|_swiglu]_<strategy>_n.._k<K>_p<paths>[_b<batch>][_hash]. */
void cg_linear_entry_name(const CgKernel *k, char entry[CG_ENTRY_MAX]);
/* Device functions seg_rows(s), seg_row0(s) and, with mma, seg_tile0(s) (16-row tiles). */
void cg_linear_emit_segment_tables(RbBuf *b, const CgOp *s, const CgLinearPlan *pl, int mma);
/* block_segment(blk, &seg, &first): the block group a block belongs to (pl->blk0). */
void cg_linear_emit_block_segment(RbBuf *b, const CgLinearPlan *pl);
/* The store of output v0 (and v1, a swiglu's up) for batch row `brow`, row n of segment seg0,
 * with the op's epilogue, indented by ind. */
void cg_linear_emit_store(RbBuf *b, const CgOp *s, const char *ind, const char *v0, const char *v1);

/* The device function ld8(v, row, col): halves col .. col + 7 of a row of K (a #define) as four
 * pairs, 16-byte loads when K % 8 == 0, 0 past K. */
extern const char cg_linear_ld8[];
/* The #defines of the shape both 256-column designs (reg, xsmem) read: K, C256, PATHS, NTOT, TT, NSB. */
void cg_linear_emit_shape(RbBuf *b, const CgOp *s, const CgLinearPlan *pl);
/* mma16816(c, a, b0, b1): one m16n8k16 fp16 mma.sync into fp32 c. */
extern const char cg_linear_mma_helpers[];
/* ldbits(v, p): a lane's 16 bytes of bits (no L1 allocation); hmul2(a, b): an f16x2 product. */
extern const char cg_linear_bits_helpers[];

/* bmma.c: the bmma strategy (batches 1..4) and its activation planes pre-pass. */
int cg_bmma_plan(const CgOp *s, const CgSchedule *sc, CgLinearPlan *pl, RbBuf *err);
void cg_bmma_emit(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry);

/* xsmem.c: the xsmem strategy (batch tiles of 8 or 16). */
int cg_xsmem_plan(const CgOp *s, const CgSchedule *sc, CgLinearPlan *pl, RbBuf *err);
void cg_xsmem_emit(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry);

#endif
