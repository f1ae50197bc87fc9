/* test_db.c: the tuning database (autotune/db*.c), CPU only: the op key;
 * write, read back and write again byte for byte; lookup and key
 * invalidation (another device, arch, NVRTC, op or bucket misses); insert
 * and replace; the merge rule; corrupted, truncated, stale, foreign and
 * wrong-typed files, each named with its problem; the cache copy (missing:
 * empty; broken: said once and ignored; edited under its lock, a broken one
 * replaced); allocation failures at every step of a parse. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autotune/autotune.h"
#include "tests/common/check.h"

static char root[256];

static const char *at(const char *name) {
  static char buf[4][512];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 512, "%s/%s", root, name);
  return b;
}

static void write_file(const char *path, const char *text, size_t n) {
  FILE *f = fopen(path, "wb");
  if (f) fwrite(text, 1, n, f), fclose(f);
}

static char *read_text(const char *path) {
  RbBuf b = {0};
  if (rb_read_file(path, &b) != 0) return NULL;
  return b.data ? b.data : rb_strdup("");
}

static const AtDevice h200 = {"NVIDIA H200", "sm_90", "nvrtc 13.0 builtins 8f321440913759e2"};

static AtRecord rec(const AtDevice *dev, const char *op, int batch, int rows, double us, const char *date) {
  AtRecord r;
  memset(&r, 0, sizeof r);
  r.dev = *dev;
  snprintf(r.op, sizeof r.op, "%s", op);
  r.batch = batch;
  r.sched.strategy = batch == 1 ? CG_STRAT_XOR : CG_STRAT_MMA;
  r.sched.batch_max = batch;
  r.sched.tile[0] = rows;
  r.sched.tile[1] = 8;
  r.sched.tile[3] = batch == 1 ? 8 : 16;
  r.us = us;
  r.default_us = us + 2.5;
  snprintf(r.date, sizeof r.date, "%s", date);
  return r;
}

static int same(const AtRecord *a, const AtRecord *b) { return !memcmp(a, b, sizeof *a); }

static void check_key(void) {
  CgOp op;
  memset(&op, 0, sizeof op);
  op.kind = CG_LINEAR;
  op.K = 11008;
  op.nseg = 1;
  op.N[0] = 4096;
  op.paths = 2;
  op.epilogue = CG_EPI_ADD;
  char d[160];
  CHECK(at_op_describe(&op, d) == RB_OK && !strcmp(d, "linear+add N=4096 K=11008 k=2"), "linear: %s", d);
  op.epilogue = CG_EPI_SWIGLU;
  op.nseg = 2;
  op.N[0] = op.N[1] = 11008;
  op.K = 4096;
  CHECK(at_op_describe(&op, d) == RB_OK && !strcmp(d, "linear+swiglu N=11008+11008 K=4096 k=2"), "swiglu: %s", d);
  CgOp rms;
  memset(&rms, 0, sizeof rms);
  rms.kind = CG_RMSNORM;
  rms.dim = 4096;
  rms.eps = 1e-5f;
  CHECK(at_op_describe(&rms, d) == RB_OK && !strcmp(d, "rmsnorm D=4096 eps=1e-05"), "rmsnorm: %s", d);
  /* The key ignores the schedule: two schedules of one op share it, buckets do not. */
  CgKernel k1 = {.op = op, .sched = {CG_STRAT_MMA, 16, {2, 8, 0, 16}}}, k2 = {.op = op, .sched = {CG_STRAT_MMA, 16, {0}}};
  CgKernel k3 = {.op = op, .sched = {CG_STRAT_MMA, 512, {0}}};
  AtRecord a, b, c;
  CHECK(at_record_key(&h200, &k1, &a) == RB_OK && at_record_key(&h200, &k2, &b) == RB_OK &&
            at_record_key(&h200, &k3, &c) == RB_OK,
        "record keys");
  CHECK(at_record_cmp(&a, &b) == 0 && at_record_cmp(&a, &c) != 0 && a.batch == 16, "keys: schedule or bucket");
  char date[24];
  at_date_utc(0, date);
  CHECK(!strcmp(date, "1970-01-01T00:00:00Z"), "epoch: %s", date);
  at_date_utc(1700000000, date);
  CHECK(!strcmp(date, "2023-11-14T22:13:20Z"), "date: %s", date);
}

/* Save, load, compare, save again: the same bytes. */
static void check_roundtrip(void) {
  AtDevice a100 = {"NVIDIA A100-SXM4-80GB", "sm_80", "nvrtc 12.4 builtins 0123456789abcdef"};
  AtDb db = {0};
  AtRecord rs[] = {
      rec(&h200, "linear+add N=4096 K=11008 k=2", 16, 2, 21.5, "2025-06-01T12:00:00Z"),
      rec(&h200, "linear+add N=4096 K=11008 k=2", 1, 4, 12.125, "2025-06-01T12:00:00Z"),
      rec(&a100, "linear N=4096+4096+4096 K=4096 k=2", 1, 1, 33.001, "2024-01-02T03:04:05Z"),
      rec(&h200, "linear \"quoted\" \\ op", 512, 8, 999.999, "2025-12-31T23:59:60Z"),
  };
  for (size_t i = 0; i < sizeof rs / sizeof rs[0]; i++) CHECK(at_db_put(&db, &rs[i]) == RB_OK, "put %zu", i);
  RbBuf err = {0};
  CHECK(at_db_save(&db, at("a.json"), &err) == RB_OK, "save: %s", err.data ? err.data : "");
  AtDb back = {0};
  CHECK(at_db_load(&back, at("a.json"), &err) == RB_OK, "load: %s", err.data ? err.data : "");
  CHECK(back.n == db.n, "%d records back of %d", back.n, db.n);
  for (int i = 0; i < db.n; i++) {
    const AtRecord *got = at_db_lookup(&back, &db.r[i]);
    CHECK(got && same(got, &db.r[i]), "record %d (%s b<=%d) did not come back whole", i, db.r[i].op, db.r[i].batch);
  }
  CHECK(at_db_save(&back, at("b.json"), &err) == RB_OK, "save again");
  char *ta = read_text(at("a.json")), *tb = read_text(at("b.json"));
  CHECK(ta && tb && !strcmp(ta, tb), "a saved database does not read back to itself");
  /* Sorted by key, one record a line; the A100's record first. */
  CHECK(ta && strstr(ta, "{\n  \"format\": \"rabit-tune\",\n  \"version\": 1,\n  \"records\": [\n    {\"device\": \"NVIDIA A100"),
        "layout:\n%s", ta ? ta : "");
  CHECK(ta && strstr(ta, "\"op\": \"linear+add N=4096 K=11008 k=2\", \"batch\": 1, \"schedule\": {\"strategy\": \"xor\", "
                         "\"tile\": [4, 8, 0, 8]}, \"us\": 12.125, \"default_us\": 14.625, \"date\": \"2025-06-01T12:00:00Z\"}"),
        "record line:\n%s", ta ? ta : "");
  /* No temp file left beside it. */
  CHECK(access(at("a.json.tmp"), F_OK) != 0, "temp left");
  rb_free(ta);
  rb_free(tb);
  /* An empty database is a valid file too. */
  AtDb empty = {0};
  CHECK(at_db_save(&empty, at("empty.json"), &err) == RB_OK && at_db_load(&back, at("empty.json"), &err) == RB_OK &&
            back.n == 0,
        "empty database");
  /* A save into a missing directory names the file. */
  rb_buf_free(&err);
  CHECK(at_db_save(&db, at("no/such/dir.json"), &err) == RB_EUSER && err.data && strstr(err.data, at("no/such/dir.json")) &&
            strstr(err.data, "No such file or directory"),
        "save to a missing dir: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  at_db_free(&back);
  at_db_free(&db);
}

/* Lookup misses when any part of the key differs. */
static void check_invalidation(void) {
  AtDb db = {0};
  AtRecord r = rec(&h200, "linear N=4096 K=4096 k=2", 16, 2, 10, "2025-06-01T12:00:00Z");
  CHECK(at_db_put(&db, &r) == RB_OK && at_db_lookup(&db, &r) != NULL, "hit");
  AtRecord k = r;
  snprintf(k.dev.device, sizeof k.dev.device, "NVIDIA H100 80GB HBM3");
  CHECK(!at_db_lookup(&db, &k), "another device hit");
  k = r;
  snprintf(k.dev.arch, sizeof k.dev.arch, "sm_90a");
  CHECK(!at_db_lookup(&db, &k), "another arch hit");
  k = r;
  snprintf(k.dev.nvrtc, sizeof k.dev.nvrtc, "nvrtc 13.1 builtins 8f321440913759e2");
  CHECK(!at_db_lookup(&db, &k), "another NVRTC hit");
  k = r;
  snprintf(k.op, sizeof k.op, "linear N=4096 K=4096 k=3");
  CHECK(!at_db_lookup(&db, &k), "another op hit");
  k = r;
  k.batch = 512;
  CHECK(!at_db_lookup(&db, &k), "another bucket hit");
  /* Put replaces the record of its key. */
  AtRecord newer = rec(&h200, "linear N=4096 K=4096 k=2", 16, 4, 9, "2025-07-01T00:00:00Z");
  CHECK(at_db_put(&db, &newer) == RB_OK && db.n == 1 && at_db_lookup(&db, &r)->sched.tile[0] == 4, "replace");
  at_db_free(&db);
}

static void check_merge(void) {
  AtDb db = {0}, in = {0};
  const char *op = "linear N=4096 K=4096 k=2";
  AtRecord mine[] = {
      rec(&h200, op, 1, 1, 10, "2025-06-01T00:00:00Z"),  /* an older import replaces nothing */
      rec(&h200, op, 16, 1, 20, "2025-06-01T00:00:00Z"), /* a newer one wins though slower */
      rec(&h200, op, 512, 1, 30, "2025-06-01T00:00:00Z"), /* same date: faster wins */
      rec(&h200, "rmsnorm D=4096 eps=1e-05", 1, 1, 5, "2025-06-01T00:00:00Z"), /* same date, same time: kept */
  };
  AtRecord theirs[] = {
      rec(&h200, op, 1, 2, 5, "2025-05-01T00:00:00Z"),
      rec(&h200, op, 16, 2, 25, "2025-06-02T00:00:00Z"),
      rec(&h200, op, 512, 2, 29, "2025-06-01T00:00:00Z"),
      rec(&h200, "rmsnorm D=4096 eps=1e-05", 1, 2, 5, "2025-06-01T00:00:00Z"),
      rec(&h200, op, 4, 2, 15, "2025-01-01T00:00:00Z"), /* new: added */
  };
  for (size_t i = 0; i < 4; i++) at_db_put(&db, &mine[i]);
  for (size_t i = 0; i < 5; i++) at_db_put(&in, &theirs[i]);
  AtMerged m;
  CHECK(at_db_merge(&db, &in, &m) == RB_OK, "merge");
  CHECK(m.added == 1 && m.replaced == 2 && m.kept == 2, "merged: %d added, %d replaced, %d kept", m.added, m.replaced,
        m.kept);
  CHECK(db.n == 5, "%d records", db.n);
  CHECK(same(at_db_lookup(&db, &mine[0]), &mine[0]), "older import replaced a record");
  CHECK(same(at_db_lookup(&db, &mine[1]), &theirs[1]), "newer import did not win");
  CHECK(same(at_db_lookup(&db, &mine[2]), &theirs[2]), "faster on the same date did not win");
  CHECK(same(at_db_lookup(&db, &mine[3]), &mine[3]), "a tie replaced the record");
  CHECK(same(at_db_lookup(&db, &theirs[4]), &theirs[4]), "new record not added");
  /* Merging again changes nothing. */
  CHECK(at_db_merge(&db, &in, &m) == RB_OK && m.added == 0 && m.replaced == 0 && m.kept == 5, "merge is idempotent");
  at_db_free(&db);
  at_db_free(&in);
}

/* A file that must be refused, with want in the message (after "PATH: "). */
static void refuse(const char *name, const char *text, const char *want) {
  const char *path = at(name);
  write_file(path, text, strlen(text));
  AtDb db = {0};
  RbBuf err = {0};
  int rc = at_db_load(&db, path, &err);
  char head[600];
  snprintf(head, sizeof head, "%s: %s", path, want);
  CHECK(rc == RB_EUSER && db.n == 0 && err.data && strstr(err.data, head) == err.data, "%s: rc %d, message:\n%s\nwant:\n%s",
        name, rc, err.data ? err.data : "(none)", head);
  rb_buf_free(&err);
  at_db_free(&db);
}

#define HEAD "{\"format\": \"rabit-tune\", \"version\": 1, \"records\": ["
#define REC(fields)                                                                                              \
  "{\"device\": \"NVIDIA H200\", \"arch\": \"sm_90\", \"nvrtc\": \"nvrtc 13.0\", \"op\": \"linear N=64 K=64 k=2\", " \
  fields "}"
#define GOOD_SCHED "\"schedule\": {\"strategy\": \"mma\", \"tile\": [1, 1, 0, 8]}"
#define GOOD_REST "\"us\": 1.5, \"default_us\": 2, \"date\": \"2025-06-01T12:00:00Z\""

static void check_broken(void) {
  refuse("empty.bad", "  \n", "is empty");
  refuse("garbage.bad", "\x7f" "ELF\x01\x02", "not valid JSON at line 1, column 1 (byte 0); the file ends before its JSON does");
  refuse("corrupt.bad", "{\n  \"format\": \"rabit-tune\",\n  \"version\": 1,,\n}", "not valid JSON at line 3, column 17 (byte 44)");
  /* Truncated: a real file cut in the middle of a record. */
  char *full = read_text(at("a.json"));
  CHECK(full != NULL, "a.json");
  if (full) {
    full[strlen(full) / 2] = 0;
    refuse("truncated.bad", full, "not valid JSON at line ");
    AtDb db = {0};
    RbBuf err = {0};
    at_db_load(&db, at("truncated.bad"), &err);
    CHECK(err.data && strstr(err.data, "; the file ends before its JSON does (truncated?)"), "truncation not said: %s",
          err.data ? err.data : "");
    rb_buf_free(&err);
  }
  rb_free(full);
  refuse("trailing.bad", HEAD "]} {}", "more text after the JSON value, at line 1, column 55");
  refuse("array.bad", "[1, 2]", "is not a JSON object");
  refuse("foreign.bad", "{\"format\": \"other\", \"version\": 1, \"records\": []}", "is not a rabit tuning database");
  refuse("stale.bad", "{\"format\": \"rabit-tune\", \"version\": 2, \"records\": []}",
         "is format version 2; this rabitc reads version 1 (a stale or newer database)");
  refuse("noversion.bad", "{\"format\": \"rabit-tune\", \"records\": []}", "\"version\" is missing or not a number");
  refuse("norecords.bad", "{\"format\": \"rabit-tune\", \"version\": 1, \"records\": {}}",
         "\"records\" is missing or not an array");
  /* Wrong-typed and missing fields, by record number and field. */
  refuse("rec-type.bad", HEAD "7]}", "record 1: is not an object");
  refuse("device.bad", HEAD "{\"device\": 5}]}", "record 1: \"device\" is not a string");
  refuse("nodevice.bad", HEAD "{}]}", "record 1: lacks \"device\"");
  refuse("batch.bad", HEAD REC("\"batch\": \"16\", " GOOD_SCHED ", " GOOD_REST) "]}",
         "record 1: \"batch\" must be an integer 1..2147483647");
  refuse("batch-frac.bad", HEAD REC("\"batch\": 1.5, " GOOD_SCHED ", " GOOD_REST) "]}",
         "record 1: \"batch\" must be an integer");
  refuse("sched.bad", HEAD REC("\"batch\": 1, \"schedule\": [1], " GOOD_REST) "]}", "record 1: \"schedule\" is not an object");
  refuse("strategy.bad", HEAD REC("\"batch\": 1, \"schedule\": {\"strategy\": \"fast\", \"tile\": [0, 0, 0, 0]}, " GOOD_REST) "]}",
         "record 1: unknown strategy \"fast\"");
  refuse("tile3.bad", HEAD REC("\"batch\": 1, \"schedule\": {\"strategy\": \"mma\", \"tile\": [1, 1, 0]}, " GOOD_REST) "]}",
         "record 1: \"tile\" must be an array of 4 integers");
  refuse("tileneg.bad", HEAD REC("\"batch\": 1, \"schedule\": {\"strategy\": \"mma\", \"tile\": [1, -1, 0, 8]}, " GOOD_REST) "]}",
         "record 1: \"tile\" must be an integer 0..65536");
  refuse("us.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", \"us\": \"fast\", \"default_us\": 2, \"date\": \"2025-06-01T12:00:00Z\"") "]}",
         "record 1: \"us\" must be a time in microseconds");
  refuse("us0.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", \"us\": 0, \"default_us\": 2, \"date\": \"2025-06-01T12:00:00Z\"") "]}",
         "record 1: \"us\" must be a time in microseconds");
  refuse("date.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", \"us\": 1, \"default_us\": 2, \"date\": \"yesterday\"") "]}",
         "record 1: \"date\" must be UTC as YYYY-MM-DDTHH:MM:SSZ, got \"yesterday\"");
  refuse("date13.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", \"us\": 1, \"default_us\": 2, \"date\": \"2025-13-01T00:00:00Z\"") "]}",
         "record 1: \"date\" must be UTC");
  refuse("long.bad", HEAD "{\"device\": \"" "0123456789012345678901234567890123456789012345678901234567890123"
                     "0123456789012345678901234567890123456789012345678901234567890123\"}]}",
         "record 1: \"device\" is longer than 127 bytes");
  /* The second record is the bad one; then a repeated key. */
  refuse("second.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", " GOOD_REST) ", " REC("\"batch\": 2, " GOOD_SCHED) "]}",
         "record 2: lacks \"us\"");
  refuse("dup.bad", HEAD REC("\"batch\": 1, " GOOD_SCHED ", " GOOD_REST) ", " REC("\"batch\": 2, " GOOD_SCHED ", " GOOD_REST) ", "
                    REC("\"batch\": 1, " GOOD_SCHED ", " GOOD_REST) "]}",
         "record 3: repeats the key of record 1 (NVIDIA H200, linear N=64 K=64 k=2, b<=1)");
  /* Unknown fields are ignored; a good record reads with its bucket as batch_max. */
  const char *ok = HEAD REC("\"batch\": 16, \"note\": [1], " GOOD_SCHED ", " GOOD_REST) "]}";
  write_file(at("ok.json"), ok, strlen(ok));
  AtDb db = {0};
  RbBuf err = {0};
  CHECK(at_db_load(&db, at("ok.json"), &err) == RB_OK && db.n == 1 && db.r[0].sched.batch_max == 16 &&
            db.r[0].sched.strategy == CG_STRAT_MMA && db.r[0].us == 1.5,
        "good record: %s", err.data ? err.data : "");
  rb_buf_free(&err);
  /* Unreadable: a directory, a missing file. */
  CHECK(at_db_load(&db, root, &err) == RB_EUSER && err.data && strstr(err.data, "cannot read: Is a directory"), "dir: %s",
        err.data ? err.data : "");
  rb_buf_free(&err);
  CHECK(at_db_load(&db, at("missing.json"), &err) == RB_EUSER && errno == ENOENT, "missing");
  rb_buf_free(&err);
  at_db_free(&db);

  /* Allocation failure at every step: RB_EINTERNAL or success, nothing leaked (ASan). */
  char *text = read_text(at("a.json"));
  int ok_at = -1;
  for (long n = 0; text && n < 10000 && ok_at < 0; n++) {
    AtDb d = {0};
    RbBuf e = {0};
    rb_alloc_fail_after = n;
    int rc = at_db_parse(&d, text, strlen(text), "a.json", &e);
    rb_alloc_fail_after = -1;
    CHECK(rc == RB_OK || rc == RB_EINTERNAL, "allocation %ld failed: rc %d", n, rc);
    if (rc == RB_OK) ok_at = (int)n;
    at_db_free(&d);
    rb_buf_free(&e);
  }
  CHECK(ok_at > 0, "never parsed under failing allocation");
  rb_free(text);
}

static int add_one(AtDb *db, void *ctx, RbBuf *err) {
  (void)err;
  return at_db_put(db, (const AtRecord *)ctx);
}

static int refuse_edit(AtDb *db, void *ctx, RbBuf *err) {
  (void)db;
  (void)ctx;
  rb_buf_puts(err, "no");
  return RB_EUSER;
}

/* The copy in the cache: missing, broken (said once), edited. */
static void check_cache_copy(void) {
  AtDb db = {0};
  RbBuf warn = {0}, err = {0};
  CHECK(at_db_open(&db, at("cache/none.json"), &warn) == RB_OK && db.n == 0 && warn.len == 0, "missing: %s",
        warn.data ? warn.data : "");
  const char *bad = "{\"format\": \"rabit-tune\", \"version\": 9, \"records\": []}";
  write_file(at("stale.json"), bad, strlen(bad));
  CHECK(at_db_open(&db, at("stale.json"), &warn) == RB_OK && db.n == 0, "stale opened");
  char want[600];
  snprintf(want, sizeof want,
           "warning: tuning database ignored: %s: is format version 9; this rabitc reads version 1 (a stale or newer "
           "database) (the next tune or import replaces it)\n",
           at("stale.json"));
  CHECK(warn.data && !strcmp(warn.data, want), "stale warning:\n%s\nwant:\n%s", warn.data ? warn.data : "", want);
  rb_buf_free(&warn);
  CHECK(at_db_open(&db, at("stale.json"), &warn) == RB_OK && warn.len == 0, "said twice: %s", warn.data ? warn.data : "");
  /* Each kind of damage, on its own path, said once and ignored. */
  const char *names[] = {"corrupt.bad", "truncated.bad", "batch.bad", "array.bad"};
  for (int i = 0; i < 4; i++) {
    rb_buf_free(&warn);
    CHECK(at_db_open(&db, at(names[i]), &warn) == RB_OK && db.n == 0 && warn.data &&
              strstr(warn.data, "warning: tuning database ignored: ") == warn.data && strstr(warn.data, at(names[i])),
          "%s: %s", names[i], warn.data ? warn.data : "(no warning)");
  }
  rb_buf_free(&warn);
  /* Edited under its lock: the directory is made, the record lands. */
  AtRecord r = rec(&h200, "linear N=64 K=64 k=2", 1, 1, 3, "2025-06-01T12:00:00Z");
  const char *path = at("cache/sub/tuning.json");
  CHECK(at_db_edit(path, add_one, &r, &warn, &err) == RB_OK, "edit: %s", err.data ? err.data : "");
  struct stat st;
  CHECK(stat(at("cache/sub"), &st) == 0 && (st.st_mode & 0777) == 0700, "cache dir mode");
  CHECK(at_db_load(&db, path, &err) == RB_OK && db.n == 1 && same(&db.r[0], &r), "edited record");
  CHECK(access(at("cache/sub/tuning.json.lock"), F_OK) == 0, "lock file");
  /* A refused edit writes nothing. */
  AtRecord r2 = rec(&h200, "linear N=64 K=64 k=2", 16, 1, 3, "2025-06-01T12:00:00Z");
  CHECK(at_db_edit(path, refuse_edit, &r2, &warn, &err) == RB_EUSER && at_db_load(&db, path, &err) == RB_OK && db.n == 1,
        "refused edit");
  rb_buf_free(&err);
  /* A broken database is said and replaced by the edit. */
  write_file(path, "{\"format\"", 10);
  CHECK(at_db_edit(path, add_one, &r2, &warn, &err) == RB_OK && warn.data && strstr(warn.data, "truncated?"),
        "broken edit: %s", warn.data ? warn.data : "");
  CHECK(at_db_load(&db, path, &err) == RB_OK && db.n == 1 && same(&db.r[0], &r2), "replaced database");
  /* The cache's path follows $RABIT_CACHE_DIR. */
  setenv("RABIT_CACHE_DIR", at("cache"), 1);
  char *p = NULL;
  CHECK(at_db_cache_path(&p, &err) == RB_OK && p && !strcmp(p, at("cache/tuning.json")), "cache path: %s", p ? p : "");
  rb_free(p);
  rb_buf_free(&warn);
  rb_buf_free(&err);
  at_db_free(&db);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/at_db_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 2;
  }
  check_key();
  check_roundtrip();
  check_invalidation();
  check_merge();
  check_broken();
  check_cache_copy();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) printf("could not remove %s\n", root);
  return CHECK_SUMMARY();
}
