/* test_hit_miss.c: a stored entry comes back byte for byte, from this handle
 * and from a fresh one; unknown keys miss; overwrites replace. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

static void fill(unsigned char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)((i * 131u + seed * 7u) ^ (i >> 5));
}

int main(void) {
  char *dir = tu_tmpdir("hit");
  RtCache *c;
  RbBuf warn = {0}, err = {0};
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK);
  CHECK(warn.len == 0);

  unsigned char payload[3000];
  fill(payload, sizeof payload, 1);
  RtKey a = tu_key("kernel a"), b = tu_key("kernel b");
  void *data;
  size_t len;

  CHECK(rt_cache_get(c, a, &data, &len) == 0 && data == NULL && len == 0);
  CHECK(rt_cache_put(c, a, payload, sizeof payload, &err) == RB_OK);
  CHECK(err.len == 0);
  CHECK(rt_cache_get(c, a, &data, &len) == 1);
  CHECK(len == sizeof payload && data && memcmp(data, payload, len) == 0);
  rb_free(data);

  /* Miss on an unknown key, with outputs cleared. */
  data = (void *)1;
  len = 7;
  CHECK(rt_cache_get(c, b, &data, &len) == 0 && data == NULL && len == 0);

  /* The file: named by the key, header + payload, and no temp left behind. */
  struct stat st;
  CHECK(stat(tu_entry_path(dir, a), &st) == 0 && st.st_size == 44 + (off_t)sizeof payload);
  CHECK(tu_count(dir, NULL, NULL) == 1);

  /* An empty payload is a valid entry. */
  CHECK(rt_cache_put(c, b, "", 0, &err) == RB_OK);
  CHECK(rt_cache_get(c, b, &data, &len) == 1 && len == 0);
  rb_free(data);

  /* Overwrite replaces. */
  unsigned char other[500];
  fill(other, sizeof other, 2);
  CHECK(rt_cache_put(c, a, other, sizeof other, &err) == RB_OK);
  CHECK(rt_cache_get(c, a, &data, &len) == 1 && len == sizeof other &&
        memcmp(data, other, len) == 0);
  rb_free(data);
  rt_cache_close(c);

  /* Persistence: a new handle (as another process would) sees the entry. */
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, &warn) == RB_OK);
  CHECK(rt_cache_get(c, a, &data, &len) == 1 && len == sizeof other &&
        memcmp(data, other, len) == 0);
  rb_free(data);
  rt_cache_close(c);

  rb_buf_free(&warn);
  rb_buf_free(&err);
  CHECK(tu_rm_rf(dir) == 0);
  free(dir);
  return tu_finish("cache_hit_miss");
}
