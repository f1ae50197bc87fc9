/* test_concurrent.c: 8 processes fetch the same 3 keys at once; the per-key
 * lock must make each key build exactly once, leaving one valid entry per key
 * and no temp files. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

enum { PROCS = 8, KEYS = 3 };

typedef struct {
  const char *counter; /* file that gets one line per build */
  int which;
} Job;

static void payload_for(int which, char *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = (char)('a' + (which * 7 + i) % 26);
}

/* Slow enough (~50ms) that unlocked builders would overlap. */
static int build(void *ctx, void **data, size_t *len) {
  Job *j = ctx;
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  int fd = open(j->counter, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) return RB_EINTERNAL;
  char line[32];
  int n = snprintf(line, sizeof line, "key%d pid%ld\n", j->which, (long)getpid());
  int ok = write(fd, line, (size_t)n) == n;
  close(fd);
  if (!ok) return RB_EINTERNAL;
  *data = rb_malloc(4096);
  payload_for(j->which, *data, 4096);
  *len = 4096;
  return RB_OK;
}

static int child(const char *dir, const char *counter, int go) {
  char b;
  if (read(go, &b, 1) != 0) return 10; /* wait for the parent to close it: all start together */
  RtCache *c;
  if (rt_cache_open(&c, dir, RT_CACHE_DEFAULT_MAX, NULL) != RB_OK) return 11;
  int rc = 0;
  for (int k = 0; k < KEYS; k++) {
    char src[32], want[4096];
    snprintf(src, sizeof src, "kernel %d", k);
    Job j = {counter, k};
    void *data;
    size_t len;
    int hit;
    RbBuf err = {0};
    if (rt_cache_fetch(c, tu_key(src), build, &j, &data, &len, &hit, &err) != RB_OK) rc = 12;
    payload_for(k, want, sizeof want);
    if (rc == 0 && (len != sizeof want || memcmp(data, want, len) != 0)) rc = 13;
    if (err.len) rc = 14;
    rb_free(data);
    rb_buf_free(&err);
  }
  rt_cache_close(c);
  return rc;
}

int main(void) {
  char *dir = tu_tmpdir("conc");
  char *cdir = strdup(tu_path(dir, "cache"));
  char *counter = strdup(tu_path(dir, "builds.txt"));
  int go[2];
  CHECK(pipe(go) == 0);
  pid_t pids[PROCS];
  for (int i = 0; i < PROCS; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      close(go[1]);
      _exit(child(cdir, counter, go[0]));
    }
    CHECK(pids[i] > 0);
  }
  close(go[0]);
  close(go[1]);
  for (int i = 0; i < PROCS; i++) {
    int status = 0;
    CHECK(waitpid(pids[i], &status, 0) == pids[i]);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      fprintf(stderr, "child %d: status 0x%x\n", i, status);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }

  /* Exactly one build per key. */
  RbBuf log = {0};
  CHECK(rb_read_file(counter, &log) == 0);
  int per_key[KEYS] = {0}, lines = 0;
  for (char *s = log.data; s && *s; s = strchr(s, '\n') + 1) {
    int k = -1;
    sscanf(s, "key%d", &k);
    if (k >= 0 && k < KEYS) per_key[k]++;
    lines++;
    if (!strchr(s, '\n')) break;
  }
  if (lines != KEYS) fprintf(stderr, "build log:\n%s", log.data ? log.data : "");
  CHECK(lines == KEYS);
  for (int k = 0; k < KEYS; k++) CHECK(per_key[k] == 1);
  rb_buf_free(&log);

  /* One valid entry per key, no temp files. */
  CHECK(tu_count(cdir, NULL, ".cubin") == KEYS);
  CHECK(tu_count(cdir, "tmp.", NULL) == 0);
  RtCache *c;
  CHECK(rt_cache_open(&c, cdir, RT_CACHE_DEFAULT_MAX, NULL) == RB_OK);
  for (int k = 0; k < KEYS; k++) {
    char src[32], want[4096];
    snprintf(src, sizeof src, "kernel %d", k);
    payload_for(k, want, sizeof want);
    void *data;
    size_t len;
    CHECK(rt_cache_get(c, tu_key(src), &data, &len) == 1 && len == sizeof want &&
          memcmp(data, want, len) == 0);
    rb_free(data);
  }
  RtCacheStats st;
  CHECK(rt_cache_stats(c, &st) == RB_OK && st.entries == KEYS);
  rt_cache_close(c);

  CHECK(tu_rm_rf(dir) == 0);
  free(cdir);
  free(counter);
  free(dir);
  return tu_finish("cache_concurrent");
}
