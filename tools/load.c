/* load.c: the IR of a model compiled in process and opened on the GPU or on
 * the host target, for the run, ppl and bench commands. Same pipeline as
 * rabitc: parse, verify, fuse, kernel set, build through the cache, plan;
 * then the program and the executor with the weights bound. Without
 * --target the GPU is taken when one opens, else the host, saying so. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codegen/codegen.h"

#include "autotune/autotune.h"
#include "tools/args.h"
#include "tools/load.h"
#include "tools/paths.h"

const char *load_parse_target(const char *v, void *dest) {
  static const char *const names[] = {"cuda", "host"};
  int k = args_pick(v, names, ARGS_COUNT(names));
  if (k < 0) return "cuda or host";
  *(LoadTarget *)dest = k == 0 ? LOAD_CUDA : LOAD_HOST;
  return NULL;
}

/* IR -> plan through the pipeline, with every kernel built (so the session
 * finds them cached), under the schedules tuned or shipped for this GPU (as
 * rabitc's); for the host target (gpu NULL) its own default schedules. */
static int compile_plan(const LoadOptions *o, RtPlan **plan, const RtGpu *gpu, int *kernels, int *hits) {
  RbBuf err = {0}, warn = {0};
  const char *arch = gpu ? rt_gpu_arch(gpu) : "host";
  RtCompileOptions co = {.path = o->ir, .fe = {o->paths, o->fp16}, .stop = RT_STAGE_PLAN, .arch = arch,
                         .max_ctx = o->max_ctx, .target = gpu ? &cg_target_cuda : &cg_target_host};
  AtDevice dev;
  AtSchedules sch = {0};
  int rc = RB_OK;
  if (gpu && at_device_init(&dev, rt_gpu_name(gpu), arch, &err) == RB_OK) { /* else a nameless GPU: the defaults */
    rc = at_schedules_open(&sch, &dev, NULL, NULL, &warn);
    co.schedule = at_schedule_pick, co.schedule_ctx = &sch;
  }
  rb_buf_free(&err);
  args_report(o->tool, warn.data);
  rb_buf_free(&warn);
  RtCompiled c;
  if (rc == RB_OK) rc = rt_compile(&co, &c, &err);
  else memset(&c, 0, sizeof c);
  *plan = rt_compiled_take_plan(&c);
  *kernels = c.kernels.n;
  *hits = c.hits;
  if (c.diag.data) fputs(c.diag.data, stderr);
  args_report(o->tool, c.warnings.data);
  for (int i = 0; c.built && i < c.kernels.n; i++)
    if (c.built[i].rc)
      fprintf(stderr, "%s: kernel %s failed to build: %s", o->tool, c.built[i].entry,
              c.built[i].log.data ? c.built[i].log.data : "\n");
  args_report(o->tool, err.data);
  rt_compiled_free(&c);
  at_schedules_free(&sch);
  rb_buf_free(&err);
  return rc;
}

int load_check(const LoadOptions *o) {
  if (paths_input(o->tool, NULL, o->ir)) return 1;
  return !o->random && o->weights && paths_input(o->tool, "weights", o->weights);
}

/* The GPU's open error without its preamble, for "no GPU (reason)". */
static void gpu_reason(const char *e, char *out, size_t n) {
  const char *why = e ? strstr(e, ": ") : NULL;
  snprintf(out, n, "%s", why ? why + 2 : e ? e : "none found");
  size_t len = strlen(out);
  while (len && (out[len - 1] == '\n' || out[len - 1] == '.')) out[--len] = 0;
}

/* Where to run: the GPU (out->gpu set), or the host target (out->gpu NULL).
 * 0, or 1 after the error line. */
static int pick_device(const LoadOptions *o, Loaded *out) {
  RbBuf err = {0}, host = {0};
  int rc = 0;
  if (o->target != LOAD_HOST && rt_gpu_open(&out->gpu, 0, &err)) {
    char why[512];
    gpu_reason(err.data, why, sizeof why);
    if (o->target == LOAD_CUDA) {
      args_report(o->tool, err.data ? err.data : "no GPU");
      rc = 1;
    } else if (cg_host_available(&host)) { /* the GPU's whole message: scripts look for it */
      char full[512];
      snprintf(full, sizeof full, "%s", err.data ? err.data : "none found");
      full[strcspn(full, "\n")] = 0;
      fprintf(stderr, "%s: neither target is available: no GPU (%s), and no host target (%s)\n", o->tool, full,
              host.data ? host.data : "LLVM is missing");
      rc = 1;
    } else {
      static int said; /* once a process: bench loads twice */
      long cpus = o->threads > 0 ? o->threads : sysconf(_SC_NPROCESSORS_ONLN);
      if (!said++)
        fprintf(stderr, "%s: no GPU (%s); running on the host target (LLVM, %ld thread%s)\n", o->tool, why, cpus,
              cpus == 1 ? "" : "s");
    }
  } else if (o->target == LOAD_HOST && cg_host_available(&host)) {
    args_report(o->tool, host.data);
    rc = 1;
  }
  rb_buf_free(&err);
  rb_buf_free(&host);
  return rc;
}

int load_model(const LoadOptions *o, Loaded *out) {
  memset(out, 0, sizeof *out);
  RbBuf err = {0};
  /* Input files first: a typo should not wait for a GPU, or need one. */
  if (load_check(o) || pick_device(o, out)) return 1;
  out->where = out->gpu ? "on the GPU" : "on the host";
  double t0 = rb_now_ms();
  int rc = compile_plan(o, &out->plan, out->gpu, &out->kernels, &out->hits);
  if (!rc)
    rc = out->gpu ? rt_program_open(out->plan, out->gpu, &out->program, &err)
                  : rt_program_open_host(out->plan, o->threads, &out->program, &err);
  out->ms_compile = rb_now_ms() - t0;
  RtModelOptions mo = {o->max_tokens, o->random, 0};
  if (!rc) rc = rt_model_open(out->program, o->weights, &mo, &out->model, &err);
  out->ms_weights = rb_now_ms() - t0 - out->ms_compile;
  if (rc) {
    args_report(o->tool, err.data);
    load_free(out);
  }
  rb_buf_free(&err);
  return rc ? (rc == RB_EUSER ? 1 : 2) : 0;
}

void load_free(Loaded *l) {
  rt_model_close(l->model);
  rt_program_close(l->program);
  if (l->gpu) rt_gpu_close(l->gpu);
  rt_plan_free(l->plan);
  memset(l, 0, sizeof *l);
}

RtTokenizer *load_tokenizer(const char *path, const char *weights, const char *tool) {
  RbBuf err = {0};
  RtGguf *g = NULL;
  RtTokenizer *t = NULL;
  char beside[4096];
  if (!path && weights) { /* rabit import writes tokenizer.txt beside the weights */
    const char *slash = strrchr(weights, '/');
    snprintf(beside, sizeof beside, "%.*stokenizer.txt", slash ? (int)(slash - weights + 1) : 0, weights);
    if (access(beside, R_OK) == 0) path = beside;
  }
  size_t n = path ? strlen(path) : 0;
  if (!path)
    fprintf(stderr, "%s: no tokenizer: give --tokenizer (the model's .gguf, or the tokenizer.txt that "
                    "rabit import writes), or keep tokenizer.txt beside the weights\n", tool);
  else if (n > 5 && !strcmp(path + n - 5, ".gguf") ? rt_gguf_open(path, &g, &err) || rt_tok_from_gguf(g, &t, &err)
                                                  : rt_tok_load_vocab(path, &t, &err))
    args_report(tool, err.data ? err.data : "cannot load the tokenizer");
  rt_gguf_close(g);
  rb_buf_free(&err);
  return t;
}
