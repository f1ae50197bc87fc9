/* db.c: the tuning database in memory: its key (device, arch, compiler, op,
 * batch bucket), lookup, insert or replace, and the merge rule of an import.
 * The file format is db_json.c's; the copy in the cache directory, db_cache.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autotune/autotune.h"

int at_op_describe(const CgOp *op, char out[160]) {
  RbBuf b = {0};
  if (op->kind == CG_LINEAR) {
    /* cg_kernel_describe's linear line without the strategy, bucket and tiles. */
    rb_buf_puts(&b, op->eps > 0 ? "rmsnorm+linear" : "linear");
    if (op->epilogue != CG_EPI_NONE) rb_buf_printf(&b, "+%s", cg_epilogue_name(op->epilogue));
    rb_buf_puts(&b, " N=");
    for (int i = 0; i < op->nseg && i < CG_MAX_SEG; i++) rb_buf_printf(&b, "%s%d", i ? "+" : "", op->N[i]);
    rb_buf_printf(&b, " K=%d k=%d", op->K, op->paths);
    if (op->eps > 0) rb_buf_printf(&b, " eps=%g", (double)op->eps);
  } else {
    /* Every other kind's description names its op fields alone. */
    CgKernel k = {.op = *op};
    cg_kernel_describe(&k, &b);
  }
  int rc = b.oom ? RB_EINTERNAL : !b.data || b.len >= 160 ? RB_EUSER : RB_OK;
  if (rc == RB_OK) memcpy(out, b.data, b.len + 1);
  else out[0] = 0;
  rb_buf_free(&b);
  return rc;
}

int at_record_key(const AtDevice *dev, const CgKernel *k, AtRecord *out) {
  memset(out, 0, sizeof *out);
  out->dev = *dev;
  out->batch = k->sched.batch_max;
  return at_op_describe(&k->op, out->op);
}

void at_date_utc(long long seconds, char out[24]) {
  time_t t = (time_t)seconds;
  struct tm tm;
  /* Years past 9999 do not fit the format's four digits: the epoch instead. */
  if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900) {
    memset(&tm, 0, sizeof tm);
    tm.tm_year = 70;
    tm.tm_mday = 1;
  }
  snprintf(out, 24, "%04u-%02u-%02uT%02u:%02u:%02uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
           (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
           (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
}

int at_record_cmp(const AtRecord *a, const AtRecord *b) {
  int c;
  if ((c = strcmp(a->dev.device, b->dev.device)) || (c = strcmp(a->dev.arch, b->dev.arch)) ||
      (c = strcmp(a->dev.nvrtc, b->dev.nvrtc)) || (c = strcmp(a->op, b->op)))
    return c;
  return (a->batch > b->batch) - (a->batch < b->batch);
}

void at_db_free(AtDb *db) {
  rb_free(db->r);
  memset(db, 0, sizeof *db);
}

/* A linear scan: a database holds a few hundred records per GPU, and a
 * compile looks up each of its two dozen kernels once. */
static AtRecord *find(const AtDb *db, const AtRecord *key) {
  for (int i = 0; i < db->n; i++)
    if (at_record_cmp(&db->r[i], key) == 0) return &db->r[i];
  return NULL;
}

const AtRecord *at_db_lookup(const AtDb *db, const AtRecord *key) { return find(db, key); }

static int append(AtDb *db, const AtRecord *r) {
  if (db->n == db->cap) {
    int cap = db->cap ? 2 * db->cap : 16;
    AtRecord *p = rb_realloc(db->r, (size_t)cap * sizeof *p);
    if (!p) return RB_EINTERNAL;
    db->r = p;
    db->cap = cap;
  }
  db->r[db->n++] = *r;
  return RB_OK;
}

int at_db_put(AtDb *db, const AtRecord *r) {
  AtRecord *old = find(db, r);
  if (!old) return append(db, r);
  *old = *r;
  return RB_OK;
}

/* 1 when r should replace old in a merge (the rule in autotune.h). Dates are
 * checked to be "YYYY-MM-DDTHH:MM:SSZ" on load, so strcmp orders them in time. */
static int wins(const AtRecord *r, const AtRecord *old) {
  int d = strcmp(r->date, old->date);
  return d > 0 || (d == 0 && r->us < old->us);
}

static int ptr_cmp(const void *a, const void *b) {
  return at_record_cmp(*(const AtRecord *const *)a, *(const AtRecord *const *)b);
}

/* db's records sorted by key, as indices (an import may hold thousands of
 * records: the merge looks each up by bisection, not by a scan). Indices,
 * not pointers, since appending moves the records. */
static int *sort_index(const AtDb *db) {
  size_t n = (size_t)(db->n ? db->n : 1);
  const AtRecord **p = rb_malloc(n * sizeof *p);
  int *ix = rb_malloc(n * sizeof *ix);
  if (p && ix) {
    for (int i = 0; i < db->n; i++) p[i] = &db->r[i];
    qsort(p, (size_t)db->n, sizeof *p, ptr_cmp);
    for (int i = 0; i < db->n; i++) ix[i] = (int)(p[i] - db->r);
  } else {
    rb_free(ix);
    ix = NULL;
  }
  rb_free(p);
  return ix;
}

static int find_sorted(const AtDb *db, const int *ix, int n, const AtRecord *key) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = (lo + hi) / 2, c = at_record_cmp(&db->r[ix[mid]], key);
    if (c == 0) return ix[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

int at_db_merge(AtDb *db, const AtDb *from, AtMerged *st) {
  AtMerged m = {0};
  /* Records appended below come from `from`, whose keys are distinct, so
   * only db's records before the merge need looking up. */
  int n0 = db->n, *ix = sort_index(db);
  if (!ix) return RB_EINTERNAL;
  int rc = RB_OK;
  for (int i = 0; i < from->n && !rc; i++) {
    const AtRecord *r = &from->r[i];
    int at = find_sorted(db, ix, n0, r);
    if (at < 0) {
      rc = append(db, r);
      m.added += !rc;
    } else if (wins(r, &db->r[at])) {
      db->r[at] = *r;
      m.replaced++;
    } else {
      m.kept++;
    }
  }
  rb_free(ix);
  if (st) *st = m;
  return rc;
}
