/* tune.c: the search loop. For each unit: its space, compiled in chunks
 * through the backend; then in the space's fixed order every candidate is
 * validated against the reference and, when right, timed at each batch; the
 * 3% rule picks. The loop knows nothing of GPUs: the backend (measure.c, or
 * a test's fake) compiles, validates and times, so the loop is tested on the
 * CPU. README.md documents the budget and the order. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autotune/autotune.h"

static int timed(double us) { return isfinite(us) && us > 0; }

static int result_alloc(AtUnitResult *r, int nbatch) {
  int n = r->space.n;
  r->built = rb_calloc((size_t)n, sizeof *r->built);
  r->valid = rb_calloc((size_t)n, sizeof *r->valid);
  r->us = rb_malloc((size_t)n * nbatch * sizeof *r->us);
  r->t = rb_calloc((size_t)n, sizeof *r->t);
  r->what = rb_calloc((size_t)n, sizeof *r->what);
  if (!r->built || !r->valid || !r->us || !r->t || !r->what) return RB_EINTERNAL;
  for (int i = 0; i < n * nbatch; i++) r->us[i] = NAN;
  for (int i = 0; i < n; i++) {
    at_schedule_describe(&r->space.c[i].sched, r->what[i]);
    r->t[i].us = NAN;
    r->t[i].valid = 1; /* not yet known wrong: an unvisited candidate is untimed, not invalid */
    r->t[i].what = r->what[i];
  }
  r->choice = -1;
  return RB_OK;
}

/* Validate, then time candidate i of unit u at each batch: its mean. */
static int visit(const AtBackend *b, const AtUnit *u, AtUnitResult *r, int i, int broken, RbBuf *log) {
  RbBuf why = {0};
  int valid = 0, rc = b->validate(b->ctx, i, broken, &valid, &why);
  r->valid[i] = r->t[i].valid = rc == RB_OK && valid;
  if (rc == RB_OK && !valid) {
    r->ninvalid++;
    rb_buf_printf(log, "candidate %d (%s) failed validation against the reference, never chosen: %s%s\n", i,
                  r->what[i], why.data ? why.data : "?", broken ? " (the deliberately broken candidate)" : "");
  }
  if (rc) rb_buf_put(log, why.data ? why.data : "", why.len);
  rb_buf_free(&why);
  if (rc || !valid) return rc;
  double sum = 0;
  for (int j = 0; j < u->nbatch && rc == RB_OK; j++) {
    double us = NAN;
    rc = b->time(b->ctx, i, u->batch[j], &us, log);
    r->us[(size_t)i * u->nbatch + j] = us;
    sum = timed(us) ? sum + us : NAN;
  }
  if (rc == RB_OK) r->t[i].us = sum / u->nbatch;
  return rc;
}

static void progress(const AtTuneOptions *o, AtProgress *p) {
  if (o->progress) o->progress(o->progress_ctx, p);
}

/* One unit: begin, then chunks of compiles each followed by their visits. */
static int tune_unit(const AtBackend *b, const AtUnit *u, AtUnitResult *r, const AtTuneOptions *o, double share,
                     AtProgress *p, RbBuf *log) {
  double t0 = b->now(b->ctx); /* the unit's data and reference count against its share too */
  int n = r->space.n, chunk = o->chunk > 0 ? o->chunk : 32, rc = b->begin(b->ctx, u, &r->space, log);
  int *ok = rb_calloc((size_t)(chunk < n ? chunk : n) + 1, sizeof *ok);
  if (!ok && rc == RB_OK) rc = RB_EINTERNAL;
  p->best = -1;
  p->best_us = p->default_us = NAN;
  for (int from = 0; from < n && rc == RB_OK && !r->budget_stopped; from += chunk) {
    int to = from + chunk < n ? from + chunk : n;
    if (from > 0 && share >= 0 && b->now(b->ctx) - t0 >= share) {
      r->budget_stopped = 1;
      break;
    }
    p->compiling = 1, p->cand = from, p->compile_to = to;
    progress(o, p);
    p->compiling = 0;
    if ((rc = b->compile(b->ctx, from, to, ok, log))) break;
    for (int i = from; i < to && rc == RB_OK; i++) {
      /* The default is always measured: it is the incumbent and the table's reference. */
      if (i > 0 && share >= 0 && b->now(b->ctx) - t0 >= share) {
        r->budget_stopped = 1;
        break;
      }
      r->visited = i + 1;
      r->built[i] = ok[i - from];
      if (!r->built[i]) r->nfailed++;
      else rc = visit(b, u, r, i, i == o->break_candidate, log);
      /* The incumbent as at_choose will find it: valid, timed, and 3% faster. */
      if (rc == RB_OK && r->valid[i] && timed(r->t[i].us) &&
          (p->best < 0 || r->t[i].us <= (1.0 - AT_MARGIN) * p->best_us))
        p->best = i, p->best_us = r->t[i].us;
      if (i == 0) p->default_us = r->t[0].us;
      p->cand = i;
      progress(o, p);
    }
  }
  rb_free(ok);
  b->end(b->ctx);
  if (rc) return rc;
  if (r->budget_stopped)
    rb_buf_printf(log, "the budget stopped the search after %d of %d candidates; the best so far is kept\n",
                  r->visited, n);
  RbBuf quiet = {0}; /* each invalid candidate is already logged with its reason */
  r->choice = at_choose(r->t, r->visited, &quiet);
  rb_buf_free(&quiet);
  /* A default this backend cannot time (the dequant prefill: a kernel, a GEMM and an
   * epilogue) cannot be beaten by 3%: any choice would be measured against nothing. */
  if (r->visited > 0 && !timed(r->t[0].us) && r->choice > 0) {
    rb_buf_printf(log, "the default (candidate 0) is not timed by this backend, so no candidate can be shown "
                       "faster: the default is kept\n");
    r->choice = 0; /* and no record is written for it (at_tune_records) */
  }
  return RB_OK;
}

int at_tune(const AtBackend *b, const CgTarget *t, const AtLimits *lim, const AtUnit *units, int n,
            const AtTuneOptions *o, AtTuning *out, RbBuf *err) {
  static const AtTuneOptions none = {.break_candidate = -1};
  if (!o) o = &none;
  memset(out, 0, sizeof *out);
  out->u = units;
  out->r = rb_calloc((size_t)n + 1, sizeof *out->r);
  if (!out->r) return RB_EINTERNAL;
  out->n = n;
  double start = b->now(b->ctx);
  int rc = RB_OK;
  for (int i = 0; i < n && rc == RB_OK; i++) {
    AtUnitResult *r = &out->r[i];
    RbBuf why = {0};
    if ((rc = at_space_build(t, &units[i].kernel, lim, &r->space, &why)) == RB_OK) rc = result_alloc(r, units[i].nbatch);
    if (rc) {
      RbBuf d = {0};
      cg_kernel_describe(&units[i].kernel, &d);
      rb_buf_printf(err, "kernel '%s': %s", d.data ? d.data : "?", why.data ? why.data : "out of memory");
      rb_buf_free(&d);
      rb_buf_free(&why);
      break;
    }
    rb_buf_free(&why);
    /* What is left of the budget, shared evenly over the units left: a unit
     * that finishes early leaves its time to the ones after it. */
    double share = -1;
    if (o->budget_s > 0) {
      share = (o->budget_s - (b->now(b->ctx) - start)) / (n - i);
      if (share < 0) share = 0;
    }
    AtProgress p = {.unit = i, .nunit = n, .u = &units[i], .ncand = r->space.n};
    RbBuf log = {0};
    rc = tune_unit(b, &units[i], r, o, share, &p, &log);
    if (log.len) {
      RbBuf d = {0};
      cg_kernel_describe(&units[i].kernel, &d);
      for (const char *l = log.data; *l;) { /* each line names its kernel */
        size_t len = strcspn(l, "\n");
        rb_buf_printf(&out->log, "%s: %.*s\n", d.data ? d.data : "?", (int)len, l);
        l += len + (l[len] == '\n');
      }
      rb_buf_free(&d);
    }
    if (rc) rb_buf_printf(err, "tuning stopped: %s", log.data ? log.data : "the backend failed");
    rb_buf_free(&log);
    p.done = 1;
    p.budget_stopped = r->budget_stopped;
    if (rc == RB_OK) progress(o, &p);
  }
  out->seconds = b->now(b->ctx) - start;
  return rc;
}

void at_tuning_free(AtTuning *tu) {
  for (int i = 0; tu->r && i < tu->n; i++) {
    AtUnitResult *r = &tu->r[i];
    at_space_free(&r->space);
    rb_free(r->built);
    rb_free(r->valid);
    rb_free(r->us);
    rb_free(r->t);
    rb_free(r->what);
  }
  rb_free(tu->r);
  rb_buf_free(&tu->log);
  memset(tu, 0, sizeof *tu);
}

void at_tuning_picks(const AtTuning *tu, AtPick *out) {
  for (int i = 0; i < tu->n; i++) {
    const AtUnitResult *r = &tu->r[i];
    out[i].choice = r->choice;
    out[i].us = r->choice >= 0 ? r->t[r->choice].us : NAN;
  }
}

int at_tuning_records(const AtTuning *tu, const AtDevice *dev, const char *date, AtDb *out) {
  for (int i = 0; i < tu->n; i++) {
    const AtUnitResult *r = &tu->r[i];
    if (r->choice < 0 || !r->space.n || !timed(r->t[0].us) || !r->valid[0]) continue;
    CgKernel k = {.op = tu->u[i].kernel.op, .sched = r->space.c[r->choice].sched};
    AtRecord rec;
    if (at_record_key(dev, &k, &rec) != RB_OK) continue; /* an op too long for a key: nothing to store */
    rec.sched = k.sched;
    rec.batch = k.sched.batch_max;
    rec.us = r->t[r->choice].us;
    rec.default_us = r->t[0].us;
    snprintf(rec.date, sizeof rec.date, "%s", date);
    if (at_db_put(out, &rec)) return RB_EINTERNAL;
  }
  return RB_OK;
}
