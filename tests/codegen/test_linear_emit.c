/* test_linear_emit.c: CPU test of the linear and repack emitters (cg_linear.c).
 * For a table of specs (both strategies, paths 1..4, 1..3 segments, every
 * epilogue, odd and real shapes, batch buckets 1, 16, 512) it checks that the
 * source is deterministic, includes nothing, changes when a field it is
 * specialized on changes, has sane launch geometry, and compiles with NVRTC
 * (sm_90 for all, sm_80 and sm_89 for a representative subset). No GPU needed. */
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
};
#undef X
#undef M

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

/* Same spec twice -> byte-identical source and entry; no #include. */
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
  m = xb, m.sched.tile[2] = 33, check_refused(m, "xor chunk not a multiple of 32 refused");

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
