/* compile.c: the one compile pipeline. Text -> graph (parse, verify) -> fused
 * graph (fuse, verify) -> kernels (select) -> binaries (build through the
 * cache) -> plan; for training, graph -> training graph (grad, verify).
 * rabitc, every rabit command, the trainer and the autotuner call it and
 * stop at the stage they need. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "runtime/runtime.h"

/* Read the IR into c->text: the file, or stdin for "-", up to FE_MAX_SOURCE_BYTES
 * (so /dev/zero ends). A NUL byte means it is not text. */
static int read_source(const RtCompileOptions *o, RtCompiled *c, RbBuf *err) {
  if (o->text) {
    rb_buf_puts(&c->text, o->text);
    return c->text.oom ? RB_EINTERNAL : RB_OK;
  }
  if (rb_read_file_max(o->path, FE_MAX_SOURCE_BYTES, &c->text) != 0) {
    int e = errno;
    char cap[32];
    if (e == EFBIG)
      rb_buf_printf(err, "cannot read '%s': it is over %s, the cap on an IR file", c->shown,
                    rb_size_str(FE_MAX_SOURCE_BYTES, cap));
    else rb_buf_printf(err, "cannot read '%s': %s", c->shown, strerror(e));
    return e == ENOMEM ? RB_EINTERNAL : RB_EUSER;
  }
  const char *nul = c->text.len ? memchr(c->text.data, 0, c->text.len) : NULL;
  if (nul) {
    rb_buf_printf(err, "'%s' is not a text file (it contains a NUL byte at offset %zu)", c->shown,
                  (size_t)(nul - c->text.data));
    return RB_EUSER;
  }
  if (!c->text.data) rb_buf_puts(&c->text, ""); /* an empty file still parses (and fails) as text */
  return c->text.oom ? RB_EINTERNAL : RB_OK;
}

/* The front half: text -> verified graph, fused when asked (or with train,
 * the verified training graph). Diagnostics go to c->diag. */
static int front_end(const RtCompileOptions *o, RtCompiled *c) {
  IrDiag d;
  ir_diag_init(&d, c->shown, c->text.data);
  int rc = fe_compile(c->shown, c->text.data, &o->fe, &d, &c->graph);
  if (!rc) c->reached = RT_STAGE_PARSE;
  if (!rc && o->stop >= RT_STAGE_VERIFY && !(rc = ir_graph_verify(c->graph, &d))) c->reached = RT_STAGE_VERIFY;
  if (!rc && o->train && o->stop >= RT_STAGE_GRAD) {
    /* The backward is built on the unfused graph: its rules are per forward op. */
    IrGradOptions go = {o->gamma};
    rc = ir_grad(c->graph, &go, &d);
    if (!rc && !(rc = ir_graph_verify(c->graph, &d))) c->reached = RT_STAGE_GRAD;
  } else if (!rc && !o->train && o->stop >= RT_STAGE_FUSE) {
    ir_fuse(c->graph);
    if (!(rc = ir_graph_verify(c->graph, &d))) c->reached = RT_STAGE_FUSE;
  }
  if (d.out.data) rb_buf_puts(&c->diag, d.out.data);
  ir_diag_free(&d);
  return rc;
}

/* The schedule hook (RtScheduleFn) over the selected kernels: each schedule
 * it proposes replaces the default when it keeps the bucket (so the set's
 * kernels stay distinct: those of one op differ in their bucket) and the
 * target's geometry and emitter accept it; else the default stays, with a
 * note. A bad record never fails the compile. */
static int apply_schedules(const RtCompileOptions *o, const CgTarget *t, RtCompiled *c) {
  CgKernelSet *ks = &c->kernels;
  for (int i = 0; o->schedule && i < ks->n; i++) {
    CgKernelUse *u = &ks->k[i];
    CgKernel k = u->kernel;
    CgScheduleSource from = o->schedule(o->schedule_ctx, &u->kernel, &k.sched);
    if (from != CG_FROM_SHIPPED && from != CG_FROM_TUNED) continue;
    RbBuf why = {0}, src = {0}, was = {0}, now = {0};
    char entry[CG_ENTRY_MAX];
    CgGeometry geo;
    if (k.sched.batch_max != u->kernel.sched.batch_max)
      rb_buf_printf(&why, "it serves batches up to %d, the kernel's bucket %d", k.sched.batch_max,
                    u->kernel.sched.batch_max);
    else if (t->geometry(&k, &geo, &why) == RB_OK && t->emit(&k, &src, entry, &why) == RB_OK) {
      u->kernel = k;
      u->from = from;
    } else if (!why.len) rb_buf_puts(&why, "refused without a reason");
    if (why.len) {
      cg_kernel_describe(&u->kernel, &was);
      cg_kernel_describe(&k, &now);
      rb_buf_printf(&c->warnings, "note: %s schedule ignored, the %s target refuses '%s': %.*s; kernel '%s' keeps "
                    "its default schedule\n", cg_schedule_source_name(from), t->name, now.data ? now.data : "?",
                    (int)strcspn(why.data, "\n"), why.data, was.data ? was.data : "?");
    }
    int oom = why.oom || src.oom || was.oom || now.oom || c->warnings.oom;
    rb_buf_free(&why);
    rb_buf_free(&src);
    rb_buf_free(&was);
    rb_buf_free(&now);
    if (oom) return RB_EINTERNAL;
  }
  return RB_OK;
}

/* Strategy overrides from the environment, applied after the default and the hook
 * chose, so that one strategy can be measured against another whatever the default
 * (or a tuned record) is:
 *   RABIT_PREFILL=mma   every quantized linear's bucket above batch 16 takes the staged
 *                       mma kernel (the fused decode and GEMM) instead of the dequant
 *                       strategy (the bits expanded to fp16, then cuBLAS: the default)
 *   RABIT_DECODE=lop3   every bucket up to batch 16 takes the lop3 decode
 *                       (codegen/cuda/lop3.c) in the register design
 *   RABIT_DECODE=xsmem  every bucket up to batch 16 takes the xsmem strategy
 *                       (codegen/cuda/xsmem.c: activations staged per block)
 * The other value ("dequant", "xor") or unset keeps the selection. The replacement takes
 * the default tiles; one the target refuses keeps its kernel, with a note, as the
 * hook's do. One note says what each did. */
typedef struct {
  const char *env, *keep, *value; /* the variable, its no-op value, the one that replaces */
  CgStrategy strategy;
  int prefill;                    /* 1: buckets above batch 16; 0: up to 16 */
  const char *what;               /* for the note */
} Override;

static const Override overrides[] = {
    {"RABIT_PREFILL", "dequant", "mma", CG_STRAT_MMA, 1, "prefill kernel%s (batches above 16) under the staged "
                                                        "mma strategy (no cuBLAS)"},
    {"RABIT_DECODE", "xor", "lop3", CG_STRAT_LOP3, 0, "decode kernel%s (batches up to 16) under the lop3 decode"},
    {"RABIT_DECODE", "xor", "xsmem", CG_STRAT_XSMEM, 0, "decode kernel%s (batches up to 16) under the xsmem "
                                                        "strategy"},
};

/* The first override of variable env (the one that notes an unknown value). */
static const Override *first_override(const char *env) {
  for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
    if (strcmp(overrides[i].env, env) == 0) return &overrides[i];
  return NULL;
}

/* Whether some override of variable env replaces on value v. */
static int override_value(const char *env, const char *v) {
  for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
    if (strcmp(overrides[i].env, env) == 0 && strcmp(overrides[i].value, v) == 0) return 1;
  return 0;
}

static int apply_override(const CgTarget *t, RtCompiled *c, const Override *ov) {
  const char *env = getenv(ov->env);
  if (!env || !*env || strcmp(env, ov->keep) == 0) return RB_OK;
  if (strcmp(env, ov->value) != 0) {
    if (override_value(ov->env, env) || ov != first_override(ov->env)) return RB_OK; /* another entry's, or said */
    rb_buf_printf(&c->warnings, "note: %s='%s' is not one of '%s'", ov->env, env, ov->keep);
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
      if (strcmp(overrides[i].env, ov->env) == 0) rb_buf_printf(&c->warnings, ", '%s'", overrides[i].value);
    rb_buf_puts(&c->warnings, "; ignored\n");
    return c->warnings.oom ? RB_EINTERNAL : RB_OK;
  }
  CgKernelSet *ks = &c->kernels;
  int changed = 0;
  for (int i = 0; i < ks->n; i++) {
    CgKernelUse *u = &ks->k[i];
    if (u->kernel.op.kind != CG_LINEAR || (u->kernel.sched.batch_max > 16) != ov->prefill ||
        u->kernel.sched.strategy == ov->strategy)
      continue;
    CgKernel k = u->kernel;
    memset(&k.sched.tile, 0, sizeof k.sched.tile);
    k.sched.strategy = ov->strategy;
    RbBuf why = {0}, src = {0}, was = {0};
    char entry[CG_ENTRY_MAX];
    CgGeometry geo;
    if (t->geometry(&k, &geo, &why) == RB_OK && t->emit(&k, &src, entry, &why) == RB_OK) {
      u->kernel = k;
      u->from = CG_FROM_DEFAULT;
      changed++;
    } else {
      cg_kernel_describe(&u->kernel, &was);
      rb_buf_printf(&c->warnings, "note: %s=%s: the %s target refuses it for '%s': %.*s\n", ov->env, ov->value,
                    t->name, was.data ? was.data : "?", (int)strcspn(why.data ? why.data : "", "\n"),
                    why.data ? why.data : "");
    }
    int oom = why.oom || src.oom || was.oom;
    rb_buf_free(&why);
    rb_buf_free(&src);
    rb_buf_free(&was);
    if (oom) return RB_EINTERNAL;
  }
  rb_buf_printf(&c->warnings, "note: %s=%s: %d ", ov->env, ov->value, changed);
  rb_buf_printf(&c->warnings, ov->what, changed == 1 ? "" : "s");
  rb_buf_puts(&c->warnings, "\n");
  return c->warnings.oom ? RB_EINTERNAL : RB_OK;
}

static int apply_overrides(const CgTarget *t, RtCompiled *c) {
  for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
    int rc = apply_override(t, c, &overrides[i]);
    if (rc) return rc;
  }
  return RB_OK;
}

/* Which decode buckets fold the rmsnorm before their linear in (CgOp.eps). By default those
 * that normalize exactly (CG_FUSE_EXACT: the bmma buckets, whose planes pre-pass quantizes
 * x .* (h w) in fp32 with its own scale and applies rsqrt(mean(x^2) + eps) to that scale).
 * RABIT_FUSE_NORM=1 folds it into the register design's buckets too, whose fp16 products
 * (h w) x, rms(x) times the unfused ones, lost accuracy on real trained weights: SmolLM2-135M
 * after 1.1 M tokens of RaBiT, a prompt token's logits 0.31 (relative L2) from the fp32 host
 * target's, against 0.066 unfused (tests/bench/RESULTS.md, 2026-12-02). "0" folds none.
 * Decided before selection, so that tuned and shipped records are looked up for the kernels
 * that are built. */
static int fuse_norm_wanted(RtCompiled *c, int *fuse) {
  const char *env = getenv("RABIT_FUSE_NORM");
  *fuse = !env || !*env ? CG_FUSE_EXACT : !strcmp(env, "1") ? CG_FUSE_ALL : !strcmp(env, "0") ? CG_FUSE_NONE : CG_FUSE_EXACT;
  if (env && *env && strcmp(env, "0") != 0 && strcmp(env, "1") != 0)
    rb_buf_printf(&c->warnings, "note: RABIT_FUSE_NORM='%s' is neither '0' nor '1'; the default holds (the bmma "
                  "buckets fold the norm in, the others do not)\n", env);
  return c->warnings.oom ? RB_EINTERNAL : RB_OK;
}

/* RABIT_BMMA=0 leaves out the bmma buckets (batches 1..4 then run the xor kernel), for A/B
 * runs and as a way back should a model's activations suit the int16 planes badly. */
static int bmma_wanted(RtCompiled *c, int *no_bmma) {
  const char *env = getenv("RABIT_BMMA");
  *no_bmma = env && strcmp(env, "0") == 0;
  if (env && *env && !*no_bmma && strcmp(env, "1") != 0)
    rb_buf_printf(&c->warnings, "note: RABIT_BMMA='%s' is neither '0' nor '1'; the bmma buckets stay\n", env);
  return c->warnings.oom ? RB_EINTERNAL : RB_OK;
}

/* The back half: kernels -> binaries -> plan. Kernel failures go to c->built. */
static int back_end(const RtCompileOptions *o, RtCompiled *c, RbBuf *err) {
  const CgTarget *t = o->target ? o->target : &cg_target_cuda;
  CgTargetOptions topt = {o->max_ctx ? o->max_ctx : RT_DEFAULT_MAX_CTX, 0, 0};
  int rc = fuse_norm_wanted(c, &topt.fuse_norm);
  if (!rc) rc = bmma_wanted(c, &topt.no_bmma);
  if (rc) return rc;
  IrDiag d;
  ir_diag_init(&d, c->shown, c->text.data);
  rc = cg_kernels_from_graph(c->graph, t, &topt, &d, &c->kernels);
  if (d.out.data) rb_buf_puts(&c->diag, d.out.data);
  ir_diag_free(&d);
  if (!rc) rc = apply_schedules(o, t, c);
  if (!rc) rc = apply_overrides(t, c);
  if (!rc) rc = cg_kernels_complete(c->graph, &c->kernels);
  if (rc) return rc;
  c->reached = RT_STAGE_SELECT;
  if (o->stop < RT_STAGE_BUILD) return RB_OK;
  rc = rt_cache_open(&c->cache, NULL, RT_CACHE_DEFAULT_MAX, &c->warnings);
  if (rc) return rc;
  RtBuildOptions bo = {t, o->arch, c->cache, o->jobs};
  double t0 = rb_now_ms();
  rc = rt_build_kernel_set(&c->kernels, &bo, &c->built);
  c->ms_build = rb_now_ms() - t0;
  for (int i = 0; c->built && i < c->kernels.n; i++) {
    c->hits += c->built[i].rc == RB_OK && c->built[i].hit;
    c->failed += c->built[i].rc != RB_OK;
  }
  if (rc) {
    if (c->failed) rb_buf_printf(err, "%d of %d kernels cannot be built", c->failed, c->kernels.n);
    return rc;
  }
  c->reached = RT_STAGE_BUILD;
  if (o->stop < RT_STAGE_PLAN) return RB_OK;
  rc = rt_plan_make(&c->plan, c->graph, c->text.data, t, o->arch, &c->kernels, c->built, err);
  if (!rc) c->reached = RT_STAGE_PLAN;
  return rc;
}

int rt_compile(const RtCompileOptions *o, RtCompiled *c, RbBuf *err) {
  memset(c, 0, sizeof *c);
  c->reached = -1;
  c->shown = o->text || strcmp(o->path, "-") ? o->path : "<stdin>";
  int rc = read_source(o, c, err);
  if (!rc) rc = front_end(o, c);
  if (!rc && !o->train && o->stop >= RT_STAGE_SELECT) rc = rt_compile_continue(o, c, err);
  return rc;
}

int rt_compile_continue(const RtCompileOptions *o, RtCompiled *c, RbBuf *err) {
  if (o->stop < RT_STAGE_SELECT) return RB_OK;
  if (c->reached != RT_STAGE_FUSE) {
    rb_buf_printf(err, "the back end needs the fused graph (the compile stopped at stage %d)", c->reached);
    return RB_EINTERNAL;
  }
  if (o->stop >= RT_STAGE_BUILD && !o->arch) {
    rb_buf_printf(err, "compiling kernels needs a target architecture");
    return RB_EINTERNAL;
  }
  return back_end(o, c, err);
}

void rt_compiled_free(RtCompiled *c) {
  if (c->built) rt_built_free(c->built, c->kernels.n);
  rb_free(c->built);
  cg_kernel_set_free(&c->kernels); /* zeroed by rt_compile when never made */
  rt_plan_free(c->plan);
  rt_cache_close(c->cache);
  ir_graph_free(c->graph);
  rb_buf_free(&c->text);
  rb_buf_free(&c->warnings);
  rb_buf_free(&c->diag);
  memset(c, 0, sizeof *c);
}

RtPlan *rt_compiled_take_plan(RtCompiled *c) {
  RtPlan *p = c->plan;
  c->plan = NULL;
  return p;
}
