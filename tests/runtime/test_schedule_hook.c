/* test_schedule_hook: the compile pipeline's schedule hook (RtCompileOptions
 * .schedule) on samples/tiny.ir, stopped after selection (no NVRTC, no GPU).
 * A schedule the hook proposes replaces the default and records its source;
 * one the target refuses (a tile out of range) and one changing the bucket
 * leave the default with a note each, and
 * the compile still succeeds; the op is never changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"
#include "tests/common/check.h"

typedef struct {
  int calls;
} Hook;

/* Proposes, for the linear+add N=64 K=160 kernels: b<=16 a valid register
 * tile (tuned), b<=512 a row-tile count the target refuses (tuned); for the
 * swiglu b<=16 a bucket change (shipped); for the q/k linear's b<=16 the
 * xor strategy (valid, shipped), and for its b<=512 a changed schedule
 * returned as CG_FROM_DEFAULT (ignored). Everything else: the default. */
static CgScheduleSource hook(void *ctx, const CgKernel *k, CgSchedule *s) {
  Hook *h = ctx;
  h->calls++;
  if (k->op.kind != CG_LINEAR) return CG_FROM_DEFAULT;
  if (k->op.epilogue == CG_EPI_ADD && k->op.K == 160 && s->batch_max == 16) {
    *s = (CgSchedule){CG_STRAT_MMA, 16, {1, 1, 0, 8}};
    return CG_FROM_TUNED;
  }
  if (k->op.epilogue == CG_EPI_ADD && k->op.K == 160 && s->batch_max == 512) {
    s->tile[0] = 99;
    return CG_FROM_TUNED;
  }
  if (k->op.epilogue == CG_EPI_SWIGLU && s->batch_max == 16) {
    s->batch_max = 32;
    return CG_FROM_SHIPPED;
  }
  if (k->op.epilogue == CG_EPI_NONE && k->op.nseg == 2 && s->batch_max == 16) {
    *s = (CgSchedule){CG_STRAT_XOR, 16, {0}};
    return CG_FROM_SHIPPED;
  }
  if (k->op.epilogue == CG_EPI_NONE && k->op.nseg == 2 && s->batch_max == 512) {
    s->tile[0] = 3; /* not a proposal: the pipeline must ignore it */
    return CG_FROM_DEFAULT;
  }
  return CG_FROM_DEFAULT;
}

static int find(const CgKernelSet *ks, CgEpilogue epi, int K, int nseg, int batch) {
  for (int i = 0; i < ks->n; i++) {
    const CgKernel *k = &ks->k[i].kernel;
    if (k->op.kind == CG_LINEAR && k->op.epilogue == epi && k->op.K == K && k->op.nseg == nseg &&
        k->sched.batch_max == batch)
      return i;
  }
  return -1;
}

static int count(const char *text, const char *what) {
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

int main(int argc, char **argv) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny.ir", argc > 1 ? argv[1] : "samples");
  setenv("RABIT_FUSE_NORM", "1", 1); /* the records below name the fused rmsnorm+linear kernels */
  /* The defaults, for comparison. */
  RtCompileOptions o = {.path = path, .stop = RT_STAGE_SELECT};
  RtCompiled d, c;
  RbBuf err = {0};
  CHECK(rt_compile(&o, &d, &err) == RB_OK, "plain compile: %s", err.data ? err.data : "");
  Hook h = {0};
  o.schedule = hook;
  o.schedule_ctx = &h;
  int rc = rt_compile(&o, &c, &err);
  CHECK(rc == RB_OK && c.reached == RT_STAGE_SELECT, "hooked compile failed (rc %d): %s", rc, err.data ? err.data : "");
  /* The swiglu product kernels of dequant prefill buckets come after the schedules are final:
   * the hook never sees them. */
  int hooked = 0;
  for (int i = 0; i < c.kernels.n; i++) hooked += c.kernels.k[i].kernel.op.kind != CG_SWIGLU;
  CHECK(h.calls == hooked && c.kernels.n == d.kernels.n && d.kernels.n > 0,
        "hook called %d times for %d kernels (%d of them before the product kernels)", h.calls, c.kernels.n, hooked);
  int tuned = 0, shipped = 0;
  for (int i = 0; i < c.kernels.n && c.kernels.n == d.kernels.n; i++) {
    CHECK(!memcmp(&c.kernels.k[i].kernel.op, &d.kernels.k[i].kernel.op, sizeof(CgOp)), "kernel %d: the op changed", i);
    tuned += c.kernels.k[i].from == CG_FROM_TUNED;
    shipped += c.kernels.k[i].from == CG_FROM_SHIPPED;
    CHECK(d.kernels.k[i].from == CG_FROM_DEFAULT, "kernel %d: default compile says %s", i,
          cg_schedule_source_name(d.kernels.k[i].from));
  }
  CHECK(tuned == 1 && shipped == 1, "%d tuned, %d shipped (want 1 and 1)", tuned, shipped);

  int i = find(&c.kernels, CG_EPI_ADD, 160, 1, 16);
  CHECK(i >= 0 && c.kernels.k[i].from == CG_FROM_TUNED && c.kernels.k[i].kernel.sched.tile[0] == 1 &&
            c.kernels.k[i].kernel.sched.tile[3] == 8,
        "the valid tuned schedule was not applied");
  i = find(&c.kernels, CG_EPI_ADD, 160, 1, 512);
  CHECK(i >= 0 && c.kernels.k[i].from == CG_FROM_DEFAULT && !memcmp(&c.kernels.k[i].kernel, &d.kernels.k[i].kernel,
        sizeof(CgKernel)), "the refused schedule replaced the default");
  i = find(&c.kernels, CG_EPI_SWIGLU, 64, 2, 16);
  CHECK(i >= 0 && c.kernels.k[i].from == CG_FROM_DEFAULT && c.kernels.k[i].kernel.sched.batch_max == 16,
        "a schedule changing the bucket was applied");
  i = find(&c.kernels, CG_EPI_NONE, 64, 2, 16);
  CHECK(i >= 0 && c.kernels.k[i].from == CG_FROM_SHIPPED && c.kernels.k[i].kernel.sched.strategy == CG_STRAT_XOR,
        "the valid shipped schedule was not applied");
  i = find(&c.kernels, CG_EPI_NONE, 64, 2, 512);
  CHECK(i >= 0 && c.kernels.k[i].from == CG_FROM_DEFAULT && c.kernels.k[i].kernel.sched.tile[0] == 0,
        "a schedule returned with CG_FROM_DEFAULT was applied");

  const char *w = c.warnings.data ? c.warnings.data : "";
  CHECK(count(w, "note: ") == 2, "want 2 notes, got: %s", w);
  CHECK(strstr(w, "note: tuned schedule ignored, the cuda target refuses 'linear+add dequant N=64 K=160 k=1 b<=512 "
                  "tile=99,0,0,0': linear dequant: bad tile 99,"),
        "no note for the refused tile: %s", w);
  CHECK(strstr(w, "kernel 'linear+add dequant N=64 K=160 k=1 b<=512 tile=0,0,0,0' keeps its default schedule\n"),
        "the note does not name the kernel kept: %s", w);
  CHECK(strstr(w, "note: shipped schedule ignored, the cuda target refuses 'rmsnorm+linear+swiglu mma N=160+160 K=64 "
                  "k=2 eps=1e-05 b<=32 tile=0,0,0,0': it serves batches up to 32, the kernel's bucket 16;"),
        "no note for the bucket change: %s", w);
  rt_compiled_free(&c);
  rt_compiled_free(&d);
  rb_buf_free(&err);
  return CHECK_SUMMARY();
}
