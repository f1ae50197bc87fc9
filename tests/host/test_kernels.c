/* test_kernels.c: every kernel kind the host target lowers, JIT-compiled at
 * O3 and run on a 2-thread pool, against the independent float64 reference
 * (tests/ref) on fresh random fp16 inputs: the binary linear at k = 1..4 on
 * odd shapes (N and K not multiples of 8, 32 or 64), fused segments, the add
 * and swiglu epilogues, six schedules (the rows per item tile[0], the sign
 * decode tile[1]: table, predicates, lut; the lanes tile[2]; the CPU's
 * default), batch 1..16 (through the host repack); rmsnorm,
 * embed, swiglu, add, nll; rope_kv + attention as a prefill and a decode step.
 * Tolerance: relative L2 <= 2e-3 (fp16 outputs round at 2^-11 ~ 4.9e-4);
 * 5e-3 for attention, whose q and k are stored in fp16 after RoPE. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "tests/host/util.h"
#include "tests/ref/ref.h"

static RtCache *cache;
static RtHostJit *jit;
static RbPool *pool;
static RbBuf warn;

static double h2d(uint16_t h) { return rb_f32_from_f16(h); }

/* ---- the binary linear ---- */

typedef struct {
  int nseg, N[CG_MAX_SEG], K;
  CgEpilogue epi;
} LinCase;

static const LinCase lin_cases[] = {
    {1, {37}, 100, CG_EPI_NONE},     /* N, K odd: a partial row block, a tail chunk, a partial word */
    {1, {64}, 257, CG_EPI_NONE},     /* K one past a multiple of 256 */
    {1, {5}, 7, CG_EPI_NONE},        /* K below one chunk */
    {1, {130}, 64, CG_EPI_ADD},      /* whole words, residual add */
    {3, {24, 8, 9}, 72, CG_EPI_NONE}, /* fused q/k/v, segments not multiples of the row block */
    {2, {19, 19}, 45, CG_EPI_SWIGLU}, /* fused gate/up with the swiglu epilogue */
};
static const int batches[] = {1, 3, 16};

/* One linear case at paths k over every batch: returns the kernels' count used. */
static void run_linear(const LinCase *c, int paths, CgHostEntry fl, CgHostEntry fr, const CgKernel *kl) {
  const int K = c->K, W = (int)cg_packed_words(K);
  int ntot = 0, row0[CG_MAX_SEG];
  for (int s = 0; s < c->nseg; s++) row0[s] = ntot, ntot += c->N[s];
  const int nout = c->epi == CG_EPI_SWIGLU ? c->N[0] : ntot, BMAX = 16;
  /* weights: per segment canonical bits, then g (paths, Ntot), h (nseg, paths, K) */
  uint32_t *canon[CG_MAX_SEG];
  float *gf = malloc(sizeof(float) * paths * ntot), *hf = malloc(sizeof(float) * c->nseg * paths * K);
  uint16_t *gh = malloc(2 * (size_t)paths * ntot), *hh = malloc(2 * (size_t)c->nseg * paths * K);
  hu_fill(gf, gh, (size_t)paths * ntot, 0.02f, 0.2f);
  hu_fill(hf, hh, (size_t)c->nseg * paths * K, 0.5f, 1.5f);
  for (int s = 0; s < c->nseg; s++) {
    size_t ns = (size_t)paths * c->N[s] * K;
    int8_t *signs = malloc(ns);
    for (size_t i = 0; i < ns; i++) signs[i] = (hu_rand() & 1) ? 1 : -1;
    canon[s] = malloc(4 * (size_t)paths * c->N[s] * W);
    ref_pack_signs(canon[s], signs, paths, c->N[s], K);
    free(signs);
  }
  size_t lbytes = cg_target_host.layout_bytes(&kl->op);
  size_t npad = 0; /* each segment padded to 16 rows */
  for (int s = 0; s < c->nseg; s++) npad += (size_t)(c->N[s] + 15) / 16 * 16;
  /* and a 64-byte tail, which the lut's offset loads touch but never use: poisoned too */
  CHECK(lbytes == 4ull * npad * paths * W + 64, "layout bytes %zu", lbytes);
  uint32_t *layout = malloc(lbytes);
  memset(layout, 0xA5, lbytes); /* the repack must write every word */
  CgGeometry gr, gl;
  RbBuf err = {0};
  CgKernel kr = *kl;
  kr.op.kind = CG_REPACK, kr.op.epilogue = CG_EPI_NONE, memset(&kr.sched, 0, sizeof kr.sched);
  CHECK(cg_target_host.geometry(&kr, &gr, &err) == RB_OK, "%s", err.data);
  CHECK(cg_target_host.geometry(kl, &gl, &err) == RB_OK, "%s", err.data);
  rb_buf_free(&err);
  for (int s = 0; s < c->nseg; s++) {
    CgRepackArgs ra = {(CgDevPtr)(uintptr_t)layout, (CgDevPtr)(uintptr_t)canon[s], s};
    CgArgv av;
    cg_repack_argv(&ra, &av);
    rt_host_launch(pool, fr, &gr, 1, av.v);
  }
  float *xf = malloc(sizeof(float) * BMAX * K), *rf = malloc(sizeof(float) * BMAX * ntot);
  uint16_t *xh = malloc(2 * (size_t)BMAX * K), *rh = malloc(2 * (size_t)BMAX * ntot), *yh = malloc(2 * (size_t)BMAX * ntot);
  double *want = malloc(sizeof(double) * BMAX * ntot), *got = malloc(sizeof(double) * BMAX * ntot);
  double *seg = malloc(sizeof(double) * BMAX * ntot);
  float *gs = malloc(sizeof(float) * paths * ntot);
  for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
    int B = batches[bi];
    hu_fill(xf, xh, (size_t)B * K, -1.0f, 1.0f);
    hu_fill(rf, rh, (size_t)B * ntot, -1.0f, 1.0f);
    /* reference: each segment alone, then the epilogue */
    double *full = malloc(sizeof(double) * B * ntot);
    for (int s = 0; s < c->nseg; s++) {
      for (int p = 0; p < paths; p++)
        for (int n = 0; n < c->N[s]; n++) gs[p * c->N[s] + n] = gf[p * ntot + row0[s] + n];
      ref_linear(seg, xf, canon[s], gs, hf + (size_t)s * paths * K, B, c->N[s], K, paths);
      for (int b = 0; b < B; b++)
        for (int n = 0; n < c->N[s]; n++) full[(size_t)b * ntot + row0[s] + n] = seg[(size_t)b * c->N[s] + n];
    }
    for (int b = 0; b < B; b++)
      for (int n = 0; n < nout; n++) {
        double v = full[(size_t)b * ntot + n];
        if (c->epi == CG_EPI_ADD) v += rf[(size_t)b * ntot + n];
        if (c->epi == CG_EPI_SWIGLU) v = ref_silu(v) * full[(size_t)b * ntot + c->N[0] + n];
        want[(size_t)b * nout + n] = v;
      }
    free(full);
    memset(yh, 0xFF, 2 * (size_t)B * ntot); /* NaN: every output must be written */
    CgLinearArgs la = {(CgDevPtr)(uintptr_t)yh, (CgDevPtr)(uintptr_t)xh, (CgDevPtr)(uintptr_t)layout,
                       (CgDevPtr)(uintptr_t)gh, (CgDevPtr)(uintptr_t)hh,
                       c->epi == CG_EPI_ADD ? (CgDevPtr)(uintptr_t)rh : 0, B};
    CgArgv av;
    cg_linear_argv(&la, &av);
    rt_host_launch(pool, fl, &gl, B, av.v);
    for (int i = 0; i < B * nout; i++) got[i] = h2d(yh[i]);
    double e = ref_rel_l2(got, want, (size_t)B * nout);
    CHECK(e <= 2e-3, "linear N=%d+%d+%d K=%d k=%d epi=%s rows %d decode %d lanes %d batch %d: rel L2 %.3g", c->N[0],
          c->N[1], c->N[2], K, paths, cg_epilogue_name(c->epi), kl->sched.tile[0], kl->sched.tile[1], kl->sched.tile[2],
          B, e);
  }
  for (int s = 0; s < c->nseg; s++) free(canon[s]);
  free(gf), free(hf), free(gh), free(hh), free(layout), free(xf), free(rf), free(xh), free(rh), free(yh);
  free(want), free(got), free(seg), free(gs);
}

static void test_linears(void) {
  /* per case and k: the linear under each schedule (tile[0], tile[1],
   * tile[2]: the table on 8 lanes, predicates on 8, predicates on 16 with 16
   * weight rows an item, this CPU's default (the lut with AVX-512), the lut
   * with 16 rows an item), then the one repack they all read (the same op:
   * one kernel, loaded once). Without AVX-512 the lut is refused, and its row
   * runs the predicates on 8 lanes again. */
  static const int sched[][3] = {{0, 0, 8}, {0, 1, 8}, {16, 1, 16}, {0, 0, 0}, {16, 2, 0}, {64, 2, 0}};
  const int avx512 = __builtin_cpu_supports("avx512f");
  enum { NS = 6, NC = sizeof lin_cases / sizeof lin_cases[0], PER = NS + 1 };
  CgKernel ks[NC * 4 * PER];
  int n = 0;
  for (int c = 0; c < NC; c++)
    for (int p = 1; p <= 4; p++) {
      CgKernel k;
      memset(&k, 0, sizeof k);
      k.op.kind = CG_LINEAR, k.op.K = lin_cases[c].K, k.op.nseg = lin_cases[c].nseg, k.op.paths = p;
      memcpy(k.op.N, lin_cases[c].N, sizeof k.op.N);
      k.op.epilogue = lin_cases[c].epi;
      CgSchedule sc[CG_MAX_BUCKETS];
      CHECK(cg_target_host.linear_buckets(&k.op, sc) == 1, "one bucket");
      for (int d = 0; d < NS; d++) {
        k.sched = sc[0];
        int sd = sched[d][1] == 2 && !avx512 ? 1 : d;
        /* swiglu: 2 weight rows an output (the lut: 2 blocks of 16) */
        k.sched.tile[0] = sched[sd][0] / (k.op.epilogue == CG_EPI_SWIGLU && sched[sd][1] != 2 ? 2 : 1);
        k.sched.tile[1] = sched[sd][1], k.sched.tile[2] = sched[sd][2];
        ks[n++] = k;
      }
      k.op.kind = CG_REPACK, k.op.epilogue = CG_EPI_NONE;
      memset(&k.sched, 0, sizeof k.sched);
      ks[n++] = k;
    }
  RtBuilt built[NC * 4 * PER];
  CgHostEntry fn[NC * 4 * PER];
  double t0 = rb_now_ms();
  int rc = hu_build_load(ks, n, cache, jit, built, fn, &warn);
  printf("linear: %d kernels built and loaded in %.0f ms\n", n, rb_now_ms() - t0);
  CHECK(rc == RB_OK, "build");
  if (rc == RB_OK)
    for (int i = 0; i < n; i += PER)
      for (int d = 0; d < NS; d++) run_linear(&lin_cases[i / (4 * PER)], ks[i].op.paths, fn[i + d], fn[i + NS], &ks[i + d]);
  rt_built_free(built, n);
}

/* ---- the decoder ops ---- */

static CgHostEntry one(CgKernel *k, CgGeometry *g) {
  RtBuilt b;
  CgHostEntry fn = NULL;
  RbBuf err = {0};
  CHECK(cg_target_host.geometry(k, g, &err) == RB_OK, "%s", err.data);
  rb_buf_free(&err);
  if (hu_build_load(k, 1, cache, jit, &b, &fn, &warn) != RB_OK) fn = NULL;
  rt_built_free(&b, 1);
  CHECK(fn != NULL, "kernel %s", cg_kind_name(k->op.kind));
  return fn;
}

#define P(x) ((CgDevPtr)(uintptr_t)(x))

static void test_rmsnorm(int T, int D) {
  CgKernel k = {.op = {.kind = CG_RMSNORM, .dim = D, .eps = 1e-5f}};
  CgGeometry g;
  CgHostEntry fn = one(&k, &g);
  if (!fn) return;
  float *xf = malloc(4 * (size_t)T * D), *wf = malloc(4 * (size_t)D);
  uint16_t *xh = malloc(2 * (size_t)T * D), *wh = malloc(2 * (size_t)D), *yh = malloc(2 * (size_t)T * D);
  double *want = malloc(8 * (size_t)T * D), *got = malloc(8 * (size_t)T * D);
  hu_fill(xf, xh, (size_t)T * D, -2.0f, 2.0f);
  hu_fill(wf, wh, D, 0.5f, 1.5f);
  ref_rmsnorm(want, xf, wf, T, D, 1e-5f);
  CgRmsnormArgs a = {P(yh), P(xh), P(wh), T};
  CgArgv av;
  cg_rmsnorm_argv(&a, &av);
  rt_host_launch(pool, fn, &g, T, av.v);
  for (int i = 0; i < T * D; i++) got[i] = h2d(yh[i]);
  double e = ref_rel_l2(got, want, (size_t)T * D);
  CHECK(e <= 2e-3, "rmsnorm T=%d D=%d: rel L2 %.3g", T, D, e);
  /* in place: y = x */
  CgRmsnormArgs ai = {P(xh), P(xh), P(wh), T};
  cg_rmsnorm_argv(&ai, &av);
  rt_host_launch(pool, fn, &g, T, av.v);
  for (int i = 0; i < T * D; i++) got[i] = h2d(xh[i]);
  e = ref_rel_l2(got, want, (size_t)T * D);
  CHECK(e <= 2e-3, "rmsnorm in place T=%d D=%d: rel L2 %.3g", T, D, e);
  free(xf), free(wf), free(xh), free(wh), free(yh), free(want), free(got);
}

static void test_swiglu_add(int T, int D) {
  CgKernel ks = {.op = {.kind = CG_SWIGLU, .dim = D}}, ka = {.op = {.kind = CG_ADD, .dim = D}};
  CgGeometry gs, ga;
  CgHostEntry fs = one(&ks, &gs), fa = one(&ka, &ga);
  if (!fs || !fa) return;
  int ld = 2 * D + 3, n = T * D;
  float *gu = malloc(4 * (size_t)T * ld), *bf = malloc(4 * (size_t)n);
  uint16_t *guh = malloc(2 * (size_t)T * ld), *bh = malloc(2 * (size_t)n), *yh = malloc(2 * (size_t)n);
  double *want = malloc(8 * (size_t)n), *got = malloc(8 * (size_t)n);
  hu_fill(gu, guh, (size_t)T * ld, -4.0f, 4.0f);
  hu_fill(bf, bh, n, -1.0f, 1.0f);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < D; i++) want[t * D + i] = ref_silu(gu[t * ld + i]) * gu[t * ld + D + i];
  CgSwigluArgs a = {P(yh), P(guh), ld, T};
  CgArgv av;
  cg_swiglu_argv(&a, &av);
  rt_host_launch(pool, fs, &gs, T, av.v);
  for (int i = 0; i < n; i++) got[i] = h2d(yh[i]);
  double e = ref_rel_l2(got, want, n);
  CHECK(e <= 2e-3, "swiglu T=%d D=%d: rel L2 %.3g", T, D, e);
  /* add: y = y + b in place (y aliases a) */
  for (int i = 0; i < n; i++) want[i] = h2d(yh[i]) + bf[i];
  CgAddArgs aa = {P(yh), P(yh), P(bh), n};
  cg_add_argv(&aa, &av);
  rt_host_launch(pool, fa, &ga, n, av.v);
  for (int i = 0; i < n; i++) got[i] = h2d(yh[i]);
  e = ref_rel_l2(got, want, n);
  CHECK(e <= 2e-3, "add n=%d: rel L2 %.3g", n, e);
  free(gu), free(bf), free(guh), free(bh), free(yh), free(want), free(got);
}

static void test_embed(void) {
  const int V = 50, D = 21, T = 7;
  CgKernel k = {.op = {.kind = CG_EMBED, .vocab = V, .dim = D}};
  CgGeometry g;
  CgHostEntry fn = one(&k, &g);
  if (!fn) return;
  float *tf = malloc(4 * V * D);
  uint16_t *th = malloc(2 * V * D), *yh = malloc(2 * T * D);
  int tok[7] = {3, 49, 0, -1, 50, 17, 3}; /* -1 and V are outside: zero rows */
  hu_fill(tf, th, (size_t)V * D, -1.0f, 1.0f);
  CgEmbedArgs a = {P(yh), P(tok), P(th), T};
  CgArgv av;
  cg_embed_argv(&a, &av);
  rt_host_launch(pool, fn, &g, T, av.v);
  int bad = 0;
  for (int t = 0; t < T; t++)
    for (int d = 0; d < D; d++) {
      uint16_t w = tok[t] >= 0 && tok[t] < V ? th[tok[t] * D + d] : 0;
      bad += yh[t * D + d] != w;
    }
  CHECK(bad == 0, "embed: %d elements differ", bad);
  free(tf), free(th), free(yh);
}

static void test_nll(void) {
  const int V = 1001, T = 4, ld = 1003;
  CgKernel k = {.op = {.kind = CG_NLL, .vocab = V}};
  CgGeometry g;
  CgHostEntry fn = one(&k, &g);
  if (!fn) return;
  float *lg = malloc(4 * T * ld), nll[4];
  int tg[4] = {0, 1000, 517, 1001};
  hu_fill(lg, NULL, (size_t)T * ld, -8.0f, 8.0f);
  CgNllArgs a = {P(nll), P(lg), P(tg), ld, T};
  CgArgv av;
  cg_nll_argv(&a, &av);
  rt_host_launch(pool, fn, &g, T, av.v);
  for (int t = 0; t < 3; t++) {
    double m = -1e300, s = 0;
    for (int v = 0; v < V; v++) m = fmax(m, lg[t * ld + v]);
    for (int v = 0; v < V; v++) s += exp(lg[t * ld + v] - m);
    double want = log(s) + m - lg[t * ld + tg[t]];
    CHECK(fabs(nll[t] - want) <= 1e-4 * (1 + fabs(want)), "nll row %d: %g, want %g", t, nll[t], want);
  }
  CHECK(isnan(nll[3]), "nll of a target outside the vocabulary: %g, want NaN", nll[3]);
  free(lg);
}

/* rope_kv then attention over T tokens from position 0 (prefill), then the
 * last token alone at position T - 1 (a decode step), against ref_attention. */
static void test_attention(int T, int H, int HKV, int HD, int CTX) {
  const float theta = 10000.0f;
  CgKernel kr = {.op = {.kind = CG_ROPE_KV, .heads = H, .kv_heads = HKV, .head_dim = HD, .max_ctx = CTX, .rope_theta = theta}};
  CgKernel ka = kr;
  ka.op.kind = CG_ATTENTION;
  CgGeometry gr, ga;
  CgHostEntry fr = one(&kr, &gr), fa = one(&ka, &ga);
  if (!fr || !fa) return;
  int qw = H * HD, kw = HKV * HD;
  float *qf = malloc(4 * (size_t)T * qw), *kf = malloc(4 * (size_t)T * kw), *vf = malloc(4 * (size_t)T * kw);
  uint16_t *qh = malloc(2 * (size_t)T * qw), *kh = malloc(2 * (size_t)T * kw), *vh = malloc(2 * (size_t)T * kw);
  uint16_t *kc = calloc((size_t)HKV * CTX * HD, 2), *vc = calloc((size_t)HKV * CTX * HD, 2);
  uint16_t *oh = malloc(2 * (size_t)T * qw), *q2 = malloc(2 * (size_t)qw);
  double *want = malloc(8 * (size_t)T * qw), *got = malloc(8 * (size_t)T * qw);
  hu_fill(qf, qh, (size_t)T * qw, -1.0f, 1.0f);
  hu_fill(kf, kh, (size_t)T * kw, -1.0f, 1.0f);
  hu_fill(vf, vh, (size_t)T * kw, -1.0f, 1.0f);
  memcpy(q2, qh + (size_t)(T - 1) * qw, 2 * (size_t)qw); /* the last query, before rotation */
  ref_attention(want, qf, kf, vf, T, H, HKV, HD, theta);
  int pos0 = 0;
  CgRopeKvArgs ra = {P(qh), qw, P(kh), kw, P(vh), kw, P(kc), P(vc), P(&pos0), T};
  CgAttentionArgs aa = {P(oh), P(qh), qw, P(kc), P(vc), P(&pos0), T, 0};
  CgArgv av;
  cg_rope_kv_argv(&ra, &av);
  rt_host_launch(pool, fr, &gr, T, av.v);
  cg_attention_argv(&aa, &av);
  rt_host_launch(pool, fa, &ga, T, av.v);
  for (int i = 0; i < T * qw; i++) got[i] = h2d(oh[i]);
  double e = ref_rel_l2(got, want, (size_t)T * qw);
  CHECK(e <= 5e-3, "attention prefill T=%d H=%d HKV=%d HD=%d: rel L2 %.3g", T, H, HKV, HD, e);
  /* decode: the last token again at position T - 1, its k and v rewritten in place */
  pos0 = T - 1;
  CgRopeKvArgs rd = {P(q2), qw, P(kh + (size_t)(T - 1) * kw), kw, P(vh + (size_t)(T - 1) * kw), kw, P(kc), P(vc), P(&pos0), 1};
  CgAttentionArgs ad = {P(oh), P(q2), qw, P(kc), P(vc), P(&pos0), 1, 0};
  cg_rope_kv_argv(&rd, &av);
  rt_host_launch(pool, fr, &gr, 1, av.v);
  cg_attention_argv(&ad, &av);
  rt_host_launch(pool, fa, &ga, 1, av.v);
  for (int i = 0; i < qw; i++) got[i] = h2d(oh[i]);
  e = ref_rel_l2(got, want + (size_t)(T - 1) * qw, qw);
  CHECK(e <= 5e-3, "attention decode at %d: rel L2 %.3g", T - 1, e);
  free(qf), free(kf), free(vf), free(qh), free(kh), free(vh), free(kc), free(vc), free(oh), free(q2), free(want), free(got);
}

/* The training kinds are not lowered for the host: refused, saying so. */
static void test_refused(void) {
  CgKernel k = {.op = {.kind = CG_ADAMW}};
  RbBuf src = {0}, err = {0};
  char entry[CG_ENTRY_MAX];
  CgGeometry g;
  CHECK(cg_target_host.emit(&k, &src, entry, &err) == RB_EUSER && err.data &&
            strstr(err.data, "does not lower kernel kind adamw"), "emit: %s", err.data ? err.data : "");
  CHECK(cg_target_host.geometry(&k, &g, &err) == RB_EUSER, "geometry");
  CgKernel bad = {.op = {.kind = CG_LINEAR, .K = 64, .nseg = 1, .N = {8}, .paths = 2}, .sched = {.strategy = CG_STRAT_XOR, .tile = {0, 3}}};
  rb_buf_free(&err);
  CHECK(cg_target_host.emit(&bad, &src, entry, &err) == RB_EUSER && strstr(err.data, "tile[1]"), "tile[1] = 3: %s",
        err.data ? err.data : "");
  rb_buf_free(&err);
  bad.sched.tile[1] = 2, bad.sched.tile[0] = 8; /* the lut: 16, 32, 48 or 64 rows, on AVX-512 only */
  CHECK(cg_target_host.emit(&bad, &src, entry, &err) == RB_EUSER &&
            strstr(err.data, __builtin_cpu_supports("avx512f") ? "16, 32, 48 or 64 rows per item" : "needs AVX-512"),
        "lut, 8 rows: %s", err.data ? err.data : "");
  bad.sched.tile[0] = 0, bad.sched.tile[1] = 3;
  rb_buf_free(&err);
  bad.sched.tile[1] = 0, bad.sched.tile[2] = 0, bad.sched.strategy = CG_STRAT_DEQUANT;
  CHECK(cg_target_host.emit(&bad, &src, entry, &err) == RB_EUSER && strstr(err.data, "strategy dequant"),
        "dequant: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  bad.sched.strategy = CG_STRAT_XOR, bad.sched.tile[0] = 17, bad.sched.tile[2] = 8;
  CHECK(cg_target_host.emit(&bad, &src, entry, &err) == RB_EUSER && strstr(err.data, "must be 1..16, got 17"),
        "tile[0] = 17: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  bad.sched.tile[0] = 0, bad.sched.tile[2] = 16;
  CHECK(cg_target_host.emit(&bad, &src, entry, &err) == RB_EUSER && strstr(err.data, "65536"), "16 lanes, table: %s",
        err.data ? err.data : "");
  rb_buf_free(&src);
  rb_buf_free(&err);
}

int main(void) {
  double t0 = rb_now_ms();
  char *dir;
  hu_seed(13);
  hu_env_open("host-kernels", &dir, &cache, &jit, &pool);
  test_refused();
  test_linears();
  test_rmsnorm(5, 70);
  test_rmsnorm(3, 576);
  test_swiglu_add(4, 37);
  test_swiglu_add(3, 2000); /* add over 6000 elements: two work items */
  test_embed();
  test_nll();
  test_attention(7, 4, 2, 16, 32);
  test_attention(20, 3, 1, 64, 24);
  hu_env_close(dir, cache, jit, pool, &warn);
  return hu_finish("host_kernels", t0);
}
