/* test_cache.c: host objects in the kernel cache. The key carries LLVM's
 * version, the target triple, the CPU name and its features; a second build
 * hits and the loaded objects compute the right thing; an entry damaged on
 * disk is a miss and rebuilt; an entry whose bytes pass the cache's checksum
 * but are no object (stored garbage) is reported once, rebuilt, stored over
 * and loaded, never run. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "tests/host/util.h"
#include "tests/ref/ref.h"

enum { NK = 3 };

static void kernels(CgKernel *k) {
  memset(k, 0, NK * sizeof *k);
  k[0].op = (CgOp){.kind = CG_RMSNORM, .dim = 45, .eps = 1e-6f};
  k[1].op = (CgOp){.kind = CG_SWIGLU, .dim = 33};
  k[2].op = (CgOp){.kind = CG_LINEAR, .K = 77, .nseg = 1, .N = {9}, .paths = 2};
  k[2].sched.strategy = CG_STRAT_XOR, k[2].sched.batch_max = 16;
}

/* The rmsnorm entry against the reference: 1 when it agrees. */
static int rmsnorm_ok(CgHostEntry fn, const CgKernel *k) {
  enum { T = 3, D = 45 };
  float xf[T * D], wf[D];
  uint16_t xh[T * D], wh[D], yh[T * D];
  double want[T * D], got[T * D];
  hu_fill(xf, xh, T * D, -1, 1);
  hu_fill(wf, wh, D, 0.5f, 1.5f);
  ref_rmsnorm(want, xf, wf, T, D, k->op.eps);
  CgRmsnormArgs a = {(CgDevPtr)(uintptr_t)yh, (CgDevPtr)(uintptr_t)xh, (CgDevPtr)(uintptr_t)wh, T};
  CgArgv av;
  CgGeometry g;
  RbBuf err = {0};
  cg_target_host.geometry(k, &g, &err);
  rb_buf_free(&err);
  cg_rmsnorm_argv(&a, &av);
  rt_host_launch(NULL, fn, &g, T, av.v);
  for (int i = 0; i < T * D; i++) got[i] = rb_f32_from_f16(yh[i]);
  return ref_rel_l2(got, want, T * D) <= 2e-3;
}

static int count_lines(const char *s) {
  int n = 0;
  for (; s && *s; s++) n += *s == '\n';
  return n;
}

/* One round: a fresh JIT, build and load; hits counted; warn kept for the caller. */
static int round_(RtCache *c, CgKernel *k, RtBuilt *b, RbBuf *warn, int *ok) {
  RtHostJit *jit;
  CgHostEntry fn[NK];
  RbBuf err = {0};
  if (rt_host_jit_open(&jit, &err)) {
    fprintf(stderr, "jit: %s\n", err.data);
    exit(2);
  }
  rb_buf_free(&err);
  int rc = hu_build_load(k, NK, c, jit, b, fn, warn);
  int hits = 0;
  for (int i = 0; i < NK; i++) hits += b[i].hit;
  *ok = rc == RB_OK && fn[0] && rmsnorm_ok(fn[0], &k[0]);
  rt_host_jit_close(jit);
  return hits;
}

int main(void) {
  double t0 = rb_now_ms();
  char *dir = hu_tmpdir("host-cache");
  RtCache *c;
  RbBuf err = {0}, warn = {0};
  if (rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &err)) return 2;
  CgKernel k[NK];
  RtBuilt b[NK];
  int ok;
  kernels(k);

  /* the compiler identity: version, triple, CPU and features */
  const char *id = rt_llvm_id();
  CHECK(strstr(id, "llvm 16.") && strstr(id, " triple ") && strstr(id, " cpu ") && strstr(id, " features "),
        "identity '%.120s'", id);
  const RtCompiler *cc = rt_compiler_find("llvm");
  CHECK(cc && cc->id == rt_llvm_id, "the llvm compiler is registered");
  if (cc) { /* a source that is not LLVM IR: refused with LLVM's message, nothing built */
    void *bin = NULL;
    size_t len = 0;
    RbBuf log = {0};
    CHECK(cc->compile("define void @f( {", "bad", "host", NULL, 0, &bin, &len, &log) == RB_EUSER && !bin &&
              log.data && strstr(log.data, "llvm: bad does not parse"), "bad source: %s", log.data ? log.data : "");
    rb_buf_free(&log);
  }

  CHECK(round_(c, k, b, &warn, &ok) == 0 && ok, "cold build: no hits");
  /* the key differs from the same source under another CPU's identity */
  RtKeyParts parts = {b[0].source.data, "default<O3>", "host", "llvm 16.0.6 triple x cpu other features +x", RABIT_VERSION};
  RtKey other = rt_key_make(&parts);
  CHECK(other.hi != b[0].key.hi || other.lo != b[0].key.lo, "the CPU is in the key");
  RtKey key0 = b[0].key;
  rt_built_free(b, NK);

  CHECK(round_(c, k, b, &warn, &ok) == NK && ok, "warm build: every kernel hits and runs");
  double warm_ms = 0;
  for (int i = 0; i < NK; i++) warm_ms += b[i].ms;
  printf("warm: %d kernels from the cache in %.1f ms\n", NK, warm_ms);
  rt_built_free(b, NK);
  CHECK(warn.len == 0, "no warnings yet: %s", warn.data);

  /* damage on disk: the entry's checksum fails, it is a miss and is rebuilt */
  char hex[33], path[4200];
  rt_key_hex(key0, hex);
  snprintf(path, sizeof path, "%s/%s.cubin", dir, hex);
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0, "entry %s", path);
  if (fd >= 0) {
    off_t end = lseek(fd, 0, SEEK_END);
    unsigned char byte;
    CHECK(pread(fd, &byte, 1, end - 100) == 1, "read");
    byte ^= 0x5a;
    CHECK(pwrite(fd, &byte, 1, end - 100) == 1, "write");
    close(fd);
  }
  CHECK(round_(c, k, b, &warn, &ok) == NK - 1 && ok && !b[0].hit, "a damaged entry is a miss, rebuilt");
  rt_built_free(b, NK);

  /* garbage with a good checksum, under two keys: said once, rebuilt, stored */
  static const char junk[] = "this is not an ELF object";
  CHECK(rt_cache_put(c, key0, junk, sizeof junk, &err) == RB_OK, "put");
  CHECK(rt_cache_put(c, b[1].key, junk, sizeof junk, &err) == RB_OK, "put");
  int hits = round_(c, k, b, &warn, &ok);
  CHECK(hits == NK - 2 && ok, "garbage entries are rebuilt (no longer hits) and run: %d hits, ok %d, %s", hits, ok, warn.data ? warn.data : "");
  CHECK(count_lines(warn.data) == 1 && strstr(warn.data, "unusable") && strstr(warn.data, "rebuilding"),
        "one report: '%s'", warn.data ? warn.data : "");
  rt_built_free(b, NK);
  rb_buf_free(&warn);
  CHECK(round_(c, k, b, &warn, &ok) == NK && ok && warn.len == 0, "the rebuilt objects were stored: %s",
        warn.data ? warn.data : "");
  rt_built_free(b, NK);

  rt_cache_close(c);
  rb_buf_free(&err);
  rb_buf_free(&warn);
  hu_rm_rf(dir);
  rb_free(dir);
  return hu_finish("host_cache", t0);
}
