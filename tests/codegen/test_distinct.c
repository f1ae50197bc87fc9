/* test_distinct.c: no kernel of a model is compiled twice. Every kernel a
 * sample selects emits a source (so a cache key) and an entry name of its own:
 * two kernels with one source would be built twice where the cache lives in
 * memory, and would wait on each other's lock where it is on disk. Each
 * compile of llama2-7b's linears costs 0.3-3 s on a 2-core machine
 * (tests/bench/KERNEL_NOTES.md, 2026-12-01). */
#include <stdio.h>
#include <string.h>

#include "../common/check.h"
#include "runtime/runtime.h"

static void check_sample(const char *samples, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", samples, name);
  RtCompileOptions o = {.path = path, .stop = RT_STAGE_SELECT};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&o, &c, &err);
  CHECK(rc == RB_OK, "%s: %s%s", name, err.data ? err.data : "", c.diag.data ? c.diag.data : "");
  int n = rc == RB_OK ? c.kernels.n : 0;
  RbBuf *src = rb_calloc((size_t)n + 1, sizeof *src);
  char (*entry)[CG_ENTRY_MAX] = rb_calloc((size_t)n + 1, sizeof *entry);
  for (int i = 0; i < n; i++) {
    RbBuf why = {0};
    CHECK(cg_target_cuda.emit(&c.kernels.k[i].kernel, &src[i], entry[i], &why) == RB_OK && src[i].data, "%s: kernel %d: %s",
          name, i, why.data ? why.data : "not emitted");
    rb_buf_free(&why);
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++) {
      CHECK(!src[i].data || !src[j].data || strcmp(src[i].data, src[j].data) != 0, "%s: kernels %d (%s) and %d (%s) have one source",
            name, j, entry[j], i, entry[i]);
      CHECK(strcmp(entry[i], entry[j]) != 0, "%s: kernels %d and %d are both %s", name, j, i, entry[i]);
    }
  printf("%s: %d kernels\n", name, n);
  for (int i = 0; i < n; i++) rb_buf_free(&src[i]);
  rb_free(src);
  rb_free(entry);
  rb_buf_free(&err);
  rt_compiled_free(&c);
}

int main(int argc, char **argv) {
  const char *samples = argc > 1 ? argv[1] : "samples";
  const char *names[] = {"llama2-7b.ir", "smollm2-135m.ir", "tiny.ir", "linear-4096x4096-k2.ir"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_sample(samples, names[i]);
  return CHECK_SUMMARY();
}
