/* db_json.c: the tuning database's file: JSON read through cJSON (the file
 * may come from anyone, through an import) and written in a fixed layout,
 * one record a line, sorted by key, so files are stable and diff well.
 * Every problem names the file and where: the JSON's line and column, the
 * record's number and field. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "autotune/autotune.h"

#define MAX_US 1e9 /* a kernel time past 1000 s is no measurement */
#define MAX_TILE 65536

/* cJSON allocates through malloc unless told; rb_malloc lets the
 * allocation-failure tests reach it. A failed parse is bad JSON or an
 * allocation that failed, which cJSON does not tell apart: the hook notes
 * the second, per thread. (The hooks are process-wide; the safetensors
 * reader's are plain rb_malloc, so whichever is installed last serves both.) */
static _Thread_local int json_oom;
static void *json_malloc(size_t n) {
  void *p = rb_malloc(n);
  if (!p) json_oom = 1;
  return p;
}
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static void hooks_install(void) {
  cJSON_Hooks h = {json_malloc, rb_free};
  cJSON_InitHooks(&h);
}

/* ---- reading ---- */

typedef struct {
  const char *path;
  RbBuf *err;
  int rec; /* the record being read, from 1; 0: the file's header */
} Rd;

static int fail(Rd *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(Rd *rd, const char *fmt, ...) {
  rb_buf_printf(rd->err, "%s: ", rd->path);
  if (rd->rec) rb_buf_printf(rd->err, "record %d: ", rd->rec);
  va_list ap;
  va_start(ap, fmt);
  rb_buf_vprintf(rd->err, fmt, ap);
  va_end(ap);
  return RB_EUSER;
}

static const cJSON *field(const cJSON *o, const char *name) { return cJSON_GetObjectItemCaseSensitive(o, name); }

/* A string field into out[0..n): present, a string, not empty, fitting. */
static int get_str(Rd *rd, const cJSON *o, const char *name, char *out, size_t n) {
  const cJSON *v = field(o, name);
  if (!v) return fail(rd, "lacks \"%s\"", name);
  if (!cJSON_IsString(v) || !v->valuestring) return fail(rd, "\"%s\" is not a string", name);
  size_t len = strlen(v->valuestring);
  if (!len) return fail(rd, "\"%s\" is empty", name);
  if (len >= n) return fail(rd, "\"%s\" is longer than %zu bytes", name, n - 1);
  memcpy(out, v->valuestring, len + 1);
  return RB_OK;
}

static int get_int(Rd *rd, const cJSON *v, const char *name, double lo, double hi, int *out) {
  if (!v) return fail(rd, "lacks \"%s\"", name);
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
    return fail(rd, "\"%s\" must be an integer %.0f..%.0f", name, lo, hi);
  *out = (int)v->valuedouble;
  return RB_OK;
}

static int get_us(Rd *rd, const cJSON *o, const char *name, double *out) {
  const cJSON *v = field(o, name);
  if (!v) return fail(rd, "lacks \"%s\"", name);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0 || v->valuedouble > MAX_US)
    return fail(rd, "\"%s\" must be a time in microseconds, in (0, %.0f]", name, MAX_US);
  *out = v->valuedouble;
  return RB_OK;
}

/* "YYYY-MM-DDTHH:MM:SSZ" exactly, fields in range: then strcmp orders dates. */
static int date_ok(const char *s) {
  static const char pat[] = "dddd-dd-ddTdd:dd:ddZ";
  if (strlen(s) != sizeof pat - 1) return 0;
  for (size_t i = 0; pat[i]; i++)
    if (pat[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != pat[i]) return 0;
  int mon = atoi(s + 5), day = atoi(s + 8), h = atoi(s + 11), m = atoi(s + 14), sec = atoi(s + 17);
  return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && h <= 23 && m <= 59 && sec <= 60;
}

/* The strategy named s: the first value cg_strategy_name spells so. */
static int strategy_of(const char *s, CgStrategy *out) {
  for (int i = 0; i < 16; i++)
    if (!strcmp(cg_strategy_name((CgStrategy)i), s)) return *out = (CgStrategy)i, 1;
  return 0;
}

static int get_schedule(Rd *rd, const cJSON *o, CgSchedule *sc) {
  const cJSON *s = field(o, "schedule");
  if (!s) return fail(rd, "lacks \"schedule\"");
  if (!cJSON_IsObject(s)) return fail(rd, "\"schedule\" is not an object");
  char name[16];
  int rc = get_str(rd, s, "strategy", name, sizeof name);
  if (rc) return rc;
  if (!strategy_of(name, &sc->strategy)) return fail(rd, "unknown strategy \"%s\"", name);
  const cJSON *t = field(s, "tile");
  if (!t) return fail(rd, "lacks \"tile\"");
  if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != CG_MAX_TILE)
    return fail(rd, "\"tile\" must be an array of %d integers", CG_MAX_TILE);
  int i = 0;
  for (const cJSON *v = t->child; v; v = v->next, i++)
    if ((rc = get_int(rd, v, "tile", 0, MAX_TILE, &sc->tile[i]))) return rc;
  return RB_OK;
}

static int get_record(Rd *rd, const cJSON *o, AtRecord *r) {
  memset(r, 0, sizeof *r);
  if (!cJSON_IsObject(o)) return fail(rd, "is not an object");
  int rc;
  if ((rc = get_str(rd, o, "device", r->dev.device, sizeof r->dev.device)) ||
      (rc = get_str(rd, o, "arch", r->dev.arch, sizeof r->dev.arch)) ||
      (rc = get_str(rd, o, "nvrtc", r->dev.nvrtc, sizeof r->dev.nvrtc)) ||
      (rc = get_str(rd, o, "op", r->op, sizeof r->op)) ||
      (rc = get_int(rd, field(o, "batch"), "batch", 1, 2147483647.0, &r->batch)) ||
      (rc = get_schedule(rd, o, &r->sched)) || (rc = get_us(rd, o, "us", &r->us)) ||
      (rc = get_us(rd, o, "default_us", &r->default_us)) || (rc = get_str(rd, o, "date", r->date, sizeof r->date)))
    return rc;
  if (!date_ok(r->date)) return fail(rd, "\"date\" must be UTC as YYYY-MM-DDTHH:MM:SSZ, got \"%s\"", r->date);
  r->sched.batch_max = r->batch;
  return RB_OK;
}

/* Line and column (from 1) of byte at in text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
  *line = *col = 1;
  for (size_t i = 0; i < at; i++) {
    if (text[i] == '\n') ++*line, *col = 1;
    else ++*col;
  }
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int parse_root(AtDb *db, const cJSON *root, Rd *rd);

int at_db_parse(AtDb *db, const char *text, size_t len, const char *path, RbBuf *err) {
  at_db_free(db);
  Rd rd = {path, err, 0};
  size_t used = len;
  while (used && is_space(text[used - 1])) used--;
  if (!used) return fail(&rd, "is empty");
  /* Parse a NUL-padded copy: whatever cJSON reads past len is then ours. */
  char *copy = rb_malloc(len + 16);
  if (!copy) return RB_EINTERNAL;
  memcpy(copy, text, len);
  memset(copy + len, 0, 16);
  pthread_once(&hooks_once, hooks_install);
  const char *end = NULL;
  json_oom = 0;
  cJSON *root = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
  int rc = RB_OK;
  if (!root && json_oom) {
    rc = RB_EINTERNAL;
    rb_buf_printf(err, "%s: out of memory parsing the tuning database", path);
    goto out;
  }
  if (!root) {
    size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
    int line, col;
    line_col(copy, at, &line, &col);
    /* Our files end in '}'; one that does not was cut short. */
    rc = fail(&rd, "not valid JSON at line %d, column %d (byte %zu)%s", line, col, at,
              text[used - 1] != '}' ? "; the file ends before its JSON does (truncated?)" : "");
    goto out;
  }
  for (const char *p = end; p < copy + len; p++)
    if (!is_space(*p)) {
      int line, col;
      line_col(copy, (size_t)(p - copy), &line, &col);
      rc = fail(&rd, "more text after the JSON value, at line %d, column %d", line, col);
      goto out;
    }
  rc = parse_root(db, root, &rd);
out:
  cJSON_Delete(root);
  rb_free(copy);
  if (rc) at_db_free(db);
  return rc;
}

static int ptr_cmp(const void *a, const void *b) {
  return at_record_cmp(*(const AtRecord *const *)a, *(const AtRecord *const *)b);
}

/* The records sorted by key (pointers into db), or NULL out of memory. */
static const AtRecord **sorted(const AtDb *db) {
  const AtRecord **p = rb_malloc((size_t)(db->n ? db->n : 1) * sizeof *p);
  if (!p) return NULL;
  for (int i = 0; i < db->n; i++) p[i] = &db->r[i];
  qsort(p, (size_t)db->n, sizeof *p, ptr_cmp);
  return p;
}

/* Two records with one key: the file was not written by us. */
static int check_unique(const AtDb *db, Rd *rd) {
  const AtRecord **p = sorted(db);
  if (!p) return RB_EINTERNAL;
  int rc = RB_OK;
  for (int i = 1; i < db->n && !rc; i++)
    if (at_record_cmp(p[i - 1], p[i]) == 0) {
      int a = (int)(p[i - 1] - db->r), b = (int)(p[i] - db->r);
      rd->rec = (a > b ? a : b) + 1;
      rc = fail(rd, "repeats the key of record %d (%s, %s, b<=%d)", (a < b ? a : b) + 1, p[i]->dev.device,
                p[i]->op, p[i]->batch);
    }
  rb_free(p);
  return rc;
}

static int parse_root(AtDb *db, const cJSON *root, Rd *rd) {
  if (!cJSON_IsObject(root)) return fail(rd, "is not a JSON object (a tuning database is one)");
  const cJSON *f = field(root, "format");
  if (!cJSON_IsString(f) || strcmp(f->valuestring, AT_DB_FORMAT) != 0)
    return fail(rd, "is not a rabit tuning database (\"format\" is not \"%s\")", AT_DB_FORMAT);
  const cJSON *v = field(root, "version");
  if (!cJSON_IsNumber(v)) return fail(rd, "\"version\" is missing or not a number");
  if (v->valuedouble != AT_DB_VERSION)
    return fail(rd, "is format version %g; this rabitc reads version %d (a stale or newer database)",
                v->valuedouble, AT_DB_VERSION);
  const cJSON *recs = field(root, "records");
  if (!cJSON_IsArray(recs)) return fail(rd, "\"records\" is missing or not an array");
  if (cJSON_GetArraySize(recs) > AT_DB_MAX_RECORDS)
    return fail(rd, "holds %d records, more than the %d a tuning database may", cJSON_GetArraySize(recs),
                AT_DB_MAX_RECORDS);
  db->r = rb_malloc((size_t)(cJSON_GetArraySize(recs) + 1) * sizeof *db->r);
  if (!db->r) return RB_EINTERNAL;
  db->cap = cJSON_GetArraySize(recs) + 1;
  for (const cJSON *o = recs->child; o; o = o->next) {
    rd->rec++;
    int rc = get_record(rd, o, &db->r[db->n]);
    if (rc) return rc;
    db->n++;
  }
  return check_unique(db, rd);
}

int at_db_load(AtDb *db, const char *path, RbBuf *err) {
  at_db_free(db);
  RbBuf text = {0};
  if (rb_read_file_max(path, AT_DB_MAX_BYTES, &text) != 0) {
    int e = errno;
    char cap[32];
    if (e == EFBIG) rb_buf_printf(err, "%s: larger than %s, the most a tuning database may hold", path,
                                  rb_size_str(AT_DB_MAX_BYTES, cap));
    else rb_buf_printf(err, "%s: cannot read: %s", path, strerror(e));
    rb_buf_free(&text);
    errno = e;
    return e == ENOMEM ? RB_EINTERNAL : RB_EUSER;
  }
  int rc = at_db_parse(db, text.data ? text.data : "", text.len, path, err);
  rb_buf_free(&text);
  return rc;
}

/* ---- writing ---- */

static void put_record(RbBuf *b, const AtRecord *r) {
  rb_buf_puts(b, "{\"device\": ");
  rb_buf_json_str(b, r->dev.device);
  rb_buf_puts(b, ", \"arch\": ");
  rb_buf_json_str(b, r->dev.arch);
  rb_buf_puts(b, ", \"nvrtc\": ");
  rb_buf_json_str(b, r->dev.nvrtc);
  rb_buf_puts(b, ", \"op\": ");
  rb_buf_json_str(b, r->op);
  rb_buf_printf(b, ", \"batch\": %d, \"schedule\": {\"strategy\": ", r->batch);
  rb_buf_json_str(b, cg_strategy_name(r->sched.strategy));
  rb_buf_puts(b, ", \"tile\": [");
  for (int i = 0; i < CG_MAX_TILE; i++) rb_buf_printf(b, "%s%d", i ? ", " : "", r->sched.tile[i]);
  /* Microseconds to the nanosecond: finer is noise, and a saved file reads back to itself. */
  rb_buf_printf(b, "]}, \"us\": %.3f, \"default_us\": %.3f, \"date\": ", r->us, r->default_us);
  rb_buf_json_str(b, r->date);
  rb_buf_puts(b, "}");
}

void at_db_format(const AtDb *db, RbBuf *out) {
  const AtRecord **p = sorted(db);
  if (!p) {
    out->oom = 1;
    return;
  }
  rb_buf_printf(out, "{\n  \"format\": \"%s\",\n  \"version\": %d,\n  \"records\": [", AT_DB_FORMAT, AT_DB_VERSION);
  for (int i = 0; i < db->n; i++) {
    rb_buf_puts(out, i ? ",\n    " : "\n    ");
    put_record(out, p[i]);
  }
  rb_buf_puts(out, db->n ? "\n  ]\n}\n" : "]\n}\n");
  rb_free(p);
}

int at_db_save(const AtDb *db, const char *path, RbBuf *err) {
  RbBuf text = {0}, why = {0};
  at_db_format(db, &text);
  if (text.oom) {
    rb_buf_free(&text);
    rb_buf_printf(err, "%s: out of memory formatting the tuning database", path);
    return RB_EINTERNAL;
  }
  const void *part = text.data;
  int rc = rb_write_atomic(path, &part, &text.len, 1, &why);
  if (rc) rb_buf_printf(err, "%s: %s", path, why.data ? why.data : "cannot write");
  rb_buf_free(&text);
  rb_buf_free(&why);
  return rc;
}
