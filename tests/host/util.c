/* util.c: the host-target tests' shared helpers (util.h). */
#include "tests/host/util.h"

#include <stdlib.h>
#include <string.h>

int hu_failures;

char *hu_tmpdir(const char *tag) {
  const char *t = getenv("TMPDIR");
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/rabit-%s-XXXXXX", t && *t ? t : "/tmp", tag);
  if (!mkdtemp(buf)) {
    perror("mkdtemp");
    exit(2);
  }
  return rb_strdup(buf);
}

void hu_rm_rf(const char *path) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
}

static uint64_t state = 0x9e3779b97f4a7c15ull;
void hu_seed(uint64_t s) { state = s * 0x9e3779b97f4a7c15ull + 1; }
uint32_t hu_rand(void) {
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return (uint32_t)(state >> 16);
}

void hu_fill(float *f, uint16_t *h, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) {
    float v = lo + (hi - lo) * (float)(hu_rand() & 0xffffff) / 16777216.0f;
    uint16_t b = rb_f16_from_f32(v);
    f[i] = rb_f32_from_f16(b);
    if (h) h[i] = b;
  }
}

int hu_build_load(const CgKernel *kernels, int n, RtCache *cache, RtHostJit *jit, RtBuilt *built, CgHostEntry *fn,
                  RbBuf *warn) {
  RtBuildOptions o = {.target = &cg_target_host, .arch = "host", .cache = cache, .jobs = 2};
  int rc = rt_build_kernels(kernels, n, &o, built);
  for (int i = 0; i < n; i++) {
    fn[i] = NULL;
    if (built[i].rc != RB_OK) {
      fprintf(stderr, "kernel %d (%s) failed: %s\n", i, built[i].entry, built[i].log.data ? built[i].log.data : "");
      continue;
    }
    int lr = rt_host_jit_load(jit, &built[i], cache, &fn[i], warn);
    if (lr != RB_OK) {
      fprintf(stderr, "kernel %s did not load: %s\n", built[i].entry, warn->data ? warn->data : "");
      if (lr > rc) rc = lr;
    }
  }
  return rc;
}

void hu_env_open(const char *tag, char **dir, RtCache **cache, RtHostJit **jit, RbPool **pool) {
  RbBuf err = {0};
  *dir = hu_tmpdir(tag);
  if (rt_cache_open(cache, *dir, RT_CACHE_DEFAULT_MAX, &err) || rt_host_jit_open(jit, &err) || rb_pool_open(pool, 1)) {
    fprintf(stderr, "setup: %s\n", err.data ? err.data : "?");
    exit(2);
  }
  rb_buf_free(&err);
}

void hu_env_close(char *dir, RtCache *cache, RtHostJit *jit, RbPool *pool, RbBuf *warn) {
  CHECK(warn->len == 0, "loader warnings: %s", warn->data);
  rt_host_jit_close(jit);
  rt_cache_close(cache);
  rb_pool_close(pool);
  rb_buf_free(warn);
  hu_rm_rf(dir);
  rb_free(dir);
}

int hu_finish(const char *name, double t0_ms) {
  double s = (rb_now_ms() - t0_ms) / 1e3;
  if (hu_failures) {
    fprintf(stderr, "FAIL %s: %d check%s failed (%.2f s)\n", name, hu_failures, hu_failures == 1 ? "" : "s", s);
    return 1;
  }
  printf("PASS %s (%.2f s)\n", name, s);
  return 0;
}
