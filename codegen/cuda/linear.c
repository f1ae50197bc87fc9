/* linear.c: the residual binary linear y = sum_p g_p .* (B_p (h_p .* x)) and
 * the repack kernel that writes its bit layout, for its strategies (xor for
 * batches up to 8, mma up to 16, dequant for the prefill buckets: the layout
 * expanded into the dense fp16 W_hat for the runtime's GEMM; lop3, the register
 * design's second decode, and xsmem, where a tuned record picks them; bmma at batch 1 is
 * bmma.c's, xsmem's emitter xsmem.c's). Every shape, path count and tile
 * parameter is a compile-time constant (a #define) of the emitted source,
 * which starts with the prelude of prelude.c. Both strategies sum with
 * mma.sync on A fragments decoded to +-g_p; "xor" names how a sign is applied
 * (XORed into the sign bit of the fp16 g_p, one LOP3 after one shift), not a
 * separate arithmetic path.
 *
 * Entry names say what a kernel is: rb_linear[_add|_swiglu]_{xor|mma|dequant}_n<N>_k<K>_p<k>
 * [_b<batch>], with fused segments n576_192_192 and equal ones n1536x2; a kernel
 * with tiles set gets "_" and 6 hex digits of its description's hash. The
 * repack is rb_repack_n<N>_k<K>_p<k>.
 *
 * Kernel bit layout (what CG_REPACK writes, the same for both strategies;
 * cg_layout_bytes_linear is its size): (paths, TT, C256, 32, 4) words. TT counts
 * 16-row tiles (each segment padded to a multiple of 16 rows, so no tile
 * straddles two segments' h), C256 = ceil(K/256). Lane l of tile T owns the 16
 * bytes (T, c, l, 0..3): word j holds exactly the 32 signs lane l needs for the
 * four m16n8k16 A fragments over the 64 columns 256c + 64j .. +63, so a lane
 * streams its bits with one 16-byte load per tile and 256 columns.
 *   Inside a 64-column step the columns are permuted so that a lane's B
 *   fragments are contiguous in x and h: lane (gid, tig) covers columns
 *   16 tig .. 16 tig + 15; in k16 step s, A register q (rows gid + 8 (q & 1))
 *   takes columns 16 tig + 4 s + 2 (q >> 1) + {0, 1}, as bit r and bit r + 16
 *   (r = 4 s + q), so one shift and one LOP3 decode a register to +-g.
 *   Pad rows and columns are 0.
 *
 * Three kernel designs read it:
 *   reg (strategy xor, the b<=8 bucket, lop3, and mma with batch tiles of 8 or 16):
 *     no shared staging. A warp owns RT row tiles and every KS-th 256-column
 *     group of K; it streams its bits with 16-byte loads one group ahead,
 *     builds its B fragments from two 16-byte loads of x and of h_p (HMUL2),
 *     decodes, and accumulates with mma.sync. The KS warps of a block reduce
 *     through shared memory in a fixed order (deterministic).
 *     tile[0] row tiles per block (RT), tile[1] warps splitting K (KS),
 *     tile[2] stages of a bit ring in shared memory (0, the default: none;
 *     2..8: cp.async keeps that many groups in flight; slower at every stage
 *     count on the H200, KERNEL_NOTES.md 2026-12-02), tile[3] batch rows per
 *     block (8, 16). lop3 decodes with codegen/cuda/lop3.c's table and keeps one
 *     accumulator set per path.
 *   staged (mma with batch tiles of 32 or 64): u = h .* x staged in shared
 *     memory per K chunk, see emit_mma. tile[0] 16-row tiles per block,
 *     tile[1] warps splitting K inside the block, tile[2] columns of K staged
 *     per chunk (multiple of 64), tile[3] batch rows per block (32, 64).
 *   xsmem (batch tiles of 8 or 16, where a tuned record picks it): the reg
 *     design's decode and sums with each K group's x and h_p staged once per
 *     block by cp.async and the block's warps splitting rows as well as K;
 *     codegen/cuda/xsmem.c has its tiles.
 * And one writes it out whole:
 *   dequant (buckets above batch 16): W_hat (Ntot, K) fp16 into a scratch
 *     buffer, one warp per (16-row tile, 256-column group), see emit_dequant;
 *     the product is a cuBLAS GEMM the runtime runs after it. tile[0] warps
 *     per block. */
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "codegen/cuda/linear_plan.h"


int cg_linear_default_split(int C256) {
  int kmax = C256 < 16 ? C256 : 16, ks = 1;
  double best = 0;
  for (int split = kmax; split >= 1 && split >= kmax / 2; split--) {
    double eff = (double)C256 / (double)(cg_div_up(C256, split) * split);
    if (eff > best + 0.03) best = eff, ks = split;
  }
  return ks;
}

/* The dequant strategy's tiles: tile[0] warps per block (1..32, default 8), each warp
 * expanding one (16-row tile, 256-column group) of the layout; the rest unused. It serves
 * only buckets above batch 16: below that the GEMM would read the fp16 weights the bits
 * exist to avoid (the mma kernels read 1/8 of them at k = 2). */
static int plan_dequant(const CgSchedule *sc, CgLinearPlan *pl, RbBuf *err) {
  if (sc->batch_max <= 16) {
    rb_buf_printf(err, "linear dequant: serves buckets above batch 16, not b<=%d", sc->batch_max);
    return RB_EUSER;
  }
  pl->WPB = sc->tile[0] ? sc->tile[0] : 8;
  if (pl->WPB < 1 || pl->WPB > 32 || sc->tile[1] || sc->tile[2] || sc->tile[3]) {
    rb_buf_printf(err, "linear dequant: bad tile %d,%d,%d,%d (warps per block 1..32, the rest unused: 0)",
                  pl->WPB, sc->tile[1], sc->tile[2], sc->tile[3]);
    return RB_EUSER;
  }
  pl->threads = (unsigned)(32 * pl->WPB);
  pl->smem = 0;
  pl->blk0[pl->ngroup] = cg_div_up(pl->TT * pl->C256, pl->WPB); /* the grid: every (tile, group) once */
  return RB_OK;
}

/* Check the spec and resolve the defaults. Returns RB_OK or RB_EUSER with a message. */
int cg_linear_plan(const CgKernel *k, CgLinearPlan *pl, RbBuf *err) {
  const CgOp *s = &k->op;
  const CgSchedule *sc = &k->sched;
  memset(pl, 0, sizeof *pl);
  if (sc->strategy != CG_STRAT_XOR && sc->strategy != CG_STRAT_MMA && sc->strategy != CG_STRAT_DEQUANT &&
      sc->strategy != CG_STRAT_LOP3 && sc->strategy != CG_STRAT_BMMA && sc->strategy != CG_STRAT_XSMEM) {
    rb_buf_printf(err, "linear: unknown strategy %d", (int)sc->strategy);
    return RB_EUSER;
  }
  if (s->paths < 1 || s->paths > 4) {
    rb_buf_printf(err, "linear: paths must be 1..4, got %d", s->paths);
    return RB_EUSER;
  }
  if (s->nseg < 1 || s->nseg > CG_MAX_SEG) {
    rb_buf_printf(err, "linear: nseg must be 1..%d, got %d", CG_MAX_SEG, s->nseg);
    return RB_EUSER;
  }
  if (s->K < 1 || s->K > (1 << 20)) {
    rb_buf_printf(err, "linear: K = %d is outside the supported 1..%d", s->K, 1 << 20);
    return RB_EUSER;
  }
  if (sc->batch_max < 1) {
    rb_buf_printf(err, "linear: batch bucket %d must be at least 1", sc->batch_max);
    return RB_EUSER;
  }
  long ntot = 0;
  for (int i = 0; i < s->nseg; i++) {
    if (s->N[i] < 1) {
      rb_buf_printf(err, "linear: segment %d has N=%d", i, s->N[i]);
      return RB_EUSER;
    }
    pl->row0[i] = (int)ntot;
    ntot += s->N[i];
  }
  if (ntot > (1 << 24)) {
    rb_buf_printf(err, "linear: Ntot=%ld too large", ntot);
    return RB_EUSER;
  }
  if (s->epilogue == CG_EPI_SWIGLU && (s->nseg != 2 || s->N[0] != s->N[1])) {
    rb_buf_printf(err, "linear: swiglu epilogue needs two segments of equal N");
    return RB_EUSER;
  }
  if (s->epilogue != CG_EPI_NONE && s->epilogue != CG_EPI_ADD && s->epilogue != CG_EPI_SWIGLU) {
    rb_buf_printf(err, "linear: unknown epilogue %d", (int)s->epilogue);
    return RB_EUSER;
  }
  pl->ntot = (int)ntot;
  pl->W = cg_div_up(s->K, 32);
  pl->C64 = cg_div_up(s->K, 64);
  pl->C256 = cg_div_up(s->K, 256);
  pl->nsb = s->epilogue == CG_EPI_SWIGLU ? 2 : 1;
  pl->ngroup = s->epilogue == CG_EPI_SWIGLU ? 1 : s->nseg;
  for (int i = 0; i < s->nseg; i++) {
    pl->ntile[i] = cg_div_up(s->N[i], 16);
    pl->tile0[i] = pl->TT;
    pl->TT += pl->ntile[i];
  }

  if (!(s->eps >= 0.0f) || (s->eps > 0 && (sc->strategy == CG_STRAT_DEQUANT || s->K % 8))) {
    rb_buf_printf(err, "linear: a fused rmsnorm (eps %g) needs the register design and K %% 8 == 0 (here %s, K = %d)",
                  (double)s->eps, cg_strategy_name(sc->strategy), s->K);
    return RB_EUSER;
  }
  if (sc->strategy == CG_STRAT_DEQUANT) return plan_dequant(sc, pl, err);
  if (sc->strategy == CG_STRAT_BMMA) return cg_bmma_plan(s, sc, pl, err);
  if (sc->strategy == CG_STRAT_XSMEM) return cg_xsmem_plan(s, sc, pl, err);

  int bt = sc->batch_max <= 8 ? 8 : sc->batch_max <= 16 ? 16 : sc->batch_max <= 32 ? 32 : 64;
  if (sc->strategy == CG_STRAT_XOR) bt = 8; /* the b<=8 bucket: larger batches tile the grid's y */
  if (sc->strategy == CG_STRAT_LOP3 && bt > 16) bt = 16; /* the register design only */
  pl->BT = sc->tile[3] ? sc->tile[3] : bt;
  pl->reg = pl->BT <= 16;
  pl->lop3 = sc->strategy == CG_STRAT_LOP3;
  if (pl->lop3 && !pl->reg) {
    rb_buf_printf(err, "linear lop3: batch tile %d (the lop3 decode is the register design's: 8 or 16)", pl->BT);
    return RB_EUSER;
  }
  /* The b<=16 bucket runs batches 9..16 only (cg_linear_buckets: the xor bucket
   * below takes 1..8), so one 16-row tile is always more than half live; a larger
   * bucket's last grid row may not be. Leaving out the second K loop where it is
   * never taken halves these kernels' compile time. */
  pl->short_tile = pl->BT > 8 && sc->batch_max > pl->BT;
  if (pl->reg) {
    /* Register design. Default: 2 row tiles per block; KS warps over the 256-column
     * groups, as many as fill 16 warps with little imbalance (43 groups: 15 warps). */
    pl->RT = sc->tile[0] ? sc->tile[0] : 2;
    int ks = sc->tile[1];
    if (!ks) {
      ks = cg_linear_default_split(pl->C256);
      /* Many bit registers per lane (paths x segments x tiles): a smaller block. */
      if (s->paths * pl->nsb * pl->RT > 4 && ks > 8) ks = 8;
      /* The reduction buffer (and with a bit ring, the rings) stays under the limit:
       * fewer warps, each with its stages. */
      const unsigned st = (unsigned)sc->tile[2] > 8 ? 0u : (unsigned)sc->tile[2];
      const unsigned ssq = s->eps > 0 ? (unsigned)pl->BT * 4u : 0u; /* a fused rmsnorm's x.x per warp */
      while (ks > 1 && (unsigned)ks * (pl->RT * pl->nsb * ((pl->BT / 8) + st * (unsigned)s->paths) * 512u + ssq) >
                           (st ? RING_SMEM_LIMIT : SMEM_LIMIT))
        ks--;
    }
    pl->KS = ks;
    pl->ST = sc->tile[2];
    if ((pl->BT != 8 && pl->BT != 16) || pl->RT < 1 || pl->RT > 8 || pl->KS < 1 || pl->KS > 32 ||
        (pl->ST && (pl->ST < 2 || pl->ST > 8))) {
      rb_buf_printf(err, "linear %s: bad tile %d,%d,%d,%d (row tiles 1..8, k-split 1..32, bit-ring stages 0 or "
                    "2..8, batch 8 or 16)",
                    cg_strategy_name(sc->strategy), pl->RT, pl->KS, sc->tile[2], pl->BT);
      return RB_EUSER;
    }
    pl->threads = (unsigned)(pl->KS * 32);
    pl->smem = (unsigned)(pl->KS * pl->RT * pl->nsb * (pl->BT / 8) * 512);
    pl->smem += (unsigned)(pl->ST * pl->KS * s->paths * pl->nsb * pl->RT * 512); /* the rings */
    if (s->eps > 0) pl->smem += (unsigned)(pl->KS * pl->BT * 4); /* the fused rmsnorm's x.x per warp and row */
    for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + cg_div_up(pl->ntile[gi], pl->RT);
  } else {
    if (s->eps > 0) {
      rb_buf_printf(err, "linear mma: batch tile %d is the staged design's, which does not fuse an rmsnorm (the "
                    "register design's batch tiles: 8 or 16)", pl->BT);
      return RB_EUSER;
    }
    pl->KS = sc->tile[1] ? sc->tile[1] : (pl->BT <= 16 ? 4 : 2);
    pl->RT = sc->tile[0] ? sc->tile[0] : (pl->BT <= 16 ? 2 : 4);
    if (sc->tile[2]) {
      pl->KC = sc->tile[2];
    } else {
      /* The largest chunk whose u tile fits in 40 KB, capped at 1024 and at K. */
      int kc = (40960 / (pl->nsb * pl->BT * 2) - 4) / 64 * 64;
      if (kc > 1024) kc = 1024;
      if (kc > pl->C64 * 64) kc = pl->C64 * 64;
      if (kc < 64) kc = 64;
      pl->KC = kc;
      if (!sc->tile[1] && pl->KS > kc / 64) pl->KS = kc / 64; /* no idle split-K warps */
    }
    if ((pl->BT != 8 && pl->BT != 16 && pl->BT != 32 && pl->BT != 64) || pl->RT < 1 || pl->KS < 1 ||
        pl->RT * pl->KS > 32 || pl->KC < 64 || pl->KC % 64) {
      rb_buf_printf(err, "linear mma: bad tile %d,%d,%d,%d (tiles, k-split, K chunk multiple of 64, batch 8..64)",
                    pl->RT, pl->KS, pl->KC, pl->BT);
      return RB_EUSER;
    }
    pl->threads = (unsigned)(pl->RT * pl->KS * 32);
    unsigned u = (unsigned)(pl->nsb * pl->BT * (pl->KC + 4) * 2);
    unsigned red = (unsigned)((pl->KS - 1) * pl->RT * pl->nsb * (pl->BT / 8) * 4 * 32 * 4);
    pl->smem = u > red ? u : red;
    for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + cg_div_up(pl->ntile[gi], pl->RT);
  }
  unsigned limit = pl->ST ? RING_SMEM_LIMIT : SMEM_LIMIT;
  if (pl->smem > limit) {
    rb_buf_printf(err, "linear: tile parameters need %u bytes of shared memory (limit %u)", pl->smem, limit);
    return RB_EUSER;
  }
  return RB_OK;
}

/* The entry name's N field: "n4096", fused segments "n576_192_192", equal
 * segments "n1536x2". */
static void name_rows(RbBuf *b, const CgOp *s) {
  int equal = 1;
  for (int i = 1; i < s->nseg; i++) equal &= s->N[i] == s->N[0];
  if (s->nseg > 1 && equal) {
    rb_buf_printf(b, "n%dx%d", s->N[0], s->nseg);
    return;
  }
  for (int i = 0; i < s->nseg; i++) rb_buf_printf(b, "%s%d", i ? "_" : "n", s->N[i]);
}

/* A linear's entry: rb_linear[_rms][_add|_swiglu]_{xor|mma}_n.._k<K>_p<paths>, then
 * _b<batch_max> for mma (and for an xor bucket past 8), hashed when
 * a tile is set (the name does not say tiles). */
void cg_linear_entry_name(const CgKernel *k, char entry[CG_ENTRY_MAX]) {
  const CgOp *s = &k->op;
  const CgSchedule *sc = &k->sched;
  RbBuf b = {0};
  rb_buf_puts(&b, s->eps > 0 ? "rb_linear_rms_" : "rb_linear_");
  if (s->epilogue != CG_EPI_NONE) rb_buf_printf(&b, "%s_", cg_epilogue_name(s->epilogue));
  rb_buf_printf(&b, "%s_", cg_strategy_name(sc->strategy));
  name_rows(&b, s);
  rb_buf_printf(&b, "_k%d_p%d", s->K, s->paths);
  if (sc->strategy != CG_STRAT_XOR || sc->batch_max > 8) rb_buf_printf(&b, "_b%d", sc->batch_max);
  int tiled = 0;
  for (int i = 0; i < CG_MAX_TILE; i++) tiled |= sc->tile[i] != 0;
  cg_cuda_entry(k, b.data ? b.data : "rb_linear", tiled, entry);
  rb_buf_free(&b);
}

/* ---- pieces shared by the emitted sources ---- */

/* Emit a ternary chain "(i == 0 ? v0 : i == 1 ? v1 : v2)" over n constants. */
static void emit_table(RbBuf *b, const char *var, const int *v, int n) {
  rb_buf_puts(b, "(");
  for (int i = 0; i < n - 1; i++) rb_buf_printf(b, "%s == %d ? %d : ", var, i, v[i]);
  rb_buf_printf(b, "%d)", v[n - 1]);
}

/* Segment tables as device functions of the segment index. */
void cg_linear_emit_segment_tables(RbBuf *b, const CgOp *s, const CgLinearPlan *pl, int mma) {
  rb_buf_puts(b, "/* Segment tables: rows, first row in Ntot");
  rb_buf_puts(b, mma ? ", first 16-row tile in the bit layout. */\n" : ". */\n");
  rb_buf_puts(b, "__device__ __forceinline__ int seg_rows(int s) { return ");
  emit_table(b, "s", s->N, s->nseg);
  rb_buf_puts(b, "; }\n__device__ __forceinline__ int seg_row0(int s) { return ");
  emit_table(b, "s", pl->row0, s->nseg);
  rb_buf_puts(b, "; }\n");
  if (mma) {
    rb_buf_puts(b, "__device__ __forceinline__ int seg_tile0(int s) { return ");
    emit_table(b, "s", pl->tile0, s->nseg);
    rb_buf_puts(b, "; }\n");
  }
  rb_buf_puts(b, "\n");
}

/* Block -> (first segment it works on, its first block). Blocks never straddle
 * segments because each segment has its own h, hence its own u = h .* x. */
void cg_linear_emit_block_segment(RbBuf *b, const CgLinearPlan *pl) {
  rb_buf_puts(b, "__device__ __forceinline__ void block_segment(int blk, int *seg, int *first) {\n");
  for (int gi = 0; gi < pl->ngroup - 1; gi++)
    rb_buf_printf(b, "  if (blk < %d) { *seg = %d; *first = %d; return; }\n", pl->blk0[gi + 1], gi,
                  pl->blk0[gi]);
  rb_buf_printf(b, "  *seg = %d;\n  *first = %d;\n}\n\n", pl->ngroup - 1, pl->blk0[pl->ngroup - 1]);
}

/* The store of one output element v (fp32) for batch row `brow`, row n of segment seg0. */
void cg_linear_emit_store(RbBuf *b, const CgOp *s, const char *ind, const char *v0, const char *v1) {
  switch (s->epilogue) {
  case CG_EPI_ADD:
    rb_buf_printf(b, "%sconst size_t o = (size_t)brow * NTOT + seg_row0(seg0) + n;\n", ind);
    rb_buf_printf(b, "%sy[o] = rb_f2h(%s + rb_h2f(res[o]));\n", ind, v0);
    break;
  case CG_EPI_SWIGLU:
    rb_buf_printf(b, "%sconst float gate = %s;  /* y = silu(gate) * up, width N[0] */\n", ind, v0);
    rb_buf_printf(b, "%sy[(size_t)brow * %d + n] = rb_f2h(gate / (1.0f + expf(-gate)) * %s);\n", ind,
                  s->N[0], v1);
    break;
  default:
    rb_buf_printf(b, "%sy[(size_t)brow * NTOT + seg_row0(seg0) + n] = rb_f2h(%s);\n", ind, v0);
    break;
  }
}

/* ---- the register design (strategy xor, and mma with batch tiles of 8 or 16) ---- */

const char cg_linear_ld8[] =
      "/* Halves col .. col + 7 of a row, 16-byte aligned and inside it: one 16-byte load. */\n"
      "__device__ __forceinline__ void ld8u(unsigned *v, const rb_half *row, int col) {\n"
      "  asm(\"ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
      "      : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"l\"(row + col));\n"
      "}\n\n"
      "/* Halves col .. col + 7 of a row of K as four half pairs; 0 past K. With K % 8 == 0 every\n"
      " * row of x and h starts 16-byte aligned (the kernel traps on a base that is not), so one\n"
      " * 16-byte load serves; the element loads are for odd K alone. An unaligned fallback cost\n"
      " * 60% of the register kernels' compile time (KERNEL_NOTES.md, 2026-12-02). */\n"
      "__device__ __forceinline__ void ld8(unsigned *v, const rb_half *row, int col) {\n"
      "  if (K % 8 == 0) {\n"
      "    if (col < K)\n"
      "      ld8u(v, row, col);\n"
      "    else\n"
      "      v[0] = v[1] = v[2] = v[3] = 0u;\n"
      "  } else {\n"
      "#pragma unroll\n"
      "    for (int i = 0; i < 4; ++i) {\n"
      "      const unsigned lo = col + 2 * i < K ? row[col + 2 * i] : 0u;\n"
      "      const unsigned hi = col + 2 * i + 1 < K ? row[col + 2 * i + 1] : 0u;\n"
      "      v[i] = lo | hi << 16;\n"
      "    }\n"
      "  }\n"
      "}\n\n";

void cg_linear_emit_shape(RbBuf *b, const CgOp *s, const CgLinearPlan *pl) {
  rb_buf_printf(b, "#define K %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define C256 %d  /* 256-column groups of K */\n", pl->C256);
  rb_buf_printf(b, "#define PATHS %d\n", s->paths);
  rb_buf_printf(b, "#define NTOT %d  /* rows of all segments */\n", pl->ntot);
  rb_buf_printf(b, "#define TT %d  /* 16-row tiles of all segments */\n", pl->TT);
  rb_buf_printf(b, "#define NSB %d  /* segments a block works on (2: swiglu gate and up) */\n", pl->nsb);
}

const char cg_linear_mma_helpers[] =
    "__device__ __forceinline__ void mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) {\n"
    "  asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 \"\n"
    "               \"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\"\n"
    "               : \"+f\"(c[0]), \"+f\"(c[1]), \"+f\"(c[2]), \"+f\"(c[3])\n"
    "               : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b0), \"r\"(b1));\n"
    "}\n\n";

const char cg_linear_bits_helpers[] =
    "/* The 16 bytes of bits a lane owns in one tile and 256-column group: read once. */\n"
    "__device__ __forceinline__ void ldbits(unsigned *v, const unsigned *p) {\n"
    "  asm(\"ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
    "      : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"l\"(p));\n"
    "}\n\n"
    "__device__ __forceinline__ unsigned hmul2(unsigned a, unsigned b) {\n"
    "  unsigned d;\n"
    "  asm(\"mul.rn.f16x2 %0, %1, %2;\" : \"=r\"(d) : \"r\"(a), \"r\"(b));\n"
    "  return d;\n"
    "}\n\n";

/* The bit ring (tile[2] = STAGES > 0): each warp keeps STAGES groups of its bits in
 * flight through its own slots of shared memory, copied with cp.async (L2 only), where
 * the plain form has one group ahead in registers. More bytes in flight per SM without
 * more registers: what a latency-bound stream wants. A lane reads back only the 16
 * bytes it copied, so no barrier is needed, only its own cp.async.wait_group. */
static const char ring_helpers[] =
    "__device__ __forceinline__ unsigned smem_addr(const void *p) {\n"
    "  unsigned long long a;\n"
    "  asm(\"cvta.to.shared.u64 %0, %1;\" : \"=l\"(a) : \"l\"(p));\n"
    "  return (unsigned)a;\n"
    "}\n\n"
    "/* 16 bytes of bits from global memory to this lane's ring slot, asynchronously. */\n"
    "__device__ __forceinline__ void cpbits(unsigned char *dst, const unsigned *src) {\n"
    "  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16;\" :: \"r\"(smem_addr(dst)), \"l\"(src) : \"memory\");\n"
    "}\n\n"
    "__device__ __forceinline__ void cp_commit() { asm volatile(\"cp.async.commit_group;\" ::: \"memory\"); }\n\n"
    "/* Until at most N of this thread's newest groups are still in flight. */\n"
    "template <int N>\n"
    "__device__ __forceinline__ void cp_wait() { asm volatile(\"cp.async.wait_group %0;\" :: \"n\"(N) : \"memory\"); }\n\n"
    "__device__ __forceinline__ void ldsbits(unsigned *v, const unsigned char *p) {\n"
    "  asm volatile(\"ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
    "               : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"r\"(smem_addr(p)) : \"memory\");\n"
    "}\n\n";

/* kloop's start under the ring: STAGES - 1 groups issued, then per group: wait for it,
 * read it into registers, issue the group STAGES - 1 ahead into the slot read last. */
static const char ring_prologue[] =
    "  extern __shared__ __align__(16) unsigned char shared_base[]; /* the kernel's red[] too */\n"
    "  /* this lane's slots: (stage, word) at ring + (stage * NWB + word) * 512 */\n"
    "  unsigned char *ring = shared_base + RED_BYTES + (size_t)ks * STAGES * NWB * 512 + lane * 16;\n"
    "  unsigned wc[PATHS][NSB][RT][4];\n"
    "  int c = ks;\n"
    "#pragma unroll\n"
    "  for (int st = 0; st < STAGES - 1; ++st) {\n"
    "    if (c + st * KS < C256)\n"
    "#pragma unroll\n"
    "      for (int p = 0; p < PATHS; ++p)\n"
    "#pragma unroll\n"
    "        for (int sb = 0; sb < NSB; ++sb)\n"
    "#pragma unroll\n"
    "          for (int rt = 0; rt < RT; ++rt)\n"
    "            cpbits(ring + (st * NWB + (p * NSB + sb) * RT + rt) * 512,\n"
    "                   bp[sb][rt] + ((size_t)p * TT * C256 + c + st * KS) * 128);\n"
    "    cp_commit(); /* empty past K: the groups still count */\n"
    "  }\n"
    "  rb_grid_enter(); /* x is the previous kernel's output; the bits and g above are not */\n"
    "  unsigned xv[NBU][8], hv[PATHS][NSB][8];\n"
    "  if (c < C256) ldxh<NBU>(xv, hv, xr, h, seg0, c * 256 + tig * 16);\n"
    "  for (int it = 0; c < C256; c += KS, ++it) {\n"
    "    cp_wait<STAGES - 2>(); /* this group has landed */\n"
    "    const int now = it % STAGES, ahead = (it + STAGES - 1) % STAGES;\n"
    "#pragma unroll\n"
    "    for (int p = 0; p < PATHS; ++p)\n"
    "#pragma unroll\n"
    "      for (int sb = 0; sb < NSB; ++sb)\n"
    "#pragma unroll\n"
    "        for (int rt = 0; rt < RT; ++rt) {\n"
    "          const int wd = (p * NSB + sb) * RT + rt;\n"
    "          ldsbits(wc[p][sb][rt], ring + (now * NWB + wd) * 512);\n"
    "          if (c + (STAGES - 1) * KS < C256) /* into the slot read one group ago */\n"
    "            cpbits(ring + (ahead * NWB + wd) * 512, bp[sb][rt] + ((size_t)p * TT * C256 + c + (STAGES - 1) * KS) * 128);\n"
    "        }\n"
    "    cp_commit();\n";

static void emit_reg(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry) {
  const int norm = s->eps > 0; /* a fused rmsnorm (CgOp.eps) */
  rb_buf_puts(b,
      "/* Register design: a warp owns RT 16-row tiles and every KS-th 256-column group\n"
      " * of K. Per group it streams one 16-byte word set per tile and path (loaded one\n"
      " * group ahead), builds the B fragments of u_p = h_p .* x from two 16-byte loads\n"
      " * of x and of h_p per 64 columns (HMUL2; the layout permutes columns so that a\n"
      " * lane's fragments are contiguous), decodes each A register to +-g_p with one\n"
      " * shift and one LOP3, and accumulates every path in one fp32 mma accumulator\n"
      " * set. The KS warps of a block reduce through shared memory in a fixed order. */\n\n");
  if (norm)
    rb_buf_puts(b,
        "/* A fused rmsnorm: x is the norm's input and h_p holds h_p .* w. Each warp sums x.x\n"
        " * per batch row of its columns with one more mma a k16 step (A = the x fragment in\n"
        " * rows 0..7: the Gram matrix of the batch rows, whose diagonal is wanted; exact fp16\n"
        " * products, fp32 sums), reduced with the partial sums; each output is scaled by\n"
        " * rsqrt(mean(x^2) + eps) of its row before the epilogue. */\n\n");
  if (pl->lop3)
    rb_buf_puts(b,
        "/* Strategy lop3: each A register is C + bit from one LOP3 on one of four forms of\n"
        " * the word (lop3_a below), summed per path; one mma a k16 step with the constant\n"
        " * fragment F per path turns the sums into minus half the signed sums, and -2 g_p\n"
        " * multiplies at the end of the K loop. */\n\n");
  rb_buf_puts(b, cg_linear_mma_helpers);
  if (pl->lop3) cg_lop3_emit_helpers(b);
  cg_linear_emit_shape(b, s, pl);
  rb_buf_printf(b, "#define RT %d  /* row tiles per block (every warp works on all of them) */\n", pl->RT);
  rb_buf_printf(b, "#define KS %d  /* warps splitting K */\n", pl->KS);
  rb_buf_printf(b, "#define BT %d  /* batch rows per block */\n", pl->BT);
  rb_buf_puts(b, "#define NB (BT / 8)  /* n8 tiles of the batch */\n");
  rb_buf_printf(b, "#define SETS %d  /* accumulator sets: %s */\n", pl->lop3 ? s->paths : 2,
                pl->lop3 ? "one per path" : "every mma into set 0");
  rb_buf_puts(b, "#define NT (KS * 32)  /* threads per block */\n\n");
  if (norm) {
    char eps[48], invk[48];
    cg_cuda_lit_float(eps, s->eps);
    cg_cuda_lit_float(invk, (float)(1.0 / s->K));
    rb_buf_printf(b, "#define EPS %s  /* the fused rmsnorm's */\n#define INV_K %s\n", eps, invk);
    rb_buf_puts(b, "#define SSQ_FLOATS (KS * BT)  /* shared memory after the partial sums: each warp's x.x per row */\n\n");
  }
  if (pl->ST) {
    rb_buf_printf(b, "#define STAGES %d  /* groups of bits in flight per warp, through its ring in shared memory */\n",
                  pl->ST);
    rb_buf_puts(b, "#define NWB (PATHS * NSB * RT)  /* 16-byte words a lane owns per group */\n");
    rb_buf_printf(b, "#define RED_BYTES (KS * RT * NSB * NB * 512%s)  /* shared memory: the reduction's, then the rings */\n\n",
                  norm ? " + SSQ_FLOATS * 4" : "");
    rb_buf_puts(b, ring_helpers);
  }
  cg_linear_emit_segment_tables(b, s, pl, 1);
  cg_linear_emit_block_segment(b, pl);
  rb_buf_puts(b, cg_linear_ld8);
  rb_buf_puts(b, cg_linear_bits_helpers);
  rb_buf_puts(b,
      "/* Halves col .. col + 7 of a row whose col + 7 < K is known (K % 256 == 0, a live group):\n"
      " * one ld8u, without ld8's bound check, so that ptxas neither zeroes the registers nor\n"
      " * predicates the load (KERNEL_NOTES.md, 2026-12-04). */\n"
      "__device__ __forceinline__ void ld8in(unsigned *v, const rb_half *row, int col) {\n"
      "  if (K % 256 == 0)\n"
      "    ld8u(v, row, col);\n"
      "  else\n"
      "    ld8(v, row, col);\n"
      "}\n\n"
      "/* One lane's 16 columns col .. col + 15 of x and of every h_p, col in a live group. A\n"
      " * batch row past the batch reads row 0 (xr is clamped): its products reach only batch\n"
      " * columns that are never stored, and no lane branches on it. */\n"
      "template <int NBU>\n"
      "__device__ __forceinline__ void ldxh(unsigned (&xv)[NBU][8], unsigned (&hv)[PATHS][NSB][8],\n"
      "                                     const rb_half *const (&xr)[NBU], const rb_half *h, int seg0, int col) {\n"
      "#pragma unroll\n"
      "  for (int nb = 0; nb < NBU; ++nb) {\n"
      "    ld8in(xv[nb], xr[nb], col);\n"
      "    ld8in(xv[nb] + 4, xr[nb], col + 8);\n"
      "  }\n"
      "  const rb_half *hs = h + (size_t)seg0 * PATHS * K; /* one base: the rest are immediate offsets */\n"
      "#pragma unroll\n"
      "  for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) {\n"
      "      const rb_half *hp = hs + (size_t)(sb * PATHS + p) * K;\n"
      "      ld8in(hv[p][sb], hp, col);\n"
      "      ld8in(hv[p][sb] + 4, hp, col + 8);\n"
      "    }\n"
      "}\n\n");
  rb_buf_printf(b,
      "/* The K loop of one warp over NBU (<= NB) live n8 batch tiles. */\n"
      "template <int NBU>\n"
      "__device__ __forceinline__ void kloop(float (&acc)[RT][NSB][NB][SETS][4], %sconst rb_half *x,\n"
      "                                      const unsigned *bits, const rb_half *g, const rb_half *h,\n"
      "                                      int batch, int seg0, int tb, int b0) {\n",
      norm ? "float (&gram)[NB][4],\n                                      " : "");
  rb_buf_puts(b,
      "  const int lane = threadIdx.x & 31, ks = threadIdx.x >> 5;\n"
      "  const int gid = lane >> 2, tig = lane & 3;\n"
      "  const int nrows = seg_rows(seg0), ntile = (nrows + 15) / 16;\n"
      "  /* g_p of this lane's rows gid and gid + 8 as half pairs; 0 past the segment. */\n"
      "  unsigned g2[PATHS][NSB][RT][2];\n"
      "  const unsigned *bp[NSB][RT];\n"
      "#pragma unroll\n"
      "  for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "    for (int rt = 0; rt < RT; ++rt) {\n"
      "      const int tl = tb + rt < ntile ? tb + rt : ntile - 1; /* a dead tile reads a live one, g = 0 */\n"
      "      bp[sb][rt] = bits + (size_t)(seg_tile0(seg0 + sb) + tl) * C256 * 128 + lane * 4;\n"
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int hi = 0; hi < 2; ++hi) {\n"
      "          const int n = (tb + rt) * 16 + gid + 8 * hi;\n"
      "          const unsigned gv = n < nrows ? g[(size_t)p * NTOT + seg_row0(seg0 + sb) + n] : 0u;\n"
      "          g2[p][sb][rt][hi] = gv | gv << 16;\n"
      "        }\n"
      "    }\n"
      "  const rb_half *xr[NBU]; /* rows of x, clamped to row 0 when past the batch */\n"
      "#pragma unroll\n"
      "  for (int nb = 0; nb < NBU; ++nb) {\n"
      "    const int row = b0 + nb * 8 + gid;\n"
      "    xr[nb] = x + (size_t)(row < batch ? row : 0) * K;\n"
      "  }\n"
      "\n");
  if (pl->lop3)
    rb_buf_puts(b,
        "  const unsigned F[4] = LOP3_FIX;\n"
        "  unsigned con[4]; /* C of registers 0..3, in registers (lop3_con) */\n"
        "#pragma unroll\n"
        "  for (int q = 0; q < 4; ++q) con[q] = lop3_con[q];\n"
        "  float fix[NSB][NB][PATHS][4]; /* sum of F . u per path: the C parts, negated, plus 1/2 */\n"
        "#pragma unroll\n"
        "  for (int i = 0; i < NSB * NB * PATHS * 4; ++i) (&fix[0][0][0][0])[i] = 0.0f;\n\n");
  if (pl->ST) {
    rb_buf_puts(b, ring_prologue);
  } else {
    rb_buf_puts(b,
      "  unsigned wc[PATHS][NSB][RT][4], wn[PATHS][NSB][RT][4];\n"
      "  int c = ks;\n"
      "  if (c < C256)\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt)\n"
      "          ldbits(wc[p][sb][rt], bp[sb][rt] + ((size_t)p * TT * C256 + c) * 128);\n"
      "  rb_grid_enter(); /* x is the previous kernel's output; the bits and g above are not */\n"
      "  unsigned xv[NBU][8], hv[PATHS][NSB][8];\n"
      "  if (c < C256) ldxh<NBU>(xv, hv, xr, h, seg0, c * 256 + tig * 16);\n"
      "  for (; c < C256; c += KS) {\n"
      "    if (c + KS < C256) /* the next group's bits, in flight while this one computes */\n"
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "          for (int rt = 0; rt < RT; ++rt)\n"
      "            ldbits(wn[p][sb][rt], bp[sb][rt] + ((size_t)p * TT * C256 + c + KS) * 128);\n");
  }
  rb_buf_puts(b,
      "#pragma unroll\n"
      "    for (int j = 0; j < 4; ++j) { /* 64-column steps */\n"
      "      /* x and h of the next step: L2 round trips in flight while this step computes. After\n"
      "       * the warp's last group it reads its own group's first step again (L1 hits, never used):\n"
      "       * no branch and no zeroed registers (KERNEL_NOTES.md, 2026-12-04). */\n"
      "      const int cn = j < 3 || c + KS >= C256 ? c : c + KS;\n"
      "      unsigned xn[NBU][8], hn[PATHS][NSB][8];\n"
      "      ldxh<NBU>(xn, hn, xr, h, seg0, cn * 256 + ((j + 1) & 3) * 64 + tig * 16);\n");
  if (norm)
    rb_buf_puts(b,
      "#pragma unroll\n"
      "      for (int nb = 0; nb < NBU; ++nb) /* x.x of this step: the Gram fragment's diagonal */\n"
      "#pragma unroll\n"
      "        for (int s = 0; s < 4; ++s) {\n"
      "          const unsigned a[4] = {xv[nb][2 * s], 0u, xv[nb][2 * s + 1], 0u};\n"
      "          mma16816(gram[nb], a, xv[nb][2 * s], xv[nb][2 * s + 1]);\n"
      "        }\n");
  rb_buf_puts(b,
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb) {\n"
      "          unsigned u[NBU][8];\n"
      "#pragma unroll\n"
      "          for (int nb = 0; nb < NBU; ++nb)\n"
      "#pragma unroll\n"
      "            for (int m = 0; m < 8; ++m) u[nb][m] = hmul2(xv[nb][m], hv[p][sb][m]);\n"
      "#pragma unroll\n"
      "          for (int rt = 0; rt < RT; ++rt) {\n");
  if (pl->lop3)
    rb_buf_puts(b,
      "            unsigned v[4];\n"
      "            lop3_forms(v, wc[p][sb][rt][j]);\n"
      "#pragma unroll\n"
      "            for (int s = 0; s < 4; ++s) { /* k16 steps */\n"
      "              unsigned a[4];\n"
      "              lop3_a(a, v, con, s);\n"
      "#pragma unroll\n"
      "              for (int nb = 0; nb < NBU; ++nb)\n"
      "                mma16816(acc[rt][sb][nb][p], a, u[nb][2 * s], u[nb][2 * s + 1]);\n"
      "            }\n"
      "          }\n"
      "#pragma unroll\n"
      "          for (int s = 0; s < 4; ++s) /* the C parts out, once for all row tiles */\n"
      "#pragma unroll\n"
      "            for (int nb = 0; nb < NBU; ++nb)\n"
      "              mma16816(fix[sb][nb][p], F, u[nb][2 * s], u[nb][2 * s + 1]);\n"
      "        }\n");
  else
    rb_buf_puts(b,
      "            const unsigned w = wc[p][sb][rt][j];\n"
      "#pragma unroll\n"
      "            for (int s = 0; s < 4; ++s) { /* k16 steps */\n"
      "              /* Register q takes bits 4s+q and 4s+q+16 to the fp16 sign bits 15 and 31 of +-g. */\n"
      "              unsigned a[4];\n"
      "#pragma unroll\n"
      "              for (int q = 0; q < 4; ++q)\n"
      "                a[q] = ((w << (15 - (4 * s + q))) & 0x80008000u) ^ g2[p][sb][rt][q & 1];\n"
      "#pragma unroll\n"
      "              for (int nb = 0; nb < NBU; ++nb)\n"
      "                mma16816(acc[rt][sb][nb][0], a, u[nb][2 * s], u[nb][2 * s + 1]);\n"
      "            }\n"
      "          }\n"
      "        }\n");
  rb_buf_puts(b,
      "#pragma unroll\n"
      "      for (int m = 0; m < 8; ++m) {\n"
      "#pragma unroll\n"
      "        for (int nb = 0; nb < NBU; ++nb) xv[nb][m] = xn[nb][m];\n"
      "#pragma unroll\n"
      "        for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "          for (int sb = 0; sb < NSB; ++sb) hv[p][sb][m] = hn[p][sb][m];\n"
      "      }\n"
      "    }\n");
  if (!pl->ST)
    rb_buf_puts(b,
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "          for (int i = 0; i < 4; ++i) wc[p][sb][rt][i] = wn[p][sb][rt][i];\n");
  rb_buf_puts(b, "  }\n");
  if (pl->ST) rb_buf_puts(b, "  cp_wait<0>(); /* nothing in flight when the block moves on */\n");
  if (pl->lop3)
    rb_buf_puts(b,
        "  /* Set 0 := -2 sum_p g_p (acc_p + fix_p) = sum_p g_p sum s u_p (a set bit is -1): what the\n"
        "   * xor kernel's set 0 holds. */\n"
        "#pragma unroll\n"
        "  for (int rt = 0; rt < RT; ++rt)\n"
        "#pragma unroll\n"
        "    for (int sb = 0; sb < NSB; ++sb)\n"
        "#pragma unroll\n"
        "      for (int nb = 0; nb < NB; ++nb)\n"
        "#pragma unroll\n"
        "        for (int e = 0; e < 4; ++e) {\n"
        "          float v = 0.0f;\n"
        "#pragma unroll\n"
        "          for (int p = 0; p < PATHS; ++p)\n"
        "            v += rb_h2f((rb_half)g2[p][sb][rt][e >> 1]) * (acc[rt][sb][nb][p][e] + fix[sb][nb][p][e]);\n"
        "          acc[rt][sb][nb][0][e] = -2.0f * v;\n"
        "        }\n");
  rb_buf_puts(b, "}\n\n");
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NT)\n"
      "%s(rb_half *y, const rb_half *x, const unsigned *bits, const rb_half *g, const rb_half *h,\n"
      "    const rb_half *res, int batch) {\n"
      "  /* weights first: kloop issues the first bits and g loads, then waits for the previous\n"
      "   * kernel (rb_grid_enter) before it reads x; nothing is written before that. */\n",
      entry);
  rb_buf_puts(b,
      "  extern __shared__ __align__(16) float red[]; /* (KS, RT, NSB, NB, 4, 32) partial sums */\n"
      "  const int lane = threadIdx.x & 31, ks = threadIdx.x >> 5;\n"
      "  int seg0, first;\n"
      "  block_segment(blockIdx.x, &seg0, &first);\n"
      "  const int nrows = seg_rows(seg0);\n"
      "  const int tb = ((int)blockIdx.x - first) * RT; /* the block's first tile within the segment */\n"
      "  const int b0 = blockIdx.y * BT;\n"
      "  /* ld8's 16-byte loads need x and h 16-byte aligned (every buffer of the runtime is). */\n"
      "  if (K % 8 == 0 && (((unsigned long long)x | (unsigned long long)h) & 15ull)) __trap();\n"
      "\n"
      "  /* (row tile, segment, n8 tile, set, fragment). xor: every mma accumulates into set 0;\n"
      "   * set 1 stays 0 and the reduction below still adds it: dropping it changes the SASS.\n"
      "   * lop3: one set per path, folded into set 0 at the end of the K loop. */\n"
      "  float acc[RT][NSB][NB][SETS][4];\n"
      "#pragma unroll\n"
      "  for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < SETS * 4; ++e) acc[rt][sb][nb][e >> 2][e & 3] = 0.0f;\n");
  if (norm)
    rb_buf_puts(b,
        "  float gram[NB][4]; /* x x^T of the n8 tiles' rows over this warp's columns */\n"
        "#pragma unroll\n"
        "  for (int e = 0; e < NB * 4; ++e) gram[e >> 2][e & 3] = 0.0f;\n");
  const char *accs = norm ? "acc, gram" : "acc";
  if (pl->short_tile)
    rb_buf_printf(b,
        "  if (batch - b0 <= 8) /* only the first n8 tile is live: skip the other's loads and mma */\n"
        "    kloop<1>(%s, x, bits, g, h, batch, seg0, tb, b0);\n"
        "  else\n"
        "    kloop<NB>(%s, x, bits, g, h, batch, seg0, tb, b0);\n", accs, accs);
  else
    rb_buf_printf(b, "  kloop<%s>(%s, x, bits, g, h, batch, seg0, tb, b0);\n", pl->BT > 8 ? "NB" : "1", accs);
  if (norm)
    rb_buf_puts(b,
        "  /* The diagonal: row i of tile nb is lane (i, i / 2)'s element i % 2. */\n"
        "  float *ssq = red + KS * RT * NSB * NB * 128; /* (KS, BT) */\n"
        "  {\n"
        "    const int gid = lane >> 2, tig = lane & 3;\n"
        "#pragma unroll\n"
        "    for (int nb = 0; nb < NB; ++nb)\n"
        "      if (tig == gid >> 1) ssq[ks * BT + nb * 8 + gid] = gram[nb][gid & 1];\n"
        "  }\n");
  rb_buf_puts(b,
      "\n"
      "#pragma unroll\n"
      "  for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < 4; ++e)\n"
      "          red[((((ks * RT + rt) * NSB + sb) * NB + nb) * 4 + e) * 32 + lane] = ");
  rb_buf_puts(b, pl->lop3 ? "acc[rt][sb][nb][0][e];\n" : "acc[rt][sb][nb][0][e] + acc[rt][sb][nb][1][e];\n");
  rb_buf_puts(b,
      "  __syncthreads();\n"
      "  /* Thread t sums element t over the KS warps in order and stores it. Accumulator e of\n"
      "   * lane l is row (l >> 2) + 8 (e >> 1), batch column 2 (l & 3) + (e & 1). */\n"
      "  for (int t = threadIdx.x; t < RT * NB * 128; t += NT) {\n"
      "    const int rt = t / (NB * 128), nb = t / 128 % NB, e = t / 32 % 4, l = t % 32;\n"
      "    const int n = (tb + rt) * 16 + (l >> 2) + 8 * (e >> 1), brow = b0 + nb * 8 + 2 * (l & 3) + (e & 1);\n"
      "    if (n >= nrows || brow >= batch) continue;\n"
      "    float v[NSB];\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) {\n"
      "      v[sb] = 0.0f;\n"
      "      for (int k = 0; k < KS; ++k) v[sb] += red[((((k * RT + rt) * NSB + sb) * NB + nb) * 4 + e) * 32 + l];\n"
      "    }\n");
  if (norm)
    rb_buf_puts(b,
      "    float xx = 0.0f; /* the row's x.x, over the KS warps in order */\n"
      "    for (int k = 0; k < KS; ++k) xx += ssq[k * BT + brow - b0];\n"
      "    const float r = rsqrtf(xx * INV_K + EPS);\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) v[sb] *= r;\n");
  cg_linear_emit_store(b, s, "    ", "v[0]", "v[NSB - 1]");
  rb_buf_puts(b, "  }\n}\n\n");
}

/* ---- the staged design (strategy mma with batch tiles of 32 or 64) ---- */

static void emit_mma(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry) {
  rb_buf_puts(b,
      "/* Staged design: a warp owns one 16-row tile and a batch tile of BT rows.\n"
      " * Each lane loads one word per 64 columns holding exactly the signs of its\n"
      " * four m16n8k16 A fragments and decodes them to +-g_p in fp16 (shift, LOP3):\n"
      " * folding g_p (already fp16) into A keeps the products exact and lets all\n"
      " * paths share one fp32 accumulator set. B fragments come from u_p = h_p .* x,\n"
      " * staged in fp16 in shared memory per K chunk (row pitch KC + 4 halves:\n"
      " * conflict-free fragment reads). KS warps split K inside the block and hand\n"
      " * their sums to warp ks = 0 in a fixed order, so results are deterministic. */\n\n");
  rb_buf_puts(b, cg_linear_mma_helpers);
  rb_buf_printf(b, "#define K %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define C64 %d  /* 64-column steps of K (one bit word per lane each) */\n", pl->C64);
  rb_buf_printf(b, "#define C256 %d  /* 256-column groups of the bit layout */\n", pl->C256);
  rb_buf_printf(b, "#define PATHS %d\n", s->paths);
  rb_buf_printf(b, "#define NTOT %d  /* rows of all segments */\n", pl->ntot);
  rb_buf_printf(b, "#define TT %d  /* 16-row tiles of all segments */\n", pl->TT);
  rb_buf_printf(b, "#define NSB %d  /* segments a block works on (2: swiglu gate and up) */\n", pl->nsb);
  rb_buf_printf(b, "#define RT %d  /* row tiles per block */\n", pl->RT);
  rb_buf_printf(b, "#define KS %d  /* warps splitting K */\n", pl->KS);
  rb_buf_printf(b, "#define KC %d  /* columns of K staged per chunk */\n", pl->KC);
  rb_buf_puts(b, "#define CPC (KC / 64)\n");
  rb_buf_puts(b, "#define LDU (KC + 4)  /* u row pitch in halves: 2 words mod 32, conflict-free 8-byte fragment reads */\n");
  rb_buf_printf(b, "#define BT %d  /* batch rows per block */\n", pl->BT);
  rb_buf_puts(b, "#define NB (BT / 8)  /* n8 tiles of the batch */\n");
  rb_buf_puts(b, "#define NT (RT * KS * 32)  /* threads per block */\n\n");
  cg_linear_emit_segment_tables(b, s, pl, 1);
  cg_linear_emit_block_segment(b, pl);
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NT)\n"
      "%s(rb_half *y, const rb_half *x, const unsigned *bits, const rb_half *g, const rb_half *h,\n"
      "    const rb_half *res, int batch) {\n"
      "  rb_grid_enter();\n",
      entry);
  rb_buf_puts(b,
      "  extern __shared__ __align__(16) unsigned char smem[];\n"
      "  unsigned *us = (unsigned *)smem; /* (NSB, BT, LDU / 2) half pairs of u for one K chunk */\n"
      "  float *red = (float *)smem;       /* after the K loop: (KS - 1, RT, NSB, NB, 4, 32) */\n"
      "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
      "  const int gid = lane >> 2, tig = lane & 3;\n"
      "  const int rt = warp % RT, ks = warp / RT;\n"
      "  int seg0, first;\n"
      "  block_segment(blockIdx.x, &seg0, &first);\n"
      "  const int nrows = seg_rows(seg0);\n"
      "  const int tl = ((int)blockIdx.x - first) * RT + rt; /* this warp's tile within the segment */\n"
      "  const bool live = tl * 16 < nrows;\n"
      "  const int b0 = blockIdx.y * BT;\n"
      "\n"
      "  float acc[NSB][NB][4];\n"
      "#pragma unroll\n"
      "  for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "    for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "      for (int e = 0; e < 4; ++e) acc[sb][nb][e] = 0.0f;\n"
      "\n"
      "  for (int p = 0; p < PATHS; ++p) {\n"
      "    /* g_p of this lane's rows gid and gid + 8 as half pairs; 0 past the segment. */\n"
      "    unsigned g2[NSB][2];\n"
      "    const unsigned *bp[NSB];\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) {\n"
      "#pragma unroll\n"
      "      for (int hi = 0; hi < 2; ++hi) {\n"
      "        const int n = tl * 16 + gid + 8 * hi;\n"
      "        const unsigned gv = (live && n < nrows) ? g[(size_t)p * NTOT + seg_row0(seg0 + sb) + n] : 0u;\n"
      "        g2[sb][hi] = gv | gv << 16;\n"
      "      }\n"
      "      bp[sb] = bits + ((size_t)p * TT + seg_tile0(seg0 + sb) + tl) * C256 * 128 + lane * 4;\n"
      "    }\n"
      "\n"
      "    for (int c0 = 0; c0 < C64; c0 += CPC) {\n"
      "      __syncthreads(); /* the previous chunk's readers are done */\n"
      "      /* Stage u_p = h_p .* x in fp16, two columns per word; 0 past K and past the batch. */\n"
      "      /* A fixed, unrolled trip count lets the loads of several iterations overlap. */\n"
      "#pragma unroll 8\n"
      "      for (int it = 0; it < (NSB * BT * (KC / 2) + NT - 1) / NT; ++it) {\n"
      "        const int i = threadIdx.x + it * NT;\n"
      "        if (NSB * BT * (KC / 2) % NT != 0 && i >= NSB * BT * (KC / 2)) break;\n"
      "        const int sb = i / (BT * (KC / 2)), rem = i % (BT * (KC / 2));\n"
      "        const int bb = rem / (KC / 2), cc = 2 * (rem % (KC / 2)), col = c0 * 64 + cc;\n"
      "        const rb_half *hp = h + ((size_t)(seg0 + sb) * PATHS + p) * K;\n"
      "        float u0 = 0.0f, u1 = 0.0f;\n"
      "        if (b0 + bb < batch) {\n"
      "          const rb_half *xr = x + (size_t)(b0 + bb) * K;\n"
      "          if (K % 2 == 0 && col < K) { /* aligned pairs: one 32-bit load each */\n"
      "            const unsigned hv = *(const unsigned *)(hp + col), xv = *(const unsigned *)(xr + col);\n"
      "            u0 = rb_h2f((rb_half)hv) * rb_h2f((rb_half)xv);\n"
      "            u1 = rb_h2f((rb_half)(hv >> 16)) * rb_h2f((rb_half)(xv >> 16));\n"
      "          } else if (K % 2 != 0) {\n"
      "            if (col < K) u0 = rb_h2f(hp[col]) * rb_h2f(xr[col]);\n"
      "            if (col + 1 < K) u1 = rb_h2f(hp[col + 1]) * rb_h2f(xr[col + 1]);\n"
      "          }\n"
      "        }\n"
      "        us[(sb * BT + bb) * (LDU / 2) + cc / 2] = (unsigned)rb_f2h(u0) | (unsigned)rb_f2h(u1) << 16;\n"
      "      }\n"
      "      __syncthreads();\n"
      "      if (!live) continue;\n"
      "\n"
      "#pragma unroll 2\n"
      "      for (int cs = ks; cs < CPC; cs += KS) {\n"
      "        if (c0 + cs >= C64) break;\n"
      "        unsigned wb[NSB];\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb) wb[sb] = bp[sb][(size_t)((c0 + cs) >> 2) * 128 + ((c0 + cs) & 3)];\n"
      "#pragma unroll\n"
      "        for (int s = 0; s < 4; ++s) { /* k16 steps */\n"
      "#pragma unroll\n"
      "          for (int sb = 0; sb < NSB; ++sb) {\n"
      "            /* Register q takes bits 4s+q (even column) and 4s+q+16 (odd column) to the\n"
      "             * fp16 sign bits 15 and 31 of +-g: rows gid + 8 (q & 1), columns + 8 (q >> 1). */\n"
      "            unsigned a[4];\n"
      "#pragma unroll\n"
      "            for (int q = 0; q < 4; ++q)\n"
      "              a[q] = ((wb[sb] << (15 - (4 * s + q))) & 0x80008000u) ^ g2[sb][q & 1];\n"
      "#pragma unroll\n"
      "            for (int nb = 0; nb < NB; ++nb) {\n"
      "              /* permuted columns: b0 = 16 tig + 4 s + {0, 1}, b1 = + {2, 3} */\n"
      "              const unsigned *ur = us + (sb * BT + nb * 8 + gid) * (LDU / 2) + cs * 32 + tig * 8 + 2 * s;\n"
      "              mma16816(acc[sb][nb], a, ur[0], ur[1]);\n"
      "            }\n"
      "          }\n"
      "        }\n"
      "      }\n"
      "    }\n"
      "  }\n"
      "\n"
      "  if (KS > 1) {\n"
      "    __syncthreads(); /* u is dead: reuse it for the split-K partial sums */\n"
      "    if (ks > 0)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "          for (int e = 0; e < 4; ++e)\n"
      "            red[((((ks - 1) * RT + rt) * NSB + sb) * NB + nb) * 128 + e * 32 + lane] = acc[sb][nb][e];\n"
      "    __syncthreads();\n"
      "    if (ks == 0)\n"
      "      for (int k = 1; k < KS; ++k)\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "          for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "            for (int e = 0; e < 4; ++e)\n"
      "              acc[sb][nb][e] += red[((((k - 1) * RT + rt) * NSB + sb) * NB + nb) * 128 + e * 32 + lane];\n"
      "  }\n"
      "  if (ks != 0 || !live) return;\n"
      "\n"
      "  /* Epilogue: accumulator e is row gid + 8 (e >> 1), batch column 2 tig + (e & 1). */\n"
      "#pragma unroll\n"
      "  for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "    for (int e = 0; e < 4; ++e) {\n"
      "      const int n = tl * 16 + gid + 8 * (e >> 1), brow = b0 + nb * 8 + 2 * tig + (e & 1);\n"
      "      if (n < nrows && brow < batch) {\n");
  cg_linear_emit_store(b, s, "        ", "acc[0][nb][e]", "acc[NSB - 1][nb][e]");
  rb_buf_puts(b,
      "      }\n"
      "    }\n"
      "}\n");
}

/* ---- the dequant strategy: the bits expanded into the dense fp16 W_hat ---- */

/* Tile t of the layout -> its segment and its 16-row tile within the segment. */
static void emit_tile_segment(RbBuf *b, const CgOp *s, const CgLinearPlan *pl) {
  rb_buf_puts(b, "__device__ __forceinline__ void tile_segment(int t, int *seg, int *tl) {\n");
  for (int i = s->nseg - 1; i > 0; i--)
    rb_buf_printf(b, "  if (t >= %d) { *seg = %d; *tl = t - %d; return; }\n", pl->tile0[i], i, pl->tile0[i]);
  rb_buf_puts(b, "  *seg = 0;\n  *tl = t;\n}\n\n");
}

/* What both forms of the dequant kernel's steps share. */
static const char dequant_helpers[] =
    "/* The 16 bytes of bits a lane owns in one tile and 256-column group: read once. */\n"
    "__device__ __forceinline__ void dq_bits(unsigned (&w)[4], const unsigned *src) {\n"
    "  asm(\"ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
    "      : \"=r\"(w[0]), \"=r\"(w[1]), \"=r\"(w[2]), \"=r\"(w[3]) : \"l\"(src));\n"
    "}\n\n"
    "/* Word j of the four: j is the rolled step loop's counter, and a select chain keeps the\n"
    " * words in registers where an index would put them in local memory. */\n"
    "__device__ __forceinline__ unsigned dq_word(const unsigned (&w)[4], int j) {\n"
    "  return j == 0 ? w[0] : j == 1 ? w[1] : j == 2 ? w[2] : w[3];\n"
    "}\n\n"
    "/* One path's term of a column for rows n0 and n0 + 8: their signs are bits `bit` and\n"
    " * `bit + 1` of the word (row halves 0 and 1), times h_p of the column. */\n"
    "__device__ __forceinline__ void dq_fma(float &a0, float &a1, unsigned w, int bit, float hv, float g0, float g1) {\n"
    "  a0 = fmaf((w >> bit & 1u) ? -g0 : g0, hv, a0);\n"
    "  a1 = fmaf((w >> (bit + 1) & 1u) ? -g1 : g1, hv, a1);\n"
    "}\n\n";

/* The dequant kernel's steps for K % 16 == 0, where a row's 16-column pieces are whole 32-byte
 * sectors. A lane's own bits cover one sector a row (its 16 columns), but one 16-byte store
 * writes half of one, and half-sector writes were what bound the kernel (ncu: L2 throughput
 * 71%, DRAM 17%, stalls on the store queue; KERNEL_NOTES.md 2026-12-02). So the lanes of a pair
 * (tig, tig ^ 1) split both of their sectors: lane half e = tig & 1 computes columns 8 e .. 8 e + 7
 * of the pair's first sector (lane tig & ~1's) and of its second (lane tig | 1's), loading both
 * lanes' bits (the same bytes, so no more traffic), and each store instruction writes whole
 * sectors. */
static void emit_dequant_pairs(RbBuf *b) {
  rb_buf_puts(b,
      "  const int e = tig & 1; /* the half of each of the pair's sectors this lane writes */\n"
      "  unsigned wb[2][PATHS][4]; /* the bits of the pair's lanes tig & ~1 and tig | 1 */\n"
      "#pragma unroll\n"
      "  for (int q = 0; q < 2; ++q)\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p) {\n"
      "      dq_bits(wb[q][p], bits + (((size_t)p * TT + t) * C256 + c) * 128 + (gid * 4 + (tig & ~1) + q) * 4);\n"
      "    }\n"
      "  /* Not unrolled: each step is 16 x PATHS x 2 fmaf and 4 stores, and the other warps of\n"
      "   * the SM hide its loads; unrolled, the kernel took 2x the compile (0.15 s a kernel). */\n"
      "#pragma unroll 1\n"
      "  for (int j = 0; j < 4; ++j) {\n"
      "    const int pair0 = c * 256 + j * 64 + (tig & ~1) * 16; /* the pair's first sector */\n"
      "    if (pair0 >= K) break;\n"
      "#pragma unroll\n"
      "    for (int q = 0; q < 2; ++q) {\n"
      "      const int col = pair0 + 16 * q + 8 * e; /* this lane's 8 columns of sector q */\n"
      "      if (col >= K) break; /* sector 1 past K (then so is the rest of the pair's step) */\n"
      "      float a0[8], a1[8];\n"
      "#pragma unroll\n"
      "      for (int o = 0; o < 8; ++o) a0[o] = a1[o] = 0.0f;\n"
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p) {\n"
      "        /* Word j of sector q's lane, moved so that column o of this half is bit\n"
      "         * (o & ~1) + 16 (o & 1) (row half 0) and the next bit (row half 1). */\n"
      "        const unsigned wj = dq_word(wb[q][p], j) >> (8 * e);\n"
      "        unsigned v[4];\n"
      "        asm(\"ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
      "            : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"l\"(h + ((size_t)seg * PATHS + p) * K + col));\n"
      "#pragma unroll\n"
      "        for (int o = 0; o < 8; ++o)\n"
      "          dq_fma(a0[o], a1[o], wj, (o & ~1) + 16 * (o & 1), rb_h2f((rb_half)(v[o >> 1] >> (16 * (o & 1)))), g0[p], g1[p]);\n"
      "      }\n"
      "      unsigned v0[4], v1[4];\n"
      "#pragma unroll\n"
      "      for (int i = 0; i < 4; ++i) {\n"
      "        v0[i] = (unsigned)rb_f2h(a0[2 * i]) | (unsigned)rb_f2h(a0[2 * i + 1]) << 16;\n"
      "        v1[i] = (unsigned)rb_f2h(a1[2 * i]) | (unsigned)rb_f2h(a1[2 * i + 1]) << 16;\n"
      "      }\n"
      "      asm volatile(\"st.global.v4.u32 [%0], {%1, %2, %3, %4};\"\n"
      "                   :: \"l\"(w0 + col), \"r\"(v0[0]), \"r\"(v0[1]), \"r\"(v0[2]), \"r\"(v0[3]) : \"memory\");\n"
      "      if (live1)\n"
      "        asm volatile(\"st.global.v4.u32 [%0], {%1, %2, %3, %4};\"\n"
      "                     :: \"l\"(w1 + col), \"r\"(v1[0]), \"r\"(v1[1]), \"r\"(v1[2]), \"r\"(v1[3]) : \"memory\");\n"
      "    }\n"
      "  }\n");
}

/* The dequant kernel's steps for K % 16 != 0: each lane its own 16 columns, element stores. */
static void emit_dequant_lanes(RbBuf *b) {
  rb_buf_puts(b,
      "  unsigned wb[PATHS][4];\n"
      "#pragma unroll\n"
      "  for (int p = 0; p < PATHS; ++p) {\n"
      "    dq_bits(wb[p], bits + (((size_t)p * TT + t) * C256 + c) * 128 + lane * 4);\n"
      "  }\n"
      "#pragma unroll 1\n"
      "  for (int j = 0; j < 4; ++j) {\n"
      "    const int col0 = c * 256 + j * 64 + tig * 16;\n"
      "    if (col0 >= K) break;\n"
      "    float a0[16], a1[16];\n"
      "#pragma unroll\n"
      "    for (int o = 0; o < 16; ++o) a0[o] = a1[o] = 0.0f;\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p) {\n"
      "      const rb_half *hp = h + ((size_t)seg * PATHS + p) * K + col0;\n"
      "      const unsigned wj = dq_word(wb[p], j);\n"
      "#pragma unroll\n"
      "      for (int o = 0; o < 16; ++o)\n"
      "        dq_fma(a0[o], a1[o], wj, (o & ~1) + 16 * (o & 1), col0 + o < K ? rb_h2f(hp[o]) : 0.0f, g0[p], g1[p]);\n"
      "    }\n"
      "#pragma unroll\n"
      "    for (int o = 0; o < 16; ++o)\n"
      "      if (col0 + o < K) {\n"
      "        w0[col0 + o] = rb_f2h(a0[o]);\n"
      "        if (live1) w1[col0 + o] = rb_f2h(a1[o]);\n"
      "      }\n"
      "  }\n");
}

static void emit_dequant(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry) {
  rb_buf_puts(b,
      "/* Dequantize: W_hat (NTOT, K) fp16, row-major, = sum_p diag(g_p) B_p diag(h_p), read from the\n"
      " * kernel layout every bucket shares. A warp expands one (16-row tile, 256-column group):\n"
      " * lane (gid, tig) holds 16 bytes of bits per path, one word per 64-column step j, which\n"
      " * are exactly rows gid and gid + 8 at the 16 columns 256 c + 64 j + 16 tig .. + 15 (the\n"
      " * layout's permutation, see the repack): column o of the 16, row half rh is bit\n"
      " * (o & ~1) + rh + 16 (o & 1). The warp writes 16 rows of 128 contiguous bytes per step,\n"
      " * so the stores, the traffic that matters (2 bytes a weight against k/8 read), coalesce;\n"
      " * with K % 16 == 0 each store writes whole 32-byte sectors (the lane pairs, see the loop).\n"
      " * Each element is fmaf(+-g_p, h_p, acc) over the paths in order from 0, in fp32, then\n"
      " * rounded to nearest even: the bits a CPU loop of the same fmaf gives. Pad rows and\n"
      " * columns are not written; W_hat holds no pad. The GEMM that follows is the runtime's. */\n\n");
  rb_buf_printf(b, "#define K %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define C256 %d  /* 256-column groups of the bit layout */\n", pl->C256);
  rb_buf_printf(b, "#define PATHS %d\n", s->paths);
  rb_buf_printf(b, "#define NTOT %d  /* rows of all segments: W_hat's rows */\n", pl->ntot);
  rb_buf_printf(b, "#define TT %d  /* 16-row tiles of all segments */\n", pl->TT);
  rb_buf_printf(b, "#define WPB %d  /* warps per block, one (tile, group) each */\n\n", pl->WPB);
  cg_linear_emit_segment_tables(b, s, pl, 1);
  emit_tile_segment(b, s, pl);
  rb_buf_puts(b, dequant_helpers);
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(WPB * 32)\n"
      "%s(rb_half *w, const unsigned *bits, const rb_half *g, const rb_half *h) {\n"
      "  rb_grid_enter();\n",
      entry);
  rb_buf_puts(b,
      "  const int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;\n"
      "  const int item = blockIdx.x * WPB + (threadIdx.x >> 5);\n"
      "  if (item >= TT * C256) return;\n"
      "  const int t = item / C256, c = item % C256;\n"
      "  int seg, tl;\n"
      "  tile_segment(t, &seg, &tl);\n"
      "  const int nrows = seg_rows(seg), n0 = tl * 16 + gid; /* this lane's rows n0, n0 + 8 of the segment */\n"
      "  const bool live0 = n0 < nrows, live1 = n0 + 8 < nrows;\n"
      "  if (!live0) return; /* a pad row, and so is n0 + 8 */\n"
      "  float g0[PATHS], g1[PATHS];\n"
      "#pragma unroll\n"
      "  for (int p = 0; p < PATHS; ++p) {\n"
      "    const rb_half *gp = g + (size_t)p * NTOT + seg_row0(seg);\n"
      "    g0[p] = rb_h2f(gp[n0]);\n"
      "    g1[p] = live1 ? rb_h2f(gp[n0 + 8]) : 0.0f;\n"
      "  }\n"
      "  rb_half *w0 = w + (size_t)(seg_row0(seg) + n0) * K, *w1 = w0 + (size_t)8 * K;\n");
  if (s->K % 16 == 0)
    emit_dequant_pairs(b);
  else
    emit_dequant_lanes(b);
  rb_buf_puts(b, "}\n");
}

/* Emit the linear kernel k. Returns RB_OK or RB_EUSER (message in err). */
int cg_emit_linear(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  CgLinearPlan pl;
  if (s->kind != CG_LINEAR) {
    rb_buf_printf(err, "cg_emit_linear: kernel is not a linear");
    return RB_EUSER;
  }
  int rc = cg_linear_plan(k, &pl, err);
  if (rc) return rc;
  cg_linear_entry_name(k, entry);
  const CgStrategy st = k->sched.strategy;
  cg_cuda_prelude(src, k, st == CG_STRAT_BMMA    ? "codegen/cuda/bmma.c"
                          : st == CG_STRAT_XSMEM ? "codegen/cuda/xsmem.c"
                                                 : "codegen/cuda/linear.c");
  if (st == CG_STRAT_DEQUANT)
    emit_dequant(s, &pl, src, entry);
  else if (st == CG_STRAT_BMMA)
    cg_bmma_emit(s, &pl, src, entry);
  else if (st == CG_STRAT_XSMEM)
    cg_xsmem_emit(s, &pl, src, entry);
  else if (pl.reg)
    emit_reg(s, &pl, src, entry);
  else
    emit_mma(s, &pl, src, entry);
  return src->oom ? RB_EINTERNAL : RB_OK;
}

/* The schedule a repack is resolved under: its layout is the same for every
 * strategy, so any valid one serves. */
static CgKernel repack_plan_kernel(const CgOp *op) {
  CgKernel k;
  memset(&k, 0, sizeof k);
  k.op = *op;
  k.sched.strategy = CG_STRAT_XOR;
  k.sched.batch_max = 1;
  return k;
}

/* Emit the repack kernel of k: canonical bits of one segment -> the kernel layout.
 * Its source depends only on the layout (N, K, paths), so the linears that
 * share a layout share one repack binary. */
int cg_emit_repack(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  CgLinearPlan pl;
  CgKernel rk = repack_plan_kernel(s);
  int st = cg_linear_plan(&rk, &pl, err);
  if (st) return st;
  /* Named and described as the layout alone (a repack kernel of the op), whatever
   * kernel of the layout asked: rb_repack_n.._k<K>_p<paths>. */
  CgKernel lk;
  memset(&lk, 0, sizeof lk);
  lk.op = *s;
  lk.op.kind = CG_REPACK;
  lk.op.epilogue = CG_EPI_NONE;
  RbBuf name = {0};
  rb_buf_puts(&name, "rb_repack_");
  name_rows(&name, s);
  rb_buf_printf(&name, "_k%d_p%d", s->K, s->paths);
  cg_cuda_entry(&lk, name.data ? name.data : "rb_repack", 0, entry);
  int oom = name.oom;
  rb_buf_free(&name);
  cg_cuda_prelude(src, &lk, "codegen/cuda/linear.c");
  rb_buf_puts(src,
      "/* Canonical bits (paths, N[seg], W) of one segment -> (paths, TT, C256, 32, 4): one\n"
      " * thread gathers the 32 signs one lane's A fragments need for 64 columns. */\n\n");
  rb_buf_printf(src, "#define K %d\n#define W %d  /* words per canonical row */\n", s->K, pl.W);
  rb_buf_printf(src, "#define PATHS %d\n", s->paths);
  rb_buf_printf(src, "#define C256 %d\n#define TT %d\n", pl.C256, pl.TT);
  rb_buf_puts(src, "\n");
  cg_linear_emit_segment_tables(src, s, &pl, 1);
  rb_buf_printf(src, "extern \"C\" __global__ void %s(unsigned *dst, const unsigned *src, int seg) {\n",
                entry);
  rb_buf_puts(src,
      "  rb_grid_enter();\n"
      "  const int nrows = seg_rows(seg), ntile = (nrows + 15) / 16;\n"
      "  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
      "  if (i >= (size_t)PATHS * ntile * C256 * 128) return;\n"
      "  const int j = (int)(i % 4), lane = (int)(i / 4 % 32), c = (int)(i / 128 % C256);\n"
      "  const int tl = (int)(i / 128 / C256 % ntile), p = (int)(i / 128 / C256 / ntile);\n"
      "  const int gid = lane >> 2, tig = lane & 3;\n"
      "  unsigned word = 0;\n"
      "  for (int bit = 0; bit < 32; ++bit) {\n"
      "    /* bit r / r + 16 (r = 4 s + q): even / odd column of A register q in k16 step s,\n"
      "     * at the permuted column 16 tig + 4 s + 2 (q >> 1) of the 64-column step */\n"
      "    const int r = bit & 15, s = r >> 2, q = r & 3;\n"
      "    const int n = tl * 16 + gid + 8 * (q & 1);\n"
      "    const int col = c * 256 + j * 64 + tig * 16 + 4 * s + 2 * (q >> 1) + (bit >> 4);\n"
      "    if (n < nrows && col < K)\n"
      "      word |= (src[((size_t)p * nrows + n) * W + (col >> 5)] >> (col & 31) & 1u) << bit;\n"
      "  }\n"
      "  dst[(((size_t)p * TT + seg_tile0(seg) + tl) * C256 + c) * 128 + lane * 4 + j] = word;\n"
      "}\n");
  return oom || src->oom ? RB_EINTERNAL : RB_OK;
}

/* Launch geometry: n is the batch for CG_LINEAR. A repack is launched once
 * per segment over the largest segment's words (threads past a smaller
 * segment's return at once), so one geometry serves every segment. */
int cg_geometry_linear(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  const CgOp *s = &k->op;
  memset(g, 0, sizeof *g);
  CgLinearPlan pl;
  CgKernel rk = repack_plan_kernel(s);
  int st = cg_linear_plan(s->kind == CG_REPACK ? &rk : k, &pl, err);
  if (st) return st;
  g->grid[0] = g->grid[1] = g->grid[2] = g->block[1] = g->block[2] = 1;
  g->grow_axis = -1;
  if (s->kind == CG_REPACK) {
    size_t words = 0;
    for (int seg = 0; seg < s->nseg; seg++) {
      size_t w = (size_t)s->paths * pl.ntile[seg] * pl.C256 * 128;
      if (w > words) words = w;
    }
    g->block[0] = 256;
    g->grid[0] = (unsigned)((words + 255) / 256);
    return RB_OK;
  }
  g->block[0] = pl.threads;
  g->grid[0] = (unsigned)pl.blk0[pl.ngroup];
  g->smem = pl.smem;
  /* Fixed grids: over the weights (dequant); every batch row in each block (bmma, whose
   * buckets end at CG_BMMA_BATCH_MAX, below the last). */
  if (k->sched.strategy == CG_STRAT_DEQUANT || k->sched.strategy == CG_STRAT_BMMA) return RB_OK;
  g->grow_axis = 1;
  g->n_per_block = (unsigned)pl.BT;
  return RB_OK;
}

/* Bytes of the repacked bits (the kernel layout); 0 for an invalid op. */
uint64_t cg_layout_bytes_linear(const CgOp *op) {
  CgLinearPlan pl;
  RbBuf err = {0};
  CgKernel rk = repack_plan_kernel(op);
  int st = cg_linear_plan(&rk, &pl, &err);
  rb_buf_free(&err);
  if (st) return 0;
  return (uint64_t)op->paths * pl.TT * pl.C256 * 128 * 4;
}

/* The default batch buckets: batch 1 (decode) runs strategy bmma (bmma.c: 1.1-1.3x the read
 * floor on the H200, the xor kernel 1.7-3.1x); a bmma bucket of 4 measured slower than xor's
 * at 3 of the 4 Llama-2-7B shapes (RESULTS.md, 2026-12-02), so batches 2..8 run strategy xor
 * (the register design, one n8 batch tile), up to 16 (decode with several sequences) strategy mma in
 * the register design (batch tiles of 16), large ones (prefill, evaluation) the
 * dequant strategy: the bits expanded to fp16, then cuBLAS (per layer at batch 512
 * 7-8x the staged mma kernels' speed, KERNEL_NOTES.md; RABIT_PREFILL=mma keeps those). */
int cg_linear_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]) {
  static const struct { CgStrategy strat; int batch; } buckets[] = {
      {CG_STRAT_BMMA, 1}, {CG_STRAT_XOR, 8}, {CG_STRAT_MMA, 16}, {CG_STRAT_DEQUANT, 512}};
  (void)op;
  int n = (int)(sizeof buckets / sizeof buckets[0]);
  for (int i = 0; i < n; i++) {
    memset(&out[i], 0, sizeof out[i]);
    out[i].strategy = buckets[i].strat;
    out[i].batch_max = buckets[i].batch;
  }
  return n;
}

/* The buckets up to batch 16 (the register design's) can fold in the rmsnorm before them, in
 * their fp16 products; the bmma buckets exactly, in their planes pre-pass. */
int cg_linear_prenorm(const CgSchedule *s) {
  if (s->strategy == CG_STRAT_BMMA) return CG_PRENORM_EXACT; /* its planes pre-pass: bmma.c */
  return s->strategy != CG_STRAT_DEQUANT && s->batch_max <= 16 ? CG_PRENORM_KERNEL : 0;
}

/* ---- argument marshalling: the ABI of codegen.h ---- */

void cg_linear_argv(CgLinearArgs *a, CgArgv *o) { CG_ARGV(o, &a->y, &a->x, &a->bits, &a->g, &a->h, &a->res, &a->batch); }

void cg_dequant_argv(CgDequantArgs *a, CgArgv *o) { CG_ARGV(o, &a->w, &a->bits, &a->g, &a->h); }

void cg_repack_argv(CgRepackArgs *a, CgArgv *o) { CG_ARGV(o, &a->dst, &a->src, &a->seg); }
