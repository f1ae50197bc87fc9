/* test_evict.c: beyond max_bytes, puts evict least-recently-used entries
 * (mtime, refreshed by get) until the total fits, never the entry just
 * written. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

enum { HDR = 44, N = 100, FILE_SIZE = HDR + N, MAX = 500 };

static struct timespec mtime_of(const char *path) {
  struct stat st;
  memset(&st, 0, sizeof st);
  CHECK(stat(path, &st) == 0);
  return st.st_mtim;
}

static int later(struct timespec a, struct timespec b) {
  return a.tv_sec != b.tv_sec ? a.tv_sec > b.tv_sec : a.tv_nsec > b.tv_nsec;
}

int main(void) {
  char *dir = tu_tmpdir("evict");
  RtCache *c;
  RbBuf err = {0};
  CHECK(rt_cache_open(&c, dir, MAX, NULL) == RB_OK);
  unsigned char blob[2000];
  memset(blob, 0x5a, sizeof blob);
  RtKey a = tu_key("A"), b = tu_key("B"), cc = tu_key("C"), d = tu_key("D"), e = tu_key("E"),
        big = tu_key("BIG");
  char pa[4200], pb[4200], pc[4200], pd[4200], pe[4200], pbig[4200];
  strcpy(pa, tu_entry_path(dir, a));
  strcpy(pb, tu_entry_path(dir, b));
  strcpy(pc, tu_entry_path(dir, cc));
  strcpy(pd, tu_entry_path(dir, d));
  strcpy(pe, tu_entry_path(dir, e));
  strcpy(pbig, tu_entry_path(dir, big));

  /* Three entries (432 bytes) fit under 500. */
  CHECK(rt_cache_put(c, a, blob, N, &err) == RB_OK);
  CHECK(rt_cache_put(c, b, blob, N, &err) == RB_OK);
  CHECK(rt_cache_put(c, cc, blob, N, &err) == RB_OK);
  CHECK(tu_count(dir, NULL, ".cubin") == 3);

  /* Distinct ages A < B < C, then a get makes A the most recent. */
  CHECK(tu_set_mtime(pa, -30) == 0 && tu_set_mtime(pb, -20) == 0 && tu_set_mtime(pc, -10) == 0);
  void *data;
  size_t len;
  CHECK(rt_cache_get(c, a, &data, &len) == 1);
  rb_free(data);
  CHECK(later(mtime_of(pa), mtime_of(pc)));

  /* A fourth (576 > 500) pushes out exactly the LRU one, B. */
  CHECK(rt_cache_put(c, d, blob, N, &err) == RB_OK);
  CHECK(tu_exists(pa) && !tu_exists(pb) && tu_exists(pc) && tu_exists(pd));
  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 3 && st.bytes == 3 * FILE_SIZE &&
        st.bytes <= MAX);

  /* Reorder: C oldest, then D, then A; E evicts C. */
  CHECK(tu_set_mtime(pc, -50) == 0 && tu_set_mtime(pd, -40) == 0 && tu_set_mtime(pa, -30) == 0);
  CHECK(rt_cache_put(c, e, blob, N, &err) == RB_OK);
  CHECK(tu_exists(pa) && !tu_exists(pc) && tu_exists(pd) && tu_exists(pe));
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 3 && st.bytes <= MAX);

  /* An entry bigger than the limit evicts all others but is itself kept. */
  CHECK(rt_cache_put(c, big, blob, 1000, &err) == RB_OK);
  CHECK(tu_exists(pbig) && !tu_exists(pa) && !tu_exists(pd) && !tu_exists(pe));
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == 1 && st.bytes == HDR + 1000);
  CHECK(rt_cache_get(c, big, &data, &len) == 1 && len == 1000 && memcmp(data, blob, len) == 0);
  rb_free(data);
  CHECK(err.len == 0);

  rt_cache_close(c);
  rb_buf_free(&err);
  CHECK(tu_rm_rf(dir) == 0);
  free(dir);
  return tu_finish("cache_evict");
}
