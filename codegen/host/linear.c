/* linear.c: the host target's residual binary linear and its repack.
 *
 * Layout (what the repack writes, cg_host_layout_bytes its size): each
 * segment's rows padded to a multiple of 16 (pad rows all 0), then blocks of
 * 16 rows, words (blocks, paths, W, 16), W = cg_packed_words(K): word w of
 * the block's 16 rows side by side, so that one 64-byte load gives the lut
 * decode the same 32 columns of 16 rows, and a row's word w of path p is at
 * ((row / 16 * paths + p) * W + w) * 16 + row % 16. Inside a word the
 * canonical bits are kept: bit j for column 32 w + j; on a little-endian host
 * byte c of a word holds columns 32 w + 8 c .. + 7.
 *
 * The schedule's tile[1] picks the sign decode:
 * - 2, the lut (AVX-512 only; the default there while its tables fit
 *   LUT_MAX_BYTES): the rows in the 16 lanes, and per batch row a table of
 *   the 16 signed sums of each 4 columns of u = h_p .* x, from which vpermps
 *   picks each row's entry by its 4 sign bits: a shift, a vpermps and an add
 *   per 64 (weight, path). tile[0]: 16, 32, 48 or 64 rows an item (default 48).
 * - 0 and 1 sum, per row and path, the u of the columns whose sign is -1
 *   (A), beside S = sum_j u_j shared by the item's rows, and take
 *   sum_j s_j u_j = S - 2 A. 0: one load from a 256-entry table of lane
 *   masks, then an and (AVX2's cheapest; the default without AVX-512); 1: the
 *   bits as <L x i1> lane predicates (on AVX-512 one kmov and one masked add
 *   per 16 pairs). tile[2] is their fp32 lanes, 8 or 16 (predicates only),
 *   tile[0] their output rows per item (default 8 for the predicates, 16
 *   for the table, halved for swiglu; 1..16 weight rows). u is computed
 *   once per L columns and shared by the rows.
 * tile[2] = 0 with tile[1] = 0 is this CPU's default. A work item is a block
 * of output rows of one segment (never straddling two, since each segment
 * has its own h and hence its own u), for every batch row. */
#include <stdio.h>
#include <string.h>

#include <llvm-c/TargetMachine.h>

#include "codegen/host/host.h"

#define RB_DEFAULT 8        /* the predicates' output rows per work item (tile[0] overrides, 1..16); halved for swiglu */
#define RB_TABLE_DEFAULT 16 /* the table's: 2.25 ms a 4096^2 k = 2 layer on one core, 2.85 at 8 rows (before the layout: 2.2 at 4) */
#define MAXR 16      /* weight rows an item accumulates: G * RB */
#define LUT_MAX_BYTES (1 << 20) /* the lut decode's tables, on the stack of the pool's threads */
#define LAYOUT_TAIL 64          /* bytes past the layout's last word: the lut's offset loads read up to 3 */
#define LUT_RB_DEFAULT 48       /* its rows per item: three blocks of 16 share each table load (KERNEL_NOTES.md,
                                 * 2026-12-02: 10% faster than 32 on a Zen 4 at 4096^2; 64 slower again) */
#define LUT_BT 4                /* batch rows that share each sign load and shift (2 for swiglu: its accumulators double) */
#define LUT_NB_MAX 4            /* 16-row blocks an item (tile[0] / 16) */
#define LUT_PREFETCH 2048       /* bytes ahead in each block's stream of signs, into L2: on a Zen 4, 214 us a 4096^2
                                 * layer from DRAM against 229 at 1024 into L1 (KERNEL_NOTES.md, 2026-12-02) */

/* The segments' first rows in Ntot, and the work items before each segment. */
typedef struct {
  int G;             /* weight-row groups per output row: 2 for swiglu (gate, up), else 1 */
  int RB;            /* output rows per item */
  int predicate;     /* the sign decode: 0 the table of masks, 1 the byte as lane predicates */
  int lut;           /* tile[1] = 2: 16 rows in the lanes, vpermps over tables of 4-column sums */
  int BT;            /* the lut: batch rows a pass (LUT_BT, fewer where their tables pass LUT_MAX_BYTES) */
  int L;             /* lanes: 8, or 16 (two bytes of signs a chunk; predicates only) */
  int nout;          /* output width: Ntot, or N[0] for swiglu */
  int ntot;
  int row0[CG_MAX_SEG], blk0[CG_MAX_SEG + 1];
  int prow0[CG_MAX_SEG], npad[CG_MAX_SEG]; /* each segment's first row and rows in the layout (padded to 16) */
  long long W;       /* words per row of one path */
} Plan;

static int linear_check(const CgOp *s, RbBuf *err) {
  if (s->K <= 0 || s->paths < 1 || s->paths > CG_MAX_PATHS || s->nseg < 1 || s->nseg > CG_MAX_SEG) {
    rb_buf_printf(err, "host linear: bad op (K %d, paths %d, segments %d)", s->K, s->paths, s->nseg);
    return RB_EUSER;
  }
  for (int i = 0; i < s->nseg; i++)
    if (s->N[i] <= 0) {
      rb_buf_printf(err, "host linear: segment %d has N = %d", i, s->N[i]);
      return RB_EUSER;
    }
  if (s->epilogue == CG_EPI_SWIGLU && (s->nseg != 2 || s->N[0] != s->N[1])) {
    rb_buf_printf(err, "host linear: swiglu needs two segments of one width (got %d)", s->nseg);
    return RB_EUSER;
  }
  return RB_OK;
}

/* Whether this CPU has AVX-512F: a kernel's default decode follows it. Safe
 * for cached objects, since the object cache's key carries the host's CPU
 * name and features: another CPU compiles (and emits) its own. */
static int host_avx512(void) {
  char *f = LLVMGetHostCPUFeatures();
  int yes = f && strstr(f, "+avx512f") != NULL;
  LLVMDisposeMessage(f);
  return yes;
}

static int plan_make(const CgKernel *k, Plan *pl, RbBuf *err) {
  const CgOp *s = &k->op;
  if (linear_check(s, err)) return RB_EUSER;
  if (s->kind == CG_LINEAR && k->sched.strategy != CG_STRAT_XOR) {
    /* mma and dequant are the CUDA target's designs; a schedule proposing them is refused, so the default stays */
    rb_buf_printf(err, "host linear: strategy %s is not the host's (it runs xor: the signs pick the lanes to add, on SIMD units)",
                  cg_strategy_name(k->sched.strategy));
    return RB_EUSER;
  }
  memset(pl, 0, sizeof *pl);
  pl->G = s->epilogue == CG_EPI_SWIGLU ? 2 : 1;
  if (k->sched.tile[1] < 0 || k->sched.tile[1] > 2) {
    rb_buf_printf(err, "host linear: tile[1] (the sign decode) must be 0 (table), 1 (predicates) or 2 (lut), got %d",
                  k->sched.tile[1]);
    return RB_EUSER;
  }
  pl->W = cg_packed_words(s->K);
  long long lut_bytes = (long long)pl->G * s->paths * pl->W * 8 * 64; /* the tables: 16 floats per 4 columns */
  pl->predicate = k->sched.tile[1] == 1;
  pl->lut = k->sched.tile[1] == 2;
  pl->L = k->sched.tile[2];
  if (!pl->L && k->sched.tile[1] == 0) { /* nothing asked: this CPU's best decode */
    int avx512 = host_avx512();
    pl->lut = avx512 && lut_bytes <= LUT_MAX_BYTES;
    pl->predicate = avx512 && !pl->lut;
    pl->L = avx512 ? 16 : CG_HOST_LANES;
  } else if (!pl->L && pl->predicate) {
    pl->L = CG_HOST_LANES;
  }
  if (pl->lut) {
    if (!host_avx512()) {
      rb_buf_printf(err, "host linear: the lut decode (tile[1] = 2) needs AVX-512 (vpermps), which this CPU lacks");
      return RB_EUSER;
    }
    if (lut_bytes > LUT_MAX_BYTES) {
      rb_buf_printf(err, "host linear: the lut decode's tables would take %lld bytes of stack (at most %d)", lut_bytes,
                    LUT_MAX_BYTES);
      return RB_EUSER;
    }
    if (pl->L && pl->L != 16) {
      rb_buf_printf(err, "host linear: the lut decode runs 16 lanes (a row each), not tile[2] = %d", pl->L);
      return RB_EUSER;
    }
    pl->L = 16;
    pl->BT = LUT_BT / pl->G;
    while (pl->BT > 1 && pl->BT * lut_bytes > LUT_MAX_BYTES) pl->BT /= 2;
    pl->RB = k->sched.tile[0] ? k->sched.tile[0] : LUT_RB_DEFAULT;
    if (pl->RB % 16 || pl->RB < 16 || pl->RB > 16 * LUT_NB_MAX) {
      rb_buf_printf(err, "host linear: the lut decode takes 16, 32, 48 or 64 rows per item (tile[0]), not %d", pl->RB);
      return RB_EUSER;
    }
  } else {
    pl->RB = k->sched.tile[0] ? k->sched.tile[0] : (pl->predicate ? RB_DEFAULT : RB_TABLE_DEFAULT) / pl->G;
    if (pl->RB < 1 || pl->RB * pl->G > MAXR) {
      rb_buf_printf(err, "host linear: tile[0] (rows per item) must be 1..%d, got %d", MAXR / pl->G, pl->RB);
      return RB_EUSER;
    }
    if (pl->L != 8 && pl->L != 16) {
      rb_buf_printf(err, "host linear: tile[2] (fp32 lanes) must be 8 or 16, got %d", pl->L);
      return RB_EUSER;
    }
    if (pl->L == 16 && !pl->predicate) {
      rb_buf_printf(err, "host linear: 16 lanes decode their signs as predicates (tile[1] = 1): a table would "
                    "hold 65536 masks");
      return RB_EUSER;
    }
  }
  int rb = pl->RB;
  for (int i = 0, pr = 0; i < s->nseg; i++) {
    pl->row0[i] = pl->ntot, pl->prow0[i] = pr;
    pl->ntot += s->N[i];
    pl->npad[i] = (s->N[i] + 15) / 16 * 16;
    pr += pl->npad[i];
  }
  pl->nout = pl->G == 2 ? s->N[0] : pl->ntot;
  int nseg = pl->G == 2 ? 1 : s->nseg; /* swiglu: items cover N[0] and read both segments */
  for (int i = 0; i < nseg; i++) pl->blk0[i + 1] = pl->blk0[i] + (s->N[i] + rb - 1) / rb;
  for (int i = nseg + 1; i <= CG_MAX_SEG; i++) pl->blk0[i] = pl->blk0[nseg];
  pl->W = cg_packed_words(s->K);
  return RB_OK;
}

static int plan_items(const Plan *pl, const CgOp *s) { return pl->blk0[pl->G == 2 ? 1 : s->nseg]; }

/* The table of lane masks: entry b, lane j all ones where bit j of b is set (sign -1). Private to
 * each object, so objects never clash in one JIT. */
static LLVMValueRef sign_table(CgHostFn *h) {
  LLVMValueRef rows[256];
  for (int b = 0; b < 256; b++) {
    LLVMValueRef lane[CG_HOST_LANES];
    for (int j = 0; j < CG_HOST_LANES; j++)
      lane[j] = LLVMConstInt(h->i32, (b >> j & 1) ? 0xFFFFFFFFu : 0u, 0);
    rows[b] = LLVMConstVector(lane, CG_HOST_LANES);
  }
  LLVMTypeRef at = LLVMArrayType(h->vi, 256);
  LLVMValueRef g = LLVMAddGlobal(h->mod, at, "sign_masks");
  LLVMSetInitializer(g, LLVMConstArray(h->vi, rows, 256));
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  LLVMSetAlignment(g, 32);
  return g;
}

/* A constant table lookup tab[i] for small tables, as a chain of selects on i (i64). */
static LLVMValueRef pick(CgHostFn *h, LLVMValueRef i, const int *tab, int n) {
  LLVMValueRef v = cg_host_i64(h, tab[0]);
  for (int s = 1; s < n; s++)
    v = LLVMBuildSelect(h->b, LLVMBuildICmp(h->b, LLVMIntEQ, i, cg_host_i64(h, s), ""), cg_host_i64(h, tab[s]), v, "");
  return v;
}

/* The index (in 32-bit words) of word w of path p of layout row prow (i64s). */
static LLVMValueRef layout_word(CgHostFn *h, const Plan *pl, int paths, LLVMValueRef prow, LLVMValueRef p,
                                LLVMValueRef w) {
  LLVMValueRef blk = LLVMBuildLShr(h->b, prow, cg_host_i64(h, 4), "");
  LLVMValueRef bp = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, blk, cg_host_i64(h, paths), ""), p, "");
  LLVMValueRef bw = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, bp, cg_host_i64(h, pl->W), ""), w, "");
  return LLVMBuildAdd(h->b, LLVMBuildShl(h->b, bw, cg_host_i64(h, 4), ""),
                      LLVMBuildAnd(h->b, prow, cg_host_i64(h, 15), ""), "word");
}

/* acc[r] += u where the sign of (byte c of weight row r, path p) is -1 (its
 * bit set), for the item's rows: with A_r that sum and S = sum_j u_j,
 * row r's sum_j s_j u_j = S - 2 A_r (the caller adds S once per path). The
 * predicate decode is then one mask-register load and one masked add per L
 * (weight, path) on AVX-512 (kmov, vaddps zmm{k}); the table decode one
 * load of an all-ones mask, an and and an add. */
static void accumulate(CgHostFn *h, const Plan *pl, LLVMValueRef lut, LLVMValueRef bits, LLVMValueRef *u,
                       LLVMValueRef *prows, LLVMValueRef p, LLVMValueRef cw, int cj, LLVMValueRef *acc, int paths) {
  for (int gi = 0; gi < pl->G; gi++) {
    LLVMValueRef ui = pl->predicate ? NULL : LLVMBuildBitCast(h->b, u[gi], h->vi, "u.bits");
    for (int r = 0; r < pl->RB; r++) {
      int w = gi * pl->RB + r;
      /* the chunk's L / 8 bytes, cj * L / 8 into word cw: bit j for column 32 cw + L cj + j (little-endian) */
      LLVMValueRef wi = layout_word(h, pl, paths, prows[w], p, cw);
      LLVMValueRef off = LLVMBuildAdd(h->b, LLVMBuildShl(h->b, wi, cg_host_i64(h, 2), ""), cg_host_i64(h, cj * pl->L / 8), "");
      LLVMTypeRef st = pl->L == 16 ? h->i16 : h->i8;
      LLVMValueRef byte = LLVMBuildLoad2(h->b, st, cg_host_gep(h, h->i8, bits, off), "signs");
      LLVMSetAlignment(byte, 1);
      LLVMValueRef a = cg_host_get(h, h->vf, acc[w], "");
      LLVMValueRef sum;
      if (pl->predicate) {
        /* the bits as L lane predicates: AVX-512 loads them into a mask
         * register and adds under it; AVX2 broadcasts, ands, compares, blends */
        LLVMValueRef m1 = LLVMBuildBitCast(h->b, byte, LLVMVectorType(h->i1, (unsigned)pl->L), "");
        sum = LLVMBuildSelect(h->b, m1, LLVMBuildFAdd(h->b, a, u[gi], ""), a, "");
      } else { /* one load from the table: AVX2's cheapest */
        LLVMValueRef idx[2] = {cg_host_i64(h, 0), LLVMBuildZExt(h->b, byte, h->i64, "")};
        LLVMValueRef mp = LLVMBuildInBoundsGEP2(h->b, LLVMArrayType(h->vi, 256), lut, idx, 2, "");
        LLVMValueRef mask = LLVMBuildLoad2(h->b, h->vi, mp, "mask");
        LLVMSetAlignment(mask, 32);
        LLVMValueRef mu = LLVMBuildBitCast(h->b, LLVMBuildAnd(h->b, ui, mask, ""), h->vf, "mu");
        sum = LLVMBuildFAdd(h->b, a, mu, "");
      }
      cg_host_set(h, acc[w], sum);
    }
  }
}

/* ---- the lut decode (tile[1] = 2, AVX-512) ----
 * The item's rows lie in the lanes, 16 a block: lane r of a block's 64-byte
 * load is word w of row r, 8 nibbles of signs for 8 groups of 4 columns.
 * Per batch row and segment a table holds, for each group and each of the
 * 16 sign patterns m, T[m] = sum_j (bit j of m ? -u_j : u_j) (u = h_p .* x,
 * fp32); vpermps picks T[nibble] for all 16 rows at once (it reads only the
 * low 4 bits of each index, so a shift is the whole decode). Per 64
 * (weight, path) that is a shift, a vpermps and an add, against 4 masked
 * adds for the predicates; two blocks share each table load. */

/* A software prefetch of the line at ptr into L2 (llvm.prefetch: read, locality 2, data): far enough
 * ahead to cover DRAM's latency, and out of the way of the tables in L1. */
static void prefetch(CgHostFn *h, LLVMValueRef ptr) {
  static const char name[] = "llvm.prefetch.p0";
  LLVMTypeRef params[4] = {h->ptr, h->i32, h->i32, h->i32};
  LLVMTypeRef ft = LLVMFunctionType(LLVMVoidTypeInContext(h->ctx), params, 4, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(h->mod, name);
  if (!fn) fn = LLVMAddFunction(h->mod, name, ft);
  LLVMValueRef args[4] = {ptr, cg_host_i32(h, 0), cg_host_i32(h, 2), cg_host_i32(h, 1)};
  LLVMBuildCall2(h->b, ft, fn, args, 4, "");
}

/* vpermps: lane i of the result is tab[idx[i] & 15]. */
static LLVMValueRef permvar(CgHostFn *h, LLVMValueRef tab, LLVMValueRef idx) {
  static const char name[] = "llvm.x86.avx512.permvar.sf.512";
  LLVMTypeRef params[2] = {h->vf, h->vi};
  LLVMTypeRef ft = LLVMFunctionType(h->vf, params, 2, 0);
  LLVMValueRef fn = LLVMGetNamedFunction(h->mod, name);
  if (!fn) fn = LLVMAddFunction(h->mod, name, ft);
  LLVMValueRef args[2] = {tab, idx};
  return LLVMBuildCall2(h->b, ft, fn, args, 2, "");
}

static LLVMValueRef splat_i32(CgHostFn *h, int v, int n) {
  LLVMValueRef l[CG_HOST_MAX_LANES];
  for (int i = 0; i < n; i++) l[i] = cg_host_i32(h, v);
  return LLVMConstVector(l, (unsigned)n);
}

/* The 16 signed sums of the 4 values in u4 (<4 x float>), entry m negating u_j where bit j of m is set. */
static LLVMValueRef lut_entries(CgHostFn *h, LLVMValueRef u4) {
  LLVMValueRef t = NULL;
  for (int j = 0; j < 4; j++) {
    LLVMValueRef sg[16];
    for (int m = 0; m < 16; m++) sg[m] = cg_host_f32(h, (m >> j & 1) ? -1.0f : 1.0f);
    LLVMValueRef uj = LLVMBuildShuffleVector(h->b, u4, LLVMGetUndef(LLVMTypeOf(u4)), splat_i32(h, j, 16), "");
    LLVMValueRef term = LLVMBuildFMul(h->b, uj, LLVMConstVector(sg, 16), ""); /* exact: times +-1 */
    t = t ? LLVMBuildFAdd(h->b, t, term, "") : term;
  }
  return t;
}

/* Fill table gi (of G) for segment sg and batch row b: every path, W * 8 groups (those past K all 0). */
static void lut_fill(CgHostFn *h, const CgOp *s, const Plan *pl, LLVMValueRef tab, int gi, LLVMValueRef sg,
                     LLVMValueRef x, LLVMValueRef hs, LLVMValueRef b) {
  const int K = s->K, P = s->paths, ng = (int)pl->W * 8;
  LLVMTypeRef v4h = LLVMVectorType(h->f16, 4), v4f = LLVMVectorType(h->f32, 4);
  LLVMValueRef xrow = LLVMBuildMul(h->b, b, cg_host_i64(h, K), "x.row");
  for (int p = 0; p < P; p++) {
    LLVMValueRef hrow = LLVMBuildMul(h->b, LLVMBuildAdd(h->b, LLVMBuildMul(h->b, sg, cg_host_i64(h, P), ""),
                                                        cg_host_i64(h, p), ""), cg_host_i64(h, K), "h.row");
    long long t0 = (long long)(gi * P + p) * ng; /* the path's first group in the tables */
    CgHostLoop lg;
    LLVMValueRef q = cg_host_loop_begin(h, &lg, cg_host_i64(h, 0), cg_host_i64(h, K / 4), "grp");
    LLVMValueRef col = LLVMBuildShl(h->b, q, cg_host_i64(h, 2), "col");
    LLVMValueRef xv = LLVMBuildLoad2(h->b, v4h, cg_host_gep(h, h->f16, x, LLVMBuildAdd(h->b, xrow, col, "")), "");
    LLVMValueRef hv = LLVMBuildLoad2(h->b, v4h, cg_host_gep(h, h->f16, hs, LLVMBuildAdd(h->b, hrow, col, "")), "");
    LLVMSetAlignment(xv, 2), LLVMSetAlignment(hv, 2);
    LLVMValueRef u4 = LLVMBuildFMul(h->b, LLVMBuildFPExt(h->b, xv, v4f, ""), LLVMBuildFPExt(h->b, hv, v4f, ""), "u");
    LLVMValueRef st = LLVMBuildStore(h->b, lut_entries(h, u4),
                                     cg_host_gep(h, h->vf, tab, LLVMBuildAdd(h->b, q, cg_host_i64(h, t0), "")));
    LLVMSetAlignment(st, 64);
    cg_host_loop_end(h, &lg);
    int g = K / 4;
    if (K % 4) { /* the partial group: its columns past K are 0 */
      LLVMValueRef u4t = LLVMConstNull(v4f);
      for (int j = 0; j < K % 4; j++) {
        LLVMValueRef c = cg_host_i64(h, 4LL * g + j);
        LLVMValueRef u = LLVMBuildFMul(h->b, cg_host_load_h(h, x, LLVMBuildAdd(h->b, xrow, c, "")),
                                       cg_host_load_h(h, hs, LLVMBuildAdd(h->b, hrow, c, "")), "");
        u4t = LLVMBuildInsertElement(h->b, u4t, u, cg_host_i32(h, j), "");
      }
      st = LLVMBuildStore(h->b, lut_entries(h, u4t), cg_host_gep(h, h->vf, tab, cg_host_i64(h, t0 + g)));
      LLVMSetAlignment(st, 64);
      g++;
    }
    if (g < ng) { /* the groups of the last word past K: pad bits are 0, and so must be their sums */
      CgHostLoop lz;
      LLVMValueRef z = cg_host_loop_begin(h, &lz, cg_host_i64(h, g), cg_host_i64(h, ng), "zero");
      st = LLVMBuildStore(h->b, LLVMConstNull(h->vf), cg_host_gep(h, h->vf, tab, LLVMBuildAdd(h->b, z, cg_host_i64(h, t0), "")));
      LLVMSetAlignment(st, 64);
      cg_host_loop_end(h, &lz);
    }
  }
}

/* One pass of the lut linear over the call's items for batch rows b0 .. b0 + BT - 1. */
static void lut_rows(CgHostFn *h, const CgOp *s, const Plan *pl, LLVMValueRef y, LLVMValueRef x, LLVMValueRef bits,
                     LLVMValueRef g, LLVMValueRef hs, LLVMValueRef res, LLVMValueRef tab, LLVMValueRef b0, int BT) {
  const int P = s->paths, NB = pl->RB / 16, G = pl->G, ng = (int)pl->W * 8;
  const int nseg = G == 2 ? 1 : s->nseg;
  LLVMValueRef cur = cg_host_var(h, h->i64, cg_host_i64(h, -1), "lut.seg"); /* the segment the tables hold */
  LLVMValueRef acc[LUT_BT][2][LUT_NB_MAX][2], yv[LUT_BT][2][LUT_NB_MAX], tabt[LUT_BT];
  for (int t = 0; t < BT; t++) {
    tabt[t] = cg_host_gep(h, h->vf, tab, cg_host_i64(h, (long long)t * G * P * ng)); /* batch row b0 + t's tables */
    for (int gi = 0; gi < G; gi++)
      for (int nb = 0; nb < NB; nb++) {
        yv[t][gi][nb] = cg_host_var(h, h->vf, NULL, "yv");
        for (int a = 0; a < 2; a++) acc[t][gi][nb][a] = cg_host_var(h, h->vf, NULL, "acc");
      }
  }
  CgHostLoop li, lp, lw;
  LLVMValueRef it = cg_host_loop_begin(h, &li, h->begin, h->end, "item");
  LLVMValueRef seg = cg_host_i64(h, 0);
  for (int i = 1; i < nseg; i++)
    seg = LLVMBuildSelect(h->b, LLVMBuildICmp(h->b, LLVMIntSGE, it, cg_host_i64(h, pl->blk0[i]), ""), cg_host_i64(h, i), seg, "");
  LLVMValueRef n0 = LLVMBuildMul(h->b, LLVMBuildSub(h->b, it, pick(h, seg, pl->blk0, nseg), ""), cg_host_i64(h, pl->RB), "n0");
  LLVMValueRef nrows = pick(h, seg, s->N, nseg), last = LLVMBuildSub(h->b, nrows, cg_host_i64(h, 1), "");
  CgHostIf fill;
  cg_host_if_begin(h, &fill, LLVMBuildICmp(h->b, LLVMIntNE, seg, cg_host_get(h, h->i64, cur, ""), ""), "lut.fill");
  for (int t = 0; t < BT; t++)
    for (int gi = 0; gi < G; gi++)
      lut_fill(h, s, pl, tabt[t], gi, G == 2 ? cg_host_i64(h, gi) : seg, x, hs, LLVMBuildAdd(h->b, b0, cg_host_i64(h, t), ""));
  cg_host_set(h, cur, seg);
  cg_host_if_end(h, &fill);
  /* each block's first layout row, clamped to the segment's last block: a block
   * past it recomputes that one and stores nothing */
  LLVMValueRef prow[2][LUT_NB_MAX], r0[2];
  for (int gi = 0; gi < G; gi++) {
    LLVMValueRef sg = G == 2 ? cg_host_i64(h, gi) : seg;
    r0[gi] = pick(h, sg, pl->row0, s->nseg);
    LLVMValueRef pr0 = pick(h, sg, pl->prow0, s->nseg), top = LLVMBuildSub(h->b, pick(h, sg, pl->npad, s->nseg), cg_host_i64(h, 16), "");
    for (int nb = 0; nb < NB; nb++)
      prow[gi][nb] = LLVMBuildAdd(h->b, pr0, cg_host_min64(h, LLVMBuildAdd(h->b, n0, cg_host_i64(h, 16 * nb), ""), top), "prow");
  }
  for (int t = 0; t < BT; t++)
    for (int gi = 0; gi < G; gi++)
      for (int nb = 0; nb < NB; nb++) cg_host_set(h, yv[t][gi][nb], LLVMConstNull(h->vf));
  LLVMValueRef p = cg_host_loop_begin(h, &lp, cg_host_i64(h, 0), cg_host_i64(h, P), "p");
  for (int t = 0; t < BT; t++)
    for (int gi = 0; gi < G; gi++)
      for (int nb = 0; nb < NB; nb++)
        for (int a = 0; a < 2; a++) cg_host_set(h, acc[t][gi][nb][a], LLVMConstNull(h->vf));
  LLVMValueRef w = cg_host_loop_begin(h, &lw, cg_host_i64(h, 0), cg_host_i64(h, pl->W), "w");
  /* vpermps reads an index's low 4 bits only, and on a little-endian host lane l's byte c
   * (columns 8c .. 8c + 7 of its row) is byte 4l + c of the vector: the 16 lanes loaded
   * from c bytes further hold groups 2c and 2c + 1 in their low byte, so four loads and
   * four shifts give the 8 groups (one load and seven shifts did). The layout's tail
   * (LAYOUT_TAIL) keeps the last vector's offset loads in bounds. */
  LLVMValueRef vb[2][LUT_NB_MAX][4];
  for (int gi = 0; gi < G; gi++)
    for (int nb = 0; nb < NB; nb++) {
      LLVMValueRef at = cg_host_gep(h, h->i32, bits, layout_word(h, pl, P, prow[gi][nb], p, w));
      for (int c = 0; c < 4; c++) {
        vb[gi][nb][c] = LLVMBuildLoad2(h->b, h->vi, c ? cg_host_gep(h, h->i8, at, cg_host_i64(h, c)) : at, "signs");
        LLVMSetAlignment(vb[gi][nb][c], c ? 1 : 4);
      }
      prefetch(h, cg_host_gep(h, h->i8, at, cg_host_i64(h, LUT_PREFETCH)));
    }
  for (int q = 0; q < 8; q++) /* the word's 8 groups of 4 columns */
    for (int gi = 0; gi < G; gi++) {
      LLVMValueRef idx[LUT_NB_MAX];
      for (int nb = 0; nb < NB; nb++)
        idx[nb] = q & 1 ? LLVMBuildLShr(h->b, vb[gi][nb][q / 2], splat_i32(h, 4, 16), "") : vb[gi][nb][q / 2];
      /* group ((gi * P + p) * W + w) * 8 + q of the tables, one table a batch row */
      LLVMValueRef path = LLVMBuildAdd(h->b, cg_host_i64(h, gi * P), p, "");
      LLVMValueRef ti = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, path, cg_host_i64(h, ng), ""),
                                     LLVMBuildAdd(h->b, LLVMBuildShl(h->b, w, cg_host_i64(h, 3), ""), cg_host_i64(h, q), ""), "");
      for (int t = 0; t < BT; t++) {
        LLVMValueRef tv = LLVMBuildLoad2(h->b, h->vf, cg_host_gep(h, h->vf, tabt[t], ti), "t");
        LLVMSetAlignment(tv, 64);
        for (int nb = 0; nb < NB; nb++) {
          /* one or two blocks: two accumulators each, so that a block's 8 adds a word form two
           * chains; from three blocks on, the blocks' chains interleave and one suffices */
          LLVMValueRef a = acc[t][gi][nb][NB > 2 ? 0 : q & 1];
          cg_host_set(h, a, LLVMBuildFAdd(h->b, cg_host_get(h, h->vf, a, ""), permvar(h, tv, idx[nb]), ""));
        }
      }
    }
  cg_host_loop_end(h, &lw);
  /* yv += g_p[rows] .* A, the 16 rows' scales gathered (clamped to the segment) */
  for (int gi = 0; gi < G; gi++)
    for (int nb = 0; nb < NB; nb++) {
      LLVMValueRef gv = LLVMConstNull(h->vf);
      for (int l = 0; l < 16; l++) {
        LLVMValueRef n = cg_host_min64(h, LLVMBuildAdd(h->b, n0, cg_host_i64(h, 16 * nb + l), ""), last);
        LLVMValueRef gi_ = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, p, cg_host_i64(h, pl->ntot), ""), LLVMBuildAdd(h->b, r0[gi], n, ""), "");
        gv = LLVMBuildInsertElement(h->b, gv, cg_host_load_h(h, g, gi_), cg_host_i32(h, l), "");
      }
      for (int t = 0; t < BT; t++) {
        LLVMValueRef a = LLVMBuildFAdd(h->b, cg_host_get(h, h->vf, acc[t][gi][nb][0], ""),
                                       cg_host_get(h, h->vf, acc[t][gi][nb][1], ""), "");
        cg_host_set(h, yv[t][gi][nb], LLVMBuildFAdd(h->b, cg_host_get(h, h->vf, yv[t][gi][nb], ""), LLVMBuildFMul(h->b, gv, a, ""), ""));
      }
    }
  cg_host_loop_end(h, &lp);
  /* the stores of the item's valid rows */
  for (int t = 0; t < BT; t++) {
    LLVMValueRef b = LLVMBuildAdd(h->b, b0, cg_host_i64(h, t), "b");
    for (int nb = 0; nb < NB; nb++) {
      LLVMValueRef y0 = cg_host_get(h, h->vf, yv[t][0][nb], ""), y1 = G == 2 ? cg_host_get(h, h->vf, yv[t][1][nb], "") : NULL;
      for (int l = 0; l < 16; l++) {
        LLVMValueRef n = LLVMBuildAdd(h->b, n0, cg_host_i64(h, 16 * nb + l), "n");
        CgHostIf f;
        cg_host_if_begin(h, &f, LLVMBuildICmp(h->b, LLVMIntSLT, n, nrows, ""), "store");
        LLVMValueRef v0 = LLVMBuildExtractElement(h->b, y0, cg_host_i32(h, l), "");
        if (s->epilogue == CG_EPI_SWIGLU) {
          LLVMValueRef v1 = LLVMBuildExtractElement(h->b, y1, cg_host_i32(h, l), "");
          LLVMValueRef o = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, b, cg_host_i64(h, pl->nout), ""), n, "");
          cg_host_store_h(h, LLVMBuildFMul(h->b, cg_host_silu(h, v0), v1, ""), y, o);
        } else {
          LLVMValueRef o = LLVMBuildAdd(h->b, LLVMBuildMul(h->b, b, cg_host_i64(h, pl->ntot), ""), LLVMBuildAdd(h->b, r0[0], n, ""), "");
          if (s->epilogue == CG_EPI_ADD) v0 = LLVMBuildFAdd(h->b, v0, cg_host_load_h(h, res, o), "");
          cg_host_store_h(h, v0, y, o);
        }
        cg_host_if_end(h, &f);
      }
    }
  }
  cg_host_loop_end(h, &li);
}

/* The body of the lut linear, after the arguments: tiles of pl->BT batch rows
 * (each sign load and shift serving all of them), then the rows left one at a time. */
static void emit_lut(CgHostFn *h, const CgOp *s, const Plan *pl, LLVMValueRef y, LLVMValueRef x, LLVMValueRef bits,
                     LLVMValueRef g, LLVMValueRef hs, LLVMValueRef res, LLVMValueRef batch) {
  const int ng = (int)pl->W * 8;
  LLVMValueRef tab = cg_host_var(h, LLVMArrayType(h->vf, (unsigned)(pl->BT * pl->G * s->paths * ng)), NULL, "lut");
  LLVMSetAlignment(tab, 64);
  CgHostLoop lt, lb;
  LLVMValueRef full = cg_host_i64(h, 0);
  if (pl->BT > 1) {
    full = LLVMBuildMul(h->b, LLVMBuildSDiv(h->b, batch, cg_host_i64(h, pl->BT), ""), cg_host_i64(h, pl->BT), "full");
    LLVMValueRef bt = cg_host_loop_begin(h, &lt, cg_host_i64(h, 0), LLVMBuildSDiv(h->b, batch, cg_host_i64(h, pl->BT), ""), "bt");
    lut_rows(h, s, pl, y, x, bits, g, hs, res, tab, LLVMBuildMul(h->b, bt, cg_host_i64(h, pl->BT), "b0"), pl->BT);
    cg_host_loop_end(h, &lt);
  }
  LLVMValueRef b = cg_host_loop_begin(h, &lb, full, batch, "b");
  lut_rows(h, s, pl, y, x, bits, g, hs, res, tab, b, 1);
  cg_host_loop_end(h, &lb);
}

/* Emit the linear. Parameters (CgLinearArgs): y, x, bits, g, h, res, batch. */
int cg_host_emit_linear(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  Plan pl;
  if (plan_make(k, &pl, err)) return RB_EUSER;
  char readable[96];
  int n = snprintf(readable, sizeof readable, "linear_n");
  for (int i = 0; i < s->nseg; i++) n += snprintf(readable + n, sizeof readable - (size_t)n, "%s%d", i ? "_" : "", s->N[i]);
  snprintf(readable + n, sizeof readable - (size_t)n, "_k%d_p%d%s%s", s->K, s->paths,
           s->epilogue ? "_" : "", s->epilogue ? cg_epilogue_name(s->epilogue) : "");
  cg_host_entry(k, readable, entry);

  CgHostFn h;
  cg_host_begin(&h, entry);
  LLVMValueRef lut = pl.predicate || pl.lut ? NULL : sign_table(&h); /* the mask table: tile[1] = 0 only */
  LLVMValueRef y = cg_host_arg_ptr(&h, 0, "y"), x = cg_host_arg_ptr(&h, 1, "x");
  LLVMValueRef bits = cg_host_arg_ptr(&h, 2, "bits"), g = cg_host_arg_ptr(&h, 3, "g");
  LLVMValueRef hs = cg_host_arg_ptr(&h, 4, "h"), res = cg_host_arg_ptr(&h, 5, "res");
  LLVMValueRef batch = cg_host_arg_int(&h, 6, "batch");
  cg_host_set_lanes(&h, pl.L);
  if (pl.lut) {
    emit_lut(&h, s, &pl, y, x, bits, g, hs, res, batch);
    char what[512];
    snprintf(what, sizeof what,
             "y = sum_p g_p .* (B_p (h_p .* x))%s, x and y fp16, fp32 sums.\n"
             "work item: %d output rows of one segment (16 a block, a row a lane), every batch row; %d items.\n"
             "bits: the host layout; per batch row and segment a table of the 16 signed sums of each 4 columns\n"
             "of u = h_p .* x, picked by each row's 4 sign bits with vpermps (the lut decode).",
             s->epilogue == CG_EPI_ADD ? " + res" : s->epilogue == CG_EPI_SWIGLU ? ", then silu(gate) * up" : "", pl.RB,
             plan_items(&pl, s));
    return cg_host_finish(&h, k, "codegen/host/linear.c", what, src, err);
  }
  const int K = s->K, KC = K / pl.L, tail = K % pl.L, P = s->paths;
  int nseg = pl.G == 2 ? 1 : s->nseg;
  LLVMValueRef acc[MAXR], yacc[MAXR], usum[2];
  for (int w = 0; w < pl.G * pl.RB; w++) {
    acc[w] = cg_host_var(&h, h.vf, NULL, "acc");
    yacc[w] = cg_host_var(&h, h.vf, NULL, "yacc");
  }
  for (int gi = 0; gi < pl.G; gi++) usum[gi] = cg_host_var(&h, h.vf, NULL, "usum");

  CgHostLoop li, lb, lp, lc;
  LLVMValueRef it = cg_host_loop_begin(&h, &li, h.begin, h.end, "item");
  /* the item's segment and first output row */
  int blk0[CG_MAX_SEG], segn[CG_MAX_SEG], segrow0[CG_MAX_SEG];
  LLVMValueRef seg = cg_host_i64(&h, 0);
  for (int i = 0; i < nseg; i++) blk0[i] = pl.blk0[i], segn[i] = s->N[i], segrow0[i] = pl.row0[i];
  for (int i = 1; i < nseg; i++)
    seg = LLVMBuildSelect(h.b, LLVMBuildICmp(h.b, LLVMIntSGE, it, cg_host_i64(&h, blk0[i]), ""), cg_host_i64(&h, i), seg, "");
  LLVMValueRef n0 = LLVMBuildMul(h.b, LLVMBuildSub(h.b, it, pick(&h, seg, blk0, nseg), ""), cg_host_i64(&h, pl.RB), "n0");
  LLVMValueRef nseg_rows = pick(&h, seg, segn, nseg);
  /* weight rows (in Ntot) of the item, clamped to the segment's last row: a
   * partial block recomputes that row and skips the store */
  LLVMValueRef rows[MAXR], prows[MAXR], hbase[2];
  for (int gi = 0; gi < pl.G; gi++) {
    LLVMValueRef r0 = pl.G == 2 ? cg_host_i64(&h, pl.row0[gi]) : pick(&h, seg, segrow0, nseg);
    LLVMValueRef pr0 = pl.G == 2 ? cg_host_i64(&h, pl.prow0[gi]) : pick(&h, seg, pl.prow0, nseg);
    LLVMValueRef sg = pl.G == 2 ? cg_host_i64(&h, gi) : seg;
    hbase[gi] = LLVMBuildMul(h.b, sg, cg_host_i64(&h, (long long)P * K), "h.seg"); /* h (nseg, paths, K) */
    for (int r = 0; r < pl.RB; r++) {
      LLVMValueRef nr = cg_host_min64(&h, LLVMBuildAdd(h.b, n0, cg_host_i64(&h, r), ""),
                                      LLVMBuildSub(h.b, nseg_rows, cg_host_i64(&h, 1), ""));
      rows[gi * pl.RB + r] = LLVMBuildAdd(h.b, r0, nr, "row");
      prows[gi * pl.RB + r] = LLVMBuildAdd(h.b, pr0, nr, "prow");
    }
  }

  LLVMValueRef b = cg_host_loop_begin(&h, &lb, cg_host_i64(&h, 0), batch, "b");
  for (int w = 0; w < pl.G * pl.RB; w++) cg_host_set(&h, yacc[w], LLVMConstNull(h.vf));
  LLVMValueRef xrow = LLVMBuildMul(h.b, b, cg_host_i64(&h, K), "x.row");
  LLVMValueRef p = cg_host_loop_begin(&h, &lp, cg_host_i64(&h, 0), cg_host_i64(&h, P), "p");
  for (int w = 0; w < pl.G * pl.RB; w++) cg_host_set(&h, acc[w], LLVMConstNull(h.vf));
  for (int gi = 0; gi < pl.G; gi++) cg_host_set(&h, usum[gi], LLVMConstNull(h.vf));
  LLVMValueRef hp[2];
  for (int gi = 0; gi < pl.G; gi++)
    hp[gi] = LLVMBuildAdd(h.b, hbase[gi], LLVMBuildMul(h.b, p, cg_host_i64(&h, K), ""), "h.path");
  /* the full words (32 / L chunks of L columns each, unrolled so that every
   * row's address moves by one word a step), the full chunks after them, then
   * the tail (its lanes past K are 0, and so are its pad bits) */
  const int per = 32 / pl.L, KW = KC / per;
  for (int part = 0; part < 3; part++) {
    int nch = part == 0 ? per : part == 1 ? KC % per : tail ? 1 : 0;
    if (part == 0 && !KW) continue;
    LLVMValueRef cw = part == 0 ? cg_host_loop_begin(&h, &lc, cg_host_i64(&h, 0), cg_host_i64(&h, KW), "cw")
                                : cg_host_i64(&h, KW);
    for (int j = 0; j < nch; j++) {
      int cj = part == 2 ? KC % per : j;
      int count = part == 2 ? tail : pl.L;
      LLVMValueRef col = LLVMBuildAdd(h.b, LLVMBuildMul(h.b, cw, cg_host_i64(&h, 32), ""), cg_host_i64(&h, cj * pl.L), "col");
      LLVMValueRef xv = cg_host_load_h8(&h, x, LLVMBuildAdd(h.b, xrow, col, ""), count);
      LLVMValueRef u[2];
      for (int gi = 0; gi < pl.G; gi++) {
        u[gi] = LLVMBuildFMul(h.b, xv, cg_host_load_h8(&h, hs, LLVMBuildAdd(h.b, hp[gi], col, ""), count), "u");
        cg_host_set(&h, usum[gi], LLVMBuildFAdd(h.b, cg_host_get(&h, h.vf, usum[gi], ""), u[gi], "")); /* S, shared by the rows */
    }
    accumulate(&h, &pl, lut, bits, u, prows, p, cw, cj, acc, P);
    }
    if (part == 0) cg_host_loop_end(&h, &lc);
  }
  /* yacc += g_p[row] * (S - 2 A), lane-wise; the lanes are summed once after the paths */
  for (int w = 0; w < pl.G * pl.RB; w++) {
    LLVMValueRef gv = cg_host_load_h(&h, g, LLVMBuildAdd(h.b, LLVMBuildMul(h.b, p, cg_host_i64(&h, pl.ntot), ""), rows[w], ""));
    LLVMValueRef a = cg_host_get(&h, h.vf, acc[w], ""), sv = cg_host_get(&h, h.vf, usum[w / pl.RB], "");
    LLVMValueRef su = LLVMBuildFSub(h.b, sv, LLVMBuildFAdd(h.b, a, a, ""), "su");
    LLVMValueRef t = LLVMBuildFMul(h.b, cg_host_splat(&h, gv), su, "");
    cg_host_set(&h, yacc[w], LLVMBuildFAdd(h.b, cg_host_get(&h, h.vf, yacc[w], ""), t, ""));
  }
  cg_host_loop_end(&h, &lp);
  /* the stores of the block's valid rows */
  for (int r = 0; r < pl.RB; r++) {
    LLVMValueRef nr = LLVMBuildAdd(h.b, n0, cg_host_i64(&h, r), "n");
    CgHostIf f;
    cg_host_if_begin(&h, &f, LLVMBuildICmp(h.b, LLVMIntSLT, nr, nseg_rows, ""), "store");
    LLVMValueRef v0 = cg_host_hsum(&h, cg_host_get(&h, h.vf, yacc[r], ""));
    if (s->epilogue == CG_EPI_SWIGLU) {
      LLVMValueRef v1 = cg_host_hsum(&h, cg_host_get(&h, h.vf, yacc[pl.RB + r], ""));
      LLVMValueRef o = LLVMBuildAdd(h.b, LLVMBuildMul(h.b, b, cg_host_i64(&h, pl.nout), ""), nr, "");
      cg_host_store_h(&h, LLVMBuildFMul(h.b, cg_host_silu(&h, v0), v1, ""), y, o);
    } else {
      LLVMValueRef o = LLVMBuildAdd(h.b, LLVMBuildMul(h.b, b, cg_host_i64(&h, pl.ntot), ""), rows[r], "");
      if (s->epilogue == CG_EPI_ADD) v0 = LLVMBuildFAdd(h.b, v0, cg_host_load_h(&h, res, o), "");
      cg_host_store_h(&h, v0, y, o);
    }
    cg_host_if_end(&h, &f);
  }
  cg_host_loop_end(&h, &lb);
  cg_host_loop_end(&h, &li);
  char what[512];
  snprintf(what, sizeof what,
           "y = sum_p g_p .* (B_p (h_p .* x))%s, x and y fp16, fp32 sums.\n"
           "work item: %d output rows of one segment, every batch row; %d items.\n"
           "bits: the host layout (Ntot, paths, ceil(K/32)) words; per row and path S - 2 A on %d fp32 lanes,\n"
           "S the sum of u = h_p .* x, A that of u where the sign is -1, the signs decoded %s.",
           s->epilogue == CG_EPI_ADD ? " + res" : s->epilogue == CG_EPI_SWIGLU ? ", then silu(gate) * up" : "",
           pl.RB, plan_items(&pl, s), pl.L, pl.predicate ? "as lane predicates (masked adds)" : "by a table of 256 lane masks");
  return cg_host_finish(&h, k, "codegen/host/linear.c", what, src, err);
}

/* Emit the repack of one segment: canonical (paths, N[seg], W) -> the host
 * layout's rows row0[seg] .. of (Ntot, paths, W). Parameters (CgRepackArgs): dst, src, seg. */
int cg_host_emit_repack(const CgKernel *k, RbBuf *src, char entry[CG_ENTRY_MAX], RbBuf *err) {
  const CgOp *s = &k->op;
  Plan pl;
  if (plan_make(k, &pl, err)) return RB_EUSER;
  int nmax = 0;
  for (int i = 0; i < s->nseg; i++) nmax = pl.npad[i] > nmax ? pl.npad[i] : nmax;
  char readable[96];
  int n = snprintf(readable, sizeof readable, "repack_n");
  for (int i = 0; i < s->nseg; i++) n += snprintf(readable + n, sizeof readable - (size_t)n, "%s%d", i ? "_" : "", s->N[i]);
  snprintf(readable + n, sizeof readable - (size_t)n, "_k%d_p%d", s->K, s->paths);
  cg_host_entry(k, readable, entry);

  CgHostFn h;
  cg_host_begin(&h, entry);
  LLVMValueRef dst = cg_host_arg_ptr(&h, 0, "dst"), sp = cg_host_arg_ptr(&h, 1, "src");
  LLVMValueRef seg = cg_host_arg_int(&h, 2, "seg");
  LLVMValueRef nrows = pick(&h, seg, s->N, s->nseg), npad = pick(&h, seg, pl.npad, s->nseg);
  LLVMValueRef prow0 = pick(&h, seg, pl.prow0, s->nseg);
  LLVMValueRef W = cg_host_i64(&h, pl.W);
  CgHostLoop li, lw;
  LLVMValueRef it = cg_host_loop_begin(&h, &li, h.begin, h.end, "item");
  LLVMValueRef p = LLVMBuildSDiv(h.b, it, cg_host_i64(&h, nmax), "p");
  LLVMValueRef r = LLVMBuildSRem(h.b, it, cg_host_i64(&h, nmax), "n");
  CgHostIf f;
  cg_host_if_begin(&h, &f, LLVMBuildICmp(h.b, LLVMIntSLT, r, npad, ""), "row");
  LLVMValueRef real = LLVMBuildICmp(h.b, LLVMIntSLT, r, nrows, "real");
  LLVMValueRef rc = cg_host_min64(&h, r, LLVMBuildSub(h.b, nrows, cg_host_i64(&h, 1), "")); /* pad rows read row N - 1 */
  LLVMValueRef from = LLVMBuildMul(h.b, LLVMBuildAdd(h.b, LLVMBuildMul(h.b, p, nrows, ""), rc, ""), W, "from");
  LLVMValueRef prow = LLVMBuildAdd(h.b, prow0, r, "prow");
  LLVMValueRef w = cg_host_loop_begin(&h, &lw, cg_host_i64(&h, 0), W, "w");
  LLVMValueRef v = LLVMBuildLoad2(h.b, h.i32, cg_host_gep(&h, h.i32, sp, LLVMBuildAdd(h.b, from, w, "")), "");
  v = LLVMBuildSelect(h.b, real, v, cg_host_i32(&h, 0), ""); /* pad rows: all 0 */
  LLVMBuildStore(h.b, v, cg_host_gep(&h, h.i32, dst, layout_word(&h, &pl, s->paths, prow, p, w)));
  cg_host_loop_end(&h, &lw);
  cg_host_if_end(&h, &f);
  cg_host_loop_end(&h, &li);
  char what[256];
  snprintf(what, sizeof what,
           "repack of segment seg: canonical (paths, N[seg], ceil(K/32)) words -> the host layout\n"
           "(blocks of 16 rows, paths, ceil(K/32), 16); work item p * %d + n copies row n of path p\n"
           "(rows past N[seg] up to the 16-row pad: zeros).", nmax);
  return cg_host_finish(&h, k, "codegen/host/linear.c", what, src, err);
}

int cg_host_geometry_linear(const CgKernel *k, CgGeometry *g, RbBuf *err) {
  Plan pl;
  if (plan_make(k, &pl, err)) return RB_EUSER;
  memset(g, 0, sizeof *g);
  int items = plan_items(&pl, &k->op);
  if (k->op.kind == CG_REPACK) {
    int nmax = 0;
    for (int i = 0; i < k->op.nseg; i++) nmax = pl.npad[i] > nmax ? pl.npad[i] : nmax;
    items = nmax * k->op.paths;
  }
  g->grid[0] = (unsigned)items, g->grid[1] = g->grid[2] = 1;
  g->block[0] = g->block[1] = g->block[2] = 1;
  g->grow_axis = -1; /* every item loops over the batch itself */
  g->n_per_block = 1;
  return RB_OK;
}

uint64_t cg_host_layout_bytes(const CgOp *op) {
  RbBuf why = {0};
  int bad = linear_check(op, &why);
  rb_buf_free(&why);
  if (bad) return 0;
  uint64_t ntot = 0; /* each segment padded to 16 rows */
  for (int i = 0; i < op->nseg; i++) ntot += ((uint64_t)op->N[i] + 15) / 16 * 16;
  return ntot * (uint64_t)op->paths * (uint64_t)cg_packed_words(op->K) * 4 + LAYOUT_TAIL;
}

/* One bucket: the kernel loops over any batch itself, and the last bucket
 * serves every larger batch. */
int cg_host_linear_buckets(const CgOp *op, CgSchedule out[CG_MAX_BUCKETS]) {
  (void)op;
  memset(&out[0], 0, sizeof out[0]);
  out[0].strategy = CG_STRAT_XOR;
  out[0].batch_max = 16;
  return 1;
}
