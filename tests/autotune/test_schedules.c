/* test_schedules.c: the schedules a compile takes from the databases
 * (autotune/schedules.c), CPU only: the lookup order (the tuned record for
 * the exact key beats the shipped one, which beats the default); another
 * device, arch or compiler misses; the shipped folder's files merged, a
 * broken one said once and ignored, a missing folder shipping nothing; the
 * cache's database found through $RABIT_CACHE_DIR; the repo's shipped H200
 * file valid; the device's key checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "autotune/autotune.h"
#include "runtime/jit/jit.h"
#include "tests/common/check.h"

static char root[256];

static const char *at(const char *name) {
  static char buf[4][512];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 512, "%s/%s", root, name);
  return b;
}

/* The kernels: three linear+add ops, the b<=16 bucket. */
static CgKernel kernel(int N) {
  CgKernel k = {.op = {.kind = CG_LINEAR, .epilogue = CG_EPI_ADD, .nseg = 1, .N = {N}, .K = 160, .paths = 1},
                .sched = {CG_STRAT_MMA, 16, {0}}};
  return k;
}

static AtRecord record(const AtDevice *dev, int N, int rt) {
  CgKernel k = kernel(N);
  AtRecord r;
  at_record_key(dev, &k, &r);
  r.sched = (CgSchedule){CG_STRAT_MMA, 16, {rt, 1, 0, 8}};
  r.us = 1, r.default_us = 2;
  strcpy(r.date, "2026-12-01T00:00:00Z");
  return r;
}

static void save(const char *path, const AtRecord *r, int n) {
  AtDb db = {0};
  for (int i = 0; i < n; i++) at_db_put(&db, &r[i]);
  RbBuf err = {0};
  CHECK(at_db_save(&db, path, &err) == RB_OK, "save %s: %s", path, err.data ? err.data : "");
  rb_buf_free(&err);
  at_db_free(&db);
}

/* What the hook gives kernel N: its source, and the row tiles of its schedule (-1: untouched). */
static CgScheduleSource pick(AtSchedules *s, int N, int *rt) {
  CgKernel k = kernel(N);
  CgSchedule out = {CG_STRAT_NONE, -1, {-1}};
  CgScheduleSource from = at_schedule_pick(s, &k, &out);
  *rt = out.tile[0];
  CHECK(from == CG_FROM_DEFAULT ? out.batch_max == -1 : out.batch_max == 16, "N=%d: batch_max %d", N, out.batch_max);
  return from;
}

static void check_order(void) {
  AtDevice dev;
  RbBuf err = {0}, warn = {0};
  CHECK(at_device_init(&dev, "NVIDIA H200", "sm_90", &err) == RB_OK && !strcmp(dev.nvrtc, rt_nvrtc_id()),
        "device: %s", err.data ? err.data : "");
  /* Tuned: N=64 (rows 1). Shipped: N=64 (rows 2) and N=128 (rows 3) in one
   * file, N=256 in another; a broken third file. N=512 nowhere. */
  AtRecord tuned[] = {record(&dev, 64, 1)};
  AtRecord ship_a[] = {record(&dev, 64, 2), record(&dev, 128, 3)}, ship_b[] = {record(&dev, 256, 4)};
  mkdir(at("shipped"), 0700);
  save(at("tuning.json"), tuned, 1);
  save(at("shipped/a.json"), ship_a, 2);
  save(at("shipped/b.json"), ship_b, 1);
  FILE *f = fopen(at("shipped/c.json"), "w");
  if (f) fputs("{\"format\": \"rabit-tune\", \"version\": 1, \"rec", f), fclose(f);
  f = fopen(at("shipped/notes.txt"), "w"); /* not a database: not read */
  if (f) fputs("not json", f), fclose(f);

  AtSchedules s;
  CHECK(at_schedules_open(&s, &dev, at("tuning.json"), at("shipped"), &warn) == RB_OK, "open");
  CHECK(s.tuned.n == 1 && s.shipped.n == 3, "%d tuned, %d shipped records (want 1, 3)", s.tuned.n, s.shipped.n);
  CHECK(warn.data && strstr(warn.data, "warning: tuning database ignored: ") && strstr(warn.data, "shipped/c.json: ") &&
            !strstr(strstr(warn.data, "ignored") + 1, "ignored"),
        "broken shipped file not said once: %s", warn.data ? warn.data : "");
  int rt;
  CHECK(pick(&s, 64, &rt) == CG_FROM_TUNED && rt == 1, "tuned does not beat shipped (rows %d)", rt);
  CHECK(pick(&s, 128, &rt) == CG_FROM_SHIPPED && rt == 3, "shipped (file a) missed (rows %d)", rt);
  CHECK(pick(&s, 256, &rt) == CG_FROM_SHIPPED && rt == 4, "shipped (file b) missed (rows %d)", rt);
  CHECK(pick(&s, 512, &rt) == CG_FROM_DEFAULT && rt == -1, "no record, yet not the default");
  at_schedules_free(&s);

  /* Opened again: the broken file is not said twice. */
  rb_buf_free(&warn);
  CHECK(at_schedules_open(&s, &dev, at("tuning.json"), at("shipped"), &warn) == RB_OK && !warn.len,
        "said twice: %s", warn.data ? warn.data : "");
  at_schedules_free(&s);

  /* Another device, arch or compiler: every kernel default. */
  AtDevice other[3] = {dev, dev, dev};
  strcpy(other[0].device, "NVIDIA H100 80GB HBM3");
  strcpy(other[1].arch, "sm_89");
  strcpy(other[2].nvrtc, "nvrtc 12.4 builtins 0000000000000000");
  for (int i = 0; i < 3; i++) {
    CHECK(at_schedules_open(&s, &other[i], at("tuning.json"), at("shipped"), &warn) == RB_OK, "open other %d", i);
    for (int N = 64; N <= 512; N *= 2) CHECK(pick(&s, N, &rt) == CG_FROM_DEFAULT, "other key %d, N=%d: not default", i, N);
    at_schedules_free(&s);
  }

  /* No shipped folder, no tuned file: defaults, nothing said. */
  rb_buf_free(&warn);
  CHECK(at_schedules_open(&s, &dev, at("none.json"), at("no-such-dir"), &warn) == RB_OK && !warn.len &&
            s.tuned.n == 0 && s.shipped.n == 0,
        "missing databases: %s", warn.data ? warn.data : "");
  CHECK(pick(&s, 64, &rt) == CG_FROM_DEFAULT, "missing databases: not default");
  at_schedules_free(&s);

  /* The cache's database through $RABIT_CACHE_DIR; the shipped folder through $RABIT_SHIPPED_DIR. */
  setenv("RABIT_CACHE_DIR", root, 1);
  setenv("RABIT_SHIPPED_DIR", at("shipped"), 1);
  CHECK(!strcmp(at_shipped_dir(), at("shipped")), "RABIT_SHIPPED_DIR ignored: %s", at_shipped_dir());
  CHECK(at_schedules_open(&s, &dev, NULL, NULL, &warn) == RB_OK && s.tuned.n == 1 && s.shipped.n == 3,
        "the cache's database: %d tuned, %d shipped", s.tuned.n, s.shipped.n);
  CHECK(pick(&s, 64, &rt) == CG_FROM_TUNED && rt == 1, "the cache's tuned record missed");
  at_schedules_free(&s);
  unsetenv("RABIT_SHIPPED_DIR");
  rb_buf_free(&warn);
  rb_buf_free(&err);
}

/* The repo's shipped folder (compiled in) holds valid databases. */
static void check_shipped(void) {
  AtDevice dev;
  RbBuf err = {0}, warn = {0};
  at_device_init(&dev, "NVIDIA H200", "sm_90", &err);
  AtSchedules s;
  CHECK(strstr(at_shipped_dir(), "autotune/shipped") != NULL, "shipped dir: %s", at_shipped_dir());
  char path[1024];
  snprintf(path, sizeof path, "%s/h200.json", at_shipped_dir());
  AtDb db = {0};
  CHECK(at_db_load(&db, path, &err) == RB_OK, "%s: %s", path, err.data ? err.data : "");
  at_db_free(&db);
  CHECK(at_schedules_open(&s, &dev, at("none.json"), NULL, &warn) == RB_OK && !warn.len, "shipped: %s",
        warn.data ? warn.data : "");
  at_schedules_free(&s);
  rb_buf_free(&warn);
  rb_buf_free(&err);
}

static void check_device(void) {
  AtDevice dev;
  RbBuf err = {0};
  CHECK(at_device_init(&dev, "", "sm_90", &err) == RB_EUSER && strstr(err.data, "empty"), "empty name accepted");
  rb_buf_free(&err);
  char longname[200];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK(at_device_init(&dev, longname, "sm_90", &err) == RB_EUSER && strstr(err.data, "does not fit a tuning key"),
        "long name accepted");
  rb_buf_free(&err);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof root, "%s/at_sched_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 2;
  }
  unsetenv("RABIT_SHIPPED_DIR");
  check_shipped();
  check_order();
  check_device();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) printf("could not remove %s\n", root);
  return CHECK_SUMMARY();
}
