/* test_prefill_select: the prefill buckets' strategy through the compile pipeline, on
 * the CPU. By default (RABIT_PREFILL unset or "dequant") every quantized linear's
 * bucket above batch 16 takes the dequant strategy (the smaller ones keep theirs), a
 * quantized swiglu with such a bucket gets its product kernel as `main`, and the plan
 * records both and reads them back; RABIT_PREFILL=mma puts the staged mma kernels back,
 * with a note, and no product kernel appears; another value is a note and changes
 * nothing. Keys and entries are synthesized: no NVRTC.
 * Usage: test_prefill_select SAMPLES_DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "runtime/runtime.h"
#include "tests/common/check.h"

static const char *samples;

/* Compile sample `name` to the selected kernels with RABIT_PREFILL = env (NULL: unset). */
static int select_kernels(const char *name, const char *env, RtCompiled *c) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", samples, name);
  if (env) setenv("RABIT_PREFILL", env, 1);
  else unsetenv("RABIT_PREFILL");
  RtCompileOptions o = {.path = path, .stop = RT_STAGE_SELECT};
  RbBuf err = {0};
  int rc = rt_compile(&o, c, &err);
  CHECK(rc == RB_OK, "%s: %s%s", name, err.data ? err.data : "", c->diag.data ? c->diag.data : "");
  rb_buf_free(&err);
  unsetenv("RABIT_PREFILL");
  return rc;
}

/* The quantized linear nodes' buckets and swiglu products, as the override wants them. */
static void check_selection(const char *name, const RtCompiled *c, int dequant) {
  int nlinear = 0, ndequant = 0;
  for (int i = 0; i < c->kernels.nnodes; i++) {
    const CgNodeKernels *nk = &c->kernels.node[i];
    if (!nk->nbucket) continue;
    nlinear++;
    int swiglu = 0;
    for (int b = 0; b < nk->nbucket; b++) {
      const CgKernel *k = &c->kernels.k[nk->bucket[b]].kernel;
      int want = dequant && k->sched.batch_max > 16;
      CHECK((k->sched.strategy == CG_STRAT_DEQUANT) == want, "%s node %d bucket b<=%d: strategy %s", name, i,
            k->sched.batch_max, cg_strategy_name(k->sched.strategy));
      ndequant += k->sched.strategy == CG_STRAT_DEQUANT;
      swiglu |= k->op.epilogue == CG_EPI_SWIGLU;
      if (swiglu && dequant && nk->main >= 0) {
        const CgKernel *pk = &c->kernels.k[nk->main].kernel;
        CHECK(pk->op.kind == CG_SWIGLU && pk->op.dim == k->op.N[0], "%s node %d: main is %s D=%d", name, i,
              cg_kind_name(pk->op.kind), pk->op.dim);
      }
    }
    if (swiglu) CHECK((nk->main >= 0) == dequant, "%s node %d: swiglu main %d with dequant %d", name, i, nk->main, dequant);
  }
  CHECK(nlinear > 0, "%s: no quantized linears", name);
  if (dequant) CHECK(ndequant > 0, "%s: no dequant buckets", name);
}

/* The plan of the selected kernels (synthesized keys) through text and back. */
static void check_plan(const char *name, RtCompiled *c) {
  RtBuilt *built = rb_calloc((size_t)c->kernels.n + 1, sizeof *built);
  for (int i = 0; i < c->kernels.n; i++) {
    built[i].key = (RtKey){0x9e3779b97f4a7c15ull * (uint64_t)(i + 1), (uint64_t)i};
    snprintf(built[i].entry, sizeof built[i].entry, "entry_%d", i);
  }
  RtPlan *p = NULL, *back = NULL;
  RbBuf err = {0}, text = {0}, again = {0};
  CHECK(rt_plan_make(&p, c->graph, c->text.data, &cg_target_cuda, "sm_90", &c->kernels, built, &err) == RB_OK,
        "%s: plan: %s", name, err.data ? err.data : "");
  if (p) {
    rt_plan_format(p, &text);
    CHECK(strstr(text.data, "strategy=dequant") != NULL, "%s: the plan does not say dequant", name);
    CHECK(rt_plan_parse("prefill.rplan", text.data, &back, &err) == RB_OK, "%s: parse: %s", name,
          err.data ? err.data : "");
  }
  if (back) {
    rt_plan_format(back, &again);
    CHECK(again.len == text.len && !memcmp(again.data, text.data, text.len), "%s: the plan does not round-trip", name);
    for (int i = 0; i < back->nsteps; i++) {
      const RtPlanStep *s = &back->steps[i];
      if (s->op == IR_LINEAR_SWIGLU && s->paths)
        CHECK(s->kernels.main >= 0 && back->kernels[s->kernels.main].kernel.op.kind == CG_SWIGLU,
              "%s step %d: no product kernel read back", name, i);
    }
  }
  rt_plan_free(p);
  rt_plan_free(back);
  rb_buf_free(&err);
  rb_buf_free(&text);
  rb_buf_free(&again);
  rb_free(built);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_prefill_select SAMPLES_DIR\n");
    return 2;
  }
  samples = argv[1];
  const char *names[] = {"tiny.ir", "smollm2-135m.ir", "llama2-7b.ir"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    RtCompiled c;
    const char *dflt[] = {NULL, "dequant"};
    for (int j = 0; j < 2; j++) {
      if (select_kernels(names[i], dflt[j], &c) == RB_OK) {
        check_selection(names[i], &c, 1);
        CHECK(!c.warnings.data || !strstr(c.warnings.data, "RABIT_PREFILL"), "%s: a note without the override",
              names[i]);
        check_plan(names[i], &c);
      }
      rt_compiled_free(&c);
    }
    if (select_kernels(names[i], "mma", &c) == RB_OK) {
      check_selection(names[i], &c, 0);
      CHECK(c.warnings.data && strstr(c.warnings.data, "RABIT_PREFILL=mma: ") &&
                strstr(c.warnings.data, "(batches above 16) under the staged mma strategy"),
            "%s: no note: %s", names[i], c.warnings.data ? c.warnings.data : "");
    }
    rt_compiled_free(&c);
  }
  /* A value it does not know: said, and nothing changes. */
  RtCompiled c;
  if (select_kernels("tiny.ir", "cublas", &c) == RB_OK) {
    check_selection("tiny.ir", &c, 1);
    CHECK(c.warnings.data && strstr(c.warnings.data, "note: RABIT_PREFILL='cublas' is not one of 'dequant', 'mma'; ignored"),
          "unknown value: %s", c.warnings.data ? c.warnings.data : "(no note)");
  }
  rt_compiled_free(&c);
  return CHECK_SUMMARY();
}
