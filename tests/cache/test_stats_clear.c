/* test_stats_clear.c: stats count entries and their file bytes; clear removes
 * every entry, lock and temp file, and nothing else. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

enum { HDR = 44 };

static int build(void *ctx, void **data, size_t *len) {
  *data = rb_malloc(7);
  memcpy(*data, "kernel!", 7);
  *len = 7;
  return RB_OK;
}

static void touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT, 0600);
  CHECK(fd >= 0);
  close(fd);
}

int main(void) {
  char *dir = tu_tmpdir("stats");
  RtCache *c;
  CHECK(rt_cache_open(&c, dir, 123456, NULL) == RB_OK);
  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK);
  CHECK(st.entries == 0 && st.bytes == 0 && st.max_bytes == 123456);
  CHECK(st.dir && strcmp(st.dir, dir) == 0);

  static unsigned char blob[3000];
  size_t sizes[] = {10, 200, 3000};
  for (int i = 0; i < 3; i++) {
    char src[16];
    snprintf(src, sizeof src, "k%d", i);
    CHECK(rt_cache_put(c, tu_key(src), blob, sizes[i], NULL) == RB_OK);
  }
  CHECK(rt_cache_stats(c, &st) == RB_OK);
  CHECK(st.entries == 3 && st.bytes == 3 * HDR + 10 + 200 + 3000);

  /* A fetch leaves a lock file; a temp file and a stranger appear too. */
  void *data;
  size_t len;
  int hit;
  CHECK(rt_cache_fetch(c, tu_key("fetched"), build, NULL, &data, &len, &hit, NULL) == RB_OK);
  rb_free(data);
  CHECK(tu_count(dir, NULL, ".lock") == 1);
  touch(tu_path(dir, "tmp.0123.99.0"));
  touch(tu_path(dir, "README"));
  touch(tu_path(dir, "0123.cubin")); /* not a key name: not ours */
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 4);

  RtCacheCleared done;
  CHECK(rt_cache_clear(c, &done, NULL) == RB_OK);
  CHECK(tu_count(dir, NULL, ".lock") == 0);
  CHECK(tu_count(dir, "tmp.", NULL) == 0);
  CHECK(tu_count(dir, NULL, NULL) == 2); /* README and 0123.cubin survive */
  CHECK(tu_exists(tu_path(dir, "README")) && tu_exists(tu_path(dir, "0123.cubin")));
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 0 && st.bytes == 0);
  CHECK(rt_cache_get(c, tu_key("k0"), &data, &len) == 0);

  /* Usable after clear. */
  CHECK(rt_cache_put(c, tu_key("k0"), blob, 10, NULL) == RB_OK);
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 1 && st.bytes == HDR + 10);
  rt_cache_close(c);

  CHECK(tu_rm_rf(dir) == 0);
  free(dir);
  return tu_finish("cache_stats_clear");
}
