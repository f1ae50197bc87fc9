/* test_unwritable.c: a cache directory that cannot be created falls back to
 * memory with the exact warning, and put/get/fetch/evict still work there.
 * We run as root, so the directory is put below a regular file (ENOTDIR). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static int build(void *ctx, void **data, size_t *len) {
  (*(int *)ctx)++;
  *data = rb_malloc(3);
  memcpy(*data, "abc", 3);
  *len = 3;
  return RB_OK;
}

static void check_memory_cache(RtCache *c) {
  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.dir == NULL && st.entries == 0);
  RtKey a = tu_key("a"), b = tu_key("b");
  RbBuf err = {0};
  void *data;
  size_t len;
  CHECK(rt_cache_get(c, a, &data, &len) == 0);
  CHECK(rt_cache_put(c, a, "hello", 5, &err) == RB_OK);
  CHECK(rt_cache_get(c, a, &data, &len) == 1 && len == 5 && memcmp(data, "hello", 5) == 0);
  rb_free(data);
  CHECK(rt_cache_put(c, a, "bye", 3, &err) == RB_OK); /* replaces */
  CHECK(rt_cache_get(c, a, &data, &len) == 1 && len == 3 && memcmp(data, "bye", 3) == 0);
  rb_free(data);
  CHECK(rt_cache_get(c, b, &data, &len) == 0);

  int builds = 0, hit = -1;
  CHECK(rt_cache_fetch(c, b, build, &builds, &data, &len, &hit, &err) == RB_OK);
  CHECK(hit == 0 && builds == 1 && len == 3 && memcmp(data, "abc", 3) == 0);
  rb_free(data);
  CHECK(rt_cache_fetch(c, b, build, &builds, &data, &len, &hit, &err) == RB_OK);
  CHECK(hit == 1 && builds == 1 && len == 3 && memcmp(data, "abc", 3) == 0);
  rb_free(data);
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 2 && st.bytes == 6);
  CHECK(err.len == 0);
  RtCacheCleared done;
  CHECK(rt_cache_clear(c, &done, NULL) == RB_OK);
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 0 && st.bytes == 0);
  CHECK(rt_cache_get(c, a, &data, &len) == 0);
  rb_buf_free(&err);
}

int main(void) {
  char *dir = tu_tmpdir("unwr");
  char *file = strdup(tu_path(dir, "file"));
  int fd = open(file, O_WRONLY | O_CREAT, 0600);
  CHECK(fd >= 0);
  close(fd);
  char *cdir = strdup(tu_path(file, "cache"));
  char want[4200];
  snprintf(want, sizeof want,
           "warning: kernel cache directory '%s' is not writable (Not a directory); caching in "
           "memory only\n",
           cdir);

  /* Named directly. */
  RtCache *c = NULL;
  RbBuf warn = {0};
  CHECK(rt_cache_open(&c, cdir, 100, &warn) == RB_OK && c);
  if (!warn.data || strcmp(warn.data, want) != 0)
    fprintf(stderr, "warning was: %s", warn.data ? warn.data : "(none)\n");
  CHECK(warn.data && strcmp(warn.data, want) == 0);
  if (c) check_memory_cache(c);

  /* LRU in memory, by payload bytes: 3 x 40 bytes under a 100-byte limit. */
  char blob[40] = {0};
  RtKey k[3] = {tu_key("m0"), tu_key("m1"), tu_key("m2")};
  void *data;
  size_t len;
  CHECK(rt_cache_put(c, k[0], blob, 40, NULL) == RB_OK);
  CHECK(rt_cache_put(c, k[1], blob, 40, NULL) == RB_OK);
  CHECK(rt_cache_get(c, k[0], &data, &len) == 1); /* k[1] is now the oldest */
  rb_free(data);
  CHECK(rt_cache_put(c, k[2], blob, 40, NULL) == RB_OK);
  CHECK(rt_cache_get(c, k[1], &data, &len) == 0);
  CHECK(rt_cache_get(c, k[0], &data, &len) == 1);
  rb_free(data);
  CHECK(rt_cache_get(c, k[2], &data, &len) == 1);
  rb_free(data);
  rt_cache_close(c);

  /* Named by the environment: same fallback and text. */
  rb_buf_free(&warn);
  setenv("RABIT_CACHE_DIR", cdir, 1);
  c = NULL;
  CHECK(rt_cache_open(&c, NULL, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && c);
  CHECK(warn.data && strcmp(warn.data, want) == 0);
  if (c) check_memory_cache(c);
  rt_cache_close(c);
  unsetenv("RABIT_CACHE_DIR");

  /* A directory that exists but where even root cannot create a file: the
   * probe, not mkdir, must catch it. /proc/self is one on every Linux. */
  struct stat pst;
  if (stat("/proc/self", &pst) == 0) {
    rb_buf_free(&warn);
    c = NULL;
    CHECK(rt_cache_open(&c, "/proc/self", RT_CACHE_DEFAULT_MAX, &warn) == RB_OK && c);
    const char *head = "warning: kernel cache directory '/proc/self' is not writable (";
    const char *tail = "); caching in memory only\n";
    if (!warn.data || strncmp(warn.data, head, strlen(head)) != 0) fprintf(stderr, "warning was: %s", warn.data ? warn.data : "(none)\n");
    CHECK(warn.data && strncmp(warn.data, head, strlen(head)) == 0 && warn.len > strlen(tail) &&
          strcmp(warn.data + warn.len - strlen(tail), tail) == 0);
    RtCacheStats st;
    CHECK(c && rt_cache_stats(c, &st) == RB_OK && st.dir == NULL);
    rt_cache_close(c);
  }

  /* Nothing was created next to the file. */
  CHECK(tu_count(dir, NULL, NULL) == 1);
  rb_buf_free(&warn);
  CHECK(tu_rm_rf(dir) == 0);
  free(cdir);
  free(file);
  free(dir);
  return tu_finish("cache_unwritable");
}
