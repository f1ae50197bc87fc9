/* test_plan: the plan round-trips (make -> text -> parse -> text is the
 * identity, and every spec survives bit for bit), and damaged plans are
 * refused with an error naming the file and line. No GPU or NVRTC needed:
 * the built kernels' keys and entries are synthesized. */
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"
#include "runtime/runtime.h"
#include "runtime/jit/jit.h"
#include "tests/common/check.h"


static RtPlan *make_plan(const char *path, char **text_out) {
  RbBuf src = {0};
  if (rb_read_file(path, &src)) return NULL;
  IrDiag d;
  ir_diag_init(&d, path, src.data);
  IrGraph *g = NULL;
  RtPlan *p = NULL;
  if (fe_compile(path, src.data, NULL, &d, &g) == RB_OK && ir_graph_verify(g, &d) == RB_OK) {
    ir_fuse(g);
    CgKernelSet ks;
    CgTargetOptions topt = {1024, 1, 0}; /* the fused norms too: the plan carries them */
    if (cg_kernels_from_graph(g, &cg_target_cuda, &topt, &d, &ks) == RB_OK) {
      RtBuilt *built = rb_calloc((size_t)ks.n, sizeof *built);
      for (int i = 0; i < ks.n; i++) {
        built[i].key = (RtKey){0x1234567890abcdefull * (uint64_t)(i + 1), (uint64_t)i};
        snprintf(built[i].entry, sizeof built[i].entry, "entry_%d", i);
      }
      RbBuf perr = {0};
      rt_plan_make(&p, g, src.data, &cg_target_cuda, "sm_90", &ks, built, &perr);
      rb_buf_free(&perr);
      rb_free(built);
      cg_kernel_set_free(&ks);
    }
  }
  ir_graph_free(g);
  ir_diag_free(&d);
  *text_out = rb_strdup(src.data);
  rb_buf_free(&src);
  return p;
}

static void expect_refused(const char *name, const char *text, const char *want) {
  RtPlan *p = NULL;
  RbBuf err = {0};
  int rc = rt_plan_parse("damaged.rplan", text, &p, &err);
  CHECK(rc == RB_EUSER && !p, "%s: a damaged plan was accepted", name);
  CHECK(err.data && strstr(err.data, want), "%s: expected '%s' in '%s'", name, want, err.data ? err.data : "");
  rt_plan_free(p);
  rb_buf_free(&err);
}

/* Replace the first occurrence of `from` in text by `to`. */
static char *replaced(const char *text, const char *from, const char *to) {
  const char *at = strstr(text, from);
  if (!at) return rb_strdup(text);
  RbBuf b = {0};
  rb_buf_put(&b, text, (size_t)(at - text));
  rb_buf_puts(&b, to);
  rb_buf_puts(&b, at + strlen(from));
  return b.data;
}

int main(int argc, char **argv) {
  const char *samples = argc > 1 ? argv[1] : "samples";
  const char *names[] = {"tiny.ir", "smollm2-135m.ir", "llama2-7b.ir", "linear-4096x4096-k2.ir"};
  char *tiny_text = NULL;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[1024], *ir;
    snprintf(path, sizeof path, "%s/%s", samples, names[i]);
    RtPlan *p = make_plan(path, &ir);
    CHECK(p, "%s: no plan", path);
    if (!p) continue;
    RbBuf t1 = {0}, t2 = {0}, err = {0};
    rt_plan_format(p, &t1);
    RtPlan *q = NULL;
    CHECK(rt_plan_parse(path, t1.data, &q, &err) == RB_OK, "%s: own plan refused: %s", path, err.data);
    if (q) {
      rt_plan_format(q, &t2);
      CHECK(strcmp(t1.data, t2.data) == 0, "%s: plan text changed on a round trip", path);
      CHECK(q->nkernels == p->nkernels && q->nsteps == p->nsteps && q->nvalues == p->nvalues,
            "%s: counts changed", path);
      for (int k = 0; k < p->nkernels && k < q->nkernels; k++)
        CHECK(cg_kernel_equal(&p->kernels[k].kernel, &q->kernels[k].kernel) &&
                  memcmp(&p->kernels[k].geometry, &q->kernels[k].geometry, sizeof p->kernels[k].geometry) == 0 &&
                  p->kernels[k].key.hi == q->kernels[k].key.hi &&
                  p->kernels[k].key.lo == q->kernels[k].key.lo,
              "%s: kernel %d changed on a round trip", path, k);
      CHECK(q->ir_hash.hi == p->ir_hash.hi && q->ir_hash.lo == p->ir_hash.lo, "%s: ir-hash changed", path);
    }
    printf("%s: %d kernels, %d steps, %zu bytes of plan\n", path, p->nkernels, p->nsteps, t1.len);
    if (i == 0) tiny_text = rb_strdup(t1.data);
    rt_plan_free(p);
    rt_plan_free(q);
    rb_buf_free(&t1);
    rb_buf_free(&t2);
    rb_buf_free(&err);
    rb_free(ir);
  }
  if (tiny_text) {
    char *t;
    size_t half = strlen(tiny_text) / 2;
    char *cut = rb_strdup(tiny_text);
    cut[half] = 0;
    cut[strrchr(cut, '\n') - cut + 1] = 0; /* truncated at a line boundary */
    expect_refused("truncated", cut, "the plan is truncated");
    rb_free(cut);
    expect_refused("version", t = replaced(tiny_text, "rabit-plan 4", "rabit-plan 7"), "plan version 7 is not supported");
    rb_free(t);
    expect_refused("magic", t = replaced(tiny_text, "rabit-plan", "rabbit-plan"), "not a rabit plan");
    rb_free(t);
    /* a linear folding in its rmsnorm must name a norm of its own eps (the pairing the executor trusts) */
    expect_refused("fused rmsnorm's eps",
                   t = replaced(tiny_text, "epilogue=swiglu tile=0,0,0,0 dim=0 vocab=0 heads=0 kv_heads=0 head_dim=0 "
                                "max_ctx=0 eps=0x1.4f8b58p-17", "epilogue=swiglu tile=0,0,0,0 dim=0 vocab=0 heads=0 "
                                "kv_heads=0 head_dim=0 max_ctx=0 eps=0x1p-10"),
                   "folds in an rmsnorm (eps 1e-05), but its input is not the output of one rmsnorm step");
    rb_free(t);
    /* blank lines before the magic line do not skip its check (found by fuzz_plan) */
    expect_refused("blank, then no magic", t = replaced(tiny_text, "rabit-plan 4", " \n  \nrabbit-plan 4"),
                   "not a rabit plan");
    rb_free(t);
    { /* the attention kernel's decode variant as version 2 wrote it: rows and block, no grid */
      char v3[64] = "", v2[64] = "";
      const char *at = strstr(tiny_text, " small=4,");
      if (at) sscanf(at, " %63s", v3);
      char *third = strrchr(v3, ',');
      if (third) snprintf(v2, sizeof v2, "%.*s", (int)(third - v3), v3);
      CHECK(v2[0], "tiny's plan has no decode variant (small=4,...)");
      expect_refused("a version-2 decode variant", t = replaced(tiny_text, v3, v2), "field 'small' needs 3 values");
      rb_free(t);
    }
    expect_refused("blank, then version 0", t = replaced(tiny_text, "rabit-plan 4", " \nrabit-plan 0"),
                   "plan version 0 is not supported");
    rb_free(t);
    expect_refused("kernel index", t = replaced(tiny_text, "main=0 ", "main=999 "), "field 'main'");
    rb_free(t);
    expect_refused("role kind", t = replaced(tiny_text, "repack=7 ", "repack=0 "), "'repack' is not a repack kernel");
    rb_free(t);
    expect_refused("planes kind", t = replaced(tiny_text, "planes=3 ", "planes=0 "), "'planes' is not a planes kernel");
    rb_free(t);
    expect_refused("no planes", t = replaced(tiny_text, "planes=3 ", ""), "a bmma bucket needs 'planes'");
    rb_free(t);
    expect_refused("bucket index", t = replaced(tiny_text, "buckets=2,4,5,6 ", "buckets=2,4,5,999 "),
                   "field 'buckets'");
    rb_free(t);
    expect_refused("geometry", t = replaced(tiny_text, "grow=1 per=1 ", "grow=1 per=0 "), "field 'per' must be positive");
    rb_free(t);
    expect_refused("target", t = replaced(tiny_text, "target cuda", "target fpga"), "unknown target 'fpga'");
    rb_free(t);
    expect_refused("bad key", t = replaced(tiny_text, "key=", "key=zz"), "bad or missing key");
    rb_free(t);
    expect_refused("bad kind", t = replaced(tiny_text, "kind=embed", "kind=conv"), "unknown kind 'conv'");
    rb_free(t);
    expect_refused("paths", t = replaced(tiny_text, "paths=2 epilogue", "paths=9 epilogue"), "field 'paths'");
    rb_free(t);
    expect_refused("order", t = replaced(tiny_text, "step 1 ", "step 2 "), "out of order");
    rb_free(t);
    expect_refused("junk", t = replaced(tiny_text, "arch sm_90", "arch sm_90\nfrobnicate 3"), "unknown record 'frobnicate'");
    rb_free(t);
    rb_free(tiny_text);
  }
  RtPlan *p = NULL;
  RbBuf err = {0};
  CHECK(rt_plan_load("/nonexistent/model.rplan", &p, &err) == RB_EUSER && strstr(err.data, "cannot read plan"),
        "missing file not reported");
  rb_buf_free(&err);
  return CHECK_SUMMARY();
}
