/* test_linear_emit.c: CPU test of the linear and repack emitters
 * (codegen/cuda/linear.c). For a table of specs (every strategy, paths 1..4,
 * 1..3 segments, every epilogue, odd and real shapes, batch buckets 1, 16, 512)
 * it checks that the source is deterministic, includes nothing, starts with the
 * prelude, has an entry name that is a C identifier under CG_ENTRY_MAX saying
 * the op's N, K and k, changes when a field it is specialized on changes, has
 * sane launch geometry, and compiles with NVRTC (sm_90 for all, sm_80 and sm_89
 * for a representative subset). No GPU needed. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "tests/common/launch.h"
#include "runtime/jit/jit.h"
#include "codegen/cuda/cuda.h"

static int npass, nfail;

static void check(int ok, const char *what, const char *detail) {
  if (ok) {
    npass++;
  } else {
    nfail++;
    printf("FAIL %s%s%s\n", what, detail && *detail ? ": " : "", detail ? detail : "");
  }
}

typedef struct {
  CgStrategy st;
  int batch_max, K, nseg, N[3], paths;
  CgEpilogue epi;
  int sweep; /* also compile for sm_80 and sm_89 */
} Row;

#define X CG_STRAT_XOR
#define M CG_STRAT_MMA
#define D CG_STRAT_DEQUANT
static const Row rows[] = {
    /* odd shapes: K not a multiple of 32 or 64, N not a multiple of any tile */
    {X, 1, 70, 1, {100}, 1, CG_EPI_NONE, 1},
    {X, 1, 70, 1, {100}, 2, CG_EPI_ADD, 0},
    {X, 1, 1000, 1, {257}, 3, CG_EPI_NONE, 0},
    {M, 16, 70, 1, {100}, 1, CG_EPI_NONE, 1},
    {M, 16, 70, 1, {100}, 4, CG_EPI_ADD, 0},
    {M, 512, 1000, 1, {257}, 2, CG_EPI_NONE, 0},
    /* real shapes */
    {X, 1, 4096, 1, {4096}, 2, CG_EPI_ADD, 1},
    {X, 1, 4096, 1, {4096}, 4, CG_EPI_NONE, 0},
    {M, 16, 4096, 1, {4096}, 2, CG_EPI_NONE, 1},
    {M, 512, 4096, 1, {4096}, 4, CG_EPI_ADD, 0},
    /* fused qkv: three segments, each with its own h */
    {X, 1, 576, 3, {576, 192, 192}, 2, CG_EPI_NONE, 1},
    {X, 1, 576, 2, {576, 192}, 3, CG_EPI_NONE, 0},
    {M, 16, 576, 3, {576, 192, 192}, 2, CG_EPI_NONE, 1},
    {M, 512, 576, 3, {576, 192, 192}, 1, CG_EPI_NONE, 0},
    /* fused gate/up with the swiglu epilogue */
    {X, 1, 576, 2, {1536, 1536}, 2, CG_EPI_SWIGLU, 1},
    {X, 1, 576, 2, {1536, 1536}, 4, CG_EPI_SWIGLU, 0},
    {M, 16, 576, 2, {1536, 1536}, 2, CG_EPI_SWIGLU, 1},
    {M, 512, 576, 2, {1536, 1536}, 3, CG_EPI_SWIGLU, 1},
    {M, 1, 11008, 1, {4096}, 1, CG_EPI_ADD, 0},
    /* dequant (prefill buckets): odd shapes (K not a multiple of 16: the scalar path), every
     * epilogue, fused segments, the 7B shapes */
    {D, 512, 70, 1, {100}, 1, CG_EPI_NONE, 1},
    {D, 512, 1000, 1, {257}, 3, CG_EPI_ADD, 0},
    {D, 4096, 72, 1, {33}, 4, CG_EPI_NONE, 0},
    {D, 512, 4096, 1, {4096}, 2, CG_EPI_NONE, 1},
    {D, 512, 576, 3, {576, 192, 192}, 4, CG_EPI_NONE, 0},
    {D, 512, 576, 2, {1536, 1536}, 2, CG_EPI_SWIGLU, 1},
    {D, 512, 4096, 2, {11008, 11008}, 1, CG_EPI_SWIGLU, 0},
    {D, 512, 11008, 1, {4096}, 2, CG_EPI_ADD, 0},
};
#undef X
#undef M
#undef D

static CgKernel make_spec(const Row *r) {
  CgKernel s;
  memset(&s, 0, sizeof s);
  s.op.kind = CG_LINEAR;
  s.sched.strategy = r->st;
  s.sched.batch_max = r->batch_max;
  s.op.K = r->K;
  s.op.nseg = r->nseg;
  for (int i = 0; i < r->nseg; i++) s.op.N[i] = r->N[i];
  s.op.paths = r->paths;
  s.op.epilogue = r->epi;
  return s;
}

static void describe(const CgKernel *s, char *out, size_t n) {
  RbBuf b = {0};
  cg_kernel_describe(s, &b);
  snprintf(out, n, "%s", b.data ? b.data : "");
  rb_buf_free(&b);
}

/* Emit with the given emitter; returns the status and fills src/entry. */
typedef int (*EmitFn)(const CgKernel *, RbBuf *, char[64], RbBuf *);

static int emit(EmitFn fn, const CgKernel *s, RbBuf *src, char entry[64]) {
  RbBuf err = {0};
  int st = fn(s, src, entry, &err);
  if (st) printf("  emit error: %s\n", err.data ? err.data : "");
  rb_buf_free(&err);
  return st;
}

static int is_identifier(const char *e) {
  if (!*e || (*e >= '0' && *e <= '9')) return 0;
  for (; *e; e++)
    if (!((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') || *e == '_'))
      return 0;
  return 1;
}

/* A well-formed entry: a C identifier shorter than CG_ENTRY_MAX, without the
 * "__" C++ reserves. */
static void check_entry_form(const char *entry, const char *what) {
  char msg[160];
  snprintf(msg, sizeof msg, "entry '%s' is not a C identifier under %d chars", entry, CG_ENTRY_MAX);
  check(is_identifier(entry) && strlen(entry) < CG_ENTRY_MAX && !strstr(entry, "__"), what, msg);
}

/* entry ends in "_" and 6 lowercase hex digits. */
static int has_hash(const char *entry) {
  size_t n = strlen(entry);
  if (n < 7 || entry[n - 7] != '_') return 0;
  for (size_t i = n - 6; i < n; i++)
    if (!((entry[i] >= '0' && entry[i] <= '9') || (entry[i] >= 'a' && entry[i] <= 'f'))) return 0;
  return 1;
}

/* The entry of a linear (or its repack) says the op: every N, "_k<K>_p<k>". */
static void check_entry_names_op(const CgKernel *s, const char *entry, const char *what) {
  char want[64], msg[200];
  int ok = 1;
  for (int i = 0; i < s->op.nseg; i++) {
    snprintf(want, sizeof want, "%d", s->op.N[i]);
    ok &= strstr(entry, want) != NULL;
  }
  snprintf(want, sizeof want, "_k%d_p%d", s->op.K, s->op.paths);
  ok &= strstr(entry, want) != NULL;
  snprintf(msg, sizeof msg, "entry '%s' does not name N, K and k", entry);
  check(ok, what, msg);
}

/* The entry of k, or "" when it does not emit. */
static void entry_of(EmitFn fn, const CgKernel *k, char entry[64]) {
  RbBuf src = {0}, err = {0};
  entry[0] = 0;
  if (fn(k, &src, entry, &err) != RB_OK) entry[0] = 0;
  rb_buf_free(&src);
  rb_buf_free(&err);
}

static void check_name(EmitFn fn, const CgKernel *k, const char *want) {
  char entry[64], msg[200];
  entry_of(fn, k, entry);
  snprintf(msg, sizeof msg, "entry '%s', want '%s'", entry, want);
  check(strcmp(entry, want) == 0, "readable entry name", msg);
}

/* Same spec twice -> byte-identical source and entry; no #include; the prelude
 * first; a well-formed entry that names the op. */
static void check_deterministic(EmitFn fn, const CgKernel *s, const char *what) {
  RbBuf a = {0}, b = {0};
  char ea[64], eb[64];
  int sa = emit(fn, s, &a, ea), sb = emit(fn, s, &b, eb);
  check(sa == RB_OK && sb == RB_OK, what, "emit failed");
  if (sa == RB_OK && sb == RB_OK) {
    check(a.len == b.len && memcmp(a.data, b.data, a.len) == 0 && strcmp(ea, eb) == 0, what,
          "two emits differ");
    check(strstr(a.data, "#include") == NULL, what, "source has an #include");
    check(strstr(a.data, ea) != NULL, what, "entry name not in source");
    check(strncmp(a.data, "/* rabit ", 9) == 0 && strstr(a.data, "Generated by rabitc") &&
              strstr(a.data, "typedef unsigned short rb_half;") && strstr(a.data, "rb_h2f(rb_half h)") &&
              strstr(a.data, "rb_f2h(float f)"),
          what, "source does not start with the prelude");
    check(!strstr(a.data, "constexpr") && !strstr(a.data, "half_t") && !strstr(a.data, "//"), what,
          "source strays from the dialect (constexpr, half_t or // comments)");
    check_entry_form(ea, what);
    check_entry_names_op(s, ea, what);
    check(!has_hash(ea), what, "a kernel with default tiles has a hashed entry");
  }
  rb_buf_free(&a);
  rb_buf_free(&b);
}

/* A changed field must change the source and the entry name. */
static void check_changes(const CgKernel *base, const CgKernel *mod, const char *field) {
  RbBuf a = {0}, b = {0};
  char ea[64], eb[64];
  char what[128];
  snprintf(what, sizeof what, "changing %s changes the source", field);
  int st = emit(cg_emit_linear, base, &a, ea) | emit(cg_emit_linear, mod, &b, eb);
  check(st == RB_OK && (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) && strcmp(ea, eb) != 0,
        what, NULL);
  rb_buf_free(&a);
  rb_buf_free(&b);
}

static void check_refused(CgKernel s, const char *what) {
  RbBuf src = {0}, err = {0};
  char entry[64];
  int st = cg_emit_linear(&s, &src, entry, &err);
  check(st == RB_EUSER && err.len > 0, what, "not refused with a message");
  rb_buf_free(&src);
  rb_buf_free(&err);
}

static double compile_s;
static int ncompile;

static void check_compiles(EmitFn fn, const CgKernel *s, const char *arch, const char *what) {
  RbBuf src = {0}, log = {0};
  char entry[64], msg[512];
  if (emit(fn, s, &src, entry) != RB_OK) {
    check(0, what, "emit failed");
    return;
  }
  void *cubin = NULL;
  size_t len = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int st = rt_nvrtc_compile(src.data, "linear.cu", arch, NULL, 0, &cubin, &len, &log);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  compile_s += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  ncompile++;
  snprintf(msg, sizeof msg, "%s for %s", entry, arch);
  check(st == RB_OK && cubin && len > 0, what, msg);
  if (st != RB_OK) printf("%s\n", log.data ? log.data : "");
  rb_free(cubin);
  rb_buf_free(&src);
  rb_buf_free(&log);
}

int main(void) {
  const int nrows = (int)(sizeof rows / sizeof rows[0]);
  char d[256];

  for (int i = 0; i < nrows; i++) {
    CgKernel s = make_spec(&rows[i]);
    describe(&s, d, sizeof d);
    check_deterministic(cg_emit_linear, &s, d);
    check_deterministic(cg_emit_repack, &s, d);

    /* Launch geometry and layout size. */
    for (int b = 1; b <= s.sched.batch_max; b = b * 3 + 1) {
      CgLaunch l = test_launch(&s, b);
      check(l.grid[0] > 0 && l.grid[1] > 0 && l.block[0] > 0 && l.block[0] <= 1024 && l.smem <= 49152,
            d, "bad launch geometry");
    }
    size_t canon = 0;
    for (int g = 0; g < s.op.nseg; g++) canon += cg_packed_part_bytes(CG_PACKED_BITS, s.op.paths, s.op.N[g], s.op.K);
    check(cg_target_cuda.layout_bytes(&s.op) >= canon, d, "kernel layout smaller than the canonical bits");
    for (int g = 0; g < s.op.nseg; g++) {
      CgKernel r;
      memset(&r, 0, sizeof r);
      r.op = s.op;
      r.op.kind = CG_REPACK;
      r.op.epilogue = CG_EPI_NONE;
      CgLaunch l = test_launch(&r, g + 1);
      check(l.grid[0] > 0 && l.block[0] > 0, d, "bad repack launch");
    }
  }

  /* Every field the kernel is specialized on changes the source. */
  CgKernel base = make_spec(&rows[12]); /* mma qkv */
  CgKernel m;
  m = base, m.op.K = 640, check_changes(&base, &m, "K");
  m = base, m.op.N[1] = 128, check_changes(&base, &m, "N[1]");
  m = base, m.op.paths = 3, check_changes(&base, &m, "paths");
  m = base, m.op.epilogue = CG_EPI_ADD, check_changes(&base, &m, "epilogue");
  m = base, m.sched.strategy = CG_STRAT_XOR, check_changes(&base, &m, "strategy");
  m = base, m.sched.tile[0] = 1, check_changes(&base, &m, "tile[0]");
  m = base, m.sched.batch_max = 512, check_changes(&base, &m, "batch_max");
  m = base, m.op.nseg = 2, check_changes(&base, &m, "nseg");
  CgKernel xb = make_spec(&rows[0]);
  m = xb, m.sched.tile[0] = 2, check_changes(&xb, &m, "xor tile[0]");
  m = xb, m.op.K = 71, check_changes(&xb, &m, "xor K");

  /* Bad specs are refused with a message. */
  m = base, m.op.paths = 0, check_refused(m, "paths 0 refused");
  m = base, m.op.paths = 5, check_refused(m, "paths 5 refused");
  m = base, m.op.nseg = 0, check_refused(m, "nseg 0 refused");
  m = base, m.op.K = 0, check_refused(m, "K 0 refused");
  m = base, m.op.epilogue = CG_EPI_SWIGLU, check_refused(m, "swiglu over 3 segments refused");
  m = base, m.sched.strategy = CG_STRAT_NONE, check_refused(m, "no strategy refused");
  m = base, m.sched.tile[2] = 4096, m.sched.tile[3] = 64, check_refused(m, "too much shared memory refused");
  m = xb, m.sched.tile[2] = 33, check_refused(m, "xor tile[2] (unused by the register design) refused");
  m = base, m.sched.strategy = CG_STRAT_DEQUANT, check_refused(m, "dequant for b<=16 refused");
  m = base, m.sched.strategy = CG_STRAT_DEQUANT, m.sched.batch_max = 512, m.sched.tile[0] = 33,
  check_refused(m, "dequant with 33 warps refused");
  m = base, m.sched.strategy = CG_STRAT_DEQUANT, m.sched.batch_max = 512, m.sched.tile[3] = 64,
  check_refused(m, "dequant tile[3] (unused) refused");

  /* Readable entry names. */
  check_name(cg_emit_linear, &xb, "rb_linear_xor_n100_k70_p1");
  CgKernel r = make_spec(&rows[6]);
  check_name(cg_emit_linear, &r, "rb_linear_add_xor_n4096_k4096_p2");
  check_name(cg_emit_repack, &r, "rb_repack_n4096_k4096_p2");
  r = make_spec(&rows[8]);
  check_name(cg_emit_linear, &r, "rb_linear_mma_n4096_k4096_p2_b16");
  r = make_spec(&rows[10]);
  check_name(cg_emit_linear, &r, "rb_linear_xor_n576_192_192_k576_p2");
  check_name(cg_emit_repack, &r, "rb_repack_n576_192_192_k576_p2");
  r = make_spec(&rows[14]);
  check_name(cg_emit_linear, &r, "rb_linear_swiglu_xor_n1536x2_k576_p2");
  check_name(cg_emit_repack, &r, "rb_repack_n1536x2_k576_p2");
  r = make_spec(&rows[17]);
  check_name(cg_emit_linear, &r, "rb_linear_swiglu_mma_n1536x2_k576_p3_b512");
  check_name(cg_emit_repack, &base, "rb_repack_n576_192_192_k576_p2"); /* whatever kernel of the layout asks */
  r = make_spec(&rows[22]);
  check_name(cg_emit_linear, &r, "rb_linear_dequant_n4096_k4096_p2_b512");
  check_name(cg_emit_repack, &r, "rb_repack_n4096_k4096_p2"); /* the same layout as every bucket's */
  r = make_spec(&rows[24]);
  check_name(cg_emit_linear, &r, "rb_linear_swiglu_dequant_n1536x2_k576_p2_b512");
  {
    /* The dequant grid is fixed (it covers the weights), whatever the batch. */
    CgKernel dq = make_spec(&rows[22]);
    CgLaunch l1 = test_launch(&dq, 17), l2 = test_launch(&dq, 4096);
    check(l1.grid[0] == 256 * 16 / 8 && l1.block[0] == 256 && l1.smem == 0 && !memcmp(&l1, &l2, sizeof l1),
          "dequant geometry", "not 512 blocks of 8 warps for 256 tiles x 16 groups at every batch");
    dq.sched.tile[0] = 4;
    l1 = test_launch(&dq, 512);
    check(l1.grid[0] == 1024 && l1.block[0] == 128, "dequant geometry", "tile[0] = 4 warps per block");
  }
  {
    CgKernel dq = make_spec(&rows[22]);
    m = dq, m.sched.tile[0] = 4, check_changes(&dq, &m, "dequant tile[0]");
    m = dq, m.sched.strategy = CG_STRAT_MMA, check_changes(&dq, &m, "strategy dequant -> mma");
  }

  /* Tiles are not in the name: kernels that differ only in tiles get the
   * readable name plus distinct hash suffixes. */
  {
    CgKernel t[4] = {base, base, base, xb};
    t[1].sched.tile[0] = 1;
    t[2].sched.tile[0] = 1, t[2].sched.tile[1] = 2;
    t[3].sched.tile[0] = 2;
    char e[4][64], ex[64];
    for (int i = 0; i < 4; i++) {
      entry_of(cg_emit_linear, &t[i], e[i]);
      check_entry_form(e[i], "tiled kernel");
      check_entry_names_op(&t[i], e[i], "tiled kernel");
    }
    entry_of(cg_emit_linear, &xb, ex);
    check(strcmp(e[0], e[1]) && strcmp(e[1], e[2]) && strcmp(e[0], e[2]) && strcmp(e[3], ex), "tiles",
          "kernels differing only in tiles share an entry name");
    check(!has_hash(e[0]) && has_hash(e[1]) && has_hash(e[2]) && has_hash(e[3]) &&
              strncmp(e[1], e[0], strlen(e[0])) == 0 && strlen(e[1]) == strlen(e[0]) + 7 &&
              strncmp(e[3], ex, strlen(ex)) == 0,
          "tiles", "a tiled kernel's entry is not its readable name plus a hash");
    char again[64];
    entry_of(cg_emit_linear, &t[2], again);
    check(strcmp(again, e[2]) == 0, "tiles", "a tiled kernel's entry is not deterministic");
  }

  /* Names too long for CG_ENTRY_MAX (four huge segments): a readable prefix plus
   * the hash, still distinct when they differ only past the cut. */
  {
    CgKernel l;
    memset(&l, 0, sizeof l);
    l.op.kind = CG_LINEAR;
    l.op.K = 1 << 20;
    l.op.nseg = 4;
    l.op.N[0] = 1000000, l.op.N[1] = 1000001, l.op.N[2] = 1000002, l.op.N[3] = 1000003;
    l.op.paths = 4;
    l.op.epilogue = CG_EPI_ADD;
    l.sched.strategy = CG_STRAT_MMA;
    l.sched.batch_max = 512;
    CgKernel l2 = l, l3 = l;
    l2.op.N[3] = 1000004;
    l3.op.K = (1 << 20) - 1;
    char e1[64], e2[64], e3[64], again[64];
    entry_of(cg_emit_linear, &l, e1);
    entry_of(cg_emit_linear, &l2, e2);
    entry_of(cg_emit_linear, &l3, e3);
    entry_of(cg_emit_linear, &l, again);
    check_entry_form(e1, "long name");
    check_entry_form(e2, "long name");
    check_entry_form(e3, "long name");
    check(has_hash(e1) && has_hash(e2) && strncmp(e1, "rb_linear_add_mma_n1000000_", 27) == 0, "long name",
          "a long name is not a readable prefix plus a hash");
    check(strcmp(e1, e2) && strcmp(e1, e3) && strcmp(e2, e3), "long name",
          "long names differing past the cut collide");
    check(strcmp(e1, again) == 0, "long name", "a long name is not deterministic");
    printf("long name: %s\n", e1);
    /* The longest repack names still fit whole (Ntot <= 2^24, K <= 2^20). */
    CgKernel rp = l;
    rp.op.kind = CG_REPACK;
    check_name(cg_emit_repack, &rp, "rb_repack_n1000000_1000001_1000002_1000003_k1048576_p4");
  }

  /* NVRTC: everything for sm_90, a subset for sm_80 and sm_89. Identical
   * repack sources (they depend only on the layout) are compiled once. */
  RbBuf seen = {0};
  for (int i = 0; i < nrows; i++) {
    CgKernel s = make_spec(&rows[i]);
    describe(&s, d, sizeof d);
    const char *archs[3] = {"sm_90", "sm_80", "sm_89"};
    for (int a = 0; a < (rows[i].sweep ? 3 : 1); a++) {
      check_compiles(cg_emit_linear, &s, archs[a], d);
      RbBuf src = {0};
      char entry[64], key[80];
      emit(cg_emit_repack, &s, &src, entry);
      snprintf(key, sizeof key, "|%s@%s|", entry, archs[a]);
      if (!seen.data || !strstr(seen.data, key)) {
        rb_buf_puts(&seen, key);
        check_compiles(cg_emit_repack, &s, archs[a], d);
      }
      rb_buf_free(&src);
    }
  }
  rb_buf_free(&seen);

  printf("%d compiles in %.1f s\n", ncompile, compile_s);
  printf("%d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
