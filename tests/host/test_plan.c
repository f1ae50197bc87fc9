/* test_plan.c: a plan for the host target: samples/tiny.ir compiled through
 * the one pipeline (rt_compile, --target host's path) names the host target,
 * LLVM's identity and the host kernels with the host's geometry, and the text
 * parses back to the same plan. */
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "tests/host/util.h"

int main(int argc, char **argv) {
  double t0 = rb_now_ms();
  if (argc != 2) return fprintf(stderr, "usage: host_plan SAMPLES_DIR\n"), 2;
  char *dir = hu_tmpdir("host-plan"), ir[4096];
  setenv("RABIT_CACHE_DIR", dir, 1);
  snprintf(ir, sizeof ir, "%s/tiny.ir", argv[1]);
  RtCompileOptions o = {.path = ir, .target = &cg_target_host, .arch = "host", .stop = RT_STAGE_PLAN, .jobs = 2};
  RtCompiled c;
  RbBuf err = {0};
  int rc = rt_compile(&o, &c, &err);
  CHECK(rc == RB_OK && c.plan, "compile: %s %s", err.data ? err.data : "", c.diag.data ? c.diag.data : "");
  if (rc == RB_OK && c.plan) {
    RbBuf text = {0};
    rt_plan_format(c.plan, &text);
    CHECK(strstr(text.data, "\ntarget host\n") && strstr(text.data, "\ncompiler llvm 16."), "header");
    CHECK(strstr(text.data, "entry=rb_host_linear_n64_32_k64_p2_") && strstr(text.data, "block=1,1,1"),
          "host kernels in the plan");
    RtPlan *p = NULL;
    CHECK(rt_plan_parse("tiny.rplan", text.data, &p, &err) == RB_OK, "parse: %s", err.data ? err.data : "");
    if (p) {
      CHECK(rt_plan_target(p) == &cg_target_host, "the parsed plan's target");
      RbBuf again = {0};
      rt_plan_format(p, &again);
      CHECK(again.data && strcmp(again.data, text.data) == 0, "the plan round-trips");
      rb_buf_free(&again);
      rt_plan_free(p);
    }
    rb_buf_free(&text);
  }
  rt_compiled_free(&c);
  rb_buf_free(&err);
  hu_rm_rf(dir);
  rb_free(dir);
  return hu_finish("host_plan", t0);
}
