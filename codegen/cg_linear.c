/* cg_linear.c: the residual binary linear y = sum_p g_p .* (B_p (h_p .* x)) and
 * the repack kernel that writes its bit layout, for both strategies (xor for
 * batch 1, mma for batches of 2 and more). Every shape, path count and tile
 * parameter is a compile-time constant of the emitted source.
 *
 * Kernel bit layouts (what CG_REPACK writes; cg_linear_bits_bytes is their size):
 *   xor: (paths, Ntot, W) words, W = ceil(K/32): the canonical layout with the
 *        segments concatenated along N for each path.
 *   mma: (paths, TT, C64, 32) words. TT counts 16-row tiles (each segment padded
 *        to a multiple of 16 rows, so no tile straddles two segments' h), C64 =
 *        ceil(K/64). Word (p, T, c, lane) holds exactly the 32 signs lane needs
 *        for the four m16n8k16 A fragments of tile T over columns 64c..64c+63:
 *        bit r and bit r+16 (r = 4s + q, s = k16 step, q = A register) are the
 *        even and odd column of register q, so one shift and one LOP3 decode a
 *        register. Pad rows and columns are 0.
 *
 * Tile parameters (0 = default):
 *   xor: tile[0] rows per warp (1..8), tile[1] warps per block (1..16),
 *        tile[2] words of K staged per chunk (multiple of 32).
 *   mma: tile[0] 16-row tiles per block, tile[1] warps splitting K inside the
 *        block (split-K with a deterministic shared-memory reduction),
 *        tile[2] columns of K staged per chunk (multiple of 64),
 *        tile[3] batch rows per block (8, 16, 32, 64); larger batches tile the grid's y. */
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"

#define SMEM_LIMIT 49152u /* default dynamic shared memory limit: no opt-in needed */

/* Everything the emitters derive from a spec, resolved once. */
typedef struct {
  int W, C64, ntot, nsb;      /* nsb: segments one block works on (2 for swiglu) */
  int row0[CG_MAX_SEG];       /* first row of each segment in Ntot */
  int ntile[CG_MAX_SEG], tile0[CG_MAX_SEG], TT; /* mma 16-row tiles */
  int ngroup;                 /* block groups: segments, or 1 (gate+up) for swiglu */
  int blk0[CG_MAX_SEG + 1];   /* first block of each group, then the total */
  int R, NW, KCW;             /* xor */
  int RT, KS, KC, BT;         /* mma */
  unsigned threads, smem;
} Plan;

static int div_up(int a, int b) { return (a + b - 1) / b; }

/* Check the spec and resolve the defaults. Returns RB_OK or RB_EUSER with a message. */
static int plan_make(const CgSpec *s, Plan *pl, RbBuf *err) {
  memset(pl, 0, sizeof *pl);
  if (s->strategy != CG_STRAT_XOR && s->strategy != CG_STRAT_MMA) {
    rb_buf_printf(err, "linear: unknown strategy %d", (int)s->strategy);
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
  if (s->K < 1 || s->K > (1 << 20) || s->batch_max < 1) {
    rb_buf_printf(err, "linear: bad K=%d or batch_max=%d", s->K, s->batch_max);
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
  pl->W = div_up(s->K, 32);
  pl->C64 = div_up(s->K, 64);
  pl->nsb = s->epilogue == CG_EPI_SWIGLU ? 2 : 1;
  pl->ngroup = s->epilogue == CG_EPI_SWIGLU ? 1 : s->nseg;
  for (int i = 0; i < s->nseg; i++) {
    pl->ntile[i] = div_up(s->N[i], 16);
    pl->tile0[i] = pl->TT;
    pl->TT += pl->ntile[i];
  }

  if (s->strategy == CG_STRAT_XOR) {
    pl->R = s->tile[0] ? s->tile[0] : 4;
    pl->NW = s->tile[1] ? s->tile[1] : 8; /* 8 beat 4 on H100 at 4096x4096 and 12288x4096 */
    int kcw = div_up(pl->W, 32) * 32;
    pl->KCW = s->tile[2] ? s->tile[2] : (kcw < 128 ? kcw : 128);
    if (pl->R < 1 || pl->R > 8 || pl->NW < 1 || pl->NW > 16 || pl->KCW < 32 || pl->KCW % 32) {
      rb_buf_printf(err, "linear xor: bad tile %d,%d,%d (rows/warp 1..8, warps 1..16, words multiple of 32)",
                    pl->R, pl->NW, pl->KCW);
      return RB_EUSER;
    }
    pl->threads = (unsigned)pl->NW * 32;
    pl->smem = (unsigned)pl->nsb * 32 * (pl->KCW + 1) * 4;
    int rows = pl->R * pl->NW;
    for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + div_up(s->N[gi], rows);
  } else {
    int bt = s->batch_max <= 8 ? 8 : s->batch_max <= 16 ? 16 : s->batch_max <= 32 ? 32 : 64;
    pl->BT = s->tile[3] ? s->tile[3] : bt;
    pl->KS = s->tile[1] ? s->tile[1] : (pl->BT <= 16 ? 4 : 2);
    pl->RT = s->tile[0] ? s->tile[0] : (pl->BT <= 16 ? 2 : 4);
    if (s->tile[2]) {
      pl->KC = s->tile[2];
    } else {
      /* The largest chunk whose u tile fits in 40 KB, capped at 1024 and at K. */
      int kc = (40960 / (pl->nsb * pl->BT * 2) - 8) / 64 * 64;
      if (kc > 1024) kc = 1024;
      if (kc > pl->C64 * 64) kc = pl->C64 * 64;
      if (kc < 64) kc = 64;
      pl->KC = kc;
      if (!s->tile[1] && pl->KS > kc / 64) pl->KS = kc / 64; /* no idle split-K warps */
    }
    if ((pl->BT != 8 && pl->BT != 16 && pl->BT != 32 && pl->BT != 64) || pl->RT < 1 || pl->KS < 1 ||
        pl->RT * pl->KS > 32 || pl->KC < 64 || pl->KC % 64) {
      rb_buf_printf(err, "linear mma: bad tile %d,%d,%d,%d (tiles, k-split, K chunk multiple of 64, batch 8..64)",
                    pl->RT, pl->KS, pl->KC, pl->BT);
      return RB_EUSER;
    }
    pl->threads = (unsigned)(pl->RT * pl->KS * 32);
    unsigned u = (unsigned)(pl->nsb * pl->BT * (pl->KC + 8) * 2);
    unsigned red = (unsigned)((pl->KS - 1) * pl->RT * pl->nsb * (pl->BT / 8) * 4 * 32 * 4);
    pl->smem = u > red ? u : red;
    for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + div_up(pl->ntile[gi], pl->RT);
  }
  if (pl->smem > SMEM_LIMIT) {
    rb_buf_printf(err, "linear: tile parameters need %u bytes of shared memory (limit %u)", pl->smem,
                  SMEM_LIMIT);
    return RB_EUSER;
  }
  return RB_OK;
}

/* FNV-1a 64: entry names derived from the spec, stable across runs and hosts. */
static unsigned long long fnv1a(const char *p, size_t n) {
  unsigned long long h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
  return h;
}

/* The layout description: what a repack kernel depends on (not tiles, batch or epilogue). */
static void layout_describe(const CgSpec *s, RbBuf *b) {
  rb_buf_printf(b, "repack %s N=", s->strategy == CG_STRAT_XOR ? "xor" : "mma");
  for (int i = 0; i < s->nseg; i++) rb_buf_printf(b, "%s%d", i ? "+" : "", s->N[i]);
  rb_buf_printf(b, " K=%d k=%d", s->K, s->paths);
}

static void make_entry(const char *prefix, const CgSpec *s, const RbBuf *key, char entry[64]) {
  unsigned long long h = fnv1a(key->data ? key->data : "", key->len);
  snprintf(entry, 64, "%s_%s_%016llx", prefix, s->strategy == CG_STRAT_XOR ? "xor" : "mma", h);
}

/* ---- pieces shared by the emitted sources ---- */

static const char prelude[] =
    "typedef unsigned short half_t; /* raw fp16 bits: no headers, so no cuda_fp16.h */\n"
    "\n"
    "__device__ __forceinline__ float h2f(half_t v) {\n"
    "  float f;\n"
    "  asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(v));\n"
    "  return f;\n"
    "}\n"
    "\n"
    "__device__ __forceinline__ half_t f2h(float f) {\n"
    "  half_t v;\n"
    "  asm(\"cvt.rn.f16.f32 %0, %1;\" : \"=h\"(v) : \"f\"(f));\n"
    "  return v;\n"
    "}\n"
    "\n";

/* Emit a ternary chain "(i == 0 ? v0 : i == 1 ? v1 : v2)" over n constants. */
static void emit_table(RbBuf *b, const char *var, const int *v, int n) {
  rb_buf_puts(b, "(");
  for (int i = 0; i < n - 1; i++) rb_buf_printf(b, "%s == %d ? %d : ", var, i, v[i]);
  rb_buf_printf(b, "%d)", v[n - 1]);
}

/* Segment tables as device functions of the segment index. */
static void emit_segment_tables(RbBuf *b, const CgSpec *s, const Plan *pl, int mma) {
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
static void emit_block_segment(RbBuf *b, const Plan *pl) {
  rb_buf_puts(b, "__device__ __forceinline__ void block_segment(int blk, int *seg, int *first) {\n");
  for (int gi = 0; gi < pl->ngroup - 1; gi++)
    rb_buf_printf(b, "  if (blk < %d) { *seg = %d; *first = %d; return; }\n", pl->blk0[gi + 1], gi,
                  pl->blk0[gi]);
  rb_buf_printf(b, "  *seg = %d;\n  *first = %d;\n}\n\n", pl->ngroup - 1, pl->blk0[pl->ngroup - 1]);
}

/* The store of one output element v (fp32) for batch row `brow`, row n of segment seg0. */
static void emit_store(RbBuf *b, const CgSpec *s, const char *ind, const char *v0, const char *v1) {
  switch (s->epilogue) {
  case CG_EPI_ADD:
    rb_buf_printf(b, "%sconst size_t o = (size_t)brow * NTOT + seg_row0(seg0) + n;\n", ind);
    rb_buf_printf(b, "%sy[o] = f2h(%s + h2f(res[o]));\n", ind, v0);
    break;
  case CG_EPI_SWIGLU:
    rb_buf_printf(b, "%sconst float gate = %s;  /* y = silu(gate) * up, width N[0] */\n", ind, v0);
    rb_buf_printf(b, "%sy[(size_t)brow * %d + n] = f2h(gate / (1.0f + expf(-gate)) * %s);\n", ind,
                  s->N[0], v1);
    break;
  default:
    rb_buf_printf(b, "%sy[(size_t)brow * NTOT + seg_row0(seg0) + n] = f2h(%s);\n", ind, v0);
    break;
  }
}

/* ---- xor strategy ---- */

static void emit_xor(const CgSpec *s, const Plan *pl, RbBuf *b, const char *entry) {
  rb_buf_puts(b,
      "/* Strategy xor: each lane takes whole 32-bit words of R weight rows and\n"
      " * applies each sign by XORing it into the sign bit of u = h .* x (shift,\n"
      " * LOP3, FADD per bit). u is staged per K chunk in shared memory transposed,\n"
      " * us[j][w] = u[32 w + j], so lane l reading word w = l + 32 i finds column\n"
      " * 32 w + j at a conflict-free address, and each read serves R rows.\n"
      " * Paths accumulate separately in fp32 and are scaled by g_p; the warp reduces\n"
      " * with shuffles. Batch rows are processed one after another. */\n\n");
  rb_buf_puts(b, prelude);
  rb_buf_printf(b, "#define K     %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define W     %d  /* 32-bit words per bit-row */\n", pl->W);
  rb_buf_printf(b, "#define PATHS %d\n", s->paths);
  rb_buf_printf(b, "#define NTOT  %d  /* rows of all segments */\n", pl->ntot);
  rb_buf_printf(b, "#define NSB   %d  /* segments a block works on (2: swiglu gate and up) */\n", pl->nsb);
  rb_buf_printf(b, "#define R     %d  /* rows per warp */\n", pl->R);
  rb_buf_printf(b, "#define NW    %d  /* warps per block */\n", pl->NW);
  rb_buf_printf(b, "#define KCW   %d  /* words of K staged per chunk */\n", pl->KCW);
  rb_buf_puts(b, "#define LDU   (KCW + 1)  /* padded: the transposing stores are conflict-free too */\n\n");
  emit_segment_tables(b, s, pl, 0);
  emit_block_segment(b, pl);
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NW * 32)\n"
      "%s(half_t *y, const half_t *x, const unsigned *bits, const half_t *g, const half_t *h,\n"
      "    const half_t *res, int batch) {\n",
      entry);
  rb_buf_puts(b,
      "  extern __shared__ float us[]; /* (NSB, 32, LDU): us[sb][j][w] = u at column 32 (w0 + w) + j */\n"
      "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
      "  int seg0, first;\n"
      "  block_segment(blockIdx.x, &seg0, &first);\n"
      "  const int nrows = seg_rows(seg0);\n"
      "  const int n0 = ((int)blockIdx.x - first) * (NW * R) + warp * R; /* this warp's first row in the segment */\n"
      "\n"
      "  for (int brow = 0; brow < batch; ++brow) {\n"
      "    const half_t *xb = x + (size_t)brow * K;\n"
      "    float tot[NSB][R];\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int r = 0; r < R; ++r) tot[sb][r] = 0.0f;\n"
      "\n"
      "    for (int p = 0; p < PATHS; ++p) {\n"
      "      float acc[NSB][R];\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int r = 0; r < R; ++r) acc[sb][r] = 0.0f;\n"
      "\n"
      "      for (int w0 = 0; w0 < W; w0 += KCW) {\n"
      "        __syncthreads(); /* the previous chunk's readers are done */\n"
      "        /* Stage u_p = h_p .* x for this chunk; columns past K are 0 (x has only K). */\n"
      "        /* A fixed, unrolled trip count lets the loads of several iterations overlap. */\n"
      "#pragma unroll 8\n"
      "        for (int it = 0; it < (NSB * KCW * 32 + NW * 32 - 1) / (NW * 32); ++it) {\n"
      "          const int i = threadIdx.x + it * NW * 32;\n"
      "          if (NSB * KCW * 32 % (NW * 32) != 0 && i >= NSB * KCW * 32) break;\n"
      "          const int sb = i / (KCW * 32), c = i % (KCW * 32), col = 32 * w0 + c;\n"
      "          const half_t *hp = h + ((size_t)(seg0 + sb) * PATHS + p) * K;\n"
      "          us[(sb * 32 + (c & 31)) * LDU + (c >> 5)] = col < K ? h2f(hp[col]) * h2f(xb[col]) : 0.0f;\n"
      "        }\n"
      "        __syncthreads();\n"
      "\n"
      "#pragma unroll\n"
      "        for (int i = 0; i < KCW / 32; ++i) {\n"
      "          const int w = lane + 32 * i;\n"
      "          unsigned word[NSB][R];\n"
      "#pragma unroll\n"
      "          for (int sb = 0; sb < NSB; ++sb) {\n"
      "            const unsigned *rowp = bits + ((size_t)p * NTOT + seg_row0(seg0 + sb) + n0) * W + w0 + w;\n"
      "#pragma unroll\n"
      "            for (int r = 0; r < R; ++r)\n"
      "              word[sb][r] = (n0 + r < nrows && w0 + w < W) ? rowp[(size_t)r * W] : 0u;\n"
      "          }\n"
      "#pragma unroll\n"
      "          for (int j = 0; j < 32; ++j) {\n"
      "#pragma unroll\n"
      "            for (int sb = 0; sb < NSB; ++sb) {\n"
      "              const unsigned u = __float_as_uint(us[(sb * 32 + j) * LDU + w]);\n"
      "#pragma unroll\n"
      "              for (int r = 0; r < R; ++r) /* sign bit j -> bit 31, XORed into u */\n"
      "                acc[sb][r] += __uint_as_float(u ^ ((word[sb][r] << (31 - j)) & 0x80000000u));\n"
      "            }\n"
      "          }\n"
      "        }\n"
      "      }\n"
      "\n"
      "      /* Scale this path by g_p (a lane's partial sum scales like the total). */\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int r = 0; r < R; ++r)\n"
      "          if (n0 + r < nrows)\n"
      "            tot[sb][r] += h2f(g[(size_t)p * NTOT + seg_row0(seg0 + sb) + n0 + r]) * acc[sb][r];\n"
      "    }\n"
      "\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int r = 0; r < R; ++r)\n"
      "#pragma unroll\n"
      "        for (int off = 16; off > 0; off >>= 1) tot[sb][r] += __shfl_xor_sync(0xffffffffu, tot[sb][r], off);\n"
      "\n"
      "    /* Epilogue: lane r stores row n0 + r. */\n"
      "#pragma unroll\n"
      "    for (int r = 0; r < R; ++r) {\n"
      "      const int n = n0 + r;\n"
      "      if (lane == r && n < nrows) {\n");
  emit_store(b, s, "        ", "tot[0][r]", "tot[NSB - 1][r]");
  rb_buf_puts(b,
      "      }\n"
      "    }\n"
      "  }\n"
      "}\n");
}

/* ---- mma strategy ---- */

static void emit_mma(const CgSpec *s, const Plan *pl, RbBuf *b, const char *entry) {
  rb_buf_puts(b,
      "/* Strategy mma: a warp owns one 16-row tile and a batch tile of BT rows.\n"
      " * Each lane loads one word per 64 columns holding exactly the signs of its\n"
      " * four m16n8k16 A fragments and decodes them to +-g_p in fp16 (shift, LOP3):\n"
      " * folding g_p (already fp16) into A keeps the products exact and lets all\n"
      " * paths share one fp32 accumulator set. B fragments come from u_p = h_p .* x,\n"
      " * staged in fp16 in shared memory per K chunk (row pitch KC + 8 halves:\n"
      " * conflict-free fragment reads). KS warps split K inside the block and hand\n"
      " * their sums to warp ks = 0 in a fixed order, so results are deterministic. */\n\n");
  rb_buf_puts(b, prelude);
  rb_buf_puts(b,
      "__device__ __forceinline__ void mma16816(float *c, const unsigned *a, unsigned b0, unsigned b1) {\n"
      "  asm volatile(\"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 \"\n"
      "               \"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\"\n"
      "               : \"+f\"(c[0]), \"+f\"(c[1]), \"+f\"(c[2]), \"+f\"(c[3])\n"
      "               : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b0), \"r\"(b1));\n"
      "}\n\n");
  rb_buf_printf(b, "#define K     %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define C64   %d  /* 64-column steps of K (one bit word per lane each) */\n", pl->C64);
  rb_buf_printf(b, "#define PATHS %d\n", s->paths);
  rb_buf_printf(b, "#define NTOT  %d  /* rows of all segments */\n", pl->ntot);
  rb_buf_printf(b, "#define TT    %d  /* 16-row tiles of all segments */\n", pl->TT);
  rb_buf_printf(b, "#define NSB   %d  /* segments a block works on (2: swiglu gate and up) */\n", pl->nsb);
  rb_buf_printf(b, "#define RT    %d  /* row tiles per block */\n", pl->RT);
  rb_buf_printf(b, "#define KS    %d  /* warps splitting K */\n", pl->KS);
  rb_buf_printf(b, "#define KC    %d  /* columns of K staged per chunk */\n", pl->KC);
  rb_buf_puts(b, "#define CPC   (KC / 64)\n");
  rb_buf_puts(b, "#define LDU   (KC + 8)  /* u row pitch in halves */\n");
  rb_buf_printf(b, "#define BT    %d  /* batch rows per block */\n", pl->BT);
  rb_buf_puts(b, "#define NB    (BT / 8)  /* n8 tiles of the batch */\n");
  rb_buf_puts(b, "#define NT    (RT * KS * 32)  /* threads per block */\n\n");
  emit_segment_tables(b, s, pl, 1);
  emit_block_segment(b, pl);
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NT)\n"
      "%s(half_t *y, const half_t *x, const unsigned *bits, const half_t *g, const half_t *h,\n"
      "    const half_t *res, int batch) {\n",
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
      "      bp[sb] = bits + ((size_t)p * TT + seg_tile0(seg0 + sb) + tl) * C64 * 32 + lane;\n"
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
      "        const half_t *hp = h + ((size_t)(seg0 + sb) * PATHS + p) * K;\n"
      "        float u0 = 0.0f, u1 = 0.0f;\n"
      "        if (b0 + bb < batch) {\n"
      "          const half_t *xr = x + (size_t)(b0 + bb) * K;\n"
      "          if (K % 2 == 0 && col < K) { /* aligned pairs: one 32-bit load each */\n"
      "            const unsigned hv = *(const unsigned *)(hp + col), xv = *(const unsigned *)(xr + col);\n"
      "            u0 = h2f((half_t)hv) * h2f((half_t)xv);\n"
      "            u1 = h2f((half_t)(hv >> 16)) * h2f((half_t)(xv >> 16));\n"
      "          } else if (K % 2 != 0) {\n"
      "            if (col < K) u0 = h2f(hp[col]) * h2f(xr[col]);\n"
      "            if (col + 1 < K) u1 = h2f(hp[col + 1]) * h2f(xr[col + 1]);\n"
      "          }\n"
      "        }\n"
      "        us[(sb * BT + bb) * (LDU / 2) + cc / 2] = (unsigned)f2h(u0) | (unsigned)f2h(u1) << 16;\n"
      "      }\n"
      "      __syncthreads();\n"
      "      if (!live) continue;\n"
      "\n"
      "#pragma unroll 2\n"
      "      for (int cs = ks; cs < CPC; cs += KS) {\n"
      "        if (c0 + cs >= C64) break;\n"
      "        unsigned wb[NSB];\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb) wb[sb] = bp[sb][(size_t)(c0 + cs) * 32];\n"
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
      "              const unsigned *ur = us + (sb * BT + nb * 8 + gid) * (LDU / 2) + (cs * 64 + s * 16) / 2 + tig;\n"
      "              mma16816(acc[sb][nb], a, ur[0], ur[4]);\n"
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
  emit_store(b, s, "        ", "acc[0][nb][e]", "acc[NSB - 1][nb][e]");
  rb_buf_puts(b,
      "      }\n"
      "    }\n"
      "}\n");
}

/* Emit the linear kernel of s. Returns RB_OK or RB_EUSER (message in err). */
int cg_emit_linear(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err) {
  Plan pl;
  if (s->kind != CG_LINEAR) {
    rb_buf_printf(err, "cg_emit_linear: spec is not a linear");
    return RB_EUSER;
  }
  int st = plan_make(s, &pl, err);
  if (st) return st;
  /* The entry name hashes the description plus the resolved tiles, so defaults
   * that change with a future version also change the name. */
  RbBuf key = {0}, desc = {0};
  cg_spec_describe(s, &desc);
  rb_buf_printf(&key, "%s|%d,%d,%d|%d,%d,%d,%d|epi%d", desc.data ? desc.data : "", pl.R, pl.NW, pl.KCW,
                pl.RT, pl.KS, pl.KC, pl.BT, (int)s->epilogue);
  make_entry("rabit_linear", s, &key, entry);
  rb_buf_printf(src, "/* rabit %s */\n", desc.data ? desc.data : "");
  if (s->strategy == CG_STRAT_XOR)
    emit_xor(s, &pl, src, entry);
  else
    emit_mma(s, &pl, src, entry);
  int oom = key.oom || desc.oom;
  rb_buf_free(&key);
  rb_buf_free(&desc);
  return oom || src->oom ? RB_EINTERNAL : RB_OK;
}

/* Emit the repack kernel of s: canonical bits of one segment -> the kernel layout.
 * Its source depends only on the layout (strategy, N, K, paths), so the linears
 * that share a layout share one repack binary. */
int cg_emit_repack(const CgSpec *s, RbBuf *src, char entry[64], RbBuf *err) {
  Plan pl;
  int st = plan_make(s, &pl, err);
  if (st) return st;
  RbBuf key = {0};
  layout_describe(s, &key);
  make_entry("rabit_repack", s, &key, entry);
  rb_buf_printf(src, "/* rabit %s */\n", key.data ? key.data : "");
  int mma = s->strategy == CG_STRAT_MMA;
  rb_buf_puts(src,
      mma ? "/* Canonical bits (paths, N[seg], W) of one segment -> (paths, TT, C64, 32): one\n"
            " * thread gathers the 32 signs one lane's A fragments need for 64 columns. */\n\n"
          : "/* Canonical bits (paths, N[seg], W) of one segment -> (paths, Ntot, W). */\n\n");
  rb_buf_printf(src, "#define K     %d\n#define W     %d\n#define PATHS %d\n#define NTOT  %d\n", s->K,
                pl.W, s->paths, pl.ntot);
  if (mma) rb_buf_printf(src, "#define C64   %d\n#define TT    %d\n", pl.C64, pl.TT);
  rb_buf_puts(src, "\n");
  emit_segment_tables(src, s, &pl, mma);
  rb_buf_printf(src, "extern \"C\" __global__ void %s(unsigned *dst, const unsigned *src, int seg) {\n",
                entry);
  if (!mma) {
    rb_buf_puts(src,
        "  const int nrows = seg_rows(seg);\n"
        "  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
        "  if (i >= (size_t)PATHS * nrows * W) return;\n"
        "  const size_t w = i % W, t = i / W, n = t % nrows, p = t / nrows;\n"
        "  dst[(p * NTOT + seg_row0(seg) + n) * W + w] = src[i];\n"
        "}\n");
  } else {
    rb_buf_puts(src,
        "  const int nrows = seg_rows(seg), ntile = (nrows + 15) / 16;\n"
        "  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
        "  if (i >= (size_t)PATHS * ntile * C64 * 32) return;\n"
        "  const int lane = (int)(i % 32), c = (int)(i / 32 % C64);\n"
        "  const int tl = (int)(i / 32 / C64 % ntile), p = (int)(i / 32 / C64 / ntile);\n"
        "  const int gid = lane >> 2, tig = lane & 3;\n"
        "  unsigned word = 0;\n"
        "  for (int bit = 0; bit < 32; ++bit) {\n"
        "    /* bit r / r + 16 (r = 4 s + q): even / odd column of A register q in k16 step s */\n"
        "    const int r = bit & 15, s = r >> 2, q = r & 3;\n"
        "    const int n = tl * 16 + gid + 8 * (q & 1);\n"
        "    const int col = c * 64 + s * 16 + 2 * tig + 8 * (q >> 1) + (bit >> 4);\n"
        "    if (n < nrows && col < K)\n"
        "      word |= (src[((size_t)p * nrows + n) * W + (col >> 5)] >> (col & 31) & 1u) << bit;\n"
        "  }\n"
        "  dst[(((size_t)p * TT + seg_tile0(seg) + tl) * C64 + c) * 32 + lane] = word;\n"
        "}\n");
  }
  int oom = key.oom;
  rb_buf_free(&key);
  return oom || src->oom ? RB_EINTERNAL : RB_OK;
}

/* Launch geometry: n = batch rows for CG_LINEAR, the segment index for CG_REPACK.
 * An invalid spec gives an all-zero launch (callers emit first, which reports why). */
CgLaunch cg_launch_linear(const CgSpec *s, int n) {
  CgLaunch l;
  memset(&l, 0, sizeof l);
  Plan pl;
  RbBuf err = {0};
  int st = plan_make(s, &pl, &err);
  rb_buf_free(&err);
  if (st) return l;
  l.grid[1] = l.grid[2] = l.block[1] = l.block[2] = 1;
  if (s->kind == CG_REPACK) {
    int seg = n < 0 ? 0 : n >= s->nseg ? s->nseg - 1 : n;
    size_t words = s->strategy == CG_STRAT_XOR
                       ? (size_t)s->paths * s->N[seg] * pl.W
                       : (size_t)s->paths * pl.ntile[seg] * pl.C64 * 32;
    l.block[0] = 256;
    l.grid[0] = (unsigned)((words + 255) / 256);
    return l;
  }
  l.block[0] = pl.threads;
  l.grid[0] = (unsigned)pl.blk0[pl.ngroup];
  l.smem = pl.smem;
  if (s->strategy == CG_STRAT_MMA) l.grid[1] = (unsigned)div_up(n < 1 ? 1 : n, pl.BT);
  return l;
}

/* Bytes of the repacked bits of s (the kernel layout); 0 for an invalid spec. */
size_t cg_linear_bits_bytes(const CgSpec *s) {
  Plan pl;
  RbBuf err = {0};
  int st = plan_make(s, &pl, &err);
  rb_buf_free(&err);
  if (st) return 0;
  if (s->strategy == CG_STRAT_XOR) return (size_t)s->paths * pl.ntot * pl.W * 4;
  return (size_t)s->paths * pl.TT * pl.C64 * 32 * 4;
}
