/* test_corrupt.c: every kind of bad entry is a miss, is removed, and is
 * rebuilt by rt_cache_fetch; none is ever loaded. Table-driven. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

enum { HDR = 44, N = 1000 };

static unsigned char payload[N];

typedef struct {
  int builds;
} Builder;

static int build(void *ctx, void **data, size_t *len) {
  ((Builder *)ctx)->builds++;
  *data = rb_malloc(N);
  memcpy(*data, payload, N);
  *len = N;
  return RB_OK;
}

static void xor_byte(const char *path, off_t at, unsigned char x) {
  int fd = open(path, O_RDWR);
  unsigned char b;
  CHECK(fd >= 0 && pread(fd, &b, 1, at) == 1);
  b ^= x;
  CHECK(pwrite(fd, &b, 1, at) == 1);
  close(fd);
}

static void truncate_to(const char *path, off_t n) { CHECK(truncate(path, n) == 0); }

static void append_byte(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND);
  CHECK(fd >= 0 && write(fd, "x", 1) == 1);
  close(fd);
}

/* Each case damages the entry of `key` at path; `other` names the key whose
 * file name the "renamed" case moves it to. Returns the key to look up. */
typedef enum {
  FLIP_PAYLOAD, FLIP_LAST, FLIP_CHECKSUM, TRUNC_PAYLOAD, TRUNC_HEADER, EMPTY, BAD_MAGIC,
  BAD_VERSION, BAD_LENGTH, BAD_KEY, EXTRA_BYTE, RENAMED, NCASES
} Case;
static const char *case_name[] = {"flip payload", "flip last byte", "flip checksum",
                                  "truncated payload", "truncated header", "empty file",
                                  "bad magic", "bad version", "bad length", "bad key in header",
                                  "extra byte", "renamed to other key"};

static void run_case(Case k) {
  char *dir = tu_tmpdir("corrupt");
  RtCache *c;
  RbBuf err = {0};
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  RtKey key = tu_key("corrupt me"), other = tu_key("someone else");
  CHECK(rt_cache_put(c, key, payload, N, &err) == RB_OK);
  const char *path = tu_entry_path(dir, key);
  RtKey look = key;
  switch (k) {
  case FLIP_PAYLOAD: xor_byte(path, HDR + 5, 0x01); break;
  case FLIP_LAST: xor_byte(path, HDR + N - 1, 0x80); break;
  case FLIP_CHECKSUM: xor_byte(path, 36, 0x01); break;
  case TRUNC_PAYLOAD: truncate_to(path, HDR + N - 1); break;
  case TRUNC_HEADER: truncate_to(path, 10); break;
  case EMPTY: truncate_to(path, 0); break;
  case BAD_MAGIC: xor_byte(path, 0, 0x20); break;
  case BAD_VERSION: xor_byte(path, 8, 0x02); break;
  case BAD_LENGTH: xor_byte(path, 28, 0x01); break;
  case BAD_KEY: xor_byte(path, 15, 0x01); break;
  case EXTRA_BYTE: append_byte(path); break;
  case RENAMED: {
    char *from = strdup(path);
    CHECK(rename(from, tu_entry_path(dir, other)) == 0);
    free(from);
    look = other;
    path = tu_entry_path(dir, other);
    break;
  }
  default: break;
  }
  char *p = strdup(path);
  void *data = NULL;
  size_t len = 0;
  int got = rt_cache_get(c, look, &data, &len);
  if (got) fprintf(stderr, "case '%s' was loaded\n", case_name[k]);
  CHECK(got == 0 && data == NULL);
  if (tu_exists(p)) fprintf(stderr, "case '%s' was not removed\n", case_name[k]);
  CHECK(!tu_exists(p));

  /* fetch rebuilds it exactly once, and then it is a plain hit. */
  Builder b = {0};
  int hit = -1;
  CHECK(rt_cache_fetch(c, look, build, &b, &data, &len, &hit, &err) == RB_OK);
  CHECK(hit == 0 && b.builds == 1 && len == N && memcmp(data, payload, N) == 0);
  rb_free(data);
  CHECK(rt_cache_fetch(c, look, build, &b, &data, &len, &hit, &err) == RB_OK);
  CHECK(hit == 1 && b.builds == 1 && len == N && memcmp(data, payload, N) == 0);
  rb_free(data);
  CHECK(tu_exists(p));
  CHECK(err.len == 0);
  free(p);
  rt_cache_close(c);
  rb_buf_free(&err);
  CHECK(tu_rm_rf(dir) == 0);
  free(dir);
}

int main(void) {
  for (int i = 0; i < N; i++) payload[i] = (unsigned char)(i * 37 + 11);
  for (int k = 0; k < NCASES; k++) {
    int before = tu_failures;
    run_case((Case)k);
    if (tu_failures != before) fprintf(stderr, "  in case '%s'\n", case_name[k]);
  }
  return tu_finish("cache_corrupt");
}
