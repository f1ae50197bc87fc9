/* test_killed_write.c: a writer killed (SIGKILL) part way through its temp
 * file leaves nothing loadable, even when the temp file is complete; a later
 * fetch builds and stores a valid entry; a stale temp file is removed when a
 * cache is next opened. Uses the RABIT_CACHE_TEST_STALL_AFTER_BYTES hook. */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

enum { HDR = 44, N = 1000 };

static unsigned char payload[N];

static int build(void *ctx, void **data, size_t *len) {
  (*(int *)ctx)++;
  *data = rb_malloc(N);
  memcpy(*data, payload, N);
  *len = N;
  return RB_OK;
}

/* Finds the one temp file in dir; returns its path in buf, or NULL. */
static const char *temp_file(const char *dir, char *buf, size_t n) {
  DIR *d = opendir(dir);
  if (!d) return NULL;
  const char *found = NULL;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strncmp(de->d_name, "tmp.", 4) == 0) {
      snprintf(buf, n, "%s/%s", dir, de->d_name);
      found = buf;
    }
  closedir(d);
  return found;
}

static void run(long stall) {
  char *dir = tu_tmpdir("killed");
  RtKey key = tu_key("half written");
  pid_t pid = fork();
  if (pid == 0) {
    char s[32];
    snprintf(s, sizeof s, "%ld", stall);
    setenv("RABIT_CACHE_TEST_STALL_AFTER_BYTES", s, 1);
    RtCache *c;
    if (rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) != RB_OK) _exit(3);
    rt_cache_put(c, key, payload, N, NULL);
    _exit(4); /* the hook should have killed us */
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  /* The temp file is there, exactly `stall` bytes long, and no entry. */
  char tbuf[4600];
  const char *tmp = temp_file(dir, tbuf, sizeof tbuf);
  struct stat st;
  CHECK(tmp && stat(tmp, &st) == 0 && st.st_size == stall);
  CHECK(tu_count(dir, NULL, ".cubin") == 0);

  RtCache *c;
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  void *data = NULL;
  size_t len = 0;
  CHECK(rt_cache_get(c, key, &data, &len) == 0 && data == NULL);
  RtCacheStats s;
  CHECK(rt_cache_stats(c, &s) == RB_OK && s.entries == 0 && s.bytes == 0);

  int builds = 0, hit = -1;
  RbBuf err = {0};
  CHECK(rt_cache_fetch(c, key, build, &builds, &data, &len, &hit, &err) == RB_OK);
  CHECK(hit == 0 && builds == 1 && len == N && memcmp(data, payload, N) == 0);
  rb_free(data);
  CHECK(rt_cache_get(c, key, &data, &len) == 1 && len == N && memcmp(data, payload, N) == 0);
  rb_free(data);
  CHECK(err.len == 0);
  rb_buf_free(&err);
  rt_cache_close(c);

  /* A fresh temp file may belong to a live writer: open keeps it. An old one
   * is from a dead writer: open removes it. */
  CHECK(tmp && tu_exists(tmp));
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  rt_cache_close(c);
  CHECK(tmp && tu_exists(tmp));
  CHECK(tmp && tu_set_mtime(tmp, -3600) == 0);
  CHECK(rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  CHECK(tmp && !tu_exists(tmp));
  CHECK(tu_count(dir, NULL, ".cubin") == 1);
  rt_cache_close(c);

  CHECK(tu_rm_rf(dir) == 0);
  free(dir);
}

int main(void) {
  for (int i = 0; i < N; i++) payload[i] = (unsigned char)(i * 13 + 5);
  /* Empty, mid-header, mid-payload, and complete but never renamed. */
  long stalls[] = {0, 20, HDR + 100, HDR + N};
  for (size_t i = 0; i < sizeof stalls / sizeof *stalls; i++) {
    int before = tu_failures;
    run(stalls[i]);
    if (tu_failures != before) fprintf(stderr, "  with stall after %ld bytes\n", stalls[i]);
  }
  return tu_finish("cache_killed_write");
}
