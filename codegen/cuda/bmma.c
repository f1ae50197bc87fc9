/* bmma.c: the bmma strategy (batches 1..CG_BMMA_BATCH_MAX) and its pre-pass. Nothing
 * is decoded: the bits in the kernel layout (linear.c's header) are the A operand of the
 * b1 tensor-core mma (mma.sync m16n8k256 .and.popc, BMMA on sm_80 and later) as they lie,
 * and the activations become its B operand.
 *
 * The sum. Per batch row, segment, path p and 256-column group G, the pre-pass (CG_PLANES)
 * quantizes u = h_p .* x to int16, q_j = rint(u_j / sc_G) with sc_G = max_j |u_j| / 32767,
 * and writes q's 16 two's-complement bit planes. With b_j the sign bit (1: -1),
 *   sum_j s_j u_j = sc_G sum_j (1 - 2 b_j) q_j = sc_G (U_G - 2 sum_k w_k D_k),
 * U_G = sum_j q_j, w_k = 2^k (the top plane -2^15) and D_k = popc(bits AND plane k): one
 * b1 mma column per plane. So y = sum_p g_p sum_G sc_G (U_G - 2 sum_k w_k D_k); the
 * pre-pass stores sc_G and sc_G U_G beside the planes.
 *
 * Why the layout serves as A unchanged. In a 64-column step j, the word w_j of lane
 * (gid, tig) holds row gid at bits = 0, 2 mod 4 and row gid + 8 at bits = 1, 3 mod 4, for
 * the same columns: bit i = 16 h + 4 s + q is column 64 j + 16 tig + 4 s + 2 (q >> 1) + h.
 * The b1 A fragment has a0 / a1 = rows gid / gid + 8 at k = 32 tig + i, a2 / a3 the same
 * rows at k = 128 + 32 tig + i (checked on the H200: tests/bench/probe_mma.cu). So
 * A = {w_j, w_j >> 1, w_j', w_j' >> 1} puts both rows' signs at bits = 0, 2 mod 4, and B
 * holds the activation planes there and zeros at the other bits: one mma covers two steps
 * (128 columns) of one 8-plane tile. Per 16 rows, 256 columns and path: one 16-byte load
 * of bits, four shifts, four BMMA per batch row (two plane tiles), and a dozen integer and
 * float operations to weight the planes, where the xor decode issues about 144.
 *
 * Plane words (what CG_PLANES writes and the kernel reads, 1 KB per batch row, segment,
 * path and group): ((((r NSEG + s) PATHS + p) C256 + G) 2 + t) 128 + 4 l + j holds, for
 * lane l = (gid, tig), plane 8 t + gid of the columns 256 G + 64 j + 16 tig + c (c = 0..15)
 * at bit 2 (c >> 1) + 16 (c & 1): the B fragments of both mma of a group in one 16-byte
 * load. After the words, for the same index without t, j and l: sc_G and sc_G U_G.
 *
 * Accuracy: the quantization error of a group's sum is about max|u| / (32767 sqrt(12))
 * times sqrt(256), under fp16's rounding of u (which the xor kernel takes) unless a group's
 * max is some 16x its rms. The integer sums are exact (|v| < 2^24 converts exactly).
 *
 * Schedule: tile[0] 16-row tiles per warp (RT, default 2), tile[1] warps splitting K (KS,
 * default as the register design's); tile[2] and tile[3] unused (0). The batch rows are
 * the bucket's (NBR = batch_max, 1..4), all in one block. */
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "codegen/cuda/linear_plan.h"

enum { PLANES_WARPS = 4 }; /* the pre-pass: warps a block, each one (row, segment, path, group) */

static uint64_t plane_units(const CgOp *op) { return (uint64_t)op->nseg * op->paths * (uint64_t)cg_div_up(op->K, 256); }

uint64_t cg_planes_bytes(const CgOp *op) {
  if (op->K < 1 || op->paths < 1 || op->paths > 4 || op->nseg < 1 || op->nseg > CG_MAX_SEG) return 0;
  /* the planes and (sc, sc U) per unit, then a fused norm's x.x per row and group */
  return (uint64_t)CG_BMMA_BATCH_MAX * (plane_units(op) * (1024 + 8) + (uint64_t)cg_div_up(op->K, 256) * 4);
}

int cg_linear_planes_kernel(const CgKernel *k, CgKernel *planes) {
  if (k->op.kind != CG_LINEAR || k->sched.strategy != CG_STRAT_BMMA) return 0;
  memset(planes, 0, sizeof *planes);
  planes->op.kind = CG_PLANES;
  planes->op.K = k->op.K;
  planes->op.paths = k->op.paths;
  planes->op.nseg = k->op.nseg;
  planes->op.eps = k->op.eps; /* a fused rmsnorm is the pre-pass's */
  return 1;
}

int cg_bmma_plan(const CgOp *s, const CgSchedule *sc, CgLinearPlan *pl, RbBuf *err) {
  if (sc->batch_max > CG_BMMA_BATCH_MAX) {
    rb_buf_printf(err, "linear bmma: serves buckets up to batch %d, not b<=%d", CG_BMMA_BATCH_MAX, sc->batch_max);
    return RB_EUSER;
  }
  pl->BT = sc->batch_max;
  pl->RT = sc->tile[0] ? sc->tile[0] : 2;
  pl->KS = sc->tile[1] ? sc->tile[1] : cg_linear_default_split(pl->C256);
  if (pl->RT < 1 || pl->RT > 8 || pl->KS < 1 || pl->KS > 32 || sc->tile[2] || sc->tile[3]) {
    rb_buf_printf(err, "linear bmma: bad tile %d,%d,%d,%d (row tiles a warp 1..8, k-split 1..32, the rest unused: 0)",
                  pl->RT, pl->KS, sc->tile[2], sc->tile[3]);
    return RB_EUSER;
  }
  pl->threads = (unsigned)(32 * pl->KS);
  pl->smem = (unsigned)(pl->KS * pl->RT * pl->nsb * pl->BT * 16 * 4); /* the partial sums, (KS, RT, NSB, NBR, 16) */
  if (pl->smem > SMEM_LIMIT) {
    rb_buf_printf(err, "linear bmma: tile parameters need %u bytes of shared memory (limit %u)", pl->smem, SMEM_LIMIT);
    return RB_EUSER;
  }
  for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + cg_div_up(pl->ntile[gi], pl->RT);
  return RB_OK;
}

/* The constants both kernels index the planes with. */
static void emit_plane_defines(RbBuf *b, const CgOp *s) {
  rb_buf_printf(b, "#define K %d  /* input width */\n", s->K);
  rb_buf_printf(b, "#define C256 %d  /* 256-column groups of K */\n", cg_div_up(s->K, 256));
  rb_buf_printf(b, "#define PATHS %d\n#define NSEG %d  /* segments, each with its own h */\n", s->paths, s->nseg);
  rb_buf_puts(b, "#define UNITS (NSEG * PATHS * C256)  /* (segment, path, group) per batch row */\n");
  rb_buf_printf(b, "#define SCALES_AT (%d * UNITS * 256)  /* words: (sc, sc U) pairs after the planes */\n",
                CG_BMMA_BATCH_MAX);
  rb_buf_printf(b, "#define SSQ_AT (SCALES_AT + %d * UNITS * 2)  /* words: a fused norm's x.x per row and group */\n",
                CG_BMMA_BATCH_MAX);
  if (s->eps > 0) {
    char eps[48], invk[48];
    cg_cuda_lit_float(eps, s->eps);
    cg_cuda_lit_float(invk, (float)(1.0 / s->K));
    rb_buf_printf(b, "#define EPS %s  /* the fused rmsnorm's */\n#define INV_K %s\n", eps, invk);
  }
  rb_buf_puts(b, "\n");
}

static const char ld16[] =
    "__device__ __forceinline__ void ld16(unsigned *v, const unsigned *p) {\n"
    "  asm(\"ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
    "      : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"l\"(p));\n"
    "}\n\n";

void cg_bmma_emit(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry) {
  rb_buf_puts(b,
      "/* bmma: the bits as the A operand of b1 mma.sync, the activations' int16 bit planes\n"
      " * (the CG_PLANES pre-pass, in `planes`) as B; see codegen/cuda/bmma.c. A warp owns RT\n"
      " * 16-row tiles and every KS-th 256-column group; the KS warps of a block reduce through\n"
      " * shared memory in a fixed order (deterministic). */\n\n");
  emit_plane_defines(b, s);
  rb_buf_printf(b, "#define NTOT %d  /* rows of all segments */\n", pl->ntot);
  rb_buf_printf(b, "#define TT %d  /* 16-row tiles of all segments */\n", pl->TT);
  rb_buf_printf(b, "#define NSB %d  /* segments a block works on (2: swiglu gate and up) */\n", pl->nsb);
  rb_buf_printf(b, "#define RT %d  /* row tiles a warp */\n#define KS %d  /* warps splitting K */\n", pl->RT, pl->KS);
  rb_buf_printf(b, "#define NBR %d  /* batch rows (the bucket's) */\n", pl->BT);
  rb_buf_puts(b, "#define NT (KS * 32)\n\n");
  cg_linear_emit_segment_tables(b, s, pl, 1);
  cg_linear_emit_block_segment(b, pl);
  rb_buf_puts(b, ld16);
  rb_buf_puts(b,
      "/* d += popc(A AND B) per output: m16n8k256, rows of A times columns of B. */\n"
      "__device__ __forceinline__ void bmma(int *d, const unsigned *a, unsigned b0, unsigned b1) {\n"
      "  asm volatile(\"mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc \"\n"
      "               \"{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\"\n"
      "               : \"+r\"(d[0]), \"+r\"(d[1]), \"+r\"(d[2]), \"+r\"(d[3])\n"
      "               : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"r\"(b0), \"r\"(b1));\n"
      "}\n\n");
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NT)\n"
      "%s(rb_half *y, const unsigned *planes, const unsigned *bits, const rb_half *g, const rb_half *h,\n"
      "    const rb_half *res, int batch) {\n", entry);
  rb_buf_puts(b,
      "  /* weights first: the bits and g are loaded before rb_grid_enter, the planes after it;\n"
      "   * nothing is written before it. */\n"
      "  extern __shared__ float red[]; /* (KS, RT, NSB, NBR, 16) partial sums */\n"
      "  (void)h; /* in the planes */\n"
      "  const int lane = threadIdx.x & 31, ks = threadIdx.x >> 5, gid = lane >> 2, tig = lane & 3;\n"
      "  int seg0, first;\n"
      "  block_segment(blockIdx.x, &seg0, &first);\n"
      "  const int nrows = seg_rows(seg0), ntile = (nrows + 15) / 16;\n"
      "  const int tb = ((int)blockIdx.x - first) * RT; /* the block's first tile within the segment */\n"
      "  /* The weights of this lane's D columns: tile t column 2 tig + e is plane 8 t + 2 tig + e. */\n"
      "  const int w00 = 1 << 2 * tig, w01 = 2 << 2 * tig, w10 = 256 << 2 * tig, w11 = tig == 3 ? -32768 : 512 << 2 * tig;\n"
      "  float gv[PATHS][NSB][RT][2]; /* g_p of rows gid and gid + 8; 0 past the segment */\n"
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
      "          gv[p][sb][rt][hi] = n < nrows ? rb_h2f(g[(size_t)p * NTOT + seg_row0(seg0 + sb) + n]) : 0.0f;\n"
      "        }\n"
      "    }\n"
      "  unsigned wc[PATHS][NSB][RT][4], wn[PATHS][NSB][RT][4];\n"
      "  int c = ks;\n"
      "  if (c < C256)\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt) ld16(wc[p][sb][rt], bp[sb][rt] + ((size_t)p * TT * C256 + c) * 128);\n"
      "  rb_grid_enter(); /* the planes are the pre-pass's output; the bits and g above are not */\n"
      "  const float *scales = (const float *)(planes + SCALES_AT);\n"
      "  float acc[RT][NSB][NBR][PATHS][2], su[NSB][NBR][PATHS];\n"
      "#pragma unroll\n"
      "  for (int i = 0; i < RT * NSB * NBR * PATHS * 2; ++i) (&acc[0][0][0][0][0])[i] = 0.0f;\n"
      "#pragma unroll\n"
      "  for (int i = 0; i < NSB * NBR * PATHS; ++i) (&su[0][0][0])[i] = 0.0f;\n"
      "  for (; c < C256; c += KS) {\n"
      "    if (c + KS < C256) /* the next group's bits, in flight while this one computes */\n"
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "          for (int rt = 0; rt < RT; ++rt) ld16(wn[p][sb][rt], bp[sb][rt] + ((size_t)p * TT * C256 + c + KS) * 128);\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb) {\n"
      "        unsigned pv[NBR][2][4]; /* plane tiles 0 and 1: B of both mma */\n"
      "        float sc[NBR];\n"
      "#pragma unroll\n"
      "        for (int r = 0; r < NBR; ++r) {\n"
      "          const size_t at = ((size_t)r * NSEG + seg0 + sb) * PATHS * C256 + (size_t)p * C256 + c;\n"
      "          ld16(pv[r][0], planes + at * 256 + lane * 4);\n"
      "          ld16(pv[r][1], planes + at * 256 + 128 + lane * 4);\n"
      "          sc[r] = scales[2 * at];\n"
      "          su[sb][r][p] += scales[2 * at + 1];\n"
      "        }\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt) {\n"
      "          const unsigned *w = wc[p][sb][rt];\n"
      "          const unsigned a0[4] = {w[0], w[0] >> 1, w[1], w[1] >> 1}, a1[4] = {w[2], w[2] >> 1, w[3], w[3] >> 1};\n"
      "#pragma unroll\n"
      "          for (int r = 0; r < NBR; ++r) {\n"
      "            int d0[4] = {0, 0, 0, 0}, d1[4] = {0, 0, 0, 0};\n"
      "            bmma(d0, a0, pv[r][0][0], pv[r][0][1]);\n"
      "            bmma(d0, a1, pv[r][0][2], pv[r][0][3]);\n"
      "            bmma(d1, a0, pv[r][1][0], pv[r][1][1]);\n"
      "            bmma(d1, a1, pv[r][1][2], pv[r][1][3]);\n"
      "            /* sum_k w_k D_k over this lane's planes, rows gid and gid + 8 (exact: < 2^24) */\n"
      "            const int v0 = w00 * d0[0] + w01 * d0[1] + w10 * d1[0] + w11 * d1[1];\n"
      "            const int v1 = w00 * d0[2] + w01 * d0[3] + w10 * d1[2] + w11 * d1[3];\n"
      "            acc[rt][sb][r][p][0] += sc[r] * (float)v0;\n"
      "            acc[rt][sb][r][p][1] += sc[r] * (float)v1;\n"
      "          }\n"
      "        }\n"
      "      }\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "          for (int i = 0; i < 4; ++i) wc[p][sb][rt][i] = wn[p][sb][rt][i];\n"
      "  }\n"
      "  /* y = sum_p g_p (sum_G sc U - 2 sum_G sc v): the lanes of a row (tig 0..3) hold a quarter\n"
      "   * of the planes each; the U part is added once, by tig 0. */\n"
      "#pragma unroll\n"
      "  for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int r = 0; r < NBR; ++r)\n"
      "#pragma unroll\n"
      "        for (int hi = 0; hi < 2; ++hi) {\n"
      "          float v = 0.0f;\n"
      "#pragma unroll\n"
      "          for (int p = 0; p < PATHS; ++p)\n"
      "            v += gv[p][sb][rt][hi] * ((tig == 0 ? su[sb][r][p] : 0.0f) - 2.0f * acc[rt][sb][r][p][hi]);\n"
      "          v += __shfl_xor_sync(0xffffffffu, v, 1);\n"
      "          v += __shfl_xor_sync(0xffffffffu, v, 2);\n"
      "          if (tig == 0) red[(((ks * RT + rt) * NSB + sb) * NBR + r) * 16 + gid + 8 * hi] = v;\n"
      "        }\n");
  if (s->eps > 0)
    rb_buf_puts(b,
      "  /* The fused rmsnorm: r = rsqrt(mean(x^2) + eps) per batch row, from the groups' x.x the\n"
      "   * pre-pass stored, summed in the same order by every warp (lane i takes groups i, i + 32..). */\n"
      "  float rrow[NBR];\n"
      "#pragma unroll\n"
      "  for (int r = 0; r < NBR; ++r) {\n"
      "    const float *ssq = (const float *)(planes + SSQ_AT) + (size_t)r * C256;\n"
      "    float ss = 0.0f;\n"
      "    for (int q = lane; q < C256; q += 32) ss += ssq[q];\n"
      "#pragma unroll\n"
      "    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);\n"
      "    rrow[r] = rsqrtf(ss * INV_K + EPS);\n"
      "  }\n");
  rb_buf_puts(b,
      "  __syncthreads();\n"
      "  for (int t = threadIdx.x; t < RT * NBR * 16; t += NT) {\n"
      "    const int rt = t / (NBR * 16), brow = t / 16 % NBR, i = t % 16;\n"
      "    const int n = (tb + rt) * 16 + i;\n"
      "    if (n >= nrows || brow >= batch) continue;\n"
      "    float v[NSB];\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) {\n"
      "      v[sb] = 0.0f;\n"
      "      for (int k = 0; k < KS; ++k) v[sb] += red[(((k * RT + rt) * NSB + sb) * NBR + brow) * 16 + i];\n"
      "    }\n");
  if (s->eps > 0)
    rb_buf_puts(b,
      "    float rb = rrow[0];\n"
      "#pragma unroll\n"
      "    for (int r = 1; r < NBR; ++r) rb = brow == r ? rrow[r] : rb;\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) v[sb] *= rb;\n");
  cg_linear_emit_store(b, s, "    ", "v[0]", "v[NSB - 1]");
  rb_buf_puts(b, "  }\n}\n");
}

/* ---- CG_PLANES: the pre-pass ---- */

static int planes_check(const CgOp *s, RbBuf *err) {
  if (s->kind != CG_PLANES || !cg_planes_bytes(s) || !(s->eps >= 0.0f)) {
    rb_buf_printf(err, "planes: K %d, paths %d, segments %d, eps %g (paths 1..4, segments 1..%d, eps >= 0)", s->K,
                  s->paths, s->nseg, (double)s->eps, CG_MAX_SEG);
    return RB_EUSER;
  }
  return RB_OK;
}

int cg_emit_planes(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  int st = planes_check(s, err);
  if (st) return st;
  char name[CG_ENTRY_MAX];
  const int norm = s->eps > 0;
  snprintf(name, sizeof name, "rb_planes%s_k%d_p%d_s%d", norm ? "_rms" : "", s->K, s->paths, s->nseg);
  cg_cuda_entry(k, name, norm, entry); /* the name does not say eps */
  cg_cuda_prelude(src, k, "codegen/cuda/bmma.c");
  rb_buf_puts(src,
      "/* The bmma kernels' pre-pass: one warp per (batch row, segment, path, 256-column group)\n"
      " * quantizes u = h_p .* x to int16 at sc = max |u| / 32767 and writes its 16 bit planes as\n"
      " * the b1 mma's B fragments, then sc and sc sum q (codegen/cuda/bmma.c). */\n\n");
  if (norm)
    rb_buf_puts(src,
        "/* A fused rmsnorm: x is the norm's input and h holds h_p .* w. q does not depend on the row's\n"
        " * scale r = rsqrt(mean(x^2) + eps) (it cancels in u / sc), so the warp quantizes x .* (h w),\n"
        " * and the warps of segment 0, path 0 store their group's x.x, from which the bmma kernel\n"
        " * takes r and multiplies its sums: the norm costs nothing in accuracy, unlike an fp16\n"
        " * product, and no warp reads more of x than its group. */\n\n");
  emit_plane_defines(src, s);
  rb_buf_printf(src, "#define WARPS %d\n\n", PLANES_WARPS);
  rb_buf_puts(src, cg_linear_ld8);
  rb_buf_puts(src,
      "/* The pre-pass lets its dependent (the bmma kernel) start launching before it waits for\n"
      " * its own predecessor, so that the bmma kernel's blocks are resident and loading their\n"
      " * first bits while the kernel before this one still runs. Safe: the dependent waits for\n"
      " * this grid to complete, and this grid completes only after its own wait. One level deep:\n"
      " * the bmma kernel releases its dependents only after its wait, so at most three grids\n"
      " * are in flight. */\n"
      "__device__ __forceinline__ void rb_grid_release_enter(void) {\n"
      "#if __CUDA_ARCH__ >= 900\n"
      "  asm volatile(\"griddepcontrol.launch_dependents;\");\n"
      "  asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");\n"
      "#endif\n"
      "}\n\n");
  rb_buf_puts(src,
      "__device__ __forceinline__ int round_int(float f) {\n"
      "  int i;\n"
      "  asm(\"cvt.rni.s32.f32 %0, %1;\" : \"=r\"(i) : \"f\"(f));\n"
      "  return i;\n"
      "}\n\n");
  rb_buf_printf(src,
      "extern \"C\" __global__ void __launch_bounds__(WARPS * 32)\n"
      "%s(unsigned *planes, const rb_half *x, const rb_half *h, int batch) {\n", entry);
  rb_buf_puts(src,
      "  /* weights first: h (the paths' scales, constant) is loaded before the wait, x after it;\n"
      "   * h comes from DRAM in a decode step, and its latency would otherwise follow the wait. */\n"
      "  __shared__ unsigned pairs[WARPS][128]; /* q of columns 2 i, 2 i + 1 in word i */\n"
      "  const int lane = threadIdx.x & 31, wp = threadIdx.x >> 5, unit = blockIdx.x * WARPS + wp, r = blockIdx.y;\n"
      "  if (unit >= UNITS || r >= batch || r >= SCALES_AT / (UNITS * 256)) return;\n"
      "  const int c = unit % C256, set = unit / C256; /* set: segment * PATHS + path, h's row */\n"
      "  if (K % 8 == 0 && (((unsigned long long)x | (unsigned long long)h) & 15ull)) __trap();\n"
      "  unsigned xv[4], hv[4];\n"
      "  ld8(hv, h + (size_t)set * K, c * 256 + lane * 8);\n"
      "  rb_grid_release_enter();\n"
      "  ld8(xv, x + (size_t)r * K, c * 256 + lane * 8);\n"
      "  float u[8], m = 0.0f;\n"
      "#pragma unroll\n"
      "  for (int i = 0; i < 8; ++i) {\n"
      "    u[i] = rb_h2f((rb_half)(xv[i / 2] >> 16 * (i & 1))) * rb_h2f((rb_half)(hv[i / 2] >> 16 * (i & 1)));\n"
      "    m = fmaxf(m, fabsf(u[i]));\n"
      "  }\n"
      "#pragma unroll\n"
      "  for (int o = 16; o; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));\n"
      "  const float inv = m > 0.0f ? 32767.0f / m : 0.0f;\n"
      "  int sum = 0;\n"
      "#pragma unroll\n"
      "  for (int i = 0; i < 4; ++i) {\n"
      "    const int q0 = round_int(u[2 * i] * inv), q1 = round_int(u[2 * i + 1] * inv);\n"
      "    sum += q0 + q1;\n"
      "    pairs[wp][lane * 4 + i] = ((unsigned)q0 & 0xffffu) | (unsigned)q1 << 16;\n"
      "  }\n"
      "#pragma unroll\n"
      "  for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);\n"
      "  __syncwarp();\n"
      "  /* Lane (gid, tig): plane 8 t + gid of columns 64 j + 16 tig + 2 i (+1) from pair word\n"
      "   * 32 j + 8 tig + i, at bits 2 i (and 16 + 2 i). */\n"
      "  const int gid = lane >> 2, tig = lane & 3;\n"
      "  unsigned *dst = planes + ((size_t)r * UNITS + unit) * 256 + lane * 4;\n"
      "#pragma unroll\n"
      "  for (int t = 0; t < 2; ++t) {\n"
      "    const int k = 8 * t + gid;\n"
      "    unsigned o[4];\n"
      "#pragma unroll\n"
      "    for (int j = 0; j < 4; ++j) {\n"
      "      unsigned w = 0u;\n"
      "#pragma unroll\n"
      "      for (int i = 0; i < 8; ++i) w |= (pairs[wp][32 * j + 8 * tig + i] >> k & 0x10001u) << 2 * i;\n"
      "      o[j] = w;\n"
      "    }\n"
      "    asm volatile(\"st.global.v4.u32 [%0], {%1, %2, %3, %4};\"\n"
      "                 :: \"l\"(dst + t * 128), \"r\"(o[0]), \"r\"(o[1]), \"r\"(o[2]), \"r\"(o[3]) : \"memory\");\n"
      "  }\n");
  if (norm)
    rb_buf_puts(src,
      "  if (set == 0) { /* the group's x.x, once per row and group */\n"
      "    float ss = 0.0f;\n"
      "#pragma unroll\n"
      "    for (int i = 0; i < 8; ++i) {\n"
      "      const float f = rb_h2f((rb_half)(xv[i / 2] >> 16 * (i & 1)));\n"
      "      ss = fmaf(f, f, ss);\n"
      "    }\n"
      "#pragma unroll\n"
      "    for (int o = 16; o; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);\n"
      "    if (lane == 0) ((float *)(planes + SSQ_AT))[(size_t)r * C256 + c] = ss;\n"
      "  }\n");
  rb_buf_puts(src,
      "  if (lane == 0) {\n"
      "    float *sc = (float *)(planes + SCALES_AT) + 2 * ((size_t)r * UNITS + unit);\n");
  rb_buf_puts(src,
      "    const float scale = m * (1.0f / 32767.0f);\n"
      "    sc[0] = scale;\n"
      "    sc[1] = scale * (float)sum;\n"
      "  }\n"
      "}\n");
  return src->oom ? RB_EINTERNAL : RB_OK;
}

/* One block of WARPS warps per WARPS (segment, path, group) units, grid y the batch rows. */
int cg_geometry_planes(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  int st = planes_check(&k->op, err);
  if (st) return st;
  memset(g, 0, sizeof *g);
  g->grid[0] = (unsigned)((plane_units(&k->op) + PLANES_WARPS - 1) / PLANES_WARPS);
  g->grid[1] = g->grid[2] = 1;
  g->block[0] = 32 * PLANES_WARPS;
  g->block[1] = g->block[2] = 1;
  g->grow_axis = 1;
  g->n_per_block = 1;
  return RB_OK;
}

void cg_planes_argv(CgPlanesArgs *a, CgArgv *o) { CG_ARGV(o, &a->planes, &a->x, &a->h, &a->batch); }
