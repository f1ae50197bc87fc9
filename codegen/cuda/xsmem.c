/* xsmem.c: the xsmem strategy (batch tiles of 8 or 16): the register design's decode and
 * mma sums (linear.c's header), with the activations staged once per block in shared
 * memory and the warps of a block splitting rows as well as K.
 *
 * Why. The register design's warps each split K and own all of a block's row tiles, so
 * every warp loads its own x and h_p from L2, and to hide that latency holds the next
 * step's x and h in registers besides this group's and the next group's bits: at batch 16
 * the fused gate/up kernel took 242 registers, ran 1.7 warps a scheduler and stalled on
 * dependencies with no pipe near its limit (KERNEL_NOTES.md, 2026-12-04). Here a block
 * copies each K group's x rows and h_p rows into shared memory with cp.async, one group
 * ahead, and its WR row warps read them there (30-cycle loads instead of L2 round trips, no
 * prefetch registers): a warp keeps only its bits, its accumulators and g.
 *
 * Block: WR x KS warps. Warp (wr, ks) owns row tiles tb + wr RT .. + RT - 1 and the groups
 * c = ks, ks + KS, ...; iteration it of the K loop covers groups it KS .. it KS + KS - 1, one
 * per K warp group, staged together. Shared memory holds two stages, each (KS groups) x
 * (BT x rows of 264 halves, then NSB x PATHS h rows of 256): the x pitch of 528 bytes puts
 * rows gid and gid + 1 16 bytes apart in the banks, so the 8 lanes of a 16-byte load phase
 * (two rows by four tig) read distinct banks; the h rows are the same for every gid (a
 * broadcast). Columns past K are zero-filled, which zeroes u there (the pad bits decode to
 * +g, not 0). After the loop the stages hold the partial sums, reduced over KS in a fixed
 * order as in the register design (deterministic).
 *
 * Schedule: tile[0] row tiles a warp (RT, 1..8, default 2), tile[1] K warp groups (KS,
 * 1..32, default 2), tile[2] row warps (WR, 1..16, default 4; WR KS <= 32), tile[3] batch
 * rows a block (8 or 16; default the bucket's). No bit ring, no lop3 decode. */
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "codegen/cuda/linear_plan.h"

enum { XPITCH = 264 }; /* x row pitch in halves */

/* Shared memory of the stages, and of the partial sums (and a fused norm's x.x) after them. */
static unsigned stage_bytes(const CgLinearPlan *pl, int paths) {
  return 2u * (unsigned)pl->KS * (unsigned)(pl->BT * XPITCH + pl->nsb * paths * 256) * 2u;
}
static unsigned red_bytes(const CgLinearPlan *pl, int norm) {
  return (unsigned)(pl->KS * pl->WR * pl->RT * pl->nsb * (pl->BT / 8) * 512) + (norm ? (unsigned)(pl->KS * pl->BT * 4) : 0u);
}

int cg_xsmem_plan(const CgOp *s, const CgSchedule *sc, CgLinearPlan *pl, RbBuf *err) {
  pl->reg = 1;
  pl->BT = sc->tile[3] ? sc->tile[3] : sc->batch_max <= 8 ? 8 : 16;
  pl->RT = sc->tile[0] ? sc->tile[0] : 2;
  pl->KS = sc->tile[1] ? sc->tile[1] : 2;
  pl->WR = sc->tile[2] ? sc->tile[2] : 4;
  if ((pl->BT != 8 && pl->BT != 16) || pl->RT < 1 || pl->RT > 8 || pl->KS < 1 || pl->KS > 32 || pl->WR < 1 ||
      pl->WR > 16 || pl->WR * pl->KS > 32) {
    rb_buf_printf(err, "linear xsmem: bad tile %d,%d,%d,%d (row tiles a warp 1..8, K warp groups 1..32, row warps "
                  "1..16, at most 32 warps, batch 8 or 16)",
                  pl->RT, pl->KS, pl->WR, pl->BT);
    return RB_EUSER;
  }
  pl->short_tile = pl->BT > 8 && sc->batch_max > pl->BT;
  pl->threads = (unsigned)(pl->WR * pl->KS * 32);
  const unsigned st = stage_bytes(pl, s->paths), red = red_bytes(pl, s->eps > 0);
  pl->smem = st > red ? st : red;
  if (pl->smem > RING_SMEM_LIMIT) {
    rb_buf_printf(err, "linear xsmem: tile %d,%d,%d,%d needs %u bytes of shared memory (limit %u)", pl->RT, pl->KS,
                  pl->WR, pl->BT, pl->smem, RING_SMEM_LIMIT);
    return RB_EUSER;
  }
  for (int gi = 0; gi < pl->ngroup; gi++) pl->blk0[gi + 1] = pl->blk0[gi] + cg_div_up(pl->ntile[gi], pl->WR * pl->RT);
  return RB_OK;
}

static const char stage_helpers[] =
    "__device__ __forceinline__ unsigned smem_addr(const void *p) {\n"
    "  unsigned long long a;\n"
    "  asm(\"cvta.to.shared.u64 %0, %1;\" : \"=l\"(a) : \"l\"(p));\n"
    "  return (unsigned)a;\n"
    "}\n\n"
    "/* 16 bytes from global to shared memory, asynchronously (L2 only); n = 0 zero-fills them. */\n"
    "__device__ __forceinline__ void cp16(rb_half *dst, const rb_half *src, int n) {\n"
    "  asm volatile(\"cp.async.cg.shared.global [%0], [%1], 16, %2;\" :: \"r\"(smem_addr(dst)), \"l\"(src), \"r\"(n)\n"
    "               : \"memory\");\n"
    "}\n\n"
    "__device__ __forceinline__ void cp_commit() { asm volatile(\"cp.async.commit_group;\" ::: \"memory\"); }\n"
    "__device__ __forceinline__ void cp_wait_all() { asm volatile(\"cp.async.wait_group 0;\" ::: \"memory\"); }\n\n"
    "/* Halves p .. p + 7 of shared memory as four half pairs. */\n"
    "__device__ __forceinline__ void lds8(unsigned *v, const rb_half *p) {\n"
    "  asm volatile(\"ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\"\n"
    "               : \"=r\"(v[0]), \"=r\"(v[1]), \"=r\"(v[2]), \"=r\"(v[3]) : \"r\"(smem_addr(p)) : \"memory\");\n"
    "}\n\n"
    "/* Stage the groups it KS .. it KS + KS - 1 of x's BT rows and of the block's h_p rows into buf:\n"
    " * each thread copies 16-byte pieces, zero past K (or past the last group). A batch row past the\n"
    " * batch copies row 0 (its products reach only columns that are never stored). */\n"
    "__device__ __forceinline__ void stage(rb_half *buf, const rb_half *x, const rb_half *h, int batch, int b0,\n"
    "                                      int seg0, int it) {\n"
    "  const rb_half *hs = h + (size_t)seg0 * PATHS * K;\n"
    "#pragma unroll 4\n"
    "  for (int i = threadIdx.x; i < KS * GROUP_ROWS * 32; i += NT) {\n"
    "    const int kg = i / (GROUP_ROWS * 32), row = i / 32 % GROUP_ROWS, piece = i % 32;\n"
    "    const int col = (it * KS + kg) * 256 + piece * 8;\n"
    "    rb_half *dst = buf + kg * GROUP_HALVES + (row < BT ? row * XP : BT * XP + (row - BT) * 256) + piece * 8;\n"
    "    const rb_half *src = row < BT ? x + (size_t)(b0 + row < batch ? b0 + row : 0) * K\n"
    "                                  : hs + (size_t)(row - BT) * K; /* h row (segment, path) */\n"
    "    if (K % 8 == 0) {\n"
    "      cp16(dst, src + (col < K ? col : 0), col < K ? 16 : 0);\n"
    "    } else { /* unaligned rows: element copies, made visible by the barrier after the wait */\n"
    "#pragma unroll\n"
    "      for (int e = 0; e < 8; ++e) dst[e] = col + e < K ? src[col + e] : (rb_half)0;\n"
    "    }\n"
    "  }\n"
    "}\n\n";

/* The K loop: staging, the bits one group ahead, the decode and the sums. */
static void emit_kloop(RbBuf *b, int norm) {
  rb_buf_puts(b,
      "/* Group c's bits of every path, segment and row tile of a warp (bp: its tiles' first words). */\n"
      "__device__ __forceinline__ void ldgroup(unsigned (&w)[PATHS][NSB][RT][4], const unsigned *const (&bp)[NSB][RT],\n"
      "                                        int c) {\n"
      "#pragma unroll\n"
      "  for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int rt = 0; rt < RT; ++rt) ldbits(w[p][sb][rt], bp[sb][rt] + ((size_t)p * TT * C256 + c) * 128);\n"
      "}\n\n");
  rb_buf_printf(b,
      "/* The K loop of warp (wr, ks) over NBU (<= NB) live n8 batch tiles. */\n"
      "template <int NBU>\n"
      "__device__ __forceinline__ void kloop(float (&acc)[RT][NSB][NB][4], %srb_half *sm, const rb_half *x,\n"
      "                                      const unsigned *bits, const rb_half *g, const rb_half *h, int batch,\n"
      "                                      int seg0, int tb, int b0) {\n",
      norm ? "float (&gram)[NB][4], " : "");
  rb_buf_puts(b,
      "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wr = warp % WR, ks = warp / WR;\n"
      "  const int gid = lane >> 2, tig = lane & 3;\n"
      "  const int nrows = seg_rows(seg0), ntile = (nrows + 15) / 16;\n"
      "  /* g_p of this lane's rows gid and gid + 8 as half pairs; 0 past the segment. */\n"
      "  unsigned g2[PATHS][NSB][RT][2];\n"
      "  const unsigned *bp[NSB][RT];\n"
      "#pragma unroll\n"
      "  for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "    for (int rt = 0; rt < RT; ++rt) {\n"
      "      const int t = tb + wr * RT + rt, tl = t < ntile ? t : ntile - 1; /* a dead tile reads a live one, g = 0 */\n"
      "      bp[sb][rt] = bits + (size_t)(seg_tile0(seg0 + sb) + tl) * C256 * 128 + lane * 4;\n"
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int hi = 0; hi < 2; ++hi) {\n"
      "          const int n = t * 16 + gid + 8 * hi;\n"
      "          const unsigned gv = n < nrows ? g[(size_t)p * NTOT + seg_row0(seg0 + sb) + n] : 0u;\n"
      "          g2[p][sb][rt][hi] = gv | gv << 16;\n"
      "        }\n"
      "    }\n"
      "  unsigned wc[PATHS][NSB][RT][4], wn[PATHS][NSB][RT][4];\n"
      "  int c = ks;\n"
      "  if (c < C256) ldgroup(wc, bp, c);\n"
      "  rb_grid_enter(); /* x is the previous kernel's output; the bits and g above are not */\n"
      "  stage(sm, x, h, batch, b0, seg0, 0);\n"
      "  cp_commit();\n"
      "  for (int it = 0; it < NIT; ++it, c += KS) {\n"
      "    cp_wait_all();\n"
      "    __syncthreads(); /* stage it visible to all; every warp done with stage it - 1's buffer */\n"
      "    if (it + 1 < NIT) stage(sm + ((it + 1) & 1) * STAGE_HALVES, x, h, batch, b0, seg0, it + 1);\n"
      "    cp_commit();\n"
      "    if (c >= C256) continue; /* a K group past the last: only the barriers */\n"
      "    if (c + KS < C256) ldgroup(wn, bp, c + KS); /* the next group's bits, in flight while this one computes */\n"
      "    const rb_half *xs = sm + (it & 1) * STAGE_HALVES + ks * GROUP_HALVES, *hsm = xs + BT * XP;\n"
      "#pragma unroll\n"
      "    for (int j = 0; j < 4; ++j) { /* 64-column steps: a lane's columns 64 j + 16 tig .. + 15 */\n"
      "      unsigned xv[NBU][8];\n"
      "#pragma unroll\n"
      "      for (int nb = 0; nb < NBU; ++nb) {\n"
      "        lds8(xv[nb], xs + (nb * 8 + gid) * XP + j * 64 + tig * 16);\n"
      "        lds8(xv[nb] + 4, xs + (nb * 8 + gid) * XP + j * 64 + tig * 16 + 8);\n"
      "      }\n");
  if (norm)
    rb_buf_puts(b,
      "      if (wr == 0) /* x.x of this step, once per K group: the Gram fragment's diagonal */\n"
      "#pragma unroll\n"
      "        for (int nb = 0; nb < NBU; ++nb)\n"
      "#pragma unroll\n"
      "          for (int s = 0; s < 4; ++s) {\n"
      "            const unsigned a[4] = {xv[nb][2 * s], 0u, xv[nb][2 * s + 1], 0u};\n"
      "            mma16816(gram[nb], a, xv[nb][2 * s], xv[nb][2 * s + 1]);\n"
      "          }\n");
  rb_buf_puts(b,
      "#pragma unroll\n"
      "      for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "        for (int sb = 0; sb < NSB; ++sb) {\n"
      "          unsigned hv[8], u[NBU][8];\n"
      "          lds8(hv, hsm + (sb * PATHS + p) * 256 + j * 64 + tig * 16);\n"
      "          lds8(hv + 4, hsm + (sb * PATHS + p) * 256 + j * 64 + tig * 16 + 8);\n"
      "#pragma unroll\n"
      "          for (int nb = 0; nb < NBU; ++nb)\n"
      "#pragma unroll\n"
      "            for (int m = 0; m < 8; ++m) u[nb][m] = hmul2(xv[nb][m], hv[m]);\n"
      "#pragma unroll\n"
      "          for (int rt = 0; rt < RT; ++rt) {\n"
      "            const unsigned w = wc[p][sb][rt][j];\n"
      "#pragma unroll\n"
      "            for (int s = 0; s < 4; ++s) { /* k16 steps */\n"
      "              /* Register q takes bits 4s+q and 4s+q+16 to the fp16 sign bits 15 and 31 of +-g. */\n"
      "              unsigned a[4];\n"
      "#pragma unroll\n"
      "              for (int q = 0; q < 4; ++q)\n"
      "                a[q] = ((w << (15 - (4 * s + q))) & 0x80008000u) ^ g2[p][sb][rt][q & 1];\n"
      "#pragma unroll\n"
      "              for (int nb = 0; nb < NBU; ++nb) mma16816(acc[rt][sb][nb], a, u[nb][2 * s], u[nb][2 * s + 1]);\n"
      "            }\n"
      "          }\n"
      "        }\n"
      "    }\n"
      "#pragma unroll\n"
      "    for (int p = 0; p < PATHS; ++p)\n"
      "#pragma unroll\n"
      "      for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "        for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "          for (int i = 0; i < 4; ++i) wc[p][sb][rt][i] = wn[p][sb][rt][i];\n"
      "  }\n"
      "}\n\n");
}

void cg_xsmem_emit(const CgOp *s, const CgLinearPlan *pl, RbBuf *b, const char *entry) {
  const int norm = s->eps > 0;
  rb_buf_puts(b,
      "/* xsmem design: the register design's decode and sums, with each K group's x and h_p\n"
      " * staged once per block in shared memory (cp.async, one group ahead) and the block's\n"
      " * warps splitting rows (WR) as well as K (KS); see codegen/cuda/xsmem.c. */\n\n");
  if (norm)
    rb_buf_puts(b,
        "/* A fused rmsnorm: x is the norm's input and h_p holds h_p .* w. The row warps wr = 0 sum\n"
        " * x.x per batch row of their K groups with one more mma a k16 step (the Gram matrix of the\n"
        " * batch rows, whose diagonal is wanted); each output is scaled by rsqrt(mean(x^2) + eps). */\n\n");
  rb_buf_puts(b, cg_linear_mma_helpers);
  cg_linear_emit_shape(b, s, pl);
  rb_buf_printf(b, "#define RT %d  /* row tiles a warp */\n", pl->RT);
  rb_buf_printf(b, "#define WR %d  /* warps splitting the block's rows */\n", pl->WR);
  rb_buf_printf(b, "#define KS %d  /* warp groups splitting K */\n", pl->KS);
  rb_buf_printf(b, "#define BT %d  /* batch rows per block */\n", pl->BT);
  rb_buf_puts(b, "#define NB (BT / 8)  /* n8 tiles of the batch */\n");
  rb_buf_puts(b, "#define NT (WR * KS * 32)  /* threads per block */\n");
  rb_buf_puts(b, "#define NIT ((C256 + KS - 1) / KS)  /* K loop iterations: KS groups each */\n");
  rb_buf_printf(b, "#define XP %d  /* x row pitch in halves: conflict-free 16-byte fragment reads */\n", XPITCH);
  rb_buf_puts(b, "#define GROUP_ROWS (BT + NSB * PATHS)  /* staged rows a K group: x's, then h's */\n");
  rb_buf_puts(b, "#define GROUP_HALVES (BT * XP + NSB * PATHS * 256)\n");
  rb_buf_puts(b, "#define STAGE_HALVES (KS * GROUP_HALVES)  /* one iteration's groups; two stages */\n");
  rb_buf_puts(b, "#define RED_FLOATS (KS * WR * RT * NSB * NB * 128)  /* the partial sums, after the loop */\n");
  if (norm) {
    char eps[48], invk[48];
    cg_cuda_lit_float(eps, s->eps);
    cg_cuda_lit_float(invk, (float)(1.0 / s->K));
    rb_buf_printf(b, "#define EPS %s  /* the fused rmsnorm's */\n#define INV_K %s\n", eps, invk);
  }
  rb_buf_puts(b, "\n");
  cg_linear_emit_segment_tables(b, s, pl, 1);
  cg_linear_emit_block_segment(b, pl);
  rb_buf_puts(b, cg_linear_bits_helpers);
  rb_buf_puts(b, stage_helpers);
  emit_kloop(b, norm);
  rb_buf_printf(b,
      "extern \"C\" __global__ void __launch_bounds__(NT)\n"
      "%s(rb_half *y, const rb_half *x, const unsigned *bits, const rb_half *g, const rb_half *h,\n"
      "    const rb_half *res, int batch) {\n",
      entry);
  rb_buf_puts(b,
      "  extern __shared__ __align__(16) unsigned char smem[];\n"
      "  rb_half *sm = (rb_half *)smem; /* the stages, then the partial sums */\n"
      "  float *red = (float *)smem;     /* (KS, WR, RT, NSB, NB, 4, 32) */\n"
      "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wr = warp % WR, ks = warp / WR;\n"
      "  int seg0, first;\n"
      "  block_segment(blockIdx.x, &seg0, &first);\n"
      "  const int nrows = seg_rows(seg0);\n"
      "  const int tb = ((int)blockIdx.x - first) * WR * RT; /* the block's first tile within the segment */\n"
      "  const int b0 = blockIdx.y * BT;\n"
      "  /* cp.async's 16-byte copies need x and h 16-byte aligned (every buffer of the runtime is). */\n"
      "  if (K % 8 == 0 && (((unsigned long long)x | (unsigned long long)h) & 15ull)) __trap();\n"
      "  float acc[RT][NSB][NB][4];\n"
      "#pragma unroll\n"
      "  for (int e = 0; e < RT * NSB * NB * 4; ++e) (&acc[0][0][0][0])[e] = 0.0f;\n");
  if (norm)
    rb_buf_puts(b,
        "  float gram[NB][4]; /* x x^T of the n8 tiles' rows over this warp group's columns */\n"
        "#pragma unroll\n"
        "  for (int e = 0; e < NB * 4; ++e) gram[e >> 2][e & 3] = 0.0f;\n");
  const char *accs = norm ? "acc, gram" : "acc";
  if (pl->short_tile)
    rb_buf_printf(b,
        "  if (batch - b0 <= 8) /* only the first n8 tile is live: skip the other's loads and mma */\n"
        "    kloop<1>(%s, sm, x, bits, g, h, batch, seg0, tb, b0);\n"
        "  else\n"
        "    kloop<NB>(%s, sm, x, bits, g, h, batch, seg0, tb, b0);\n", accs, accs);
  else
    rb_buf_printf(b, "  kloop<%s>(%s, sm, x, bits, g, h, batch, seg0, tb, b0);\n", pl->BT > 8 ? "NB" : "1", accs);
  rb_buf_puts(b,
      "  __syncthreads(); /* the stages are dead: the partial sums take their place */\n"
      "#pragma unroll\n"
      "  for (int rt = 0; rt < RT; ++rt)\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb)\n"
      "#pragma unroll\n"
      "      for (int nb = 0; nb < NB; ++nb)\n"
      "#pragma unroll\n"
      "        for (int e = 0; e < 4; ++e)\n"
      "          red[(((((ks * WR + wr) * RT + rt) * NSB + sb) * NB + nb) * 4 + e) * 32 + lane] = acc[rt][sb][nb][e];\n");
  if (norm)
    rb_buf_puts(b,
        "  float *ssq = red + RED_FLOATS; /* (KS, BT): the row warps wr = 0's x.x */\n"
        "  if (wr == 0) { /* the diagonal: row i of tile nb is lane (i, i / 2)'s element i % 2 */\n"
        "    const int gid = lane >> 2, tig = lane & 3;\n"
        "#pragma unroll\n"
        "    for (int nb = 0; nb < NB; ++nb)\n"
        "      if (tig == gid >> 1) ssq[ks * BT + nb * 8 + gid] = gram[nb][gid & 1];\n"
        "  }\n");
  rb_buf_puts(b,
      "  __syncthreads();\n"
      "  /* Thread t sums element t over the KS warp groups in order and stores it. Accumulator e of\n"
      "   * lane l is row (l >> 2) + 8 (e >> 1), batch column 2 (l & 3) + (e & 1). */\n"
      "  for (int t = threadIdx.x; t < WR * RT * NB * 128; t += NT) {\n"
      "    const int wt = t / (NB * 128), nb = t / 128 % NB, e = t / 32 % 4, l = t % 32;\n"
      "    const int n = (tb + wt) * 16 + (l >> 2) + 8 * (e >> 1), brow = b0 + nb * 8 + 2 * (l & 3) + (e & 1);\n"
      "    if (n >= nrows || brow >= batch) continue;\n"
      "    float v[NSB];\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) {\n"
      "      v[sb] = 0.0f;\n"
      "      for (int k = 0; k < KS; ++k) v[sb] += red[((((k * WR * RT + wt) * NSB + sb) * NB + nb) * 4 + e) * 32 + l];\n"
      "    }\n");
  if (norm)
    rb_buf_puts(b,
      "    float xx = 0.0f; /* the row's x.x, over the KS warp groups in order */\n"
      "    for (int k = 0; k < KS; ++k) xx += ssq[k * BT + brow - b0];\n"
      "    const float r = rsqrtf(xx * INV_K + EPS);\n"
      "#pragma unroll\n"
      "    for (int sb = 0; sb < NSB; ++sb) v[sb] *= r;\n");
  cg_linear_emit_store(b, s, "    ", "v[0]", "v[NSB - 1]");
  rb_buf_puts(b, "  }\n}\n\n");
}
