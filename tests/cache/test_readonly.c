/* test_readonly.c: a cache directory that can be read but not written is
 * used: its entries are hits, new kernels are kept in memory, the warning
 * says so once per process, stats count its entries, and clear names each
 * file it cannot remove and removes nothing. Root ignores modes, so the
 * checks run in a child that became nobody (or are skipped, said so). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

enum { HDR = 44, N = 3 };

static int builds;

static int build(void *ctx, void **data, size_t *len) {
  builds++;
  *data = rb_malloc(4);
  memcpy(*data, "new!", 4);
  *len = 4;
  return RB_OK;
}

static int as_user(void *arg) {
  printf("read-only cache checked as uid %d\n", (int)geteuid());
  const char *dir = arg;
  RtCache *c = NULL;
  RbBuf warn = {0}, err = {0};
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && c);
  char want[4400];
  snprintf(want, sizeof want,
           "warning: kernel cache directory '%s' is read-only (Permission denied); its kernels are used, new "
           "ones are cached in memory only\n",
           dir);
  if (!warn.data || strcmp(warn.data, want)) fprintf(stderr, "warning was: %s", warn.data ? warn.data : "(none)\n");
  CHECK(warn.data && !strcmp(warn.data, want));

  /* The entries on disk are hits, through get and fetch: nothing rebuilt. */
  void *data;
  size_t len;
  int hit = 0;
  for (int i = 0; i < N; i++) {
    char src[8];
    snprintf(src, sizeof src, "k%d", i);
    CHECK(rt_cache_get(c, tu_key(src), &data, &len) == 1 && len == 10 + (size_t)i);
    rb_free(data);
    CHECK(rt_cache_fetch(c, tu_key(src), build, NULL, &data, &len, &hit, &err) == RB_OK && hit);
    rb_free(data);
  }
  CHECK(builds == 0);
  /* A new kernel is built once, then kept in memory; nothing is written, and
   * nothing more is said (no lock file is tried). */
  CHECK(rt_cache_fetch(c, tu_key("fresh"), build, NULL, &data, &len, &hit, &err) == RB_OK && !hit && builds == 1);
  rb_free(data);
  CHECK(rt_cache_fetch(c, tu_key("fresh"), build, NULL, &data, &len, &hit, &err) == RB_OK && hit && builds == 1);
  CHECK(len == 4 && !memcmp(data, "new!", 4));
  rb_free(data);
  CHECK(err.len == 0);
  if (err.len) fprintf(stderr, "err: %s", err.data);
  CHECK(tu_count(dir, NULL, NULL) == N);

  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.readonly && st.dir && !strcmp(st.dir, dir));
  CHECK(st.entries == N && st.bytes == N * HDR + 10 + 11 + 12);

  /* clear: every entry named with the reason, all of them still there. */
  RtCacheCleared done;
  CHECK(rt_cache_clear(c, &done, &err) == RB_EUSER);
  CHECK(done.entries == 0 && done.bytes == 0 && done.failed == N);
  for (int i = 0; i < N; i++) {
    char src[8];
    snprintf(src, sizeof src, "k%d", i);
    snprintf(want, sizeof want, "kernel cache: cannot remove '%s': Permission denied\n", tu_entry_path(dir, tu_key(src)));
    CHECK(err.data && strstr(err.data, want));
  }
  if (!err.data || !strstr(err.data, "Permission denied")) fprintf(stderr, "clear said: %s", err.data ? err.data : "(none)\n");
  CHECK(tu_count(dir, NULL, ".cubin") == N);
  rt_cache_close(c);

  /* Said once per process: a second open is quiet. */
  rb_buf_free(&warn);
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && warn.len == 0);
  CHECK(rt_cache_get(c, tu_key("k0"), &data, &len) == 1);
  rb_free(data);
  rt_cache_close(c);
  rb_buf_free(&warn);
  rb_buf_free(&err);
  return tu_failures ? 1 : 0;
}

int main(void) {
  char *root = tu_tmpdir("ro");
  char *dir = strdup(tu_path(root, "cache"));
  CHECK(chmod(root, 0755) == 0); /* nobody must reach the cache */
  RtCache *c;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  static unsigned char blob[16];
  for (int i = 0; i < N; i++) {
    char src[8];
    snprintf(src, sizeof src, "k%d", i);
    CHECK(rt_cache_put(c, tu_key(src), blob, 10 + (size_t)i, NULL) == RB_OK);
    CHECK(tu_nobody_own(tu_entry_path(dir, tu_key(src))) == 0);
  }
  rt_cache_close(c);
  CHECK(tu_nobody_own(dir) == 0 && chmod(dir, 0500) == 0);

  int rc = tu_in_child_as_user("cache_readonly", as_user, dir);
  CHECK(rc == 0 || rc == 77);
  chmod(dir, 0700);
  CHECK(tu_rm_rf(root) == 0);
  free(dir);
  free(root);
  return tu_finish("cache_readonly");
}
