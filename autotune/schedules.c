/* schedules.c: the tuned and shipped schedules a compile uses. The lookup
 * order is the tuned record for the kernel's exact key (the cache's
 * database: measured on this kind of GPU with this compiler), then the
 * shipped one (autotune/shipped/: measured by the project), then the default. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/autotune.h"
#include "runtime/jit/jit.h"

#ifndef AT_SHIPPED_DIR
#define AT_SHIPPED_DIR "autotune/shipped" /* the build defines the source tree's */
#endif

const char *at_shipped_dir(void) {
  const char *env = getenv("RABIT_SHIPPED_DIR");
  return env && *env ? env : AT_SHIPPED_DIR;
}

int at_device_init(AtDevice *dev, const char *name, const char *arch, RbBuf *err) {
  memset(dev, 0, sizeof *dev);
  const char *id = rt_nvrtc_id();
  if (!name || !*name) {
    rb_buf_puts(err, "the device name is empty");
    return RB_EUSER;
  }
  if (strlen(name) >= sizeof dev->device || !arch || strlen(arch) >= sizeof dev->arch ||
      strlen(id) >= sizeof dev->nvrtc) {
    rb_buf_printf(err, "the device '%.40s%s' on %.20s does not fit a tuning key (names of at most %zu bytes)", name,
                  strlen(name) > 40 ? "..." : "", arch ? arch : "?", sizeof dev->device - 1);
    return RB_EUSER;
  }
  strcpy(dev->device, name);
  strcpy(dev->arch, arch);
  strcpy(dev->nvrtc, id);
  return RB_OK;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every *.json of dir merged into db, in name order (so the result does not
 * depend on the directory's order). Broken files are said in warn. */
static int load_shipped(AtDb *db, const char *dir, RbBuf *warn) {
  DIR *d = opendir(dir);
  if (!d) return RB_OK; /* nothing shipped here (an install without the source tree) */
  char **names = NULL;
  int n = 0, cap = 0, rc = RB_OK;
  for (struct dirent *e; rc == RB_OK && (e = readdir(d));) {
    size_t len = strlen(e->d_name);
    if (len <= 5 || strcmp(e->d_name + len - 5, ".json") || e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 8;
      char **p = rb_realloc(names, (size_t)cap * sizeof *p);
      if (!p) {
        rc = RB_EINTERNAL;
        break;
      }
      names = p;
    }
    if (!(names[n] = rb_strdup(e->d_name))) rc = RB_EINTERNAL;
    else n++;
  }
  closedir(d);
  if (n) qsort(names, (size_t)n, sizeof *names, name_cmp);
  for (int i = 0; i < n && rc == RB_OK; i++) {
    RbBuf path = {0};
    AtDb one = {0};
    rb_buf_printf(&path, "%s/%s", dir, names[i]);
    rc = path.oom ? RB_EINTERNAL : at_db_open(&one, path.data, warn);
    if (rc == RB_OK) rc = at_db_merge(db, &one, NULL);
    at_db_free(&one);
    rb_buf_free(&path);
  }
  for (int i = 0; i < n; i++) rb_free(names[i]);
  rb_free(names);
  return rc;
}

int at_schedules_open(AtSchedules *s, const AtDevice *dev, const char *tuned_path, const char *shipped_dir,
                      RbBuf *warn) {
  memset(s, 0, sizeof *s);
  s->dev = *dev;
  char *own = NULL;
  RbBuf none = {0};
  int rc = RB_OK;
  if (!tuned_path) {
    rc = at_db_cache_path(&own, &none); /* no cache directory: nothing tuned here */
    if (rc == RB_EUSER) rc = RB_OK;
    tuned_path = own;
  }
  if (rc == RB_OK && tuned_path) rc = at_db_open(&s->tuned, tuned_path, warn);
  if (rc == RB_OK) rc = load_shipped(&s->shipped, shipped_dir ? shipped_dir : at_shipped_dir(), warn);
  rb_free(own);
  rb_buf_free(&none);
  return rc;
}

void at_schedules_free(AtSchedules *s) {
  at_db_free(&s->tuned);
  at_db_free(&s->shipped);
  memset(s, 0, sizeof *s);
}

CgScheduleSource at_schedule_pick(void *ctx, const CgKernel *k, CgSchedule *out) {
  const AtSchedules *s = ctx;
  AtRecord key;
  if (at_record_key(&s->dev, k, &key) != RB_OK) return CG_FROM_DEFAULT; /* no record can have it */
  const AtRecord *r = at_db_lookup(&s->tuned, &key);
  CgScheduleSource from = CG_FROM_TUNED;
  if (!r) {
    r = at_db_lookup(&s->shipped, &key);
    from = CG_FROM_SHIPPED;
  }
  if (!r) return CG_FROM_DEFAULT;
  *out = r->sched;
  out->batch_max = k->sched.batch_max; /* the key's bucket: the record's is the same */
  return from;
}
