/* test_train_optim_emit.c: CPU test of the optimizer-family emitters
 * (codegen/cuda/train_optim.c): derive, derive_grad_g, derive_grad_h for the
 * SmolLM2-135M shapes (576x576, 192x576, 1536x576, 576x1536) and tiny ones
 * with pad columns (K = 160, 70), k = 1..4; adamw, muon_momentum,
 * batch_sumsq, muon_normalize, muon_apply and clip_coef. Each emits the same
 * source twice, starts with the prelude, stays in the dialect (no header, no
 * constexpr, no // comment), names its entry what it is, has a sane launch
 * geometry (fixed grids where codegen.h says so, enough threads for the extent
 * otherwise), marshals the ABI of codegen.h in struct order, and compiles with
 * NVRTC for sm_90. Bad specs are refused with RB_EUSER and a message. No GPU needed. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda.h"
#include "tests/common/launch.h"
#include "runtime/jit/jit.h"

static int npass, nfail;

static void check(int ok, const char *what, const char *detail) {
  if (ok) {
    npass++;
  } else {
    nfail++;
    printf("FAIL %s%s%s\n", what, detail && *detail ? ": " : "", detail ? detail : "");
  }
}

static int is_identifier(const char *e) {
  if (!*e || (*e >= '0' && *e <= '9')) return 0;
  for (; *e; e++)
    if (!((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') || *e == '_'))
      return 0;
  return 1;
}

static CgKernel spec(CgKind kind, int N, int K, int paths) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = kind;
  s.op.nseg = 1;
  s.op.N[0] = N;
  s.op.K = K;
  s.op.paths = paths;
  return s;
}

static int is_derive(CgKind k) {
  return k == CG_DERIVE || k == CG_DERIVE_STANDARD || k == CG_DERIVE_GRAD_G || k == CG_DERIVE_GRAD_H;
}

static int nvrtc_ok(const char *src, const char *entry, const char *what) {
  void *cubin = NULL;
  size_t len = 0;
  RbBuf log = {0};
  char name[80];
  snprintf(name, sizeof name, "%s.cu", entry);
  int rc = rt_nvrtc_compile(src, name, "sm_90", rt_nvrtc_default_opts, rt_nvrtc_default_nopts, &cubin, &len,
                            &log);
  int ok = rc == RB_OK && cubin && len > 0;
  char msg[160];
  snprintf(msg, sizeof msg, "NVRTC sm_90 failed (rc %d)", rc);
  check(ok, what, msg);
  if (!ok && log.data) printf("%s\n", log.data);
  rb_free(cubin);
  rb_buf_free(&log);
  return ok;
}

/* The geometry of s is what its kind promises. */
static void check_geometry(const CgKernel *s, const char *what) {
  CgGeometry g;
  RbBuf err = {0};
  int rc = cg_target_cuda.geometry(s, &g, &err);
  check(rc == RB_OK, what, err.data);
  rb_buf_free(&err);
  if (rc) return;
  const CgOp *o = &s->op;
  unsigned threads = g.block[0] * g.block[1] * g.block[2];
  int fixed = is_derive(o->kind) || o->kind == CG_CLIP_COEF;
  check(threads >= 1 && threads <= 1024 && (o->kind == CG_CLIP_COEF || threads % 32 == 0), what,
        "block is not whole warps of at most 1024 threads");
  check(fixed ? g.grow_axis == -1 : g.grow_axis == 0, what, "grow axis is not what codegen.h says");
  long long words = cg_packed_words(o->K);
  char msg[160];
  if (fixed) {
    CgLaunch L = cg_geometry_launch(&g, 1), L2 = cg_geometry_launch(&g, 1000);
    check(memcmp(&L, &L2, sizeof L) == 0, what, "a fixed grid changes with the extent");
    unsigned long long blocks = (unsigned long long)L.grid[0] * L.grid[1] * L.grid[2];
    switch (o->kind) {
    case CG_DERIVE: /* one warp per (row, word), no whole block idle */
    case CG_DERIVE_STANDARD:
      snprintf(msg, sizeof msg, "derive: %llu blocks of %u threads for %lld (row, word) jobs", blocks, threads,
               (long long)o->N[0] * words);
      check(blocks * (threads / 32) >= (unsigned long long)(o->N[0] * words) &&
                (blocks - 1) * (threads / 32) < (unsigned long long)(o->N[0] * words),
            what, msg);
      break;
    case CG_DERIVE_GRAD_G: check(blocks == (unsigned long long)o->N[0], what, "derive_grad_g: not a block per row"); break;
    case CG_DERIVE_GRAD_H:
      check(blocks == (unsigned long long)(o->K + 7) / 8, what, "derive_grad_h: not a block per 8-column stripe");
      break;
    default: check(blocks == 1, what, "clip_coef: not one block"); break;
    }
    return;
  }
  long long ns[] = {1, 7, 300, 884736, 106000000};
  for (int i = 0; i < 5; i++) {
    CgLaunch L = cg_geometry_launch(&g, (int)ns[i]);
    unsigned long long blocks = (unsigned long long)L.grid[0] * L.grid[1] * L.grid[2];
    snprintf(msg, sizeof msg, "extent %lld: %llu blocks", ns[i], blocks);
    /* batch_sumsq: a block per matrix; the others stride, so any nonzero grid
     * is correct, but it should spread over about ceil(n / per block) blocks. */
    if (o->kind == CG_BATCH_SUMSQ)
      check(blocks == (unsigned long long)ns[i], what, msg);
    else
      check(blocks >= 1 && blocks == (unsigned long long)((ns[i] + g.n_per_block - 1) / g.n_per_block), what, msg);
  }
  CgLaunch z = cg_geometry_launch(&g, 0);
  check(z.grid[0] == 0, what, "extent 0 gives a grid");
}

/* One kernel: determinism, the prelude, the dialect, its entry, geometry, NVRTC. */
static void test_case(const CgKernel *s, const char *want_entry, int compile) {
  char what[128], entry[64], entry2[64];
  int fail0 = nfail;
  if (is_derive(s->op.kind))
    snprintf(what, sizeof what, "%s N=%d K=%d k=%d", cg_kind_name(s->op.kind), s->op.N[0], s->op.K, s->op.paths);
  else
    snprintf(what, sizeof what, "%s", cg_kind_name(s->op.kind));
  RbBuf a = {0}, b = {0}, err = {0};
  memset(entry, 0, sizeof entry);
  memset(entry2, 0, sizeof entry2);
  int rc1 = test_emit(s, &a, entry, &err), rc2 = test_emit(s, &b, entry2, &err);
  check(rc1 == RB_OK && rc2 == RB_OK, what, err.data);
  if (rc1 != RB_OK || rc2 != RB_OK) goto done;
  check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0 && strcmp(entry, entry2) == 0, what,
        "two emits of one spec differ");
  check(strcmp(entry, want_entry) == 0, what, entry);
  check(is_identifier(entry) && strlen(entry) < CG_ENTRY_MAX && !strstr(entry, "__"), what,
        "entry is not a C identifier under CG_ENTRY_MAX chars");
  check(strncmp(a.data, "/* rabit ", 9) == 0 && strstr(a.data, "Generated by rabitc (codegen/cuda/train_optim.c)") &&
            strstr(a.data, "typedef unsigned short rb_half;"),
        what, "source does not start with the prelude");
  check(!strstr(a.data, "constexpr") && !strstr(a.data, "//") && !strstr(a.data, "#include"), what,
        "source strays from the dialect (constexpr, // comments or #include)");
  char decl[96];
  snprintf(decl, sizeof decl, "%s(", entry);
  check(strstr(a.data, decl) != NULL && strstr(a.data, "extern \"C\" __global__") != NULL, what,
        "entry not declared extern \"C\" __global__ in the source");
  if (s->op.kind == CG_DERIVE_STANDARD)
    check(strstr(a.data, "__fmul_rn") && strstr(a.data, "__fadd_rn") && !strstr(a.data, "__fsub_rn"), what,
          "derive_standard: its signs are the latents' own (no residual), its sum unfused");
  if (s->op.kind == CG_DERIVE) {
    /* The contract's rule: no FMA, bf16 by round to nearest even, the word count from packed.c. */
    check(strstr(a.data, "__fmul_rn") && strstr(a.data, "__fsub_rn") && strstr(a.data, "__fadd_rn") &&
              strstr(a.data, "cvt.rn.bf16.f32") && strstr(a.data, "__ballot_sync"),
          what, "derive does not spell its roundings");
    char words[64];
    snprintf(words, sizeof words, "#define WORDS %lld ", (long long)cg_packed_words(s->op.K));
    check(strstr(a.data, words) != NULL, what, "WORDS is not cg_packed_words(K)");
  }
  if (is_derive(s->op.kind)) { /* specialized on N, K and paths */
    CgKernel s2 = *s;
    s2.op.K += 32;
    RbBuf c = {0};
    char e3[64];
    check(test_emit(&s2, &c, e3, &err) == RB_OK && (c.len != a.len || memcmp(c.data, a.data, a.len)) &&
              strcmp(e3, entry) != 0,
          what, "changing K left the source or the entry unchanged");
    rb_buf_free(&c);
  }
  check_geometry(s, what);
  if (compile) nvrtc_ok(a.data, entry, what);
done:
  printf("%s %-36s %s  %zu bytes\n", nfail == fail0 ? "ok  " : "FAIL", what, entry, a.len);
  rb_buf_free(&a);
  rb_buf_free(&b);
  rb_buf_free(&err);
}

static void test_reject(const char *what, CgKernel s, const char *want) {
  RbBuf src = {0}, err = {0};
  char entry[64];
  int rc = test_emit(&s, &src, entry, &err);
  int ok = rc == RB_EUSER && err.data && strcmp(err.data, want) == 0;
  check(ok, what, err.data ? err.data : "accepted");
  RbBuf err2 = {0};
  CgGeometry g;
  check(cg_target_cuda.geometry(&s, &g, &err2) == RB_EUSER, what, "geometry accepted a spec emit refuses");
  printf("%s reject %s\n", ok ? "ok  " : "FAIL", what);
  rb_buf_free(&src);
  rb_buf_free(&err);
  rb_buf_free(&err2);
}

/* argv: the struct's fields, in order, as the kernel declares its parameters. */
#define ARGV_CHECK(name, a, fn, ...)                                                \
  do {                                                                              \
    CgArgv o_;                                                                      \
    memset(&o_, 0, sizeof o_);                                                      \
    fn(&(a), &o_);                                                                  \
    void *want_[] = {__VA_ARGS__};                                                  \
    int n_ = (int)(sizeof want_ / sizeof want_[0]), ok_ = o_.n == n_;               \
    for (int i_ = 0; ok_ && i_ < n_; i_++) ok_ = o_.v[i_] == want_[i_];             \
    check(ok_, "argv " name, "pointers are not the struct's fields in order");      \
  } while (0)

static void test_argv(void) {
  CgDeriveArgs d;
  ARGV_CHECK("derive", d, cg_derive_argv, &d.what, &d.bits, &d.w, &d.g, &d.h);
  CgDeriveGradGArgs gg;
  ARGV_CHECK("derive_grad_g", gg, cg_derive_grad_g_argv, &gg.dg, &gg.dwhat, &gg.bits, &gg.h);
  CgDeriveGradHArgs gh;
  ARGV_CHECK("derive_grad_h", gh, cg_derive_grad_h_argv, &gh.dh, &gh.part, &gh.dwhat, &gh.bits, &gh.g);
  CgAdamwArgs ad;
  ARGV_CHECK("adamw", ad, cg_adamw_argv, &ad.p, &ad.m, &ad.v, &ad.grad, &ad.scalars, &ad.n, &ad.beta1, &ad.beta2,
             &ad.eps, &ad.clamp);
  CgMuonMomentumArgs mm;
  ARGV_CHECK("muon_momentum", mm, cg_muon_momentum_argv, &mm.buf, &mm.u, &mm.grad, &mm.scalars, &mm.n, &mm.mu);
  CgBatchSumsqArgs bs;
  ARGV_CHECK("batch_sumsq", bs, cg_batch_sumsq_argv, &bs.out, &bs.x, &bs.per, &bs.batch);
  CgMuonNormalizeArgs mn;
  ARGV_CHECK("muon_normalize", mn, cg_muon_normalize_argv, &mn.x, &mn.u, &mn.sumsq, &mn.rows, &mn.cols, &mn.batch,
             &mn.transpose);
  CgMuonApplyArgs ma;
  ARGV_CHECK("muon_apply", ma, cg_muon_apply_argv, &ma.w, &ma.x, &ma.scalars, &ma.rows, &ma.cols, &ma.batch,
             &ma.transpose, &ma.scale);
  CgClipCoefArgs cc;
  ARGV_CHECK("clip_coef", cc, cg_clip_coef_argv, &cc.scalars, &cc.sumsq, &cc.max_norm);
  CgKernel s = spec(CG_DERIVE_GRAD_H, 1536, 576, 4);
  check(cg_derive_grad_h_parts(&s.op) == 0, "derive_grad_h parts", "the one-launch kernel needs no scratch");
  printf("argv checked\n");
}

int main(void) {
  static const int shapes[][2] = {{576, 576}, {192, 576}, {1536, 576}, {576, 1536}, {5, 160}, {3, 70}};
  static const CgKind derive[] = {CG_DERIVE, CG_DERIVE_STANDARD, CG_DERIVE_GRAD_G, CG_DERIVE_GRAD_H};
  for (int d = 0; d < 4; d++)
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      for (int p = 1; p <= 4; p++) {
        CgKernel s = spec(derive[d], shapes[i][0], shapes[i][1], p);
        char want[64];
        snprintf(want, sizeof want, "rb_%s_n%d_k%d_p%d", cg_kind_name(derive[d]), shapes[i][0], shapes[i][1], p);
        test_case(&s, want, 1);
      }
  static const CgKind optim[] = {CG_ADAMW, CG_MUON_MOMENTUM, CG_BATCH_SUMSQ, CG_MUON_NORMALIZE, CG_MUON_APPLY,
                                 CG_CLIP_COEF};
  for (size_t i = 0; i < sizeof optim / sizeof optim[0]; i++) {
    CgKernel s = spec(optim[i], 0, 0, 0);
    char want[64];
    snprintf(want, sizeof want, "rb_%s", cg_kind_name(optim[i]));
    test_case(&s, want, 1);
  }
  test_argv();

  test_reject("derive paths 0", spec(CG_DERIVE, 576, 576, 0),
              "derive: N and K must be positive and paths 1..4 (got N 576, K 576, paths 0)");
  test_reject("derive_grad_g paths 5", spec(CG_DERIVE_GRAD_G, 576, 576, 5),
              "derive_grad_g: N and K must be positive and paths 1..4 (got N 576, K 576, paths 5)");
  test_reject("derive_grad_h K 0", spec(CG_DERIVE_GRAD_H, 576, 0, 2),
              "derive_grad_h: N and K must be positive and paths 1..4 (got N 576, K 0, paths 2)");
  {
    CgKernel s = spec(CG_LINEAR, 576, 576, 2);
    RbBuf src = {0}, err = {0};
    char entry[64];
    int rc = cg_emit_train_optim(&s, &src, entry, &err);
    check(rc == RB_EUSER && err.data && strstr(err.data, "not an optimizer kernel"), "foreign kind",
          err.data ? err.data : "accepted");
    rb_buf_free(&src);
    rb_buf_free(&err);
  }

  printf("%d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
