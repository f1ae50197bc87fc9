/* rabitc_tune_model.c: `rabitc tune MODEL.ir`: the model's linear kernels
 * at the batch buckets asked for, each candidate schedule built through the
 * cache, validated against the CPU reference and timed on the GPU
 * (autotune/measure.c); the choices go to the cache's tuning database. This
 * file prints: the progress bar, the wrong candidates, the table, the SVG. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "autotune/autotune.h"
#include "runtime/runtime.h"
#include "tools/args.h"
#include "tools/commands.h"
#include "tools/paths.h"

static const char cmd[] = "rabitc tune";

/* Progress on stderr: a bar redrawn in place on a terminal, else one line per kernel. */
typedef struct {
  int tty;
} Bar;

static void on_progress(void *ctx, const AtProgress *p) {
  Bar *bar = ctx;
  if (!bar->tty && !p->done) return;
  RbBuf d = {0};
  cg_kernel_describe(&p->u->kernel, &d);
  char best[64] = "none valid yet";
  if (p->best >= 0) snprintf(best, sizeof best, "best %.2f us (candidate %d)", p->best_us, p->best);
  if (p->done) {
    char def[32] = "not timed";
    if (isfinite(p->default_us)) snprintf(def, sizeof def, "%.2f us", p->default_us);
    fprintf(stderr, "%skernel %d/%d: %d candidates, %s, default %s%s  %s\n", bar->tty ? "\r\033[K" : "",
            p->unit + 1, p->nunit, p->ncand, best, def, p->budget_stopped ? "; the budget stopped it" : "",
            d.data ? d.data : "?");
  } else if (p->compiling) {
    fprintf(stderr, "\r\033[Kkernel %d/%d: building candidates %d-%d of %d  %s", p->unit + 1, p->nunit, p->cand + 1,
            p->compile_to, p->ncand, best);
  } else {
    int width = 24, fill = (int)((long)width * (p->cand + 1) / (p->ncand ? p->ncand : 1));
    fprintf(stderr, "\r\033[Kkernel %d/%d [%.*s%*s] candidate %d/%d  %s", p->unit + 1, p->nunit, fill,
            "########################", width - fill, "", p->cand + 1, p->ncand, best);
  }
  fflush(stderr);
  rb_buf_free(&d);
}

typedef struct {
  const AtDb *add;
} Put;

static int put_records(AtDb *db, void *ctx, RbBuf *err) {
  const Put *p = ctx;
  for (int i = 0; i < p->add->n; i++)
    if (at_db_put(db, &p->add->r[i])) {
      rb_buf_puts(err, "out of memory adding the tuned records");
      return RB_EINTERNAL;
    }
  return RB_OK;
}

/* The records into the cache's database, under its lock. */
static int save_records(const AtTuning *tu, const AtDevice *dev) {
  char date[24];
  at_date_utc((long long)time(NULL), date);
  AtDb add = {0};
  RbBuf warn = {0}, err = {0};
  char *path = NULL;
  int rc = at_tuning_records(tu, dev, date, &add);
  if (rc == RB_OK && add.n) rc = at_db_cache_path(&path, &err);
  Put p = {&add};
  if (rc == RB_OK && path) rc = at_db_edit(path, put_records, &p, &warn, &err);
  args_report(cmd, warn.data);
  args_report(cmd, err.data);
  if (rc == RB_OK && path) printf("wrote %d tuned record%s to %s\n", add.n, add.n == 1 ? "" : "s", path);
  if (rc == RB_OK && !add.n) printf("no kernel was tuned: nothing written to the tuning database\n");
  rb_free(path);
  rb_buf_free(&warn);
  rb_buf_free(&err);
  at_db_free(&add);
  return rc;
}

static int write_plot(const AtTuning *tu, double bw, const char *how, const char *plot) {
  RbBuf svg = {0}, err = {0};
  at_tuning_svg(tu, bw, how, &svg);
  if (svg.oom) return RB_EINTERNAL;
  const void *parts[] = {svg.data};
  size_t lens[] = {svg.len};
  int rc = rb_write_atomic(plot, parts, lens, 1, &err);
  if (rc == RB_OK) printf("wrote %s\n", plot);
  else args_report(cmd, err.data ? err.data : "cannot write the plot");
  rb_buf_free(&svg);
  rb_buf_free(&err);
  return rc;
}

/* RABIT_TUNE_BREAK=N: the test hook, candidate N of every kernel run broken. */
static int break_hook(void) {
  const char *env = getenv("RABIT_TUNE_BREAK");
  if (!env || !*env) return -1;
  char *end;
  long n = strtol(env, &end, 10);
  if (*end || n < 0 || n > 1 << 20) {
    fprintf(stderr, "%s: RABIT_TUNE_BREAK must be a candidate index 0..%d, got '%s'; ignored\n", cmd, 1 << 20, env);
    return -1;
  }
  fprintf(stderr, "%s: RABIT_TUNE_BREAK=%ld: candidate %ld of every kernel runs deliberately broken (a test hook)\n",
          cmd, n, n);
  return (int)n;
}

/* The model's kernels, selected (default schedules), and the units at the batches. */
static int model_units(const char *model, const int *batches, int nb, RtCompiled *c, AtUnit **u, int *n) {
  RtCompileOptions co = {.path = model, .stop = RT_STAGE_SELECT}; /* no arch before the build */
  RbBuf err = {0};
  int rc = rt_compile(&co, c, &err);
  if (c->diag.data) fputs(c->diag.data, stderr);
  args_report(cmd, err.data);
  rb_buf_free(&err);
  if (rc == RB_OK) rc = at_units_from_kernels(&cg_target_cuda, &c->kernels, batches, nb, u, n);
  if (rc == RB_OK && !*n) {
    fprintf(stderr, "%s: %s has no quantized linear kernel to tune (the other kernels have no knobs)\n", cmd, model);
    rc = RB_EUSER;
  }
  return rc;
}

/* --twice: the second tuning's choices against the first's, said; 1 when they disagree. */
static int compare(const AtTuning *a, const AtTuning *b) {
  AtPick *pa = rb_calloc((size_t)a->n + 1, sizeof *pa), *pb = rb_calloc((size_t)b->n + 1, sizeof *pb);
  RbBuf why = {0};
  int bad = -1;
  if (pa && pb && a->n == b->n) {
    at_tuning_picks(a, pa);
    at_tuning_picks(b, pb);
    bad = at_picks_disagree(pa, pb, a->n, &why);
    int same = 0;
    for (int i = 0; i < a->n; i++) same += pa[i].choice == pb[i].choice;
    if (!bad)
      printf("tuned twice: the choices agree (%d of %d the same candidate, the rest within %.0f%%)\n", same, a->n,
             100 * AT_MARGIN);
    else
      fprintf(stderr, "%s: tuned twice, %d kernel%s disagree beyond the %.0f%% margin:\n", cmd, bad,
              bad == 1 ? "" : "s", 100 * AT_MARGIN);
    args_report(cmd, why.data);
  }
  rb_buf_free(&why);
  rb_free(pa);
  rb_free(pb);
  return bad != 0;
}

int rabitc_tune_model(const char *model, const int *batches, int nb, double budget, const char *plot, int twice) {
  /* The model first: a broken file is said without a GPU. */
  RtCompiled c;
  AtUnit *units = NULL;
  int nunits = 0, rc = model_units(model, batches, nb, &c, &units, &nunits);
  RtGpu *gpu = NULL;
  RbBuf err = {0};
  if (rc == RB_OK && rt_gpu_open(&gpu, 0, &err) != RB_OK) {
    const char *why = err.data ? strstr(err.data, "driver: ") : NULL;
    why = why ? why + 8 : err.data ? err.data : "?";
    fprintf(stderr, "%s: tuning %s needs a GPU, and there is none here (%.*s); --export and --import work without one\n",
            cmd, model, (int)strcspn(why, "\n"), why);
    rc = RB_EUSER;
  }
  AtDevice dev;
  AtLimits lim;
  double bw = 0;
  char how[160] = "";
  RtCache *cache = NULL;
  AtGpu *m = NULL;
  AtTuning tu = {0};
  int disagree = 0;
  if (rc == RB_OK && (rc = at_device_init(&dev, rt_gpu_name(gpu), rt_gpu_arch(gpu), &err))) args_report(cmd, err.data);
  if (rc == RB_OK && (rc = at_gpu_limits(gpu, &lim))) fprintf(stderr, "%s: %s\n", cmd, rt_gpu_error(gpu));
  if (rc == RB_OK && at_gpu_bandwidth(gpu, &bw, how, sizeof how))
    fprintf(stderr, "%s: the device's bandwidth is unknown (%s): the table has no floor\n", cmd, rt_gpu_error(gpu));
  if (rc == RB_OK) {
    RbBuf warn = {0};
    rc = rt_cache_open(&cache, NULL, RT_CACHE_DEFAULT_MAX, &warn);
    args_report(cmd, warn.data);
    rb_buf_free(&warn);
  }
  if (rc == RB_OK) rc = at_gpu_open(gpu, cache, &cg_target_cuda, 0, &m);
  if (rc == RB_OK) {
    fprintf(stderr, "%s: %d kernel%s of %s on %s (%s), %d SMs%s\n", cmd, nunits, nunits == 1 ? "" : "s", model,
            rt_gpu_name(gpu), rt_gpu_arch(gpu), lim.sm_count, budget > 0 ? "" : "; no budget");
    Bar bar = {isatty(2)};
    AtTuneOptions o = {.budget_s = budget, .break_candidate = break_hook(), .progress = on_progress,
                       .progress_ctx = &bar};
    AtBackend b = at_gpu_backend(m);
    rb_buf_free(&err);
    rc = at_tune(&b, &cg_target_cuda, &lim, units, nunits, &o, &tu, &err);
    args_report(cmd, tu.log.data);
    args_report(cmd, err.data);
    if (rc == RB_OK && twice) { /* the first tuning is the one kept; the second checks it */
      AtTuning again = {0};
      fprintf(stderr, "%s: tuning again, to check that the choices agree\n", cmd);
      rb_buf_free(&err);
      rc = at_tune(&b, &cg_target_cuda, &lim, units, nunits, &o, &again, &err);
      args_report(cmd, err.data);
      if (rc == RB_OK && compare(&tu, &again)) disagree = 1;
      at_tuning_free(&again);
    }
    RbBuf table = {0};
    at_tuning_table(&tu, bw, how, &table);
    if (table.data) fputs(table.data, stdout);
    printf("tuned %d kernel%s in %.1f s\n", tu.n, tu.n == 1 ? "" : "s", tu.seconds);
    rb_buf_free(&table);
    /* What finished is kept even when the GPU failed later: each record is a complete unit. */
    int saved = save_records(&tu, &dev);
    if (rc == RB_OK) rc = saved;
    if (plot && rc == RB_OK) rc = write_plot(&tu, bw, how, plot);
  }
  if (rc == RB_OK && disagree) rc = RB_EUSER;
  if (rc == RB_EINTERNAL) fprintf(stderr, "%s: internal error while tuning '%s'\n", cmd, model);
  at_tuning_free(&tu);
  at_gpu_close(m);
  rt_cache_close(cache);
  rb_free(units);
  rt_compiled_free(&c);
  if (gpu) rt_gpu_close(gpu);
  rb_buf_free(&err);
  return rc;
}
